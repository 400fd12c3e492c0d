"""Training throughput and peak device memory of the engine, beside a plain-PyTorch ResNet-56.

What it measures (issue 6): steady-state training throughput, in images per second, of the
engine's own training step (``training.compile_for_training`` + ``training.fit_epoch``, the
code ``train`` runs) on synthetic 32x32x3 images with 10 classes, for each combination of
backend, model, precision, batch size, augmentation (``pad_crop,flip`` on the device, or
none), engine mode and steps per execution; and the same for a plain-PyTorch ResNet-56 of the
same shape and parameter count (853,018 trainable; option-A shortcuts; eager, channels-last,
``torch.autocast`` for the mixed precisions), measured in the same run, so each ResNet-56 row
shows its ratio to the reference.

How: each case trains ``warmup`` untimed passes (compilation, first touches), then
``repeats`` timed passes of ``images`` images (whole batches) with the host clock; a pass
ends with the epoch's logs read back on the host, so all its device work is done. The row
reports the median pass (images / seconds) and the spread (max - min) / median. The engine
modes of one model, precision, batch, augmentation and steps per execution share one
compiled step and take turns pass by pass, so a drift of the machine's speed reaches them
alike. Peak device memory: JAX ``Device.memory_stats()["peak_bytes_in_use"]``, PyTorch
``torch.cuda.max_memory_allocated``, TensorFlow ``tf.config.experimental.get_memory_info``;
"n/a" with the reason where the backend reports none (on a CPU none of them does). Each
backend runs in its own worker process (``--isolate backend``), or each compiled step with
its modes in its own (``--isolate case``, the default where ``nvidia-smi`` sees a GPU: JAX
cannot reset its peak within a process, and a fresh process keeps the numbers independent).

Engine modes (``--modes``), to measure each optimisation separately:

* ``plain``: the engine before issue 6: batches copied from host memory each step and a NaN
  check that reads every step's loss on the main thread (a host synchronisation per step).
* ``async``: the NaN check in Keras' callback threads (``StopOnNonFinite.async_safe``).
* ``device``: and the data resident on the accelerator, batches gathered there (JAX only).
* ``engine``: what ``train`` does (async; data on the device where ``device_data_fits``).

``steps_per_execution`` (``--steps-per-execution``) is the ``TrainConfig`` field: Keras runs
that many steps per call and the batch-end callbacks once per call (never on PyTorch).

Sizes: ``--gpu-sizes`` (25,600 images a pass, 1 warm-up, median of 5, batches 128 and 512,
every model and precision) or ``--cpu-sizes`` (a tiny run that checks the machinery in about
a minute on two cores: CPU numbers say nothing about a GPU); the default picks by whether
``nvidia-smi`` sees a GPU. Outputs: ``OUT/benchmark.csv`` and ``OUT/README.md`` (written
atomically; ``--merge`` keeps the rows of earlier runs that this run did not measure).

The GPU run, for a session with an H100 (none has run yet; each call should take minutes).
The device machine has JAX, PyTorch and CUDA but no Keras; ``.whl/`` (git-ignored) carries
it there (see /work/.library/device/README.md). Once, here:

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0

Then one device call per line below, each with ``carry: [".whl"]``, each command being

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 &&
    python3 scripts/benchmark.py --gpu-sizes --backends jax --models resnet56_cifar \\
        --precisions float32,mixed_bfloat16 --modes plain,engine --repeats 3 --timeout 300 \\
        --out results/benchmarks ARGS; cp results/benchmarks/* $OUT/

with ARGS, in turn (copy the two files that come back into ``results/benchmarks/`` here
before the next call, so that ``--merge`` finds them):

1. ``--batch-sizes 128`` (a fresh table: no ``--merge``; the PyTorch reference runs too);
2. ``--batch-sizes 512 --merge``;
3. ``--batch-sizes 128,512 --modes engine --steps-per-execution 8 --no-reference --merge``;

and as the lease allows, ``--precisions mixed_float16``, the other ``--models`` and
``--backends torch`` (Keras on PyTorch: slow), each with ``--merge``. Last, here:
``python scripts/benchmark.py --report-only --note "..."`` puts the note (device, what was
left out) on the README. If Keras 3.15.1 and the device's JAX do not agree, the first call
says so in its rows' status.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import io
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_cnns.errors import UserError

MODELS = ("resnet20_cifar", "resnet56_cifar", "resnet110_cifar", "dropout_cifar", "cifar_4layer")
BACKENDS = ("jax", "tensorflow", "torch")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
AUGMENT = ("pad_crop", "flip")
AUGMENT_CHOICES = ("both", "on", "off")
ISOLATE_CHOICES = ("auto", "case", "backend")
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# The plain-PyTorch reference: He et al. 2016's ResNet-56 for CIFAR, as resnet56_cifar.
REFERENCE = "pytorch"
REFERENCE_MODEL = "resnet56_cifar"
REFERENCE_TRAINABLE_PARAMS = 853_018
# The recipe the cases train with (speed does not depend on the values): SGD with momentum,
# L2 5e-5 (the paper's "weight decay 1e-4"; the reference's torch SGD weight_decay=1e-4).
LEARNING_RATE = 0.01
L2 = 5e-5
CSV_FILE = "benchmark.csv"
README_FILE = "README.md"
# The issue 6 targets (H100, JAX backend, ResNet-56 for CIFAR).
TARGET_IMG_S_128 = 20_000
TARGET_IMG_S_512_BF16 = 40_000
TARGET_AUGMENT_SHARE = 0.05
RECIPE_STEPS, RECIPE_BATCH, RECIPE_MINUTES = 64_000, 128, 7.0


@dataclass(frozen=True)
class Mode:
    """An engine configuration to time (see the module docstring)."""

    name: str
    sync_check: bool  # the NaN check reads each step's loss on the main thread
    on_device: bool | None  # data on the device; None: the engine's own choice
    description: str


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("plain", sync_check=True, on_device=False, description=(
            "host batches, per-step NaN check on the main thread (the engine before issue 6)"
        )),
        Mode("async", sync_check=False, on_device=False, description=(
            "host batches, NaN check in Keras' callback threads"
        )),
        Mode("device", sync_check=False, on_device=True, description=(
            "data resident on the device (JAX), NaN check in the callback threads"
        )),
        Mode("engine", sync_check=False, on_device=None, description=(
            "what train() does: the NaN check in the callback threads, data on the device where "
            "device_data_fits (JAX on an accelerator)"
        )),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """How much each case trains, and the default selection."""

    name: str
    images: int  # per timed pass, rounded up to whole batches
    warmup: int  # untimed passes first
    repeats: int  # timed passes; the median is reported
    batch_sizes: tuple[int, ...]
    models: tuple[str, ...]
    precisions: tuple[str, ...]


GPU_SIZES = Sizes(
    "gpu", images=25_600, warmup=1, repeats=5, batch_sizes=(128, 512), models=MODELS,
    precisions=PRECISIONS,
)  # fmt: skip
# Enough to run every piece once on two CPU cores; the numbers are for checking, not reading.
CPU_SIZES = Sizes(
    "cpu", images=32, warmup=1, repeats=3, batch_sizes=(16,), models=("cifar_4layer",),
    precisions=("float32",),
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One row of the table."""

    backend: str  # a Keras backend, or REFERENCE
    model: str
    precision: str
    batch_size: int
    augment: bool
    mode: str  # a MODES name; "eager" for the reference
    steps_per_execution: int

    @property
    def key(self) -> tuple:
        return dataclasses.astuple(self)


