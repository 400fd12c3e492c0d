"""Reliability: kill and resume, concurrent writers, damaged inputs, divergence,
determinism.

The kill-and-resume test runs ``scripts/kill_resume.py`` itself with three kills (about a
minute and a half on two CPU cores); ``python scripts/kill_resume.py`` with its defaults is
the full check whose summary lives in ``results/reliability/``.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_cnns import storage, training
from keras_cnns.cli import main
from keras_cnns.errors import DataError, DivergedError, UserError
from keras_cnns.lab import report, runs
from keras_cnns.registry import get_entry
from keras_cnns.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
KILL_SCRIPT = REPO / "scripts" / "kill_resume.py"


def _mnist(**changes) -> TrainConfig:
    """LeNet-5 (modern) on a tiny MNIST subset: about a second an epoch on a CPU."""
    return TrainConfig(
        **{
            "model": "lenet5_modern",
            "dataset": "mnist",
            "preprocess": "lenet",
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "epochs": 2,
            "batch_size": 64,
            "val_size": 64,
            "train_subset": 256,
            "test_subset": 64,
            **changes,
        }
    )


def _without_times(record: dict) -> dict:
    """A record less what may differ between identical runs: times and dates."""
    out = {k: v for k, v in record.items() if k not in ("wall_time", "started", "finished")}
    out["history"] = [{k: v for k, v in h.items() if k != "time"} for h in record["history"]]
    return out


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {text!r}"
    assert "Traceback" not in text
    return lines[0]


# --- kill and resume ----------------------------------------------------------------------------


def _load_kill_script():
    spec = importlib.util.spec_from_file_location("kill_resume", KILL_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_kill_and_resume_script_survives_random_and_injected_kills(tmp_path, data_dir):
    work, report = tmp_path / "work", tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(KILL_SCRIPT), "--random-kills", "1", "--injected", "weights-write,record-write",
         "--kills-per-series", "3", "--epochs", "2", "--train-subset", "512", "--data-dir", str(data_dir),
         "--work", str(work), "--report", str(report)],
        capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != storage.FAULT_ENV},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((report / "summary.json").read_text())
    assert summary["passed"] and summary["kills"] == summary["kills_survived"] == 3
    assert summary["kills_by_kind"] == {"random": 1, "record-write": 1, "weights-write": 1}
    assert summary["backend"] == "tensorflow" and summary["device"] == "cpu"
    assert "Passed: 3 kills survived in a row" in (report / "README.md").read_text()
    attempts = list(csv.DictReader(io.StringIO((report / "kills.csv").read_text())))
    killed = [a for a in attempts if a["outcome"] == "killed"]
    assert len(killed) == 3
    assert any(a["torn_record"] == "True" for a in killed)  # the record-write kill left half a line
    assert any(a["temp_files_left"] != "0" for a in killed)  # the weights-write kill a temp file

    # The script's final checks bite: a changed weight file, a leftover temp file or a second
    # record each fail them.
    script = _load_kill_script()
    reference_dir = script.run_dir(work / "reference")
    (record,) = storage.read_records(work / "reference" / "records.jsonl")
    reference = {
        "record": record,
        "weights": script.h5_digest(reference_dir / "epoch-0002.weights.h5"),
        "model": script.keras_digest(reference_dir / "model.keras"),
    }
    series = sorted(work.glob("series-*"))[-1]
    script.final_checks(series, reference, 2)
    with pytest.raises(script.CheckFailed, match="weights differ"):
        script.final_checks(series, {**reference, "weights": "0" * 64}, 2)
    with pytest.raises(script.CheckFailed, match="record differs"):
        changed = {**record, "test": {**record["test"], "loss": record["test"]["loss"] + 1e-7}}
        script.final_checks(series, {**reference, "record": changed}, 2)
    temp = series / "checkpoints" / ".epoch-0002.1.tmp.weights.h5"
    temp.write_bytes(b"half")
    with pytest.raises(script.CheckFailed, match="temporary files"):
        script.final_checks(series, reference, 2)
    temp.unlink()
    storage.append_record(series / "records.jsonl", record)
    with pytest.raises(script.CheckFailed, match="holds 2 records"):
        script.final_checks(series, reference, 2)


# --- the fault hook and the records file --------------------------------------------------------


@pytest.fixture
def faults(monkeypatch):
    """Set ``KERAS_CNNS_FAULT`` for one test, with the per-process event counts reset."""
    monkeypatch.setattr(storage, "_fault_counts", {})

    def arm(spec: str) -> None:
        monkeypatch.setenv(storage.FAULT_ENV, spec)
        storage._fault_counts.clear()

    return arm


@pytest.mark.smoke
def test_a_record_append_killed_halfway_is_set_aside_not_lost(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    storage.append_record(path, {"run_id": "a"})
    before = path.read_bytes()
    child = (
        "import sys\nfrom keras_cnns import storage\n"
        "storage.append_record(sys.argv[1], {'run_id': 'b', 'pad': 'x' * 5000})\n"
    )
    env = dict(os.environ, **{storage.FAULT_ENV: "record-write:1"})
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)], env=env, timeout=60, capture_output=True
    )
    assert done.returncode == -9  # SIGKILLed by the hook, halfway through the line
    torn = path.read_bytes()[len(before) :]
    assert torn and not torn.endswith(b"\n")
    with pytest.raises(DataError, match=rf"{path}:2: incomplete last record"):
        storage.read_records(path)

    storage.append_record(path, {"run_id": "c"})
    assert [r["run_id"] for r in storage.read_records(path)] == ["a", "c"]
    assert (tmp_path / "records.jsonl.torn").read_bytes() == torn + b"\n"  # kept, not dropped
    message = _one_line(capsys.readouterr().err)
    assert f"{path}:2: an incomplete record" in message and "records.jsonl.torn" in message

    # A last line that is whole but lacks its newline (edited by hand) is kept as it is.
    with path.open("ab") as f:
        f.write(b'{"run_id": "d"}')
    storage.append_record(path, {"run_id": "e"})
    assert [r["run_id"] for r in storage.read_records(path)] == ["a", "c", "d", "e"]


@pytest.mark.smoke
def test_a_full_disk_leaves_records_and_files_as_they_were(tmp_path, faults):
    path = tmp_path / "records.jsonl"
    storage.append_record(path, {"run_id": "a"})
    table = tmp_path / "table.md"
    storage.atomic_write_text(table, "old\n")
    before = path.read_bytes()

    faults("record-write:1:enospc")
    for _ in range(2):  # a full disk stays full
        with pytest.raises(OSError, match="No space left") as info:
            storage.append_record(path, {"run_id": "b", "pad": "x" * 10000})
        assert info.value.filename == str(path)
        assert path.read_bytes() == before  # cut back to where the append began

    faults("file-write:1:enospc")
    with pytest.raises(OSError, match="No space left") as info:
        storage.atomic_write_text(table, "new\n")
    assert info.value.filename == str(table)
    assert table.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "records.jsonl",
        "table.md",
    ]  # no temp file


@pytest.mark.smoke
def test_a_bad_fault_spec_is_one_line_naming_the_variable(faults):
    faults("checkpoint-write:zero")
    with pytest.raises(UserError, match=storage.FAULT_ENV):
        storage.fault_point("checkpoint-write")


# --- concurrent writers -------------------------------------------------------------------------

EXPERIMENT = "plain-vs-residual"
WRITERS, PER_WRITER = 4, 4


def _record(writer: int, i: int) -> dict:
    errors = (80.0 - writer, 60.0 - i)
    return {
        "run_id": f"run-{writer}-{i}",
        "status": "completed",
        "tags": {
            "experiment": EXPERIMENT, "preset": "smoke", "variant": ("plain20", "resnet20")[writer % 2],
            "dataset": "cifar10", "seed": 10 * writer + i, "phase": "main", "overrides": [],
        },
        "config": {"dataset": "cifar10", "epochs": 2, "seed": 10 * writer + i},
        "model": "resnet20_cifar",
        "model_revision": get_entry("resnet20_cifar").revision,  # the current net's runs
        "params": 1000,
        "dataset": {"name": "cifar10", "source": "archive:/x.npz", "n_train": 256, "n_val": 64, "n_test": 64},
        "history": [
            {"epoch": e + 1, "loss": 1.0, "accuracy": 1 - t / 100, "val_loss": 1.0, "val_accuracy": 1 - t / 100,
             "lr": 0.1, "time": 1.0}
            for e, t in enumerate(errors)
        ],
        "test": {"loss": 1.0, "accuracy": 0.5, "error": 40.0 + writer + i / 10},
        "selected_epoch": 2, "wall_time": 2.0, "device": "cpu", "backend": "tensorflow",
        "versions": {"keras": "3"}, "precision": "float32", "seed": 10 * writer + i,
        "pad": "x" * (30000 + writer),  # long lines: a torn or interleaved write would show
    }  # fmt: skip


def _write_and_report(out: str, writer: int) -> None:
    for i in range(PER_WRITER):
        storage.append_record(Path(out) / EXPERIMENT / "records.jsonl", _record(writer, i))
        report.write_report(EXPERIMENT, out)
        report.write_index(out)


def _watch_tables(out: str, stop, seen) -> None:
    """Read the tables while they are rewritten: each read must be a whole file, never older."""
    csv_path = Path(out) / EXPERIMENT / report.CSV_FILE
    readme = Path(out) / EXPERIMENT / report.REPORT_FILE
    last = 0
    while not stop.is_set():
        time.sleep(0.02)  # leave the CPU to the writers
        if not csv_path.is_file():
            continue
        rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
        assert all(len(r) == len(runs.RUN_COLUMNS) and None not in r.values() for r in rows)
        assert len(rows) >= last, f"a table went back from {last} runs to {len(rows)}"
        last = len(rows)
        if readme.is_file():  # the first report writes it after the CSV
            text = readme.read_text()
            assert text.startswith("# ") and "## Preset `smoke`" in text
        seen.value = max(seen.value, last)


def test_concurrent_writers_keep_every_record_and_consistent_tables(tmp_path):
    # Imported once here rather than in each forked writer.
    import matplotlib.backends.backend_agg  # noqa: F401
    import pandas  # noqa: F401

    ctx = multiprocessing.get_context("fork")
    out = str(tmp_path / "results")
    stop, seen = ctx.Event(), ctx.Value("i", 0)
    watcher = ctx.Process(target=_watch_tables, args=(out, stop, seen))
    watcher.start()
    writers = [ctx.Process(target=_write_and_report, args=(out, w)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(timeout=300)
        assert p.exitcode == 0
    stop.set()
    watcher.join(timeout=60)
    assert watcher.exitcode == 0  # every read saw whole tables that never went back in time
    assert seen.value > 0

    exp_dir = Path(out) / EXPERIMENT
    got = storage.read_records(exp_dir / "records.jsonl")  # every line whole
    assert sorted(r["run_id"] for r in got) == sorted(
        f"run-{w}-{i}" for w in range(WRITERS) for i in range(PER_WRITER)
    )
    assert all(
        r == _record(int(r["run_id"].split("-")[1]), int(r["run_id"].split("-")[2])) for r in got
    )
    # The tables on disk are what the final records give, regenerated from scratch elsewhere.
    fresh = tmp_path / "fresh"
    (fresh / EXPERIMENT).mkdir(parents=True)
    shutil.copy(exp_dir / "records.jsonl", fresh / EXPERIMENT / "records.jsonl")
    report.write_report(EXPERIMENT, fresh)
    report.write_index(fresh)
    for name in (report.CSV_FILE, report.REPORT_FILE):
        assert (exp_dir / name).read_text() == (fresh / EXPERIMENT / name).read_text(), name
    assert (Path(out) / report.INDEX_FILE).read_text() == (fresh / report.INDEX_FILE).read_text()
    assert len(list(csv.DictReader(io.StringIO((exp_dir / report.CSV_FILE).read_text())))) == len(
        got
    )
    leftovers = [
        p for p in Path(out).rglob("*") if storage.is_temp_file(p.name) or p.suffix == ".torn"
    ]
    assert leftovers == []


# --- damaged checkpoints ------------------------------------------------------------------------


class _Interrupt(Exception):
    pass


class _StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt()


DAMAGE_CONFIG = _mnist(epochs=2)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, data_dir):
    """An interrupted run (1 of 2 epochs done) and a completed one of ``DAMAGE_CONFIG``."""
    base = tmp_path_factory.mktemp("runs")
    with pytest.raises(_Interrupt):
        training.train(DAMAGE_CONFIG, out_dir=base / "interrupted", data_dir=data_dir, verbose=0,
                       callbacks=[_StopAtEpoch(1)])  # fmt: skip
    training.train(DAMAGE_CONFIG, out_dir=base / "completed", data_dir=data_dir, verbose=0)
    return base


def _copy_run(trained_runs: Path, which: str, tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / which
    shutil.copytree(trained_runs / which, out)
    return out, out / "checkpoints" / DAMAGE_CONFIG.run_id()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def _edit_state(change):
    def damage(path: Path) -> None:
        state = json.loads(path.read_text())
        change(state)
        path.write_text(json.dumps(state))

    return damage


_DAMAGES = {
    "weights cut short": ("epoch-0001.weights.h5", _truncate, "damaged checkpoint"),
    "weights bytes changed": ("epoch-0001.weights.h5", _flip_middle, "sha256 differs"),
    "weights cut, state without checksums": (
        "epoch-0001.weights.h5", _truncate, "damaged checkpoint", _edit_state(lambda s: s.pop("checksums"))
    ),
    "state cut short": ("state.json", _truncate, "damaged checkpoint state"),
    "state not text": ("state.json", lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "damaged checkpoint state"),
    "state inconsistent": ("state.json", _edit_state(lambda s: s.update(epochs_done=2)), "damaged checkpoint state"),
    "state names a path": (
        "state.json", _edit_state(lambda s: s.update(checkpoint="../../x.h5")), "damaged checkpoint state"
    ),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(_DAMAGES))
def test_a_damaged_checkpoint_is_one_line_naming_it_and_is_not_overwritten(
    trained_runs, tmp_path, data_dir, damage
):
    name, hurt, message, *extra = _DAMAGES[damage]
    out, run_dir = _copy_run(trained_runs, "interrupted", tmp_path)
    for also in extra:
        also(run_dir / "state.json")
    hurt(run_dir / name)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(UserError) as info:
        training.train(DAMAGE_CONFIG, out_dir=out, data_dir=data_dir, verbose=0)
    text = _one_line(str(info.value))
    assert message in text and str(run_dir / name) in text
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing overwritten
    assert not (out / "records.jsonl").exists()


@pytest.mark.parametrize("hurt", [_truncate, _flip_middle], ids=["cut short", "bytes changed"])
def test_a_damaged_final_model_is_reported_on_the_next_run(trained_runs, tmp_path, data_dir, hurt):
    out, run_dir = _copy_run(trained_runs, "completed", tmp_path)
    hurt(run_dir / "model.keras")
    before = (out / "records.jsonl").read_bytes()
    with pytest.raises(UserError, match="damaged final model") as info:
        training.train(DAMAGE_CONFIG, out_dir=out, data_dir=data_dir, verbose=0)
    assert str(run_dir / "model.keras") in _one_line(str(info.value))
    assert (out / "records.jsonl").read_bytes() == before


def test_a_resumed_run_cleans_up_a_killed_writers_temp_files(
    trained_runs, tmp_path, data_dir, capsys
):
    out, run_dir = _copy_run(trained_runs, "interrupted", tmp_path)
    (run_dir / ".epoch-0002.4242.tmp.weights.h5").write_bytes(b"half a checkpoint")
    (run_dir / ".state.json.x1y2z3.part").write_bytes(b'{"run_id": ')
    record = training.train(DAMAGE_CONFIG, out_dir=out, data_dir=data_dir, verbose=1)
    assert record.status == "completed"
    assert "removed 2 partly written file(s)" in capsys.readouterr().out
    assert not [p for p in run_dir.iterdir() if storage.is_temp_file(p.name)]
    assert json.loads((run_dir / "state.json").read_text())["status"] == "completed"
    # The final model and every checkpoint the state names carry their sha256.
    state = json.loads((run_dir / "state.json").read_text())
    assert set(state["checksums"]) == {"epoch-0002.weights.h5", "model.keras"}
    assert state["checksums"]["model.keras"] == training.checkpoints._sha256(run_dir / "model.keras")


def test_a_run_killed_while_appending_its_record_appends_it_once(
    trained_runs, tmp_path, data_dir, capsys
):
    out, _ = _copy_run(trained_runs, "completed", tmp_path)
    path = out / "records.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # as a kill inside the append leaves it
    record = training.train(DAMAGE_CONFIG, out_dir=out, data_dir=data_dir, verbose=0)
    assert path.read_bytes() == whole and storage.read_records(path) == [record.to_json()]
    assert "an incomplete record" in capsys.readouterr().err
    training.train(DAMAGE_CONFIG, out_dir=out, data_dir=data_dir, verbose=0)
    assert path.read_bytes() == whole  # and once only


# --- divergence ---------------------------------------------------------------------------------

_LR100_FLAGS = [
    "train", "lenet5_modern", "--dataset", "mnist", "--epochs", "3", "--train-subset", "256",
    "--test-subset", "64", "--batch-size", "64", "--set", "val_size=64", "--set", "preprocess=lenet",
    "--set", "optimizer=sgd", "--set", "learning_rate=100", "--set", "warmup_epochs=1",
    "--set", "warmup_lr=0.01", "--set", "model_kwargs.activation=relu", "--quiet",
]  # fmt: skip


def _check_diverged_run(out: Path, config: TrainConfig, *, epoch: int) -> dict:
    """The diverged record, the last good checkpoint kept (finite), the state not advanced."""
    (record,) = storage.read_records(out / "records.jsonl")
    assert record["status"] == "diverged" and record["test"] is None
    assert record["divergence"]["epoch"] == epoch
    last = record["history"][epoch - 1]
    assert None in (last["loss"], last["val_loss"])  # the non-finite loss, as JSON null
    run_dir = out / "checkpoints" / config.run_id()
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["status"], state["epochs_done"]) == ("running", epoch - 1)
    import h5py

    with h5py.File(run_dir / state["checkpoint"], "r") as f:
        arrays = []
        f.visititems(
            lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    assert arrays and all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")
    assert (
        training.checkpoints._sha256(run_dir / state["checkpoint"]) == state["checksums"][state["checkpoint"]]
    )
    return record


def _tags(variant: str) -> dict:
    return {"experiment": "lenet5-mnist", "preset": "smoke", "variant": variant, "dataset": "mnist",
            "seed": 0, "phase": "main", "overrides": []}  # fmt: skip


def test_learning_rate_100_stops_keeps_the_last_good_epoch_and_exits_4(tmp_path, data_dir, capsys):
    # Epoch 1 warms up at 0.01; at 100 the ReLU net's loss overflows in epoch 2.
    rc = main([*_LR100_FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "cli")])
    assert rc == 4
    line = _one_line(capsys.readouterr().err)
    assert (
        line.startswith("keras-cnns: diverged:")
        and "epoch 2" in line
        and "last good checkpoint: epoch 1" in line
    )
    (record,) = storage.read_records(tmp_path / "cli" / "records.jsonl")
    config = TrainConfig.from_dict(record["config"])
    assert (config.learning_rate, config.warmup_lr, config.epochs) == (100.0, 0.01, 3)
    _check_diverged_run(tmp_path / "cli", config, epoch=2)

    # The same run inside an experiment: marked diverged in the tables, not averaged in.
    exp = tmp_path / "results" / "lenet5-mnist"
    with pytest.raises(DivergedError) as info:
        training.train(
            config, out_dir=exp, data_dir=data_dir, tags=_tags("lenet5_modern"), verbose=0
        )
    assert info.value.exit_code == 4
    _check_diverged_run(exp, config, epoch=2)
    training.train(
        _mnist(model="lenet5"), out_dir=exp, data_dir=data_dir, tags=_tags("lenet5"), verbose=0
    )
    report.write_report("lenet5-mnist", tmp_path / "results")
    text = (exp / report.REPORT_FILE).read_text()
    diverged = text.split("Diverged runs (not averaged in):")[1]
    assert "| lenet5_modern | mnist | main | 0 | 2 |" in diverged
    table = text.split("Diverged runs")[0]
    assert "| lenet5 | mnist |" in table and "| lenet5_modern | mnist |" not in table
    rows = {
        r["variant"]: r for r in csv.DictReader(io.StringIO((exp / report.CSV_FILE).read_text()))
    }
    assert rows["lenet5_modern"]["status"] == "diverged" and rows["lenet5_modern"]["value"] == ""
    assert rows["lenet5"]["status"] == "completed" and math.isfinite(float(rows["lenet5"]["value"]))


class _GrowFirstKernel(keras.callbacks.Callback):
    """Multiplies the first convolution's kernel by ``factor`` as epoch 2 begins (as a too-large
    step would): activations of about 1e5 to 1e7, beyond float16's 65,504, fine in float32."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = next(v for v in self.model.trainable_variables if len(v.shape) == 4)
            kernel.assign(kernel * self.factor)


