"""The ``keras-cnns`` command.

Every sub-command is a pair: ``_add_<name>(subparsers)`` declares its arguments and
``_cmd_<name>(args)`` does the work. Keras is imported only after the arguments are parsed,
so ``--backend`` can choose the Keras backend and bad arguments fail before any heavy import.

User mistakes raise ``keras_cnns.errors.UserError``; ``main`` prints them as one line on
stderr and exits non-zero. Only genuine bugs show a traceback.

The module is long (about 740 lines) because each of the eight sub-commands checks its own
arguments up front, so that a user's mistake is one line before anything heavy starts; a pair
of functions a command keeps each one readable on its own.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import select
import sys
import tempfile

from keras_cnns import native_logs
from keras_cnns.errors import DataError, DivergedError, UserError
from keras_cnns.storage import DEFAULT_OUT_DIR

BACKENDS = ("tensorflow", "jax", "torch")
# How to install each backend's package, for the one-line error when it is missing.
_BACKEND_INSTALL = {
    "tensorflow": "pip install tensorflow",
    "jax": "BACKENDS=jax bash scripts/setup.sh (or pip install \"jax[cpu]\")",
    "torch": "BACKENDS=torch bash scripts/setup.sh (or pip install torch)",
}
# Failed writes a user can fix (free space, permissions): one line, not a traceback.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit 2 (argparse prints usage first otherwise)."""

    def error(self, message):  # noqa: D401
        self.exit(2, f"keras-cnns: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _shape(text: str) -> tuple[int, ...]:
    """Parse ``32x32x3`` or ``32,32,3`` into a tuple of positive ints."""
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a shape such as 32x32x3, got {text!r}"
        ) from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive dimensions such as 32x32x3, got {text!r}")
    return dims


def _check_out_dir(path: str, flag: str = "--out") -> None:
    """``path`` must be a directory this process can write, or creatable in one."""
    target = os.path.abspath(path)
    existing = target
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "" if existing == target else f" ({existing} is a file)"
        raise UserError(f"{flag} {path!r} is not a directory{where}; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path!r} is not writable (no write permission on {existing}); choose another {flag}")
    # Permissions are not the whole story (root, /proc, a read-only mount): try to create
    # something there, and leave nothing behind.
    try:
        probe = tempfile.mkdtemp(dir=existing, prefix=".keras-cnns-probe-")
    except OSError as err:
        raise UserError(
            f"{flag} {path!r} is not writable (cannot create anything in {existing}: {err.strerror}); "
            f"choose another {flag}"
        ) from None
    os.rmdir(probe)


def _check_archives(data_dir: str | None, datasets, flag: str) -> None:
    """A given data directory must hold each dataset's archive (checked before Keras starts)."""
    if data_dir is None:
        return
    if not os.path.isdir(data_dir):
        raise UserError(f"{flag} {data_dir!r} is not a directory; unpack the archives with 'bash scripts/data.sh'")
    from keras_cnns.data import get_info

    for name in datasets:
        if get_info(name).streamed:
            continue  # keras_cnns.data.imagenet checks <data_dir>/<name>/ itself
        archive = os.path.join(data_dir, get_info(name).archive_name)
        if not os.path.isfile(archive):
            raise DataError(f"no archive {archive}: unpack the data there (bash scripts/data.sh) or point {flag} elsewhere")


# --- models ------------------------------------------------------------------------------------


def _add_models(sub):
    p = sub.add_parser("models", help="list every registered architecture (--params: with its parameter count)")
    p.add_argument("--family", help="only this family")
    counts = p.add_mutually_exclusive_group()
    counts.add_argument(
        "--params",
        action="store_true",
        help="build each net to count its parameters (seconds per net on a CPU, a minute for "
        "ResNet-1202; minutes for all)",
    )
    # The default since the list became instant; kept so that older command lines still work.
    counts.add_argument("--no-params", action="store_true", help=argparse.SUPPRESS)


