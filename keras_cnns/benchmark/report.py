"""The benchmark's outputs: ``benchmark.csv`` and the README table written from it.

``write_outputs`` writes both atomically; ``format_readme`` writes the tables (throughput,
on-device augmentation cost, each engine mode over ``plain``, the GPU targets) and where the
rows ran (``environment``: CPU, GPU, driver, library versions, read without importing any
framework). ``combine_rows`` merges the rows of an earlier run (``--merge``) with this run's.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import importlib.util
import io
import os
import platform
from collections.abc import Iterable
from pathlib import Path

from keras_cnns.benchmark.cases import (
    BACKENDS,
    CSV_COLUMNS,
    CSV_FILE,
    L2,
    MODELS,
    MODES,
    PRECISIONS,
    README_FILE,
    RECIPE_BATCH,
    RECIPE_MINUTES,
    RECIPE_STEPS,
    REFERENCE,
    REFERENCE_MODEL,
    REFERENCE_TRAINABLE_PARAMS,
    TARGET_AUGMENT_SHARE,
    TARGET_IMG_S_128,
    TARGET_IMG_S_512_BF16,
    Plan,
    nvidia_smi,
    row_key,
)
from keras_cnns.lab import writer


def _case_key(r: dict) -> tuple:
    """What two rows must share to be compared: model, precision, batch, augmentation, device."""
    return (r["model"], r["precision"], str(r["batch_size"]), r["augment"], r["device"])


def _add_ratios(rows: list[dict]) -> None:
    """``vs_reference``: a CIFAR ResNet row's throughput over its own depth's plain-PyTorch
    reference at the same precision, batch size and augmentation (and device), measured by the
    same command (rows kept from another run with ``--merge`` saw another machine load)."""

    def key(r: dict) -> tuple:
        return (*_case_key(r), r.get("command", ""))

    reference = {
        key(r): float(r["images_per_s"]) for r in rows if r["backend"] == REFERENCE and r["status"] == "ok"
    }
    for r in rows:
        ref = reference.get(key(r))
        ok = r["status"] == "ok" and ref
        r["vs_reference"] = round(float(r["images_per_s"]) / ref, 2) if ok else ""


def read_csv(path: Path) -> list[dict]:
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
    from keras_cnns.storage import atomic_write_text

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
    gpus = nvidia_smi(
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
    head = [
        "backend", "model", "precision", "batch", "augment", "mode", "steps/call", "data", "img/s",
        "ms/step", "spread", "timed steps", "vs PyTorch", "peak MiB", "device", "status",
    ]  # fmt: skip
    body = []
    for r in sorted(rows, key=_sort_key):
        ok = r["status"] == "ok"
        body.append([
            r["backend"], r["model"], r["precision"], r["batch_size"], r["augment"], r["mode"],
            r["steps_per_execution"], r["data"] or "-",
            _fmt(r["images_per_s"]) if ok else "-", _fmt(r["step_ms"], 2) if ok else "-",
            _fmt(r["spread_pct"], 1) + "%" if ok else "-",
            f"{r['passes']} x {r['steps_per_pass']}" if ok else "-",
            _fmt(r["vs_reference"], 2), _fmt(r["peak_memory_mib"], 0), r["device"] or "-", r["status"],
        ])  # fmt: skip
    return writer.table(head, body)


def _augment_table(rows: list[dict]) -> str:
    """Augmentation's share of the step time: (t_on - t_off) / t_on, per matching pair."""
    index = {
        (*row_key(r)[:4], *row_key(r)[5:], r["device"]): r
        for r in rows
        if r["status"] == "ok" and r["augment"] == "off"
    }
    body = []
    for r in sorted(rows, key=_sort_key):
        if r["status"] != "ok" or r["augment"] != "on":
            continue
        off = index.get((*row_key(r)[:4], *row_key(r)[5:], r["device"]))
        if off is None:
            continue
        t_on, t_off = float(r["step_ms"]), float(off["step_ms"])
        body.append([
            r["backend"], r["model"], r["precision"], r["batch_size"], r["mode"], r["steps_per_execution"],
            f"{t_off:.2f}", f"{t_on:.2f}", f"{100 * (t_on - t_off) / t_on:.1f}%",
        ])  # fmt: skip
    if not body:
        return ""
    head = [
        "backend", "model", "precision", "batch", "mode", "steps/call", "ms/step without", "ms/step with",
        "share of the step",
    ]  # fmt: skip
    return writer.table(head, body)