def test_float16_overflow_stops_under_mixed_float16_and_float32_survives_it(tmp_path, data_dir):
    relu = {"model_kwargs": {"activation": "relu"}, "epochs": 3}
    config = _mnist(precision="mixed_float16", **relu)
    with pytest.raises(DivergedError, match="non-finite loss in epoch 2") as info:
        training.train(
            config,
            out_dir=tmp_path / "fp16",
            data_dir=data_dir,
            verbose=0,
            callbacks=[_GrowFirstKernel(1e5)],
        )
    assert info.value.exit_code == 4
    record = _check_diverged_run(tmp_path / "fp16", config, epoch=2)
    assert record["precision"] == "mixed_float16"
    # The control: the same weights in float32 give a huge but finite loss, and the run ends.
    control = training.train(
        _mnist(precision="float32", **relu), out_dir=tmp_path / "fp32", data_dir=data_dir, verbose=0,
        callbacks=[_GrowFirstKernel(1e5)],
    )  # fmt: skip
    losses = [h.loss for h in control.history]
    assert control.status == "completed" and all(math.isfinite(v) for v in losses)
    assert max(losses) > 100 * losses[0]  # the grown kernel did blow the loss up


# --- determinism --------------------------------------------------------------------------------


def test_the_same_seed_on_cpu_gives_identical_records_apart_from_times(tmp_path, data_dir):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            pytest.skip("a CPU check (see the README's 'Determinism and reliability')")
    # Augmentation and dropout draw from seed generators; the split, subsets and order too.
    config = _mnist(
        augment=("translate",), deterministic=True, seed=7, model_kwargs={"dropout": 0.25}
    )
    first = training.train(config, out_dir=tmp_path / "a", data_dir=data_dir, verbose=0)
    second = training.train(config, out_dir=tmp_path / "b", data_dir=data_dir, verbose=0)
    assert _without_times(first.to_json()) == _without_times(second.to_json())
