"""Training time of stochastic depth against constant depth (Huang et al. 2016, Sec. 4).

Claim (the paper, Sec. 4 and Table 1): ResNet-110 trained with stochastic depth (linear decay
to ``p_L = 0.5``, one draw per block per mini-batch) trains about 25% faster than with
constant depth, because a dropped block is not computed, forward or backward: the expected
depth is ``(3L - 1) / 4`` blocks of ``L``. Target here: seconds per step of ResNet-110 with
``drop_path=0.5`` at most 80% of those with constant depth.

What it measures: for each model (``resnet110_cifar``, ``resnet56_cifar`` by default), the
seconds per training step (``model.train_on_batch``: SGD with Nesterov momentum, float32,
batch 128 of synthetic 32x32x3 images, the loss back on the host) of three nets: the
constant-depth net, its twin with ``drop_path=0.5`` (``drop_path_mode="batch"``), and the
same twin with ``drop_path=1e-9`` ("none dropped": every block runs inside its conditional,
and none is ever dropped). The third separates what skipping saves (stochastic over none
dropped) from what running the blocks inside conditionals costs or saves by itself (none
dropped over constant): on JAX's CPU backend the second is far from 1. The nets are built and
compiled, warmed up (``--warmup`` untimed steps each), then timed over ``--rounds`` rounds of
``--steps`` steps each, the nets taking turns (the order rotates from round to round),
so load from other jobs falls on all alike. A full epoch would be too long on two CPU cores:
the table gives seconds per step and extrapolates them to a 45,000-image epoch (the paper's
45k / 5k split: ``ceil(45000 / 128) = 352`` steps); the ratio is stochastic over constant.

Outputs ``OUT/stochastic_depth.csv`` and ``OUT/stochastic_depth.md`` (default ``OUT``:
``runs/benchmarks``; ``--out results/benchmarks`` for the committed table), with the backend, the CPU and the load average; rows of other
backends already in the CSV are kept, so runs on several backends make one table. The backend
is ``KERAS_BACKEND``. Never edit the outputs by hand: rerun the script.

Commands (the committed rows): TensorFlow with the defaults, 4 rounds of 4 steps (about 8
minutes on two CPU cores with nothing else running); JAX with fewer steps (about 10 minutes on
two shared cores: its constant-depth ResNet-110 takes about 18 s a step there)::

    KERAS_BACKEND=tensorflow python scripts/benchmark_stochastic_depth.py --out results/benchmarks
    KERAS_BACKEND=jax python scripts/benchmark_stochastic_depth.py --rounds 3 --steps 2 --warmup 1 \\
        --out results/benchmarks
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import math
import os
import platform
import sys
import time
from pathlib import Path

NONE_DROPPED = 1e-9  # a drop_path whose draws always keep (float32 rounds 1 - 1e-9 to 1)
EPOCH_IMAGES = 45_000  # Huang et al. train on 45k CIFAR images (5k held out for validation)
TARGET = 0.80  # the target for ResNet-110: at most 80% of the constant-depth time
COLUMNS = (
    "backend", "model", "drop_path", "batch_size", "rounds", "steps", "constant_s_per_step",
    "sd_s_per_step", "ratio", "round_ratio_min", "round_ratio_max", "kept_s_per_step",
    "ratio_sd_to_kept", "ratio_kept_to_constant", "constant_s_per_epoch",
    "sd_s_per_epoch", "expected_block_fraction", "computed_block_fraction", "cpu", "cores",
    "load_before", "load_after",
    "versions", "written",
)  # fmt: skip


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        default="resnet110_cifar,resnet56_cifar",
        help="comma-separated registered CIFAR ResNets (default: resnet110_cifar,resnet56_cifar)",
    )
    p.add_argument("--rounds", type=int, default=4, help="timed rounds (default: 4)")
    p.add_argument(
        "--steps", type=int, default=4, help="timed steps per net per round (default: 4)"
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per net first (default: 2)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    p.add_argument(
        "--drop-path", type=float, default=0.5, help="the last block's drop probability (0.5)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data and draws (0)")
    p.add_argument(
        "--out",
        default="runs/benchmarks",
        help="directory for stochastic_depth.csv / .md (default: runs/benchmarks; the committed "
        "table: results/benchmarks)",
    )
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--rounds and --steps must be at least 1, --warmup at least 0")
    return args


def _cpu() -> tuple[str, int]:
    """The CPU model name and the number of cores this process may use."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return name, int(cores or 0)


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def library_versions(backend: str) -> str:
    import importlib.metadata as md

    names = {
        "tensorflow": ["tensorflow", "tensorflow-cpu"],
        "jax": ["jax", "jaxlib"],
        "torch": ["torch"],
    }
    found = [f"keras {md.version('keras')}"]
    for name in names.get(backend, []):
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            continue
    return ", ".join(found)


