"""Running the cases: one worker process per backend (or per compiled step), rows as they come.

``run(plan)`` starts ``python -m keras_cnns.benchmark --worker SPEC.json`` for each group of
cases, reads each case's row as soon as the worker writes it, and rewrites the CSV and the
README after every worker, so a run stopped part way keeps what it measured. ``worker_main``
is the worker's side: it measures its cases (``measure`` for Keras, ``reference`` for
PyTorch) and appends one JSON row per case; a group that fails (out of memory, an unsupported
dtype) is a row with its error, not a crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from keras_cnns.benchmark.cases import (
    CSV_FILE,
    README_FILE,
    REFERENCE,
    Case,
    Plan,
    Sizes,
    case_row,
    gpu_visible,
    row_key,
)
from keras_cnns.benchmark.measure import measure_keras
from keras_cnns.benchmark.reference import Reference, measure_reference
from keras_cnns.benchmark.report import combine_rows, format_table, read_csv, write_outputs


def run(plan: Plan, *, echo=print) -> list[dict]:
    """Measure every case of ``plan`` in worker processes, then write the CSV and the README.

    The outputs are rewritten after each worker, so a run stopped part way keeps what it
    measured.

    Returns:
        The rows written (this run's, plus the kept rows of an earlier run with ``merge``).
    """
    plan.out.mkdir(parents=True, exist_ok=True)
    kept = read_csv(plan.out / CSV_FILE) if plan.merge or plan.report_only else []
    if plan.report_only:
        rows = combine_rows(kept, [])
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
            rows = combine_rows(kept, measured)
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
    if REFERENCE in groups and not gpu_visible():
        # On a CPU each reference runs in the worker of the first backend with its Keras row,
        # taking turns with its rows pass by pass (``measure_in_turns``): the machine's
        # changing load then reaches both alike. (On a GPU the frameworks would compete for
        # its memory.)
        alone = []
        for reference in groups.pop(REFERENCE):
            home = next((g for g in groups.values() if _partner_of(g, reference)), None)
            (alone if home is None else home).append(reference)
        if alone:
            groups[REFERENCE] = alone
    return list(groups.values())


def _partner_of(cases: Sequence[Case], reference: Case) -> Case | None:
    """The first Keras case of ``cases`` that ``reference`` is compared with, or ``None``."""
    return next((c for c in cases if c.backend != REFERENCE and _pair_key(c) == _pair_key(reference)), None)


def _pair_key(case: Case) -> tuple:
    return (case.model, case.precision, case.batch_size, case.augment)


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
                    "in_turns": not gpu_visible(),
                    "result": str(result),
                }
            )
        )
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if backend != REFERENCE:
            env["KERAS_BACKEND"] = backend
        # The folder holding keras_cnns (this file is keras_cnns/benchmark/runner.py), wherever
        # it was imported from.
        root = str(Path(__file__).resolve().parents[2])
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
                    done.add(row_key(row))
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
            yield case_row(case, status=f"error: {failure or 'no result'}")

def _last_line(text: str) -> str:
    lines = [t.strip() for t in text.splitlines() if t.strip()]
    return lines[-1][:300] if lines else "(no output)"

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
    """Measure the cases of a spec file, appending one JSON row per case to its result file.

    On a GPU each compile group is measured alone, one after the other (``measure_keras``,
    ``measure_reference``). On a CPU (``in_turns``) every group of the worker is built first,
    then they take turns pass by pass (``measure_in_turns``).
    """
    spec = json.loads(Path(spec_path).read_text())
    sizes = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["sizes"].items()})
    groups = _compile_groups([Case(**item) for item in spec["cases"]])
    if spec.get("in_turns"):
        _append(spec["result"], measure_in_turns(groups, sizes, isolated=spec["isolated"]))
        return 0
    for group in groups:
        try:
            if group[0].backend == REFERENCE:
                rows = [measure_reference(group[0], sizes, isolated=spec["isolated"])]
            else:
                rows = measure_keras(group, sizes, isolated=spec["isolated"])
        except Exception as err:  # a group failing (out of memory, unsupported dtype) is a row
            rows = _error_rows(group, err)
        _append(spec["result"], rows)
    return 0


def measure_in_turns(groups: Sequence[Sequence[Case]], sizes: Sizes, *, isolated: bool) -> list[dict]:
    """Build every compile group (``EngineStep``, or ``Reference`` for a plain-PyTorch case),
    then let them take turns: in each round every group trains one pass of each of its modes.

    A drift of the machine's speed during the run (a shared CPU's other tenants) then reaches
    every row alike, so the ratios between rows (augmentation against none, a Keras row against
    its PyTorch reference) stay fair. A group that fails, when built or in a round, becomes
    rows with its error and leaves the others running.
    """
    from keras_cnns.benchmark.measure import EngineStep

    failed: dict[int, list[dict]] = {}
    timers: dict[int, Any] = {}
    fresh = True  # the first Keras step starts a fresh session; the later ones keep it
    for i, group in enumerate(groups):
        try:
            if group[0].backend == REFERENCE:
                timers[i] = Reference(group[0], sizes, isolated=isolated)
            else:
                timers[i] = EngineStep(group, sizes, isolated=isolated, fresh_session=fresh)
                fresh = False
        except Exception as err:
            failed[i] = _error_rows(group, err)
    for _ in range(sizes.warmup + sizes.repeats):
        for i, timer in list(timers.items()):
            try:
                timer.take_turn()
            except Exception as err:
                failed[i] = _error_rows(groups[i], err)
                del timers[i]
    rows = {**failed, **{i: timer.rows() for i, timer in timers.items()}}
    return [row for i in sorted(rows) for row in rows[i]]


def _error_rows(group: Sequence[Case], err: Exception) -> list[dict]:
    message = " ".join(str(err).split())[:300]
    return [case_row(case, status=f"error: {type(err).__name__}: {message}") for case in group]


def _append(path: str, rows: list[dict]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))


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