def _cmd_models(args) -> int:
    import math

    from keras_cnns.registry import list_models

    entries = list_models(args.family)
    if not entries:
        families = sorted({e.family for e in list_models()})
        raise UserError(f"no model family {args.family!r}; the families are: {', '.join(families)}")
    head = ("name", "family", "paper", "input", "classes")
    cells = [
        (e.name, e.family, e.paper, "x".join(map(str, e.input_shape)), str(e.num_classes))
        for e in entries
    ]
    widths = [max(len(c) for c in col) for col in zip(head, *cells, strict=True)]
    count_width = 13  # "143,667,240" and room to spare

    def line(texts, counts=()) -> str:
        left = "  ".join(t.ljust(w) for t, w in zip(texts[:3], widths[:3], strict=True))
        right = "  ".join(t.rjust(w) for t, w in zip(texts[3:], widths[3:], strict=True))
        tail = "".join(f"  {c:>{count_width}}" for c in counts)
        return f"{left}  {right}{tail}".rstrip()

    if not args.params:
        print(line(head))
        for texts in cells:
            print(line(texts))
        sys.stdout.flush()  # the table first, then the hint under it
        if not args.no_params:
            print(
                "keras-cnns: parameter counts: add --params (it builds each net: seconds per net on "
                "a CPU, minutes for all; --family F for one family)",
                file=sys.stderr,
            )
        return 0

    # Building is the slow part (ResNet-1202 takes most of a minute on two cores): say so
    # first, then print each row as soon as its net is counted.
    print(
        f"keras-cnns: building {len(entries)} net{'s' if len(entries) > 1 else ''} one at a time to "
        "count parameters (without --params the list is instant)",
        file=sys.stderr,
        flush=True,
    )
    print(line(head, ("parameters", "trainable")), flush=True)
    import keras  # only now: --backend has been applied by main

    from keras_cnns.registry import build_model

    for entry, texts in zip(entries, cells, strict=True):
        # Built at the default shape, one at a time.
        model = build_model(entry.name)
        trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
        counts = (f"{model.count_params():,}", f"{trainable:,}")
        del model
        keras.backend.clear_session()
        print(line(texts, counts), flush=True)
    return 0


# --- summary -----------------------------------------------------------------------------------


def _add_summary(sub):
    p = sub.add_parser("summary", help="per-layer table: output shape, parameters, memory, multiply-adds, receptive field")
    p.add_argument("model")
    p.add_argument("--input-shape", type=_shape, help="for example 224x224x3 (default: the model's own)")
    p.add_argument("--classes", type=_positive_int, help="number of classes (default: the model's own)")
    p.add_argument(
        "--batch-size", type=_positive_int, default=1, help="images per pass for memory and MACs (default: 1)"
    )