def _compiled(name: str, drop_path: float, seed: int):
    import keras

    from keras_cnns.registry import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(name, drop_path=drop_path, drop_path_mode="batch")
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _steps(model, x, y, n: int, blocks: BlockCounter | None = None) -> float:
    """Seconds for ``n`` training steps, each loss fetched to the host.

    With ``blocks``, each step is timed alone and ``blocks`` counts, between steps (untimed),
    the residual blocks that step computed.
    """
    seconds = 0.0
    for _ in range(n):
        if blocks is not None:
            blocks.before()
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        float(loss)
        seconds += time.perf_counter() - start
        if blocks is not None:
            blocks.after()
    return seconds


class BlockCounter:
    """Counts the residual blocks a stochastic-depth net computes, step by step.

    A block that is dropped does not run its branch, so its branch's batch-norm moving
    statistics keep their value; a block that runs updates them. ``before`` and ``after``
    (called around one training step) compare the first moving statistic of every block.
    """

    def __init__(self, model):
        from keras_cnns.layers import StochasticDepth

        self.variables = [
            layer.branch.non_trainable_variables[0]
            for layer in model.layers
            if isinstance(layer, StochasticDepth) and layer.branch is not None
        ]
        if not self.variables:
            raise ValueError(f"{model.name} has no stochastic-depth block with a branch")
        self.computed = 0
        self.offered = 0
        self._saved: list = []

    def before(self) -> None:
        import keras

        self._saved = [keras.ops.convert_to_numpy(v.value).copy() for v in self.variables]

    def after(self) -> None:
        import keras
        import numpy as np

        for variable, saved in zip(self.variables, self._saved, strict=True):
            self.computed += int(
                not np.array_equal(keras.ops.convert_to_numpy(variable.value), saved)
            )
        self.offered += len(self.variables)

    @property
    def fraction(self) -> float:
        return self.computed / self.offered