CSV_COLUMNS = (
    "backend", "model", "precision", "batch_size", "augment", "mode", "steps_per_execution",
    "data", "jit_compile", "images_per_s", "step_ms", "spread_pct", "vs_reference",
    "peak_memory_mib", "memory_note", "first_pass_s", "passes", "steps_per_pass",
    "trainable_params", "device", "status", "measured", "command",
)  # fmt: skip


# --- options -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (``keras-cnns benchmark`` and ``scripts/benchmark.py``)."""
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--cpu-sizes", action="store_true", help="tiny sizes: checks the machinery on a CPU"
    )
    sizes.add_argument(
        "--gpu-sizes", action="store_true", help="full sizes (default where nvidia-smi sees a GPU)"
    )
    parser.add_argument(
        "--models",
        help=f"comma-separated registry names (default: {','.join(MODELS)}; CPU: cifar_4layer)",
    )
    parser.add_argument(
        "--backends", help="comma-separated Keras backends (default: every installed one)"
    )
    parser.add_argument(
        "--precisions", help=f"comma-separated (default: {','.join(PRECISIONS)}; CPU: float32)"
    )
    parser.add_argument("--batch-sizes", help="comma-separated (default: 128,512; CPU: 16)")
    parser.add_argument(
        "--augment", default="both", help="on (pad_crop,flip), off or both (default: both)"
    )
    parser.add_argument(
        "--modes",
        default="engine",
        help=f"comma-separated engine modes: {', '.join(MODES)} (default: engine)",
    )
    parser.add_argument("--steps-per-execution", default="1", help="comma-separated (default: 1)")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the plain-PyTorch ResNet-56 reference"
    )
    parser.add_argument("--images", help="images per timed pass (default: 25600; CPU: 32)")
    parser.add_argument("--repeats", help="timed passes per case (default: 5; CPU: 3)")
    parser.add_argument(
        "--isolate",
        default="auto",
        help="case (a process per compiled step and its modes), backend, or auto: case where there is a GPU",
    )
    parser.add_argument(
        "--out",
        default="results/benchmarks",
        help="where benchmark.csv and README.md go (default: results/benchmarks)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of OUT/benchmark.csv this run does not measure",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite OUT/README.md from OUT/benchmark.csv (e.g. a GPU run's)",
    )
    parser.add_argument("--note", help="a line for the top of the README (where and why this ran)")
    parser.add_argument(
        "--timeout", help="seconds a worker process may run before it is stopped (default: none)"
    )


@dataclass(frozen=True)
class Plan:
    """A checked selection: the cases, the sizes and where the outputs go."""

    cases: tuple[Case, ...]
    sizes: Sizes
    isolate: str
    out: Path
    merge: bool
    report_only: bool
    note: str | None
    timeout: float | None
    command: str


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Check the options (one-line ``UserError`` for a bad one) and list the cases."""
    gpu = _gpu_visible()
    sizes = GPU_SIZES if args.gpu_sizes or (gpu and not args.cpu_sizes) else CPU_SIZES
    models = _names("--models", args.models, sizes.models)
    from keras_cnns.registry import get_entry

    for name in models:
        get_entry(name)  # an unknown model: one line naming the closest
    precisions = _choices("--precisions", args.precisions, sizes.precisions, PRECISIONS)
    batch_sizes = _positive_ints("--batch-sizes", args.batch_sizes, sizes.batch_sizes)
    spe = _positive_ints("--steps-per-execution", args.steps_per_execution, (1,))
    modes = _choices("--modes", args.modes, ("engine",), tuple(MODES))
    if args.augment not in AUGMENT_CHOICES:
        raise UserError(
            f"--augment must be one of {', '.join(AUGMENT_CHOICES)}, got {args.augment!r}"
        )
    augments = {"both": (False, True), "on": (True,), "off": (False,)}[args.augment]
    if args.isolate not in ISOLATE_CHOICES:
        raise UserError(
            f"--isolate must be one of {', '.join(ISOLATE_CHOICES)}, got {args.isolate!r}"
        )
    isolate = args.isolate if args.isolate != "auto" else ("case" if gpu else "backend")
    installed = [b for b in BACKENDS if _installed(b)]
    current = os.environ.get("KERAS_BACKEND")
    default_backends = sorted(installed, key=lambda b: b != current)  # the current one first
    backends = _choices("--backends", args.backends, tuple(default_backends), BACKENDS)
    missing = [b for b in backends if b not in installed]
    if missing:
        raise UserError(
            f"backend {missing[0]} is not installed here (installed: {', '.join(installed) or 'none'})"
        )
    images = _positive_ints("--images", args.images, (sizes.images,))[0]
    repeats = _positive_ints("--repeats", args.repeats, (sizes.repeats,))[0]
    timeout = _positive_ints("--timeout", args.timeout, (0,))[0] if args.timeout else None
    sizes = dataclasses.replace(sizes, images=images, repeats=repeats)

    grid = itertools.product(backends, models, precisions, batch_sizes, augments, modes, spe)
    # Keras runs one step per call on PyTorch: no steps_per_execution above 1 there.
    cases = [Case(*c) for c in grid if not (c[0] == "torch" and c[-1] > 1)]
    if not args.no_reference and _installed("torch"):
        grid = itertools.product(precisions, batch_sizes, augments)
        cases += [Case(REFERENCE, REFERENCE_MODEL, p, b, a, "eager", 1) for p, b, a in grid]
    if not cases:
        raise UserError("the options select no case to measure")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {args.out!r} is a file, not a directory")
    # The resolved selection as a command: what the README says was run, defaults spelled out.
    words = [
        "keras-cnns benchmark", f"--{sizes.name}-sizes", "--backends", ",".join(backends),
        "--models", ",".join(models), "--precisions", ",".join(precisions),
        "--batch-sizes", ",".join(map(str, batch_sizes)), "--augment", args.augment,
        "--modes", ",".join(modes), "--steps-per-execution", ",".join(map(str, spe)),
        "--images", str(images), "--repeats", str(repeats), "--isolate", isolate,
    ]  # fmt: skip
    if args.no_reference:
        words.append("--no-reference")
    command = " ".join(words)
    if args.report_only and not (out / CSV_FILE).is_file():
        raise UserError(f"--report-only needs {out / CSV_FILE}; run a benchmark into --out first")
    return Plan(
        tuple(cases), sizes, isolate, out, bool(args.merge), bool(args.report_only), args.note,
        timeout, command,
    )  # fmt: skip


def _names(flag: str, text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if text is None:
        return default
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise UserError(f"{flag} names nothing; give a comma-separated list")
    if len(set(names)) != len(names):
        raise UserError(f"{flag} lists a name twice: {text}")
    return names


def _choices(
    flag: str, text: str | None, default: tuple[str, ...], valid: Sequence[str]
) -> tuple[str, ...]:
    names = _names(flag, text, default)
    for name in names:
        if name not in valid:
            raise UserError(f"{flag}: unknown {name!r}; choose from {', '.join(valid)}")
    return names


def _positive_ints(flag: str, text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    values = []
    for item in _names(flag, str(text), ()):
        try:
            value = int(item)
        except ValueError:
            raise UserError(f"{flag} takes positive integers, got {item!r}") from None
        if value <= 0:
            raise UserError(f"{flag} takes positive integers, got {value}")
        values.append(value)
    return tuple(values)


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def _gpu_visible() -> bool:
    """Does ``nvidia-smi`` list a GPU? (No import of any framework.)"""
    return bool(_nvidia_smi(["-L"]).strip())


def _nvidia_smi(arguments: list[str]) -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        result = subprocess.run(
            ["nvidia-smi", *arguments], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout if result.returncode == 0 else ""


# --- running ---------------------------------------------------------------------------------------


def run(plan: Plan, *, echo=print) -> list[dict]:
    """Measure every case of ``plan`` in worker processes, then write the CSV and the README.

    The outputs are rewritten after each worker, so a run stopped part way keeps what it
    measured.

    Returns:
        The rows written (this run's, plus the kept rows of an earlier run with ``merge``).
    """
    plan.out.mkdir(parents=True, exist_ok=True)
    kept = _read_csv(plan.out / CSV_FILE) if plan.merge or plan.report_only else []
    if plan.report_only:
        rows = _combine(kept, [])
        write_outputs(rows, plan)
        echo(format_table(rows))
        echo(f"keras-cnns benchmark: rewrote {plan.out / README_FILE} from {plan.out / CSV_FILE}")
        return rows
    measured: list[dict] = []
    groups = _worker_groups(plan)
    echo(
        f"keras-cnns benchmark: {len(plan.cases)} cases in {len(groups)} worker process(es), "
        f"{plan.sizes.name} sizes ({plan.sizes.images} images a pass, {plan.sizes.warmup} warm-up, "
        f"median of {plan.sizes.repeats})"
    )
    rows: list[dict] = []
    for group in groups:
        for row in _run_worker(group, plan):
            row["command"] = plan.command
            measured.append(row)
            echo(_progress_line(row))
            rows = _combine(kept, measured)
            write_outputs(rows, plan)
    echo(format_table(rows))
    echo(f"keras-cnns benchmark: wrote {plan.out / CSV_FILE} and {plan.out / README_FILE}")
    return rows


def _worker_groups(plan: Plan) -> list[list[Case]]:
    if plan.isolate == "case":
        return _compile_groups(plan.cases)
    groups: dict[str, list[Case]] = {}
    for case in plan.cases:
        groups.setdefault(case.backend, []).append(case)
    return list(groups.values())


def _run_worker(cases: list[Case], plan: Plan) -> Iterator[dict]:
    """Run ``cases`` in one ``python -m keras_cnns.benchmark --worker`` process; yield each
    case's row as soon as the worker has written it."""
    backend = cases[0].backend
    with tempfile.TemporaryDirectory(prefix="keras-cnns-benchmark-") as tmp:
        spec, result, log = Path(tmp, "spec.json"), Path(tmp, "rows.jsonl"), Path(tmp, "log.txt")
        spec.write_text(
            json.dumps(
                {
                    "cases": [dataclasses.asdict(c) for c in cases],
                    "sizes": dataclasses.asdict(plan.sizes),
                    "isolated": len(_compile_groups(cases)) == 1,
                    "result": str(result),
                }
            )
        )
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if backend != REFERENCE:
            env["KERAS_BACKEND"] = backend
        # The package this module belongs to, wherever it was imported from.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "keras_cnns.benchmark", "--worker", str(spec)]
        done: set[tuple] = set()
        failure = None
        with open(log, "w") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
            started = time.monotonic()
            while True:
                finished = process.poll() is not None
                text = result.read_text() if result.is_file() else ""
                lines = text[: text.rfind("\n") + 1].splitlines()  # whole lines only
                for line in lines[len(done) :]:
                    row = json.loads(line)
                    done.add(_row_key(row))
                    yield row
                if finished:
                    break
                if plan.timeout and time.monotonic() - started > plan.timeout:
                    process.kill()
                    process.wait()
                    failure = f"worker stopped after {plan.timeout:g} s (--timeout)"
                    break
                time.sleep(0.5)
        if failure is None and process.returncode != 0:
            failure = f"worker exited {process.returncode}: {_last_line(log.read_text())}"
    for case in cases:
        if case.key not in done:
            yield _row(case, status=f"error: {failure or 'no result'}")


def _last_line(text: str) -> str:
    lines = [t.strip() for t in text.splitlines() if t.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _row(case: Case, **fields: Any) -> dict:
    row = {c: "" for c in CSV_COLUMNS}
    row.update(
        backend=case.backend,
        model=case.model,
        precision=case.precision,
        batch_size=case.batch_size,
        augment="on" if case.augment else "off",
        mode=case.mode,
        steps_per_execution=case.steps_per_execution,
        measured=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    row.update(fields)
    return row


def _row_key(row: dict) -> tuple:
    return (
        row["backend"], row["model"], row["precision"], int(row["batch_size"]),
        row["augment"] == "on", row["mode"], int(row["steps_per_execution"]),
    )  # fmt: skip


def _combine(kept: list[dict], measured: list[dict]) -> list[dict]:
    new = {_row_key(r) for r in measured}
    rows = [r for r in kept if _row_key(r) not in new] + measured
    _add_ratios(rows)
    return rows


def _progress_line(row: dict) -> str:
    what = (
        f"{row['backend']} {row['model']} {row['precision']} batch {row['batch_size']} "
        f"augment {row['augment']} {row['mode']} ({row['steps_per_execution']} steps/call)"
    )
    if row["status"] != "ok":
        return f"  {what}: {row['status']}"
    return f"  {what}: {float(row['images_per_s']):,.0f} img/s ({row['step_ms']} ms/step)"


# --- the worker (one process, one backend) ---------------------------------------------------------


def worker_main(spec_path: str) -> int:
    """Measure the cases of a spec file, appending one JSON row per case to its result file."""
    spec = json.loads(Path(spec_path).read_text())
    sizes = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["sizes"].items()})
    for group in _compile_groups([Case(**item) for item in spec["cases"]]):
        try:
            if group[0].backend == REFERENCE:
                rows = [measure_reference(group[0], sizes, isolated=spec["isolated"])]
            else:
                rows = measure_keras(group, sizes, isolated=spec["isolated"])
        except Exception as err:  # a group failing (out of memory, unsupported dtype) is a row
            message = " ".join(str(err).split())[:300]
            rows = [_row(case, status=f"error: {type(err).__name__}: {message}") for case in group]
        with open(spec["result"], "a") as f:
            f.write("".join(json.dumps(row) + "\n" for row in rows))
    return 0


def _compile_groups(cases: Sequence[Case]) -> list[list[Case]]:
    """The cases grouped by what is compiled: the engine modes of one model, precision, batch,
    augmentation and steps per execution share one compiled step (the reference: one each)."""
    groups: dict[tuple, list[Case]] = {}
    for case in cases:
        key = case.key if case.backend == REFERENCE else _compile_key(case)
        groups.setdefault(key, []).append(case)
    return list(groups.values())


def _compile_key(case: Case) -> tuple:
    return dataclasses.astuple(dataclasses.replace(case, mode=""))


def _throughput(case: Case, times: list[float], first: float, steps: int, **fields) -> dict:
    median = statistics.median(times)
    images = steps * case.batch_size
    return _row(
        case,
        images_per_s=round(images / median, 1),
        step_ms=round(1000 * median / steps, 3),
        spread_pct=round(100 * (max(times) - min(times)) / median, 1),
        first_pass_s=round(first, 2),
        passes=len(times),
        steps_per_pass=steps,
        status="ok",
        **fields,
    )


def measure_keras(cases: Sequence[Case], sizes: Sizes, *, isolated: bool) -> list[dict]:
    """Time the engine's training step for ``cases`` (one compile group: only their modes
    differ) on this process's Keras backend.

    The step is compiled once; after the warm-up the modes take turns, pass by pass, so a
    change of the machine's speed during the run (other work, clocks) reaches every mode
    alike and the ratios between modes stay fair.
    """
    import keras
    import numpy as np

    from keras_cnns import data, training
    from keras_cnns.experiment import TrainConfig
    from keras_cnns.registry import build_model

    case = cases[0]
    backend = keras.backend.backend()
    if backend != case.backend:
        raise RuntimeError(f"worker runs Keras on {backend}, the case wants {case.backend}")
    rows = {c: _row(c, status="n/a: data on the device is the JAX path") for c in cases}
    timed = [c for c in cases if backend == "jax" or not MODES[c.mode].on_device]
    if not timed:
        return list(rows.values())
    steps = math.ceil(sizes.images / case.batch_size)
    config = TrainConfig(
        model=case.model,
        batch_size=case.batch_size,
        precision=case.precision,
        augment=AUGMENT if case.augment else (),
        learning_rate=LEARNING_RATE,
        weight_decay=L2,
        steps_per_execution=case.steps_per_execution,
    )
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    memory = _Memory(backend, isolated)
    with training.dtype_policy(case.precision):
        model = build_model(case.model, input_shape=IMAGE_SHAPE, num_classes=NUM_CLASSES)
        augmenter = data.make_augmenter(config.augment, seed=0, image_shape=IMAGE_SHAPE)
        wrapper = training.compile_for_training(
            model, config, augmenter=augmenter, steps_per_epoch=steps
        )
        rng = np.random.default_rng(0)
        n = steps * case.batch_size
        x = rng.standard_normal((n, *IMAGE_SHAPE), dtype=np.float32)
        y = rng.integers(0, NUM_CLASSES, n)
        # One feed of each kind: "engine" shares the host or device feed it would choose.
        engine_choice = training.device_data_fits(x, y)
        feeds: dict[Case, Any] = {}
        made: dict[bool, Any] = {}
        for c in timed:
            on_device = MODES[c.mode].on_device
            on_device = engine_choice if on_device is None else on_device
            if on_device not in made:
                made[on_device] = training.make_feed(x, y, on_device=on_device)
            feeds[c] = made[on_device]
        epoch = 0
        seconds: dict[Case, list[float]] = {c: [] for c in timed}
        losses: list[float] = []
        for _ in range(sizes.warmup + sizes.repeats):
            for c in timed:
                mode = MODES[c.mode]
                detector = (
                    _sync_detector(training)() if mode.sync_check else training.StopOnNonFinite()
                )
                start = time.perf_counter()
                history = training.fit_epoch(
                    wrapper,
                    feeds[c],
                    batch_size=c.batch_size,
                    epoch=epoch,
                    callbacks=[detector],
                )
                seconds[c].append(time.perf_counter() - start)
                losses.append(history.history["loss"][-1])
                epoch += 1
    peak, note = memory.peak()
    if len(timed) > 1 and peak != "n/a":
        note += f" (the peak of the {len(timed)} modes timed together)"
    diverged = not all(math.isfinite(v) for v in losses)
    for c in timed:
        rows[c] = _throughput(
            c,
            seconds[c][sizes.warmup :],
            seconds[c][0],
            steps,
            data="device" if feeds[c].on_device else "host",
            jit_compile=bool(wrapper.jit_compile),
            peak_memory_mib=peak,
            memory_note=note,
            trainable_params=int(sum(math.prod(v.shape) for v in model.trainable_variables)),
            device=_device(backend),
        )
        if diverged:
            rows[c]["status"] = "diverged: the loss went non-finite, so training stopped early"
    return list(rows.values())


def _sync_detector(training):
    class SyncStopOnNonFinite(training.StopOnNonFinite):
        """The NaN check before issue 6: on the main thread, so every step syncs with the host."""

        async_safe = False

    return SyncStopOnNonFinite


class _Memory:
    """Peak device memory of one case, where the backend reports it."""

    def __init__(self, backend: str, isolated: bool):
        self.backend, self.isolated = backend, isolated
        if backend in ("torch", REFERENCE):
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                tf.config.experimental.reset_memory_stats("GPU:0")

    def peak(self) -> tuple[float | str, str]:
        """(MiB, note) or ("n/a", why)."""
        mib = 1024 * 1024
        if self.backend in ("torch", REFERENCE):
            import torch

            if not torch.cuda.is_available():
                return "n/a", "torch reports device memory on CUDA only"
            return round(
                torch.cuda.max_memory_allocated() / mib, 1
            ), "torch.cuda.max_memory_allocated"
        if self.backend == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_physical_devices("GPU"):
                return "n/a", "tensorflow reports device memory on a GPU only"
            return round(
                tf.config.experimental.get_memory_info("GPU:0")["peak"] / mib, 1
            ), "tf get_memory_info peak"
        import jax

        stats = jax.devices()[0].memory_stats()
        if not stats or "peak_bytes_in_use" not in stats:
            return "n/a", f"jax reports no memory stats on {jax.devices()[0].platform}"
        if not self.isolated:
            return "n/a", "jax cannot reset its peak between cases: run with --isolate case"
        return round(stats["peak_bytes_in_use"] / mib, 1), "jax peak_bytes_in_use"


def _device(backend: str) -> str:
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else str(device.device_kind)
    if backend in ("torch", REFERENCE):
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return str(
            tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        )
    return "cpu"


# --- the plain-PyTorch reference ----------------------------------------------------------------------


def reference_resnet(depth: int = 56, num_classes: int = NUM_CLASSES):
    """He et al. 2016's CIFAR ResNet in plain PyTorch: option-A shortcuts (stride-2 subsampling
    and zero-padded channels), no conv bias, batch norm, 16/32/64 filters; the same layers and
    parameter count as ``build_model(f"resnet{depth}_cifar")``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.pad = cout - cin
            self.stride = stride

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.pad:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))  # zero channels at the end
            return F.relu(out + shortcut)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.stem = nn.Sequential(
                nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
            )
            blocks, cin = [], 16
            for cout, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(n):
                    blocks.append(Block(cin, cout, stride if i == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return ResNet()


def reference_augment(x, generator):
    """``pad_crop`` (4 px of zeros, a random 32x32 crop) and ``flip`` of an NCHW batch, on its device."""
    import torch
    from torch.nn import functional as F

    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4)).permute(0, 2, 3, 1)  # NHWC
    dy = torch.randint(0, 9, (n, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 9, (n, 1), device=x.device, generator=generator)
    rows = dy + torch.arange(h, device=x.device)
    cols = dx + torch.arange(w, device=x.device)
    out = padded[
        torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]
    ]
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(2), out)
    return out.permute(0, 3, 1, 2)  # an NCHW view of NHWC memory: channels-last


def measure_reference(case: Case, sizes: Sizes, *, isolated: bool) -> dict:
    """Time the plain-PyTorch ResNet-56 on ``case`` (eager, channels-last, autocast)."""
    import torch
    from torch.nn import functional as F

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    memory = _Memory(REFERENCE, isolated)
    model = reference_resnet().to(device, memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # The paper's "weight decay 1e-4" is torch SGD's weight_decay, the engine's L2 5e-5.
    optimizer = torch.optim.SGD(
        model.parameters(), lr=LEARNING_RATE, momentum=0.9, weight_decay=2 * L2
    )
    dtype = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(case.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    steps = math.ceil(sizes.images / case.batch_size)
    n = steps * case.batch_size
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, 3, *IMAGE_SHAPE[:2], device=device, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (n,), device=device, generator=generator)
    losses = []

    def train_pass():
        loss = None
        for i in range(steps):
            xb, yb = (
                x[i * case.batch_size : (i + 1) * case.batch_size],
                y[i * case.batch_size : (i + 1) * case.batch_size],
            )
            if case.augment:
                xb = reference_augment(xb, generator)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        losses.append(float(loss.detach()))  # waits for the pass's last step, as Keras' logs do

    model.train()
    seconds = []
    for _ in range(sizes.warmup + sizes.repeats):
        start = time.perf_counter()
        train_pass()
        seconds.append(time.perf_counter() - start)
    times, first = seconds[sizes.warmup :], seconds[0]
    peak, note = memory.peak()
    row = _throughput(
        case,
        times,
        first,
        steps,
        data="device",
        jit_compile=False,
        peak_memory_mib=peak,
        memory_note=note,
        trainable_params=params,
        device=_device(REFERENCE),
    )
    if not all(math.isfinite(v) for v in losses):
        row["status"] = "diverged: the loss went non-finite"
    return row


# --- outputs ---------------------------------------------------------------------------------------


def _add_ratios(rows: list[dict]) -> None:
    """``vs_reference``: a ResNet-56 row's throughput over the reference's at the same
    precision, batch size and augmentation (and device)."""
    reference = {
        (r["precision"], str(r["batch_size"]), r["augment"], r["device"]): float(r["images_per_s"])
        for r in rows
        if r["backend"] == REFERENCE and r["status"] == "ok"
    }
    for r in rows:
        ref = reference.get((r["precision"], str(r["batch_size"]), r["augment"], r["device"]))
        ok = r["status"] == "ok" and r["model"] == REFERENCE_MODEL and ref
        r["vs_reference"] = round(float(r["images_per_s"]) / ref, 2) if ok else ""


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for column in CSV_COLUMNS:
            r.setdefault(column, "")
    return rows


def write_outputs(rows: list[dict], plan: Plan) -> None:
    """``benchmark.csv`` and ``README.md`` under ``plan.out``, each written atomically."""
    from keras_cnns.records import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(sorted(rows, key=_sort_key))
    atomic_write_text(plan.out / CSV_FILE, buffer.getvalue())
    atomic_write_text(plan.out / README_FILE, format_readme(rows, plan, environment()))


def _sort_key(row: dict) -> tuple:
    backends = (*BACKENDS, REFERENCE)
    models = {m: i for i, m in enumerate(MODELS)}
    return (
        models.get(row["model"], len(models)), row["model"],
        backends.index(row["backend"]) if row["backend"] in backends else len(backends),
        PRECISIONS.index(row["precision"]) if row["precision"] in PRECISIONS else 9,
        int(row["batch_size"]), row["augment"], int(row["steps_per_execution"]),
        [*MODES, "eager"].index(row["mode"]) if row["mode"] in MODES or row["mode"] == "eager" else 9,
    )  # fmt: skip


def environment() -> dict[str, str]:
    """The machine and library versions, read without importing any framework."""
    env = {"python": platform.python_version(), "platform": platform.platform()}
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env["cpu"] = f"{cpu}, {cores} cores usable"
    if hasattr(os, "getloadavg"):  # other work on the machine slows every row alike
        env["cpu"] += (
            ", load average {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min) when written".format(
                *os.getloadavg()
            )
        )
    gpus = _nvidia_smi(
        ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    ).strip()
    env["gpu"] = (
        "; ".join(line.strip() for line in gpus.splitlines())
        if gpus
        else "none (nvidia-smi sees no GPU)"
    )
    versions = []
    for package in (
        "keras", "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "tensorflow",
        "tensorflow-cpu", "torch", "numpy",
    ):  # fmt: skip
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    env["libraries"] = ", ".join(versions)
    return env


def _fmt(value, digits: int = 0) -> str:
    if value in ("", None):
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:,.{digits}f}"


def format_table(rows: Iterable[dict]) -> str:
    """The throughput table in Markdown."""
    header = (
        "| backend | model | precision | batch | augment | mode | steps/call | data | img/s | ms/step "
        "| spread | timed steps | vs PyTorch | peak MiB | device | status |"
    )
    lines = [header, "|" + "---|" * 16]
    for r in sorted(rows, key=_sort_key):
        ok = r["status"] == "ok"
        timed = f"{r['passes']} x {r['steps_per_pass']}" if ok else "-"
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['precision']} | {r['batch_size']} | {r['augment']} "
            f"| {r['mode']} | {r['steps_per_execution']} | {r['data'] or '-'} "
            f"| {_fmt(r['images_per_s']) if ok else '-'} | {_fmt(r['step_ms'], 2) if ok else '-'} "
            f"| {_fmt(r['spread_pct'], 1) + '%' if ok else '-'} | {timed} "
            f"| {_fmt(r['vs_reference'], 2)} "
            f"| {_fmt(r['peak_memory_mib'], 0)} | {r['device'] or '-'} | {r['status']} |"
        )
    return "\n".join(lines)


def _augment_table(rows: list[dict]) -> str:
    """Augmentation's share of the step time: (t_on - t_off) / t_on, per matching pair."""
    index = {
        (*_row_key(r)[:4], *_row_key(r)[5:], r["device"]): r
        for r in rows
        if r["status"] == "ok" and r["augment"] == "off"
    }
    lines = []
    for r in sorted(rows, key=_sort_key):
        if r["status"] != "ok" or r["augment"] != "on":
            continue
        off = index.get((*_row_key(r)[:4], *_row_key(r)[5:], r["device"]))
        if off is None:
            continue
        t_on, t_off = float(r["step_ms"]), float(off["step_ms"])
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['precision']} | {r['batch_size']} | {r['mode']} "
            f"| {r['steps_per_execution']} | {t_off:.2f} | {t_on:.2f} | {100 * (t_on - t_off) / t_on:.1f}% |"
        )
    if not lines:
        return ""
    return "\n".join(
        [
            "| backend | model | precision | batch | mode | steps/call | ms/step without | ms/step with | share of the step |",
            "|" + "---|" * 9,
            *lines,
        ]
    )