def _keras_reason(err: Exception) -> str:
    """The informative line of a Keras build error (it wraps the cause in several lines)."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", t).strip() for t in str(err).splitlines()]
    lines = [t for t in lines if t]
    for text in lines:
        if "negative" in text or "zero" in text:
            return text
    return lines[0] if lines else type(err).__name__


def _cmd_summary(args) -> int:
    from keras_cnns.registry import build_model, get_entry

    entry = get_entry(args.model)  # an unknown name fails here, before Keras is imported
    shape = "x".join(map(str, args.input_shape or entry.input_shape))
    if args.input_shape and len(args.input_shape) != len(entry.input_shape):
        default = "x".join(map(str, entry.input_shape))
        raise UserError(
            f"--input-shape {shape} has {len(args.input_shape)} dimensions; {args.model} takes "
            f"{len(entry.input_shape)}, as its default {default}"
        )
    try:
        model = build_model(args.model, input_shape=args.input_shape, num_classes=args.classes)
    except ValueError as err:
        # Keras finds a map that shrank to nothing only while building; say so in one line.
        reason = _keras_reason(err)
        if "negative" in reason or "zero" in reason:
            raise UserError(
                f"input shape {shape} is too small for {args.model}: {reason} "
                f"(its default input is {'x'.join(map(str, entry.input_shape))})"
            ) from None
        raise UserError(f"cannot build {args.model} at input shape {shape}: {reason}") from None

    from keras_cnns.analysis import format_table, layer_table

    rows = layer_table(model, batch_size=args.batch_size)
    print(f"{model.name} ({entry.paper}): input {shape}, batch {args.batch_size}")
    print(format_table(rows))
    return 0


# --- shape -------------------------------------------------------------------------------------


def _add_shape(sub):
    p = sub.add_parser("shape", help="the lecture's output-size arithmetic for one convolution or pooling")
    p.add_argument("--input", type=_pair, required=True, help="input size: 32, or HxW such as 224x224")
    p.add_argument("--kernel", type=_pair, required=True, help="kernel size: 3, or HxW such as 1x7")
    p.add_argument("--stride", type=_pair, default=(1, 1), help="stride: 2, or HxW (default: 1)")
    p.add_argument(
        "--padding", type=_padding_pair, default=(0, 0), help="zeros per side (1, or HxW), 'valid' or 'same'"
    )
    p.add_argument("--dilation", type=_pair, default=(1, 1), help="dilation: 1, or HxW (default: 1)")


def _pair(text: str) -> tuple[int, int]:
    """``32`` -> ``(32, 32)``; ``224x160`` -> ``(224, 160)``. Signs are checked by analysis."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or HxW such as 224x224, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected an integer or HxW such as 224x224, got {text!r}")
    return (values[0], values[-1])


def _padding_pair(text: str) -> tuple[int | str, int | str]:
    if text.strip().lower() in ("valid", "same"):
        word = text.strip().lower()
        return (word, word)
    try:
        return _pair(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an integer, HxW, 'valid' or 'same', got {text!r}"
        ) from None


def _cmd_shape(args) -> int:
    from keras_cnns.analysis import conv_output_formula, conv_output_size

    geometry = list(zip(args.input, args.kernel, args.stride, args.padding, args.dilation, strict=True))
    square = geometry[0] == geometry[1]
    sizes, formulas = [], []
    for axis, (n, k, s, p, d) in zip(("height", "width"), geometry, strict=True):
        try:
            sizes.append(conv_output_size(n, k, s, p, d))
        except UserError as err:
            raise UserError(str(err) if square else f"{axis}: {err}") from None
        formulas.append(conv_output_formula(n, k, s, p, d))
    print(f"output size: {sizes[0]}x{sizes[1]}")
    if square:
        print(f"H_out = W_out = {formulas[0]}")
    else:
        print(f"H_out = {formulas[0]}")
        print(f"W_out = {formulas[1]}")
    spans = [d * (k - 1) + 1 for (_, k, _, _, d) in geometry]
    print(f"each output unit sees {spans[0]}x{spans[1]} input pixels (the dilated kernel's span)")
    return 0


# --- tune --------------------------------------------------------------------------------------


def _add_tune(sub):
    from keras_cnns.lab.tuning import DEFAULT_PRESET, DEFAULT_TRIALS, TUNERS

    p = sub.add_parser(
        "tune",
        help="search an experiment's hyperparameters with keras-tuner, scored on the validation split",
    )
    p.add_argument("experiment", help="a reproduction, for example relu-vs-tanh")
    p.add_argument("--tuner", choices=TUNERS, default="random", help="search algorithm (default: random)")
    p.add_argument(
        "--trials",
        type=_positive_int,
        default=DEFAULT_TRIALS,
        help=f"total trials per variant; re-running resumes up to this number (default: {DEFAULT_TRIALS})",
    )
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"the configs to start from (default: {DEFAULT_PRESET})")
    p.add_argument("--variant", help="tune only this variant (default: each variant in turn)")
    p.add_argument(
        "--epochs",
        type=_positive_int,
        help="epochs per trial, the preset's schedule scaled to fit (default: the preset's)",
    )
    p.add_argument("--overwrite", action="store_true", help="discard the previous search and start again")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT_DIR,
        help=f"the search goes under OUT/EXPERIMENT/ (default: {DEFAULT_OUT_DIR}; the committed one: results)",
    )
    p.add_argument("--data-dir", help="local data archives (default: $KERAS_CNNS_DATA_DIR)")
    p.add_argument("--quiet", action="store_true", help="no per-trial and per-epoch output")