def measure(name: str, args: argparse.Namespace, backend: str) -> dict:
    """One row: both variants of ``name``, warmed up, then timed in alternating rounds."""
    import numpy as np

    from keras_cnns.models.resnet import survival_probabilities

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch_size, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    load_before = _load()
    drop_paths = {"constant": 0.0, "sd": args.drop_path, "kept": NONE_DROPPED}
    nets = {variant: _compiled(name, p, args.seed) for variant, p in drop_paths.items()}
    for model in nets.values():
        _steps(model, x, y, args.warmup)
    seconds = {variant: [] for variant in nets}
    variants = list(nets)
    counter = BlockCounter(nets["sd"])
    for r in range(args.rounds):
        for variant in variants[r % 3 :] + variants[: r % 3]:
            counting = counter if variant == "sd" else None
            seconds[variant].append(_steps(nets[variant], x, y, args.steps, counting))
        print(
            f"{backend} {name} round {r + 1}/{args.rounds}: constant "
            f"{seconds['constant'][-1] / args.steps:.3f} s/step, stochastic depth "
            f"{seconds['sd'][-1] / args.steps:.3f} s/step, none dropped "
            f"{seconds['kept'][-1] / args.steps:.3f} s/step",
            flush=True,
        )
    timed = args.rounds * args.steps
    constant = sum(seconds["constant"]) / timed
    sd = sum(seconds["sd"]) / timed
    kept = sum(seconds["kept"]) / timed
    round_ratios = [s / c for s, c in zip(seconds["sd"], seconds["constant"], strict=True)]
    blocks = sum(stage.blocks for stage in _spec(name).stages)
    epoch_steps = math.ceil(EPOCH_IMAGES / args.batch_size)
    cpu, cores = _cpu()
    return {
        "backend": backend,
        "model": name,
        "drop_path": args.drop_path,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps": args.steps,
        "constant_s_per_step": round(constant, 4),
        "sd_s_per_step": round(sd, 4),
        "ratio": round(sd / constant, 3),
        "round_ratio_min": round(min(round_ratios), 3),
        "round_ratio_max": round(max(round_ratios), 3),
        "kept_s_per_step": round(kept, 4),
        "ratio_sd_to_kept": round(sd / kept, 3),
        "ratio_kept_to_constant": round(kept / constant, 3),
        "constant_s_per_epoch": round(constant * epoch_steps, 1),
        "sd_s_per_epoch": round(sd * epoch_steps, 1),
        "expected_block_fraction": round(
            sum(survival_probabilities(blocks, args.drop_path)) / blocks, 3
        ),
        "computed_block_fraction": round(counter.fraction, 3),
        "cpu": cpu,
        "cores": cores,
        "load_before": load_before,
        "load_after": _load(),
        "versions": library_versions(backend),
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _spec(name: str):
    from keras_cnns.registry import get_entry

    return get_entry(name).spec


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _cell(row: dict, key: str, fmt: str) -> str:
    """``row[key]`` formatted, or ``-`` for a row measured before the column existed."""
    value = row.get(key) or ""
    return format(float(value), fmt) if value else "-"


def _markdown(rows: list[dict]) -> str:
    from keras_cnns.lab.writer import table_lines

    epoch_steps = {
        int(r["batch_size"]): math.ceil(EPOCH_IMAGES / int(r["batch_size"])) for r in rows
    }
    lines = [
        "# Stochastic depth: training time against constant depth",
        "",
        "Generated by `scripts/benchmark_stochastic_depth.py`; never edited by hand (rerun it).",
        "Huang et al. 2016 (Sec. 4, Table 1): ResNet-110 with stochastic depth (linear decay to",
        "p_L = 0.5, one draw per block per mini-batch) trains about 25% faster than with constant",
        f"depth; target here: ResNet-110's ratio at most {TARGET:.2f}.",
        "",
        'Each row: the constant-depth net and its `drop_path` twin (`drop_path_mode="batch"`,',
        "option-A shortcuts, float32, SGD with Nesterov momentum, synthetic 32x32x3 images), and",
        f"the same twin with `drop_path={NONE_DROPPED:g}` (none dropped: every block inside its",
        "conditional, none ever skipped), built, warmed up, then timed in `rounds` rounds of",
        "`steps` training steps each, the nets taking turns (order rotating).",
        "**Seconds per epoch are extrapolated** from seconds per",
        "step to a 45,000-image epoch ("
        + ", ".join(f"batch {b}: {n} steps" for b, n in sorted(epoch_steps.items()))
        + "); no full epoch was run.",
        "`ratio` is stochastic / constant over all timed steps; the round ratios show the spread.",
        "Stochastic / none dropped is what skipping saves; none dropped / constant what the",
        "conditionals cost (or save) by themselves. Rows without them (`-`) were measured before",
        "the script timed the third net.",
        "`expected blocks` is the mean survival probability, the fraction of residual blocks",
        "computed on average (the stem, the head and the optimizer update always run);",
        "`computed blocks` the fraction the timed stochastic-depth steps did compute (counted",
        "between steps from the blocks' batch-norm moving statistics, which a dropped block",
        "leaves alone; `-`: measured before the script counted).",
        "",
    ]
    head = [
        "backend", "model", "drop_path", "batch", "rounds x steps", "constant s/step", "SD s/step",
        "ratio SD / constant", "round ratios", "none dropped s/step", "SD / none dropped",
        "none dropped / constant", "constant s/epoch (extrapolated)", "SD s/epoch (extrapolated)",
        "expected blocks", "computed blocks", "CPU (cores)", "load 1 5 15 min: before, after", "versions", "written",
    ]  # fmt: skip
    body = [
        [
            r["backend"], r["model"], r["drop_path"], r["batch_size"], f"{r['rounds']} x {r['steps']}",
            f"{float(r['constant_s_per_step']):.3f}", f"{float(r['sd_s_per_step']):.3f}",
            f"**{float(r['ratio']):.3f}**", f"{r['round_ratio_min']} - {r['round_ratio_max']}",
            _cell(r, "kept_s_per_step", ".3f"), _cell(r, "ratio_sd_to_kept", ".3f"),
            _cell(r, "ratio_kept_to_constant", ".3f"), f"{float(r['constant_s_per_epoch']):.0f}",
            f"{float(r['sd_s_per_epoch']):.0f}", r["expected_block_fraction"],
            _cell(r, "computed_block_fraction", ".3f"), f"{r['cpu']} ({r['cores']})",
            f"{r['load_before']}; {r['load_after']}", r["versions"], r["written"],
        ]
        for r in rows
    ]  # fmt: skip
    lines += table_lines(head, body)
    lines += [
        "",
        "Load averages are 1 / 5 / 15 minutes: the machine is shared, so absolute seconds vary",
        "with other jobs; the rotating rounds put that load on every net alike. CPU numbers",
        "say nothing about a GPU.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    os.environ["KERAS_BACKEND"] = backend
    from keras_cnns.storage import atomic_write_text

    out = Path(args.out)
    csv_path, md_path = out / "stochastic_depth.csv", out / "stochastic_depth.md"
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    fresh = [measure(name, args, backend) for name in names]
    measured = {(r["backend"], r["model"]) for r in fresh}
    kept = [r for r in _read_rows(csv_path) if (r["backend"], r["model"]) not in measured]
    rows = sorted(kept + fresh, key=lambda r: (r["backend"], r["model"]))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(csv_path, _csv(rows))
    markdown = _markdown(rows)
    atomic_write_text(md_path, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