def _modes_table(rows: list[dict]) -> str:
    """Each engine mode's throughput over ``plain``'s, per matching case."""
    plain = {
        (
            r["backend"],
            r["model"],
            r["precision"],
            str(r["batch_size"]),
            r["augment"],
            r["device"],
        ): float(r["images_per_s"])
        for r in rows
        if r["status"] == "ok" and r["mode"] == "plain" and str(r["steps_per_execution"]) == "1"
    }
    lines = []
    for r in sorted(rows, key=_sort_key):
        base = plain.get(
            (
                r["backend"],
                r["model"],
                r["precision"],
                str(r["batch_size"]),
                r["augment"],
                r["device"],
            )
        )
        if r["status"] != "ok" or r["backend"] == REFERENCE or base is None:
            continue
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['precision']} | {r['batch_size']} | {r['augment']} "
            f"| {r['mode']} | {r['steps_per_execution']} | {_fmt(r['images_per_s'])} | {float(r['images_per_s']) / base:.2f} |"
        )
    if len(lines) <= len(plain):
        return ""  # only the plain rows themselves: nothing to compare
    return "\n".join(
        [
            "| backend | model | precision | batch | augment | mode | steps/call | img/s | vs plain |",
            "|" + "---|" * 9,
            *lines,
        ]
    )


