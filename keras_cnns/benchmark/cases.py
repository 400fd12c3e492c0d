"""What the benchmark measures: its options, and the cases they expand to.

``add_arguments`` declares the options of ``keras-cnns benchmark``; ``plan_from_args`` turns
them into a ``Plan``: every ``Case`` (backend x model x precision x batch size x augmentation
x engine mode x steps per execution) at the ``Sizes`` chosen (``GPU_SIZES`` or ``CPU_SIZES``).
``MODES`` names the engine paths timed apart. ``CSV_COLUMNS`` is the row every measurement
fills (``case_row``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_cnns.errors import UserError
from keras_cnns.storage import DEFAULT_OUT_DIR

MODELS = ("resnet20_cifar", "resnet56_cifar", "resnet110_cifar", "dropout_cifar", "cifar_4layer")
BACKENDS = ("jax", "tensorflow", "torch")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
AUGMENT = ("pad_crop", "flip")
AUGMENT_CHOICES = ("both", "on", "off")
ISOLATE_CHOICES = ("auto", "case", "backend")
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# The plain-PyTorch reference: He et al. 2016's CIFAR ResNets written in PyTorch, one for each
# CIFAR ResNet benchmarked (ResNet-56, resnet56_cifar, when none is).
REFERENCE = "pytorch"
REFERENCE_MODEL = "resnet56_cifar"
REFERENCE_TRAINABLE_PARAMS = 853_018  # of ResNet-56
_CIFAR_RESNET = re.compile(r"resnet(\d+)_cifar")


def reference_models(models: Sequence[str]) -> tuple[str, ...]:
    """The models that get a plain-PyTorch reference row: every CIFAR ResNet in ``models``, or
    ``REFERENCE_MODEL`` when there is none (the 4-layer net has no PyTorch twin)."""
    return tuple(m for m in models if _CIFAR_RESNET.fullmatch(m)) or (REFERENCE_MODEL,)


def reference_depth(model: str) -> int:
    """The depth of a CIFAR ResNet's name: ``resnet110_cifar`` -> 110."""
    match = _CIFAR_RESNET.fullmatch(model)
    if match is None:
        raise ValueError(f"{model!r} is not a CIFAR ResNet (resnetN_cifar)")
    return int(match.group(1))
# The recipe the cases train with (speed does not depend on the values): SGD with momentum,
# L2 5e-5 (the paper's "weight decay 1e-4"; the reference's torch SGD weight_decay=1e-4).
LEARNING_RATE = 0.01
L2 = 5e-5
CSV_FILE = "benchmark.csv"
README_FILE = "README.md"
# The engine's GPU targets (H100, JAX backend, ResNet-56 for CIFAR), checked in the README.
TARGET_IMG_S_128 = 20_000
TARGET_IMG_S_512_BF16 = 40_000
TARGET_AUGMENT_SHARE = 0.05
RECIPE_STEPS, RECIPE_BATCH, RECIPE_MINUTES = 64_000, 128, 7.0


@dataclass(frozen=True)
class Mode:
    """An engine configuration to time (the modes: see ``keras_cnns.benchmark``)."""

    name: str
    sync_check: bool  # the NaN check reads each step's loss on the main thread
    on_device: bool | None  # data on the device; None: the engine's own choice
    description: str


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("plain", sync_check=True, on_device=False, description=(
            "host batches, per-step NaN check on the main thread (the engine without its speed-ups)"
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
        "--no-reference", action="store_true", help="skip the plain-PyTorch reference of each CIFAR ResNet"
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
        default=os.path.join(DEFAULT_OUT_DIR, "benchmarks"),
        help=f"where benchmark.csv and README.md go (default: {DEFAULT_OUT_DIR}/benchmarks; the "
        "committed table: results/benchmarks)",
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
    gpu = gpu_visible()
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
        grid = itertools.product(reference_models(models), precisions, batch_sizes, augments)
        cases += [Case(REFERENCE, m, p, b, a, "eager", 1) for m, p, b, a in grid]
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


def gpu_visible() -> bool:
    """Does ``nvidia-smi`` list a GPU? (No import of any framework.)"""
    return bool(nvidia_smi(["-L"]).strip())


def nvidia_smi(arguments: list[str]) -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        result = subprocess.run(
            ["nvidia-smi", *arguments], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout if result.returncode == 0 else ""

def case_row(case: Case, **fields: Any) -> dict:
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


def row_key(row: dict) -> tuple:
    return (
        row["backend"], row["model"], row["precision"], int(row["batch_size"]),
        row["augment"] == "on", row["mode"], int(row["steps_per_execution"]),
    )  # fmt: skip