def _cmd_tune(args) -> int:
    from keras_cnns.lab import experiments, tuning, tuning_report

    # An unknown experiment or preset, or missing data: one line, before keras-tuner starts.
    preset = experiments.get_experiment(args.experiment).preset(args.preset)
    data_dir = args.data_dir or os.environ.get("KERAS_CNNS_DATA_DIR") or None
    _check_archives(data_dir, preset.datasets, "--data-dir" if args.data_dir else "$KERAS_CNNS_DATA_DIR")
    _check_out_dir(args.out)

    best = tuning.tune(
        args.experiment,
        tuner=args.tuner,
        trials=args.trials,
        preset=args.preset,
        variant=args.variant,
        epochs=args.epochs,
        overwrite=args.overwrite,
        out_dir=args.out,
        data_dir=data_dir,
        verbose=0 if args.quiet else 1,
    )
    for variant, entry in best["variants"].items():
        print(
            f"{args.experiment} {variant}: best {tuning_report.OBJECTIVE} {entry[tuning_report.OBJECTIVE]:.4f} "
            f"(trial {entry['trial']}): {' '.join(entry['overrides'])}"
        )
    print(f"keras-cnns: wrote {tuning_report.report_paths(args.experiment, args.out)}")
    return 0


# --- train -------------------------------------------------------------------------------------

# Flags that are config fields; their values are parsed and checked by TrainConfig itself, so a
# flag and the same key in --set fail alike.
_TRAIN_FIELD_FLAGS = (
    "dataset", "epochs", "batch_size", "precision", "augment", "train_subset", "test_subset", "seed", "devices",
)  # fmt: skip


def _add_placement_flags(p) -> None:
    """``--devices``, ``--cluster``, ``--process-id``: where the runs execute (keras_cnns.training.distribute)."""
    p.add_argument(
        "--devices",
        help="data-parallel devices: a number or 'all' (default: 1); --batch-size is the global batch",
    )
    p.add_argument(
        "--cluster",
        metavar="HOST:PORT,...",
        help="several hosts: every process's address, process 0 first (default: $KERAS_DISTRIBUTION_JOB_ADDRESSES)",
    )
    p.add_argument(
        "--process-id",
        help="this host's index in --cluster; 0 writes the results (default: $KERAS_DISTRIBUTION_PROCESS_ID)",
    )


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train one model on one dataset and append its record; re-running the same command resumes it",
    )
    p.add_argument("model", help="a registered model, e.g. resnet20_cifar (see 'keras-cnns models')")
    p.add_argument("--dataset", required=True, help="mnist, cifar10, cifar100, fashion_mnist or imagenet2012")
    p.add_argument("--epochs", help="passes over the training split (default: 10)")
    p.add_argument("--batch-size", help="images per step (default: 128)")
    p.add_argument("--precision", help="float32 (default), mixed_float16 or mixed_bfloat16")
    p.add_argument("--augment", help="comma-separated augmentations, e.g. pad_crop,flip (default: none)")
    p.add_argument(
        "--train-subset",
        help="train on this many images (a seeded draw; for smoke runs); the validation split "
        "shrinks to at most as many",
    )
    p.add_argument("--test-subset", help="test on this many images (a seeded draw)")
    p.add_argument("--seed", help="seed of weights, split, order, dropout and augmentation (default: 0)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other config field, e.g. --set learning_rate=0.05 --set schedule=cosine, "
        "or a model option: --set model_kwargs.activation=tanh (applied after the flags)",
    )
    p.add_argument("--data-dir", help="local data archives (default: $KERAS_CNNS_DATA_DIR)")
    p.add_argument(
        "--out", default=DEFAULT_OUT_DIR, help=f"records.jsonl and checkpoints go here (default: {DEFAULT_OUT_DIR})"
    )
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to OUT/tensorboard/")
    p.add_argument("--no-resume", action="store_true", help="discard this run's checkpoint and start again")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the result (otherwise a progress bar, or one line per epoch when stdout is not a terminal)",
    )
    _add_placement_flags(p)