def _modes_table(rows: list[dict]) -> str:
    """Each engine mode's throughput over ``plain``'s, per matching case."""
    plain = {
        (r["backend"], *_case_key(r)): float(r["images_per_s"])
        for r in rows
        if r["status"] == "ok" and r["mode"] == "plain" and str(r["steps_per_execution"]) == "1"
    }
    body = []
    for r in sorted(rows, key=_sort_key):
        base = plain.get((r["backend"], *_case_key(r)))
        if r["status"] != "ok" or r["backend"] == REFERENCE or base is None:
            continue
        body.append([
            r["backend"], r["model"], r["precision"], r["batch_size"], r["augment"], r["mode"],
            r["steps_per_execution"], _fmt(r["images_per_s"]), f"{float(r['images_per_s']) / base:.2f}",
        ])  # fmt: skip
    if len(body) <= len(plain):
        return ""  # only the plain rows themselves: nothing to compare
    head = ["backend", "model", "precision", "batch", "augment", "mode", "steps/call", "img/s", "vs plain"]
    return writer.table(head, body)


def _targets(rows: list[dict]) -> list[tuple[str, str]]:
    """(target, what this run shows) for each GPU target (H100, JAX, ResNet-56)."""
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
            if o["augment"] == "off" and row_key(o)[:4] == row_key(r)[:4] and row_key(o)[5:] == row_key(r)[5:]
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
    """The README of a benchmark's ``--out`` (``results/benchmarks`` for the committed one): where
    it ran, the tables, and the targets."""
    sizes = plan.sizes
    devices = sorted({r["device"] for r in rows if r["device"]})
    cpu_only = all(d == "cpu" for d in devices)
    parts = [
        "# Training throughput benchmark",
        "",
        "Generated by `keras-cnns benchmark` (`keras_cnns/benchmark/`); never edited by hand. Written "
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
        "pass by pass, and on a CPU so do all the compiled steps of a worker process and the "
        "PyTorch rows in it (with augmentation and without, a Keras row and its reference); "
        "`--isolate` in each command says whether a worker process ran a backend's cases or one "
        "compiled step's",
        "- each Keras row trains the engine's own step (`compile_for_training` + `fit_epoch`: SGD "
        f"with momentum, L2 {L2:g}, float32 logits); each PyTorch row is the same CIFAR ResNet "
        f"written in plain PyTorch (ResNet-56: {REFERENCE_TRAINABLE_PARAMS:,} trainable parameters; "
        "option A, eager, channels-last, `torch.autocast`), and `vs PyTorch` is a Keras row over "
        "the PyTorch row of its own model",
        "",
        "Modes: " + "; ".join(f"`{m.name}`: {m.description}" for m in MODES.values()) + ".",
        "",
        "## Throughput",
        "",
        "img/s is the median timed pass; spread is (max - min) / median of the passes; vs PyTorch is "
        "a CIFAR ResNet row over the PyTorch reference of the same depth at the same precision, "
        "batch, augmentation and device, measured by the same command; peak MiB is the backend's peak device memory (n/a where it reports none: see "
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
            "Throughput of each engine mode over `plain` (the engine without its speed-ups).",
            "",
            modes,
            "",
        ]
    parts += ["## GPU targets (H100, JAX backend, ResNet-56)", ""]
    parts += writer.table_lines(["target", "this run"], _targets(rows))
    parts += ["", f"The CSV beside this file (`{CSV_FILE}`) holds every column of every row.", ""]
    return "\n".join(parts)

def combine_rows(kept: list[dict], measured: list[dict]) -> list[dict]:
    new = {row_key(r) for r in measured}
    rows = [r for r in kept if row_key(r) not in new] + measured
    _add_ratios(rows)
    return rows