def _targets(rows: list[dict]) -> list[tuple[str, str]]:
    """(target, what this run shows) for each issue 6 target (H100, JAX, ResNet-56)."""
    gpu_rows = [
        r
        for r in rows
        if r["status"] == "ok" and r["backend"] == "jax" and r["model"] == REFERENCE_MODEL
        and r["mode"] == "engine" and r["device"] not in ("", "cpu")
    ]  # fmt: skip
    targets = [
        f"batch 128: at least {TARGET_IMG_S_128:,} img/s",
        f"batch 512, mixed_bfloat16: at least {TARGET_IMG_S_512_BF16:,} img/s",
        "mixed precision faster than float32 at the same batch",
        f"augmentation at most {100 * TARGET_AUGMENT_SHARE:.0f}% of the step time",
        f"the paper's recipe ({RECIPE_STEPS:,} steps at batch {RECIPE_BATCH}) under {RECIPE_MINUTES:g} minutes",
    ]
    if not gpu_rows:
        devices = sorted({r["device"] for r in rows if r["device"]}) or ["none"]
        why = f"not measured: this run had no GPU rows of JAX ResNet-56 in engine mode (devices: {', '.join(devices)})"
        return [(t, why) for t in targets]

    def best(batch, precision=None, augment="off"):
        found = [
            r
            for r in gpu_rows
            if int(r["batch_size"]) == batch
            and r["augment"] == augment
            and precision in (None, r["precision"])
        ]
        return max(found, key=lambda r: float(r["images_per_s"]), default=None)

    def verdict(value: float | None, goal: float, what: str) -> str:
        if value is None:
            return f"not measured ({what} not in this run)"
        return f"{'met' if value >= goal else 'NOT met'}: {value:,.0f} ({what})"

    results = []
    r128 = best(128)
    results.append(
        verdict(float(r128["images_per_s"]) if r128 else None, TARGET_IMG_S_128,
                f"{r128['precision']}, {r128['steps_per_execution']} steps/call on {r128['device']}" if r128 else "batch 128")
    )  # fmt: skip
    r512 = best(512, "mixed_bfloat16")
    results.append(
        verdict(float(r512["images_per_s"]) if r512 else None, TARGET_IMG_S_512_BF16,
                f"{r512['steps_per_execution']} steps/call on {r512['device']}" if r512 else "batch 512 bf16")
    )  # fmt: skip
    pairs = []
    for batch in sorted({int(r["batch_size"]) for r in gpu_rows}):
        f32 = best(batch, "float32")
        for precision in ("mixed_bfloat16", "mixed_float16"):
            mixed = best(batch, precision)
            if f32 and mixed:
                ratio = float(mixed["images_per_s"]) / float(f32["images_per_s"])
                pairs.append(f"batch {batch} {precision} {ratio:.2f}x float32")
    results.append("; ".join(pairs) if pairs else "not measured (no float32 / mixed pair)")
    shares = []
    for r in gpu_rows:
        if r["augment"] != "on":
            continue
        off = [
            o for o in gpu_rows
            if o["augment"] == "off" and _row_key(o)[:4] == _row_key(r)[:4] and _row_key(o)[5:] == _row_key(r)[5:]
        ]  # fmt: skip
        if off:
            share = 1 - float(off[0]["step_ms"]) / float(r["step_ms"])
            shares.append(
                f"{r['precision']} b{r['batch_size']}: {100 * share:.1f}%{'' if share <= TARGET_AUGMENT_SHARE else ' (over)'}"
            )
    results.append(
        "; ".join(shares) if shares else "not measured (no pair with and without augmentation)"
    )
    recipe = best(RECIPE_BATCH, augment="on") or best(RECIPE_BATCH)
    if recipe:
        minutes = RECIPE_STEPS * RECIPE_BATCH / float(recipe["images_per_s"]) / 60
        results.append(
            f"estimate only, from this throughput ({recipe['precision']}, augment {recipe['augment']}): "
            f"{minutes:.1f} min of training steps, validation and start-up not counted; the target "
            "needs a real run and its record"
        )
    else:
        results.append("not measured (no batch-128 row)")
    return list(zip(targets, results, strict=True))