def _validation_for_subset(config, overrides, *, quiet: bool):
    """A training subset smaller than the validation split validates on as many images as it
    trains on (``val_size`` from ``--set`` is kept): 5,000 validation images would take most of
    each epoch of a 512-image smoke run."""
    chosen = any(o.partition("=")[0].strip() == "val_size" for o in overrides)
    if config.train_subset is None or chosen or config.val_size <= config.train_subset:
        return config
    if not quiet:
        print(
            f"keras-cnns: --train-subset {config.train_subset}: validating on {config.train_subset:,} "
            f"held-out images, not {config.val_size:,} (--set val_size=N to choose)",
            flush=True,
        )
    return config.replace(val_size=config.train_subset)


def _cmd_train(args) -> int:
    # Everything is checked before Keras is imported or data is read.
    from keras_cnns.training.config import TrainConfig

    flags = []
    for name in _TRAIN_FIELD_FLAGS:
        value = getattr(args, name)
        if value is not None:
            flags.append(f"{name}={value}")
    config = TrainConfig(model=args.model).with_overrides([*flags, *args.overrides])

    from keras_cnns.registry import check_options

    # An unknown model or model option: one line, before any data is read.
    check_options(config.model, dict(config.model_kwargs))
    config = _validation_for_subset(config, args.overrides, quiet=args.quiet)
    data_dir = args.data_dir or os.environ.get("KERAS_CNNS_DATA_DIR") or None
    _check_archives(data_dir, [config.dataset], "--data-dir" if args.data_dir else "$KERAS_CNNS_DATA_DIR")
    _check_out_dir(args.out)

    from keras_cnns.training import distribute

    distribute.init_cluster(args.cluster, args.process_id)  # before Keras computes anything

    from keras_cnns.training import RECORDS_FILE, train

    record = train(
        config,
        out_dir=args.out,
        data_dir=data_dir,
        resume=not args.no_resume,
        # A progress bar redraws one line with control characters: in a log file (stdout not
        # a terminal) one line per epoch reads better.
        verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2),
        tensorboard=args.tensorboard,
    )
    if args.quiet:
        print(
            f"{record.run_id}: test error {record.test.error:.2f}% (epoch {record.selected_epoch}); "
            f"record in {os.path.join(args.out, RECORDS_FILE)}"
        )
    return 0


# --- reproduce ---------------------------------------------------------------------------------


