#!/usr/bin/env python
"""Kill a training run with SIGKILL again and again; check that resuming it loses nothing.

Claim checked: a run killed at any point (mid-epoch, while a checkpoint, ``state.json`` or
the record is being written) and started again with the same command ends with exactly the
weights, optimizer state and metrics of a run that was never interrupted, and leaves no
half-written checkpoint or record behind.

What it does (``python scripts/kill_resume.py --help`` for the knobs):

1. Trains a small real run once, uninterrupted: ``keras-cnns train lenet5_modern --dataset
   mnist`` on a 2,048-image subset, 4 epochs, ``deterministic=true``, with on-device
   augmentation (so the seed generators' states must be restored too), TensorFlow on the CPU.
   Its weights, optimizer state and record are the reference.
2. Series after series, in a fresh output directory each: runs the same command and kills it,
   re-runs it and kills it again, ..., then lets it finish. Two kinds of kill:

   * random: ``SIGKILL`` from outside at a uniformly random moment of the training, measured
     from the line the run prints once its data and model are ready, over the time the
     reference run needed from there to its end;
   * injected: ``KERAS_CNNS_FAULT`` (see ``keras_cnns.storage``) makes the run SIGKILL itself
     after a given training batch (mid-epoch), or halfway through writing an epoch's weights,
     the final ``model.keras``, ``state.json`` (after an epoch, or the final one) or its record
     line. Random kills rarely land inside a write; these always do.

3. After every kill: ``state.json`` parses and the checkpoint it names reads back whole; every
   complete line of ``records.jsonl`` parses (a half line may trail after a kill in the
   append, and is reported). After every series: no temporary file is left anywhere, the
   records file holds exactly one record, completed, whole; any half line set aside
   (``records.jsonl.torn``) is a prefix of that record's line; the final epoch's weights and
   optimizer state and the ``model.keras`` weights hash to the reference's; the record equals
   the reference's except for times and dates.
4. Writes ``README.md``, ``kills.csv`` and ``summary.json`` (atomically) to ``--report``
   (default ``runs/reliability``; ``--report results/reliability`` for the committed one): the
   machine, backend and versions, each attempt, and the kills survived, by kind. Exit status 0
   only if every check passed.

Runtime: 238 s for the default 20 random and 6 injected kills (36 starts of the command) on 2
x86_64 CPU cores with nothing else running (619 s with other jobs on them), TensorFlow 2.21
CPU, Keras 3.15.1 (each start pays TensorFlow's start-up, about 10 s). The CI test runs 3
kills in about 2 minutes.

    python scripts/kill_resume.py --data-dir .data
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import io
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from keras_cnns import storage
from keras_cnns.lab import writer

# Injected kills: the fault hook, and at which event of the process it strikes (``remaining``
# is the number of epochs the process still has to train).
INJECTED = {
    "mid-epoch": "after a training batch (train-batch)",
    "weights-write": "halfway through an epoch's weights + optimizer file (checkpoint-write)",
    "model-write": "halfway through the final model.keras (checkpoint-write)",
    "state-write": "halfway through an epoch's state.json (file-write)",
    "final-state-write": "halfway through the final, completed state.json (file-write)",
    "record-write": "halfway through appending the record line (record-write)",
}
# Kinds that strike at the end of a run: the last kill of a series.
END_KINDS = ("model-write", "final-state-write", "record-write")
VOLATILE = ("wall_time", "started", "finished")  # record fields that hold times and dates
HELLO = re.compile(r"^keras-cnns: \S+: .*; (starting|resuming after epoch \d+)\s*$")


@dataclass
class Attempt:
    """One start of the training command."""

    series: int
    attempt: int
    kind: str  # "random", an INJECTED kind, or "none" (left to finish)
    fault: str = ""
    delay: float | None = None  # random kills: seconds after the start line
    outcome: str = ""  # "killed", "completed", "finished before the kill"
    epochs_before: int = 0
    epochs_after: int = 0
    landed: str = ""  # what the kill interrupted, as seen on disk afterwards
    temp_files_left: int = 0
    torn_record: bool = False
    seconds: float = 0.0


@dataclass
class Summary:
    passed: bool = False
    failure: str = ""
    attempts: list = field(default_factory=list)


class CheckFailed(Exception):
    pass


# --- running the command ------------------------------------------------------------------------


def train_command(args, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "keras_cnns.cli", "train", "lenet5_modern", "--dataset", "mnist",
        "--epochs", str(args.epochs), "--train-subset", str(args.train_subset),
        "--test-subset", "256", "--batch-size", "32",
        "--set", "val_size=256", "--set", "preprocess=lenet", "--set", "optimizer=adam",
        "--set", "learning_rate=0.001", "--set", "augment=translate",
        "--set", "deterministic=true", "--set", f"seed={args.seed}",
        "--data-dir", str(args.data_dir), "--out", str(out),
    ]  # fmt: skip


def run_once(args, out: Path, *, fault: str = "", kill_after: float | None = None, log=None):
    """Start the command; SIGKILL it ``kill_after`` s after its start line (if still running).

    Returns:
        ``(returncode, seconds from the start line to the end or the kill, output)``.
    """
    env = dict(
        os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"
    )
    if not args.gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop(storage.FAULT_ENV, None)
    if fault:
        env[storage.FAULT_ENV] = fault
    proc = subprocess.Popen(
        train_command(args, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # Not the repository: ``python -m`` puts the working directory first on sys.path, and a
        # PYTHONPATH snapshot of keras_cnns must win over the checkout being edited.
        cwd=out.parent,
    )
    hello = threading.Event()
    lines: list[str] = []
    hello_at = [None]

    def read():
        for line in proc.stdout:
            lines.append(line)
            if hello_at[0] is None and HELLO.match(line.strip()):
                hello_at[0] = time.perf_counter()
                hello.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.perf_counter() + args.timeout
    if kill_after is not None:
        while not hello.is_set() and proc.poll() is None and time.perf_counter() < deadline:
            hello.wait(0.05)
        if hello.is_set():
            time.sleep(max(0.0, hello_at[0] + kill_after - time.perf_counter()))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
    try:
        proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise CheckFailed(
            f"the command ran past {args.timeout} s:\n{''.join(lines[-20:])}"
        ) from None
    reader.join(timeout=10)
    end = time.perf_counter()
    seconds = end - hello_at[0] if hello_at[0] is not None else math.nan
    output = "".join(lines)
    if log is not None:
        log.write(output)
    return proc.returncode, seconds, output


# --- what is on disk ------------------------------------------------------------------------------


def run_dir(out: Path) -> Path | None:
    dirs = sorted((out / "checkpoints").glob("*")) if (out / "checkpoints").is_dir() else []
    return dirs[0] if dirs else None


def h5_digest(source) -> str:
    """sha256 over every dataset (name, dtype, shape, bytes) of an HDF5 file, in name order."""
    import h5py
    import numpy as np

    digest = hashlib.sha256()
    with h5py.File(source, "r") as f:
        names: list[str] = []
        f.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        for name in sorted(names):
            array = np.ascontiguousarray(f[name][()])
            digest.update(f"{name}|{array.dtype}|{array.shape}|".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def keras_digest(path: Path) -> str:
    """``h5_digest`` of the weights inside a ``.keras`` archive (its other members hold dates)."""
    with zipfile.ZipFile(path) as archive:
        if archive.testzip() is not None:
            raise CheckFailed(f"{path}: a member fails its CRC")
        return h5_digest(io.BytesIO(archive.read("model.weights.h5")))


def temp_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if storage.is_temp_file(p.name))


def inspect(out: Path) -> dict:
    """Check what a killed run left: whole state, whole named checkpoint, parseable records."""
    seen = {"epochs_done": 0, "status": None, "torn": False, "records": 0}
    directory = run_dir(out)
    if directory is not None and (directory / "state.json").is_file():
        try:
            state = json.loads((directory / "state.json").read_text())
        except ValueError as err:
            raise CheckFailed(f"{directory / 'state.json'} is damaged: {err}") from None
        seen["epochs_done"], seen["status"] = state["epochs_done"], state["status"]
        for name, digest in (state.get("checksums") or {}).items():
            if hashlib.sha256((directory / name).read_bytes()).hexdigest() != digest:
                raise CheckFailed(f"{name} does not match the sha256 state.json recorded for it")
        if state["checkpoint"] is not None:
            try:
                h5_digest(directory / state["checkpoint"])
            except (OSError, KeyError) as err:
                raise CheckFailed(
                    f"checkpoint {state['checkpoint']} named by state.json is damaged: {err}"
                ) from None
        if state["status"] == "completed":
            keras_digest(directory / "model.keras")
    path = out / "records.jsonl"
    if path.is_file():
        data = path.read_bytes()
        lines = data.split(b"\n")
        seen["torn"] = lines[-1] != b""
        for number, line in enumerate(lines[:-1], start=1):
            try:
                json.loads(line)
            except ValueError:
                raise CheckFailed(f"{path}:{number} is damaged") from None
        seen["records"] = len(lines) - 1
    return seen


def final_checks(out: Path, reference: dict, epochs: int) -> None:
    """Everything a finished series must show (see the module docstring, step 3)."""
    left = temp_files(out)
    if left:
        raise CheckFailed(f"temporary files left behind: {', '.join(str(p) for p in left)}")
    path = out / "records.jsonl"
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        raise CheckFailed(f"{path} ends in a half line")
    lines = data.splitlines()
    found = storage.read_records(path)  # every line parses
    if len(found) != 1 or found[0]["status"] != "completed":
        raise CheckFailed(f"{path} holds {len(found)} records, expected exactly one completed one")
    torn = path.with_name(path.name + storage.TORN_SUFFIX)
    if torn.is_file():
        for piece in torn.read_bytes().splitlines():
            if not lines[0].startswith(piece):
                raise CheckFailed(
                    f"{torn} holds a half record that is not part of the final record"
                )
    directory = run_dir(out)
    weights = h5_digest(directory / f"epoch-{epochs:04d}.weights.h5")
    model = keras_digest(directory / "model.keras")
    if (weights, model) != (reference["weights"], reference["model"]):
        raise CheckFailed("the final weights differ from the uninterrupted run's")
    if strip_times(found[0]) != strip_times(reference["record"]):
        a, b = strip_times(found[0]), strip_times(reference["record"])
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise CheckFailed(f"the record differs from the uninterrupted run's in: {', '.join(keys)}")


def strip_times(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    out["history"] = [{k: v for k, v in h.items() if k != "time"} for h in record["history"]]
    return out


# --- the plan -------------------------------------------------------------------------------------


def fault_for(
    kind: str, before: dict, *, epochs: int, steps_per_epoch: int, rng: random.Random
) -> str | None:
    """The ``KERAS_CNNS_FAULT`` value for an injected kill, or ``None`` if it cannot happen now."""
    remaining = epochs - before["epochs_done"]
    if before["status"] == "completed":  # the next start only appends the record, if missing
        return "record-write:1" if kind == "record-write" and not before["records"] else None
    if kind in ("mid-epoch", "weights-write", "state-write") and remaining == 0:
        return None
    if kind == "mid-epoch":
        # Not the epoch's last batch: that one ends the epoch.
        epoch = rng.randrange(remaining)
        return f"train-batch:{epoch * steps_per_epoch + rng.randrange(1, steps_per_epoch)}"
    if kind == "weights-write":
        return f"checkpoint-write:{rng.randrange(1, remaining + 1)}"
    if kind == "model-write":
        return f"checkpoint-write:{remaining + 1}"
    if kind == "state-write":
        return f"file-write:{rng.randrange(1, remaining + 1)}"
    if kind == "final-state-write":
        return f"file-write:{remaining + 1}"
    if kind == "record-write":
        return "record-write:1"
    raise ValueError(kind)


def landed(seen: dict, left: list[Path], epochs: int) -> str:
    if seen["torn"]:
        return "inside the record append"
    if left:
        return (
            "inside a file write (" + ", ".join(sorted({p.name.split(".")[1] for p in left})) + ")"
        )
    if seen["status"] == "completed":
        return "after the final state, before the record"
    if seen["epochs_done"] == epochs:
        return "after the last epoch (testing / final save)"
    return "during an epoch or between epochs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--random-kills",
        type=int,
        default=20,
        help="external SIGKILLs at random times (default 20)",
    )
    parser.add_argument(
        "--injected", default=",".join(INJECTED),
        help=f"injected kills, comma-separated, repeats allowed (default: one each of {', '.join(INJECTED)})",
    )  # fmt: skip
    parser.add_argument(
        "--kills-per-series",
        type=int,
        default=6,
        help="kills before a series may finish (default 6)",
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-subset", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0, help="the run's seed")
    parser.add_argument(
        "--rng-seed", type=int, default=2024, help="seed of the kill times and points"
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("KERAS_CNNS_DATA_DIR"),
        help="holds mnist.npz (default: $KERAS_CNNS_DATA_DIR)",
    )
    parser.add_argument(
        "--work", default="runs/kill-resume", help="scratch directory for the runs (emptied first)"
    )
    parser.add_argument(
        "--report",
        default="runs/reliability",
        help="where README.md, kills.csv and summary.json go (default: runs/reliability; the "
        "committed summary: results/reliability)",
    )
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument(
        "--gpu", action="store_true", help="let the backend see GPUs (default: CPU only)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one command may take")
    args = parser.parse_args(argv)
    injected = [k.strip() for k in args.injected.split(",") if k.strip()]
    unknown = sorted(set(injected) - set(INJECTED))
    if unknown or args.random_kills < 0 or args.kills_per_series < 1 or not args.data_dir:
        parser.error(
            f"unknown injected kind {unknown[0]!r}" if unknown else "need --data-dir (or $KERAS_CNNS_DATA_DIR), "
            "--random-kills >= 0 and --kills-per-series >= 1"
        )  # fmt: skip
    args.data_dir = Path(args.data_dir).resolve()
    work = Path(args.work).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rng = random.Random(args.rng_seed)
    steps_per_epoch = math.ceil(args.train_subset / 32)
    summary = Summary()
    started = time.perf_counter()
    log = (work / "output.log").open("w")
    reference: dict = {}
    try:
        # 1. The uninterrupted run.
        code, seconds, output = run_once(args, work / "reference", log=log)
        if code != 0 or math.isnan(seconds):
            raise CheckFailed(
                f"the uninterrupted run failed ({code}) or printed no start line:\n{output[-2000:]}"
            )
        ref_dir = run_dir(work / "reference")
        (record,) = storage.read_records(work / "reference" / "records.jsonl")
        reference = {
            "record": record,
            "weights": h5_digest(ref_dir / f"epoch-{args.epochs:04d}.weights.h5"),
            "model": keras_digest(ref_dir / "model.keras"),
            "seconds_after_start_line": seconds,
            "epoch_seconds": sum(h["time"] for h in record["history"]),
        }
        finish_seconds = max(0.5, seconds - reference["epoch_seconds"])
        print(
            f"reference run: {seconds:.1f} s from its start line; test error {record['test']['error']:.2f}%",
            flush=True,
        )

        # 2. The series.
        queue = ["random"] * args.random_kills + injected
        rng.shuffle(queue)
        series = misses = 0
        while queue:
            series += 1
            out = work / f"series-{series:02d}"
            kills = 0
            attempt_no = 0
            deferred: list[str] = []
            # Kinds that strike at the end of the run go last in a series.
            ends = [k for k in queue if k in END_KINDS][:1]
            mine = [k for k in queue if k not in END_KINDS][
                : args.kills_per_series - len(ends)
            ] + ends
            for k in mine:
                queue.remove(k)
            while True:
                attempt_no += 1
                before = (
                    inspect(out)
                    if out.exists()
                    else {"epochs_done": 0, "status": None, "records": 0}
                )
                remaining = args.epochs - before["epochs_done"]
                kind = mine.pop(0) if mine else "none"
                attempt = Attempt(series, attempt_no, kind, epochs_before=before["epochs_done"])
                kill_after = None
                if kind == "random":
                    window = reference["epoch_seconds"] * remaining / args.epochs + finish_seconds
                    kill_after = attempt.delay = rng.uniform(0.0, window)
                elif kind != "none":
                    attempt.fault = (
                        fault_for(
                            kind,
                            before,
                            epochs=args.epochs,
                            steps_per_epoch=steps_per_epoch,
                            rng=rng,
                        )
                        or ""
                    )
                    if not attempt.fault:
                        deferred.append(kind)  # nothing left to train in this series
                        attempt_no -= 1
                        continue
                t0 = time.perf_counter()
                code, _, output = run_once(
                    args, out, fault=attempt.fault, kill_after=kill_after, log=log
                )
                attempt.seconds = time.perf_counter() - t0
                if code == -signal.SIGKILL:
                    attempt.outcome = "killed"
                    seen = inspect(out)
                    left = temp_files(out)
                    attempt.epochs_after = seen["epochs_done"]
                    attempt.temp_files_left = len(left)
                    attempt.torn_record = seen["torn"]
                    attempt.landed = landed(seen, left, args.epochs)
                    kills += 1
                elif code == 0:
                    attempt.outcome = "completed" if kind == "none" else "finished before the kill"
                    if kind != "none" and kind != "random":
                        raise CheckFailed(
                            f"the {kind} fault ({attempt.fault}) never struck:\n{output[-2000:]}"
                        )
                    if kind == "random":
                        queue.append("random")  # not a kill: draw it again later
                        misses += 1
                        if misses > 10 + args.random_kills:
                            raise CheckFailed("random kills keep missing the run: is it too short?")
                    attempt.epochs_after = args.epochs
                else:
                    raise CheckFailed(
                        f"series {series}: the command failed with {code}:\n{output[-3000:]}"
                    )
                summary.attempts.append(attempt)
                print(
                    f"series {series} attempt {attempt_no}: {kind}{' ' + attempt.fault if attempt.fault else ''}"
                    f"{f' at +{attempt.delay:.2f} s' if attempt.delay is not None else ''}: {attempt.outcome}"
                    f"{' ' + attempt.landed if attempt.landed else ''} (epochs {attempt.epochs_before} -> {attempt.epochs_after})",
                    flush=True,
                )  # fmt: skip
                if code == 0:
                    break
            queue = deferred + mine + queue  # what this series had no time for goes to the next
            final_checks(out, reference, args.epochs)
            print(
                f"series {series}: {kills} kill(s) survived; weights, optimizer state and record match",
                flush=True,
            )
        summary.passed = True
    except CheckFailed as err:
        summary.failure = str(err)
        print(f"FAILED: {err}", file=sys.stderr, flush=True)
    finally:
        log.close()
    write_report(args, summary, reference, time.perf_counter() - started)
    return 0 if summary.passed else 1


# --- the report -----------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def source() -> dict:
    """The keras_cnns that ran: a sha256 of its source files, its git revision, and whether any
    file differs from that revision (a run may use a copy, e.g. ``PYTHONPATH=runs/snapshot``,
    so that edits made meanwhile do not reach it)."""
    import keras_cnns

    package = Path(keras_cnns.__file__).resolve().parent
    files = sorted(package.rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(package)}\n".encode())
        digest.update(path.read_bytes())

    def git(*argv: str) -> bytes | None:
        try:
            done = subprocess.run(["git", *argv], cwd=package, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    differs = None
    if head is not None:
        differs = any(
            git("show", f"HEAD:keras_cnns/{path.relative_to(package).as_posix()}")
            != path.read_bytes()
            for path in files
        )
    return {
        "package": package.name,  # the folder, not the path of the machine that ran it
        "sha256": digest.hexdigest(),
        "git": head.decode().strip() if head else None,
        "uncommitted_changes": differs,
    }


def write_report(args, summary: Summary, reference: dict, seconds: float) -> None:
    kills = [a for a in summary.attempts if a.outcome == "killed"]
    by_kind = Counter(a.kind for a in kills)
    random_landed = Counter(a.landed for a in kills if a.kind == "random")
    record = reference.get("record") or {}
    info = {
        "passed": summary.passed,
        "failure": summary.failure,
        "kills_survived": len(kills) if summary.passed else None,
        "kills": len(kills),
        "kills_by_kind": dict(sorted(by_kind.items())),
        "random_kills_landed": dict(sorted(random_landed.items())),
        "random_kills_that_missed": sum(
            a.outcome == "finished before the kill" for a in summary.attempts
        ),
        "series": len({a.series for a in summary.attempts}),
        "starts": len(summary.attempts) + 1,
        "seconds": round(seconds, 1),
        "machine": machine(),
        "device": record.get("device"),
        "backend": record.get("backend"),
        "versions": record.get("versions"),
        "source": source(),
        "reference": {
            "run_id": record.get("run_id"),
            "test": record.get("test"),
            "weights_sha256": reference.get("weights"),
            "model_weights_sha256": reference.get("model"),
        },
        "command": " ".join(train_command(args, Path("OUT"))[1:]).replace(
            str(args.data_dir), "DATA"
        ),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    report = Path(args.report)
    columns = [f.name for f in Attempt.__dataclass_fields__.values()]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for a in summary.attempts:
        row = asdict(a)
        row["delay"] = "" if a.delay is None else f"{a.delay:.3f}"
        row["seconds"] = f"{a.seconds:.1f}"
        writer.writerow(row)
    storage.atomic_write_text(report / "kills.csv", text.getvalue())
    storage.atomic_write_text(report / "summary.json", json.dumps(info, indent=2) + "\n")
    storage.atomic_write_text(report / "README.md", readme(info, kills))
    print(f"wrote {report / 'README.md'}, kills.csv and summary.json", flush=True)


def readme(info: dict, kills: list[Attempt]) -> str:
    m = info["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted((info["versions"] or {}).items()))
    verdict = (
        f"**Passed: {info['kills_survived']} kills survived in a row**, nothing lost"
        if info["passed"]
        else f"**FAILED** after {info['kills']} kill(s): {info['failure'].splitlines()[0] if info['failure'] else ''}"
    )
    lines = [
        "# Kill and resume",
        "",
        "Generated by `python scripts/kill_resume.py`; do not edit. A small real training run is "
        "killed with SIGKILL again and again and re-run with the same command; each series must end "
        "with exactly the weights, optimizer state and record (times aside) of a run that was never "
        "interrupted, with no temporary file or half-written record left. See the script's docstring.",
        "",
        f"{verdict}.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores; {m['os']}; device: {info['device']}",
        f"- Backend: {info['backend']} ({versions})",
        f"- Code: keras_cnns at git {info['source']['git'] or 'unknown'}"
        + (" with uncommitted changes" if info["source"]["uncommitted_changes"] else "")
        + f" (source sha256 {info['source']['sha256'][:12]})",
        f"- Run: `keras-cnns train {info['command'].split(' train ', 1)[-1]}`",
        f"- Reference test error {((info['reference']['test'] or {}).get('error') or math.nan):.2f}%; "
        f"{info['series']} series, {info['starts']} starts of the command, {info['seconds']:.0f} s in all",
        "",
    ]  # fmt: skip
    kills = [["random", "external SIGKILL at a uniformly random time after the run's start line", info["kills_by_kind"].get("random", 0)]]
    kills += [[kind, f"self-inflicted SIGKILL {how}", info["kills_by_kind"].get(kind, 0)] for kind, how in INJECTED.items()]
    lines += writer.table_lines(["kill", "how", "survived"], [*kills, ["**all**", "", f"**{info['kills']}**"]])
    lines += [
        "",
        "Where the random kills landed (as seen on disk afterwards):",
        "",
        *[f"- {where}: {n}" for where, n in info["random_kills_landed"].items()],
        f"- random kills drawn after the run had already finished (not counted, drawn again): {info['random_kills_that_missed']}",
        "",
        "Every attempt is in `kills.csv`; the totals, versions and reference hashes in `summary.json`.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