def format_readme(rows: list[dict], plan: Plan, env: dict[str, str]) -> str:
    """The README of ``results/benchmarks``: where it ran, the tables, and the targets."""
    sizes = plan.sizes
    devices = sorted({r["device"] for r in rows if r["device"]})
    cpu_only = all(d == "cpu" for d in devices)
    parts = [
        "# Training throughput benchmark",
        "",
        "Generated by `keras_cnns/benchmark.py`; never edited by hand. Written "
        f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} from the "
        "rows these commands measured (`--merge` keeps earlier rows this run did not measure):",
        "",
        *[f"    {c}" for c in dict.fromkeys(r["command"] for r in rows if r["command"])],
        "",
    ]
    if plan.note:
        parts += [f"> {plan.note}", ""]
    if cpu_only:
        parts += [
            "> **CPU run.** Every row below ran on a CPU: the numbers check that the benchmark and "
            "each engine path work, and compare paths on this machine only. They say nothing about "
            "GPU speed, and relative gains on a CPU are not GPU gains.",
            "",
        ]
    parts += [
        "## Where it ran",
        "",
        f"- devices seen by the workers: {', '.join(devices) or 'none'}",
        f"- GPU (nvidia-smi: name, driver, memory): {env['gpu']}",
        f"- CPU: {env['cpu']}",
        f"- Python {env['python']} on {env['platform']}",
        f"- libraries: {env['libraries']}",
        "- sizes: synthetic 32x32x3 images, each row's timed passes x steps in the table, after "
        f"{sizes.warmup} untimed warm-up pass; the engine modes of one compiled step take turns, "
        "pass by pass; `--isolate` in each command says whether a worker process ran a backend's "
        "cases or one compiled step's",
        "- each Keras row trains the engine's own step (`compile_for_training` + `fit_epoch`: SGD "
        f"with momentum, L2 {L2:g}, float32 logits); the PyTorch row is a plain ResNet-56 "
        f"({REFERENCE_TRAINABLE_PARAMS:,} trainable parameters, option A, eager, channels-last, "
        "`torch.autocast`)",
        "",
        "Modes: " + "; ".join(f"`{m.name}`: {m.description}" for m in MODES.values()) + ".",
        "",
        "## Throughput",
        "",
        "img/s is the median timed pass; spread is (max - min) / median of the passes; vs PyTorch is "
        "a ResNet-56 row over the PyTorch reference at the same precision, batch, augmentation and "
        "device; peak MiB is the backend's peak device memory (n/a where it reports none: see "
        "`memory_note` in the CSV).",
        "",
        format_table(rows),
        "",
    ]
    augment = _augment_table(rows)
    if augment:
        parts += [
            "## Augmentation's cost",
            "",
            "`pad_crop,flip` on the device, inside the compiled step.",
            "",
            augment,
            "",
        ]
    modes = _modes_table(rows)
    if modes:
        parts += [
            "## Each optimisation",
            "",
            "Throughput of each engine mode over `plain` (the engine before issue 6).",
            "",
            modes,
            "",
        ]
    parts += [
        "## GPU targets (issue 6: H100, JAX backend, ResNet-56)",
        "",
        "| target | this run |",
        "|---|---|",
    ]
    parts += [f"| {t} | {v} |" for t, v in _targets(rows)]
    parts += ["", f"The CSV beside this file (`{CSV_FILE}`) holds every column of every row.", ""]
    return "\n".join(parts)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark the options describe (``keras-cnns benchmark``)."""
    run(plan_from_args(args))
    return 0


if __name__ == "__main__":
    # The worker protocol only: ``python -m keras_cnns.benchmark --worker SPEC.json``.
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit(
            "usage: python -m keras_cnns.benchmark --worker SPEC.json (use 'keras-cnns benchmark')"
        )
    sys.exit(worker_main(sys.argv[2]))