def _add_reproduce(sub):
    from keras_cnns.lab.experiments import PRESETS, list_experiments

    p = sub.add_parser(
        "reproduce",
        help="re-run a paper's experiment and write its table and plots under OUT/NAME; re-running resumes",
    )
    p.add_argument("experiment", help=f"one of: {', '.join(list_experiments())}")
    p.add_argument(
        "--preset",
        default="smoke",
        help=f"{' | '.join(PRESETS)}: the paper's recipe, one GPU for ~10 minutes, two CPU cores for a few hours, or a CPU check (default: smoke)",
    )
    p.add_argument("--seeds", type=_positive_int, default=1, help="run seeds 0..N-1 (default: 1)")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT_DIR,
        help=f"records, checkpoints and tables go under OUT/EXPERIMENT/ (default: {DEFAULT_OUT_DIR}; "
        "add to the committed records: results)",
    )
    p.add_argument("--data-dir", help="local data archives (default: $KERAS_CNNS_DATA_DIR, else tfds)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field of every run, e.g. --set precision=mixed_bfloat16 "
        "(such runs are reported as their own group)",
    )
    p.add_argument("--variants", help="comma-separated variants to run (default: all of the preset)")
    p.add_argument(
        "--from-tuning", action="store_true", help="use each variant's best values from 'keras-cnns tune'"
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument(
        "--progress",
        action="store_true",
        help="train nothing: list this command's runs and how far each is (from OUT's records and checkpoints)",
    )
    _add_placement_flags(p)


def _cmd_reproduce(args) -> int:
    from keras_cnns.lab import experiments, runner

    # Unknown experiment, preset, variant or override: one line, before Keras is imported.
    experiment = experiments.get_experiment(args.experiment)
    preset = experiment.preset(args.preset)
    if args.progress:
        return _print_progress(args)
    data_dir = args.data_dir or os.environ.get("KERAS_CNNS_DATA_DIR") or None
    _check_archives(data_dir, preset.datasets, "--data-dir" if args.data_dir else "$KERAS_CNNS_DATA_DIR")
    _check_out_dir(args.out)

    from keras_cnns.training import distribute
    from keras_cnns.training.config import parse_devices

    devices = parse_devices(args.devices or 1)  # checked before Keras starts
    distribute.init_cluster(args.cluster, args.process_id)
    records = runner.run_experiment(
        experiment.name,
        preset=args.preset,
        seeds=args.seeds,
        out_dir=args.out,
        data_dir=data_dir,
        overrides=args.overrides,
        variants=args.variants,
        from_tuning=args.from_tuning,
        devices=devices,
        verbose=0 if args.quiet else 2,
    )
    from keras_cnns.lab import report

    diverged = sum(r.status == "diverged" for r in records)
    print(
        report.headline(
            experiment.name, args.out, preset=args.preset, overrides=args.overrides, tuned=args.from_tuning
        )
    )
    table = report.summary_table(
        experiment.name, args.out, preset=args.preset, overrides=args.overrides, tuned=args.from_tuning
    )
    if table:
        print(f"\n{table}\n")
    if diverged:
        print(f"keras-cnns: {diverged} run(s) diverged; they are listed apart in the report")
    print(f"keras-cnns: wrote {os.path.join(args.out, experiment.name, report.REPORT_FILE)}")
    return 0


def _print_progress(args) -> int:
    from keras_cnns.lab import runner

    runs, note = runner.progress(
        args.experiment, preset=args.preset, seeds=args.seeds, out_dir=args.out, overrides=args.overrides,
        variants=args.variants, from_tuning=args.from_tuning,
    )  # fmt: skip
    for run in runs:
        print(run.describe())
    done = sum(r.status == "completed" for r in runs)
    print(f"keras-cnns: {done} of {len(runs)} runs completed in {os.path.join(args.out, args.experiment)}")
    if note:
        print(f"keras-cnns: {note}")
    return 0


# --- report ------------------------------------------------------------------------------------


def _add_report(sub):
    p = sub.add_parser("report", help="regenerate results tables and plots from the run records")
    p.add_argument("experiment", nargs="?", help="one experiment (default: every experiment with records)")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT_DIR,
        help=f"the folder whose records to report, and where the tables go (default: {DEFAULT_OUT_DIR}; "
        "the committed ones: results)",
    )


def _cmd_report(args) -> int:
    from keras_cnns.lab import experiments, report, runs, tuning_report
    from keras_cnns.training.record import RECORDS_FILE

    names = [experiments.get_experiment(args.experiment).name] if args.experiment else experiments.list_experiments()
    _check_out_dir(args.out)
    # Reports come from records: a folder without any (a mistyped --out) is an error, not a
    # tree of empty "not run yet" pages.
    names = [
        n for n in names
        if runs.has_records(experiments.get_experiment(n), args.out) or tuning_report.has_search(n, args.out)
    ]  # fmt: skip
    if not names:
        where = os.path.join(args.out, args.experiment or "EXPERIMENT", RECORDS_FILE)
        run = f"keras-cnns reproduce {args.experiment or 'EXPERIMENT'}"
        if args.out != DEFAULT_OUT_DIR:
            run += f" --out {args.out}"
        raise UserError(
            f"no run records in {where}: run '{run}' first, or point --out at the folder that "
            "holds them (the committed results: --out results)"
        )
    for name in names:
        print(f"keras-cnns: wrote {report.write_report(name, args.out)}")  # with its search's report
        if tuning_report.has_search(name, args.out):
            print(f"keras-cnns: wrote {tuning_report.report_paths(name, args.out)}")
    print(f"keras-cnns: wrote {report.write_index(args.out)}")
    return 0


