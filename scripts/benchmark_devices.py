"""Training throughput: the single-device path against the distribution path.

The target, on a GPU: one device trained through the distribution API
(``keras.distribution.DataParallel`` on JAX, ``tf.distribute.MirroredStrategy`` on TensorFlow,
forced with ``distribute.placement(1, force=True)``) must be as fast as the plain one-device
path, within 5%. This script measures the steady-state images per second of the engine's own
training step (``training.compile_for_training`` + ``training.fit_epoch``, fed as ``train``
feeds: ``training.make_feed`` on the plain path, ``Placement.make_feed`` on the distribution
path) for these cases:

* ``single``: the plain path, what ``devices=1`` runs;
* ``distributed`` on 1 device: the distribution API over one device;
* ``distributed`` on N devices: over every device, when there are N > 1 (the global batch is
  the same, so each device gets batch / N).

Each case runs in its own process (TensorFlow keeps one set of devices per process, and a
fresh process keeps the numbers independent): ``--warmup`` untimed passes (compilation), then
``--repeats`` timed passes of ``--steps`` batches of synthetic images; a pass ends when its
loss is back on the host. The row reports the median pass and the spread (max - min) / median.
(Measured on CPU: JAX compiles the training step of a one-device ``DataParallel`` a second
time in the second pass, once; hence two warm-up passes by default.)

Outputs ``OUT/devices.csv`` and ``OUT/devices.md`` (default ``OUT``: ``runs/benchmarks``;
``--out results/benchmarks`` for the committed table),
naming the backend, the device and the versions. CPU numbers say nothing about a GPU: the
test suite runs this at tiny sizes into a temporary directory, with virtual CPU devices
(``--cpu-devices``), to check the machinery only.

On a GPU (not measured yet): on a machine with an NVIDIA GPU, install the package with JAX
for CUDA (``pip install -e . "jax[cuda12]"``), then, in the repository root (a few minutes):

    python scripts/benchmark_devices.py --backend jax --model resnet50 --image-size 224 \\
        --batch-size 128 --steps 40 --warmup 2 --repeats 5 --precision mixed_bfloat16 \\
        --out results/benchmarks

It writes ``results/benchmarks/devices.md`` and ``devices.csv``. Expect the plain path to keep the data on the GPU (``DeviceFeed``) and the
distribution path to copy each batch from the host (``ShardedFeed``): the table names each
row's feed.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = (
    "backend", "path", "devices", "api", "feed", "model", "image_size", "batch_size", "precision",
    "steps", "repeats", "images_per_second", "spread", "device", "versions",
)  # fmt: skip
TARGET = 0.05  # the distribution path on 1 device within 5% of the single-device path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backend", default=os.environ.get("KERAS_BACKEND", "jax"), choices=("jax", "tensorflow")
    )
    p.add_argument(
        "--model", default="resnet20_cifar", help="a registered model (default: resnet20_cifar)"
    )
    p.add_argument("--image-size", type=int, default=32, help="square input side (default: 32)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch (default: 128)")
    p.add_argument("--steps", type=int, default=20, help="batches per timed pass (default: 20)")
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed passes first (default: 2: on JAX the one-device distribution path "
        "compiles its step again in the second pass)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed passes (default: 3)")
    p.add_argument(
        "--precision", default="float32", help="float32, mixed_float16 or mixed_bfloat16"
    )
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="make this many virtual CPU devices (tests: XLA's host device count on JAX, "
        "logical devices on TensorFlow); 0: the machine's devices",
    )
    p.add_argument(
        "--out",
        default="runs/benchmarks",
        help="directory for devices.csv and devices.md (default: runs/benchmarks; the committed "
        "table: results/benchmarks)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one case, as JSON
    return p.parse_args(argv)


# --- one case, in its own process ----------------------------------------------------------------


def _worker(case: dict) -> dict:
    if case["backend"] == "tensorflow" and case["cpu_devices"]:
        import tensorflow as tf  # logical devices must exist before TensorFlow starts

        cpu = tf.config.list_physical_devices("CPU")[0]
        config = [tf.config.LogicalDeviceConfiguration()] * case["cpu_devices"]
        tf.config.set_logical_device_configuration(cpu, config)
    import keras
    import numpy as np

    from keras_cnns import training
    from keras_cnns.registry import build_model
    from keras_cnns.training import distribute
    from keras_cnns.training.config import TrainConfig

    keras.utils.set_random_seed(0)
    distributed = case["path"] == "distributed"
    placement = distribute.placement(case["devices"], force=distributed)
    config = TrainConfig(
        model=case["model"],
        batch_size=case["batch_size"],
        precision=case["precision"],
        learning_rate=0.01,
    )
    placement.check_batch(config.batch_size)
    n, size = case["steps"] * config.batch_size, case["image_size"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, size, size, 3), dtype=np.float32)
    y = rng.integers(0, case["classes"], n)
    seconds = []
    with training.dtype_policy(config.precision), placement.scope():
        model = build_model(config.model, input_shape=(size, size, 3), num_classes=case["classes"])
        wrapper = training.compile_for_training(model, config, steps_per_epoch=case["steps"])
        placement.prepare(wrapper)
        feed = placement.make_feed(x, y) if distributed else training.make_feed(x, y)
        for epoch in range(case["warmup"] + case["repeats"]):
            start = time.perf_counter()
            history = training.fit_epoch(wrapper, feed, batch_size=config.batch_size, epoch=epoch)
            float(history.history["loss"][-1])  # the pass is done once its loss is on the host
            seconds.append(time.perf_counter() - start)
    available = distribute.placement("all", force=True).replicas if distributed else 1
    timed = seconds[case["warmup"] :]
    median = statistics.median(timed)
    versions = training.environment.library_versions()
    return {
        "backend": case["backend"],
        "path": case["path"],
        "devices": placement.replicas,
        "api": placement.api or "none",
        "feed": type(feed).__name__,
        "model": config.model,
        "image_size": size,
        "batch_size": config.batch_size,
        "precision": config.precision,
        "steps": case["steps"],
        "repeats": case["repeats"],
        "images_per_second": round(n / median, 2),
        "spread": round((max(timed) - min(timed)) / median, 4),
        "device": training.environment.device_name(),
        "versions": " ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        "available": available,  # devices the distribution path could use
    }


def _run_case(case: dict) -> dict:
    env = {**os.environ, "KERAS_BACKEND": case["backend"], "TF_CPP_MIN_LOG_LEVEL": "3"}
    if case["backend"] == "jax" and case["cpu_devices"]:
        env["XLA_FLAGS"] = (
            f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={case['cpu_devices']}"
        )
    result = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(case)],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(
            f"benchmark_devices: case {case['path']} x{case['devices']} failed:\n{result.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


# --- the table ---------------------------------------------------------------------------------


def _write(rows: list[dict], out: Path, command: str) -> None:
    from keras_cnns.lab.writer import table_lines
    from keras_cnns.storage import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "devices.csv", buffer.getvalue())

    single = next(r for r in rows if r["path"] == "single")
    lines = [
        "# Training throughput: single-device path vs distribution path",
        "",
        f"Generated by `scripts/benchmark_devices.py` on {datetime.date.today().isoformat()}, never "
        "edited by hand. Backend "
        f"{single['backend']} on **{single['device']}** ({single['versions']}). Model "
        f"{single['model']} at {single['image_size']}x{single['image_size']}, global batch "
        f"{single['batch_size']}, {single['precision']}; median of {single['repeats']} timed "
        f"passes of {single['steps']} batches of synthetic images after the warm-up.",
        "",
    ]
    lines += table_lines(
        ["path", "devices", "API", "feed", "images/s", "spread", "vs single"],
        [
            [r["path"], r["devices"], r["api"], r["feed"], f"{r['images_per_second']:,.1f}",
             f"{100 * r['spread']:.1f}%", f"{r['images_per_second'] / single['images_per_second']:.3f}"]
            for r in rows
        ],
    )  # fmt: skip
    one = next((r for r in rows if r["path"] == "distributed" and r["devices"] == 1), None)
    if one is not None:
        ratio = one["images_per_second"] / single["images_per_second"]
        verdict = "within" if abs(1 - ratio) <= TARGET else "outside"
        lines += [
            "",
            f"The distribution path on one device trains at {ratio:.3f} x the single-device path: "
            f"{verdict} the {100 * TARGET:.0f}% target on this hardware.",
        ]
    if single["device"] == "cpu":
        lines += ["", "CPU numbers: they check the machinery, not the GPU target."]
    lines += ["", f"Command: `{command}`", ""]
    atomic_write_text(out / "devices.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        case = json.loads(args.worker)
        print(json.dumps(_worker(case)), flush=True)
        return 0
    base = {k: v for k, v in vars(args).items() if k not in ("out", "worker")}
    cases = [
        {**base, "path": "single", "devices": 1},
        {**base, "path": "distributed", "devices": 1},
    ]
    rows = []
    while cases:
        row = _run_case(cases.pop(0))
        rows.append(row)
        print(
            f"{row['path']:>12} x{row['devices']}: {row['images_per_second']:,.1f} images/s ({row['feed']})",
            flush=True,
        )
        if row["path"] == "distributed" and row["devices"] == 1 and row["available"] > 1:
            cases.append({**base, "path": "distributed", "devices": row["available"]})
    command = "python scripts/benchmark_devices.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    _write(rows, Path(args.out), command)
    print(f"benchmark_devices: wrote {Path(args.out) / 'devices.md'} and devices.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