# --- benchmark -----------------------------------------------------------------------------------


def _add_benchmark(sub):
    from keras_cnns import benchmark

    p = sub.add_parser(
        "benchmark",
        help="training throughput and peak device memory of the engine, beside plain-PyTorch CIFAR ResNets",
    )
    benchmark.add_arguments(p)


def _cmd_benchmark(args) -> int:
    from keras_cnns import benchmark

    _check_out_dir(args.out)
    return benchmark.main(args)


# --- main --------------------------------------------------------------------------------------

_COMMANDS = ("models", "summary", "shape", "tune", "train", "reproduce", "report", "benchmark")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keras-cnns",
        description="Classic CNNs in Keras 3 and the experiments that made them famous.",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in _COMMANDS:
        globals()[f"_add_{command}"](sub)
    return parser


def _configured_backend() -> tuple[str, str]:
    """The backend Keras will start with, and where that choice comes from (as Keras reads it:
    ``KERAS_BACKEND``, else ``keras.json`` in ``$KERAS_HOME`` or ``~/.keras``, else TensorFlow)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    config = os.path.join(home, "keras.json")
    try:
        with open(config) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        backend = None
    if isinstance(backend, str) and backend:
        return backend, config
    return "tensorflow", ""


def _check_backend(origin_flag: bool) -> None:
    """The chosen backend must be one keras-cnns runs on, and installed: checked before Keras
    is imported, which would otherwise fail with a long traceback."""
    backend, origin = _configured_backend()
    where = "--backend" if origin_flag else (f"KERAS_BACKEND={backend}" if origin == "KERAS_BACKEND" else origin)
    if backend not in BACKENDS:
        raise UserError(
            f"{where} names the backend {backend!r}; keras-cnns runs on {', '.join(BACKENDS)}: "
            "choose one with --backend"
        )
    if importlib.util.find_spec(backend) is None:
        chosen = f" (chosen by {where})" if where else ""
        raise UserError(
            f"the {backend} backend{chosen} is not installed: {_BACKEND_INSTALL[backend]}, "
            "or choose an installed one with --backend"
        )


def _needs_keras(args) -> bool:
    """Whether the command imports Keras (and so its backend)."""
    if args.command == "models":
        return bool(args.params)
    return args.command in ("summary", "train", "reproduce", "tune")


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    native_logs.quiet_first_import("tensorflow")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            raise SystemExit("keras-cnns: error: --backend must be chosen before Keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend
    handler = globals()[f"_cmd_{args.command.replace('-', '_')}"]
    try:
        if _needs_keras(args) and "keras" not in sys.modules:
            _check_backend(origin_flag=bool(args.backend))
        return int(handler(args) or 0)
    except UserError as err:
        print(f"keras-cnns: error: {err}", file=sys.stderr)
        return err.exit_code
    except DivergedError as err:
        print(f"keras-cnns: diverged: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe (a worker's): a bug shows its traceback
        # The reader of stdout went away (``keras-cnns models | head``): stop quietly, with the
        # status of a command stopped by SIGPIPE; the output Python would still flush at exit
        # goes nowhere. A training run stopped this way resumes from its last checkpoint.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except OSError as err:
        if err.errno not in _WRITE_ERRNOS:
            raise  # not the user's to fix: a bug shows its traceback
        where = f" {err.filename}" if err.filename else ""
        print(
            f"keras-cnns: error: cannot write{where}: {err.strerror}; files written before are "
            "intact: fix that and re-run the same command to resume",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("keras-cnns: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
