"""The reproductions: every preset validates, the runner resumes, every smoke preset runs.

The smoke runs train on real data subsets (the ``data_dir`` fixture) and dominate this
file's time; only LeNet-5's is marked ``smoke`` (it also runs on JAX and PyTorch in CI).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

import keras_cnns
from keras_cnns import cli
from keras_cnns.errors import DivergedError
from keras_cnns.lab import experiments, report, runner
from keras_cnns.lab.experiments import PRESETS, REQUIRED_PRESETS, get_experiment, list_experiments
from keras_cnns.lab.runner import plan_runs, plan_sweep
from keras_cnns.registry import get_entry
from keras_cnns.storage import append_record, read_records
from keras_cnns.training.record import RunRecord

NAMES = list_experiments()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# What a smoke, cpu or quick preset may change in a paper config: it shrinks the run (schedule,
# data, epochs, a stop at the measured training-error target) but keeps the recipe. The exceptions are stated deviations in their modules
# (stochastic-depth: ResNet-20 for smoke, ResNet-56 for cpu).
SHRINKING = {
    "epochs", "lr_boundaries", "schedule", "train_subset", "test_subset", "val_size", "allow_sample",
    "stop_at_train_error",
}  # fmt: skip
STATED_EXCEPTIONS = {
    ("stochastic-depth", "smoke"): {"model"},
    ("stochastic-depth", "cpu"): {"model", "augment"},  # no augmentation: see its deviations
    # Each variant trains until its own validation error stops improving (plateau, early
    # stopping on the validation error) and is tested at its best validation epoch.
    ("dropout-cifar", "cpu"): {"plateau_patience", "early_stopping_patience", "monitor", "select"},
    ("dropout-cifar", "smoke"): {"preprocess", "plateau_patience", "early_stopping_patience", "monitor", "select"},
    ("resnet50-imagenet", "smoke"): {"image_size"},  # 32x32 crops: a CPU pipeline check
}


@pytest.mark.smoke
@pytest.mark.parametrize("name", NAMES)
def test_every_preset_of_every_experiment_validates(name):
    experiment = get_experiment(name)
    assert experiment.name == name
    assert tuple(experiment.presets) == tuple(p for p in PRESETS if p in experiment.presets)
    assert set(REQUIRED_PRESETS) <= set(experiment.presets)
    for preset_name in experiment.presets:
        preset = experiment.preset(preset_name)
        runs = plan_runs(experiment, preset_name, seeds=2)
        assert len(runs) == len(preset.configs) * len(preset.datasets) * 2
        assert len({r.run_id for r in runs}) == len(runs)  # seeds and variants give distinct runs
        for run in [*runs, *plan_sweep(experiment, preset_name)]:
            # The builder takes every model option (checked without building the model).
            accepted = inspect.signature(get_entry(run.config.model).builder).parameters
            assert set(dict(run.config.model_kwargs)) <= set(accepted), run.config.model
            assert {"experiment", "preset", "variant", "seed", "dataset"} <= set(run.tags)
        # quick and smoke are the paper's configs, shrunk.
        allowed = SHRINKING | STATED_EXCEPTIONS.get((name, preset_name), set())
        for variant, config in preset.configs.items():
            paper = experiment.presets["paper"].configs[variant]
            changed = {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(paper, f.name)}
            assert changed <= allowed, (preset_name, variant, changed - allowed)
    for config in experiment.presets["smoke"].configs.values():
        assert config.train_subset is not None and config.train_subset <= 2048
        assert config.test_subset is not None and config.test_subset <= 1000
        assert config.epochs <= 3
    for variant, numbers in experiment.paper_numbers.items():
        assert set(numbers) <= set(experiment.presets["paper"].datasets), variant


# Experiments without a cpu preset, and why: LeNet-5's paper recipe itself fits on two CPU cores
# (20 passes of MNIST, minutes); ImageNet does not fit in any form.
WITHOUT_CPU = {"lenet5-mnist", "resnet50-imagenet"}


@pytest.mark.smoke
def test_every_cifar_experiment_has_a_cpu_preset_between_smoke_and_paper():
    assert {n for n in NAMES if "cpu" not in get_experiment(n).presets} == WITHOUT_CPU
    for name in set(NAMES) - WITHOUT_CPU:
        experiment = get_experiment(name)
        cpu, smoke = experiment.presets["cpu"], experiment.presets["smoke"]
        for variant, config in cpu.configs.items():
            # More training than the smoke check: at least 10 epochs on 5,000 images or more,
            # 300,000 images seen in all.
            assert config.epochs >= 10, (name, variant)
            assert config.train_subset is None or config.train_subset >= 5_000, (name, variant)
            assert config.epochs * (config.train_subset or 45_000) >= 300_000, (name, variant)
            small = smoke.configs.get(variant, next(iter(smoke.configs.values())))
            assert config.epochs * (config.train_subset or 45_000) > 10 * small.epochs * (
                small.train_subset or 45_000
            )
        assert cpu.deviations, name  # a scaled-down preset says how


@pytest.mark.smoke
def test_dropout_cpu_trains_each_variant_until_its_validation_error_stops_improving():
    experiment = get_experiment("dropout-cifar")
    for preset_name in ("cpu", "smoke"):
        for variant, config in experiment.presets[preset_name].configs.items():
            assert (config.schedule, config.monitor, config.select) == ("plateau", "val_error", "best_val")
            # A cut of the rate gets epochs to improve on the best before the run stops.
            assert config.early_stopping_patience > config.plateau_patience, (preset_name, variant)
            # The baseline without dropout has no max-norm either; the dropout nets have it.
            assert dict(config.model_kwargs)["max_norm"] is (variant != "none")
    cpu = experiment.presets["cpu"]
    for config in cpu.configs.values():
        # About an hour a variant at most: 50 s an epoch of 10,000 images on two cores.
        assert config.epochs * config.train_subset / 10_000 * 50 <= 3600
    assert "not yet measured" in cpu.runtime


@pytest.mark.smoke
def test_relu_vs_tanh_paper_grid_holds_every_rate_the_cpu_sweep_tries():
    presets = get_experiment("relu-vs-tanh").presets
    paper, cpu = presets["paper"].sweep.values, presets["cpu"].sweep.values
    for variant, rates in cpu.items():
        assert set(rates) <= set(paper[variant]), variant
    # The rates the cpu sweep chose (results/relu-vs-tanh, seed 0), each inside the paper grid.
    chosen = {"relu": 0.04, "tanh": 0.04, "relu_cudaconvnet": 0.004, "tanh_cudaconvnet": 0.016}
    for variant, rate in chosen.items():
        grid = paper[variant]
        assert grid == tuple(sorted(set(grid))) and grid[0] < rate < grid[-1], variant
    assert paper["relu"] == (0.005, 0.01, 0.02, 0.04, 0.08)
    assert paper["tanh_cudaconvnet"] == (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032)


@pytest.mark.smoke
@pytest.mark.parametrize("name", NAMES)
def test_module_header_states_claim_and_command_and_each_preset_its_runtime(name):
    module = importlib.import_module(experiments.EXPERIMENTS[name])
    doc = module.__doc__
    for needed in ("Claim:", "Measured:", f"keras-cnns reproduce {name}"):
        assert needed in doc, needed
    source = inspect.getsource(module)
    assert "Deviation from paper" in source
    # One home for a runtime: the preset's field (the report shows it), never a copy in the
    # docstring that can fall behind it.
    assert all(p.runtime.strip() for p in module.EXPERIMENT.presets.values())
    assert "measured 20" not in doc


@pytest.mark.smoke
def test_importing_reproductions_and_reports_does_not_import_keras():
    code = (
        "import sys, keras_cnns.cli, keras_cnns.lab.runner, keras_cnns.lab.report, keras_cnns.lab.tuning\n"
        "import keras_cnns.training.config, keras_cnns.training.record, keras_cnns.data\n"
        f"for n in {NAMES!r}: keras_cnns.lab.experiments.get_experiment(n)\n"
        "keras_cnns.cli.build_parser()\n"
        "assert 'keras' not in sys.modules, 'keras imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.smoke
def test_cli_unknown_experiment_names_the_closest(capsys):
    assert cli.main(["reproduce", "lenet5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean lenet5-mnist" in err


@pytest.mark.smoke
def test_cli_unknown_preset_lists_the_presets(capsys):
    assert cli.main(["reproduce", "relu-vs-tanh", "--preset", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "paper, quick, cpu, smoke" in err


@pytest.mark.smoke
def test_seed_and_unknown_overrides_are_refused_before_training():
    from keras_cnns.errors import UserError

    with pytest.raises(UserError, match="--seeds"):
        runner.run_experiment("lenet5-mnist", overrides=["seed=3"], out_dir="/nonexistent")
    with pytest.raises(UserError, match="unknown config key 'epoch'"):
        runner.run_experiment("lenet5-mnist", overrides=["epoch=3"], out_dir="/nonexistent")
    with pytest.raises(UserError, match="variants are: lenet5, lenet5_modern, lenet5_distort"):
        runner.run_experiment("lenet5-mnist", variants="lenet6", out_dir="/nonexistent")


# --- the runner, with a stand-in for the engine ------------------------------------------------


def _fake_engine(monkeypatch, calls):
    """Replace keras_cnns.training with a fake ``train`` whose training error falls faster for
    relu at lr 0.04 and tanh at lr 0.01; tanh at lr 0.04 diverges."""

    def train(config, *, out_dir, data_dir=None, tags=None, verbose=1, **_):
        activation = dict(config.model_kwargs)["activation"]
        lr = config.learning_rate
        calls.append((activation, lr, config.seed, tags["phase"]))
        good = {"relu": 0.04, "tanh": 0.01}[activation]
        start = 40.0 if lr == good else 60.0
        errors = [start - 10.0 * e for e in range(config.epochs)]
        record = {
            "run_id": config.run_id(),
            "status": "completed",
            "tags": dict(tags),
            "config": config.to_dict(),
            "model": config.model,
            "history": [
                {"epoch": e + 1, "accuracy": 1 - x / 100, "val_accuracy": 1 - x / 100, "time": 1.0}
                for e, x in enumerate(errors)
            ],
            "test": {"error": errors[-1], "accuracy": 1 - errors[-1] / 100, "loss": 1.0},
            "dataset": {"name": config.dataset, "source": "fake", "n_train": config.train_subset, "n_val": 0, "n_test": 0},
            "wall_time": float(config.epochs),
            "device": "cpu",
            "backend": "fake",
            "versions": {"keras": "0"},
            "precision": config.precision,
        }
        if activation == "tanh" and lr == 0.04:
            record.update(status="diverged", test=None, divergence={"epoch": 1, "batch": 2})
            append_record(Path(out_dir) / "records.jsonl", record)
            raise DivergedError("fake divergence")
        append_record(Path(out_dir) / "records.jsonl", record)
        return RunRecord.from_json(record)

    fake = types.ModuleType("keras_cnns.training")
    fake.train = train
    monkeypatch.setitem(sys.modules, "keras_cnns.training", fake)
    monkeypatch.setattr(keras_cnns, "training", fake, raising=False)


@pytest.mark.smoke
def test_runner_sweeps_resumes_and_reuses(monkeypatch, tmp_path):
    calls = []
    _fake_engine(monkeypatch, calls)
    records = runner.run_experiment("relu-vs-tanh", preset="smoke", seeds=2, out_dir=tmp_path, verbose=0)

    sweeps = sorted((a, lr) for a, lr, _, phase in calls if phase == "sweep")
    assert sweeps == [("relu", 0.01), ("relu", 0.04), ("tanh", 0.01), ("tanh", 0.04)]
    # The sweep runs are the seed-0 main runs (same config): only seed 1 is trained again,
    # each activation at its own sweep winner.
    mains = sorted((a, lr, s) for a, lr, s, phase in calls if phase == "main")
    assert mains == [("relu", 0.04, 1), ("tanh", 0.01, 1)]
    assert [(r.tags["variant"], r.tags["seed"], r.reused_from is not None) for r in records] == [
        ("relu", 0, True), ("relu", 1, False), ("tanh", 0, True), ("tanh", 1, False),
    ]  # fmt: skip

    text = (tmp_path / "relu-vs-tanh" / "README.md").read_text()
    assert "**chosen** (fewest epochs to 25% training error: 3)" in text  # 40, 30, 20: epoch 3
    assert "Diverged runs (not averaged in):" in text
    assert (tmp_path / "README.md").is_file()

    # Re-running the same command trains nothing and appends nothing.
    before = len(read_records(tmp_path / "relu-vs-tanh" / "records.jsonl"))
    calls.clear()
    runner.run_experiment("relu-vs-tanh", preset="smoke", seeds=2, out_dir=tmp_path, verbose=0)
    # Only the diverged sweep run is retried (a diverged run is not finished).
    assert calls == [("tanh", 0.04, 0, "sweep")]
    after = read_records(tmp_path / "relu-vs-tanh" / "records.jsonl")
    assert len(after) == before + 1 and after[-1]["status"] == "diverged"


@pytest.mark.smoke
def test_progress_lists_each_run_from_records_and_checkpoints_and_trains_nothing(monkeypatch, tmp_path, capsys):
    from keras_cnns.training.checkpoints import RunState

    calls = []
    _fake_engine(monkeypatch, calls)
    before, note = runner.progress("relu-vs-tanh", preset="smoke", seeds=2, out_dir=tmp_path)
    # Nothing ran: the sweep's four runs, and the main runs wait on its choice.
    assert [(p.run.tags["phase"], p.status) for p in before] == [("sweep", "not started")] * 4
    assert "once every sweep run has finished" in note

    runner.run_experiment("relu-vs-tanh", preset="smoke", seeds=2, out_dir=tmp_path, verbose=0)
    calls.clear()
    runs, note = runner.progress("relu-vs-tanh", preset="smoke", seeds=3, out_dir=tmp_path)
    assert note is None
    status = {(p.run.tags["phase"], p.run.tags["variant"], p.run.tags["seed"], p.run.config.learning_rate): p for p in runs}
    assert status["sweep", "tanh", 0, 0.04].describe().endswith("diverged in epoch 1: re-running trains it again")
    relu = status["main", "relu", 1, 0.04]
    assert relu.status == "completed" and relu.test_error == 20.0  # 40, 30, 20 % by the fake
    assert relu.describe() == (
        "relu-vs-tanh [smoke] relu on cifar10, seed 1: completed, test error 20.00% after 3 epochs (3 s)"
    )

    # Seed 2 has a checkpoint after 2 of its 3 epochs: the first epoch (which compiles) is left
    # out of the pace.
    todo = status["main", "relu", 2, 0.04]
    assert todo.status == "not started"
    run_dir = tmp_path / "relu-vs-tanh" / "checkpoints" / todo.run.run_id
    run_dir.mkdir(parents=True)
    RunState(
        todo.run.run_id, todo.run.config.to_dict(), epochs_done=2, checkpoint="epoch-0002.weights.h5",
        history=[{"epoch": 1, "time": 300.0}, {"epoch": 2, "time": 90.0}], wall_time=390.0,
    ).save(run_dir / "state.json")
    assert cli.main([
        "reproduce", "relu-vs-tanh", "--preset", "smoke", "--seeds", "3", "--out", str(tmp_path), "--progress",
    ]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "relu-vs-tanh [smoke] relu on cifar10, seed 2: 2 of 3 epochs done (6 min), about 90 s left at 90 s an epoch" in out
    assert "relu-vs-tanh [smoke] tanh on cifar10, seed 2: not started" in out
    assert f"keras-cnns: 7 of 10 runs completed in {tmp_path / 'relu-vs-tanh'}" in out
    assert calls == []  # nothing trained


@pytest.mark.smoke
def test_progress_paces_a_run_by_its_last_ten_epochs():
    # A run slowed by other jobs for its first epochs: the time left follows the recent pace.
    assert runner._pace([500.0] + [400.0] * 5 + [200.0] * 10) == 200.0
    assert runner._pace([300.0, 90.0, 110.0]) == 100.0  # the compiling first epoch left out
    assert runner._pace([300.0]) == 300.0 and runner._pace([]) is None


# --- smoke presets end to end on real data ------------------------------------------------------


def _check_smoke_outputs(name: str, out: Path, records: list[RunRecord]) -> None:
    experiment = get_experiment(name)
    preset = experiment.presets["smoke"]
    assert len(records) == len(preset.configs) * len(preset.datasets)
    assert all(r.completed for r in records), [r.status for r in records]
    assert {r.tags["preset"] for r in records} == {"smoke"}
    exp_dir = out / name
    text = (exp_dir / "README.md").read_text()
    assert "## Preset `smoke`" in text
    assert "too little training to compare with the paper" in text  # computed, not claimed
    for variant in preset.configs:
        assert f"| {variant} |" in text
    plots = list(exp_dir.glob("smoke-*-curves.png"))
    assert len(plots) == len(preset.datasets)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in plots)
    csv_lines = (exp_dir / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) - 1 == len(read_records(exp_dir / "records.jsonl"))
    assert f"[{name}]" in (out / "README.md").read_text()


# LeNet-5 runs below (also on JAX and PyTorch); ImageNet's smoke runs on a tfds mock in
# tests/test_imagenet.py (no ImageNet here).
@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("lenet5-mnist", "resnet50-imagenet")])
def test_smoke_preset_runs_end_to_end(name, tmp_path, data_dir):
    records = runner.run_experiment(name, preset="smoke", out_dir=tmp_path, data_dir=data_dir, verbose=0)
    _check_smoke_outputs(name, tmp_path, records)


@pytest.mark.smoke
def test_lenet5_smoke_runs_end_to_end(tmp_path, data_dir):
    records = runner.run_experiment("lenet5-mnist", preset="smoke", out_dir=tmp_path, data_dir=data_dir, verbose=0)
    _check_smoke_outputs("lenet5-mnist", tmp_path, records)
    assert {r.dataset.source.split(":")[0] for r in records} == {"archive"}
    # A second run finds everything done: same records, nothing appended.
    count = len(read_records(tmp_path / "lenet5-mnist" / "records.jsonl"))
    again = runner.run_experiment("lenet5-mnist", preset="smoke", out_dir=tmp_path, data_dir=data_dir, verbose=0)
    assert [r.run_id for r in again] == [r.run_id for r in records]
    assert len(read_records(tmp_path / "lenet5-mnist" / "records.jsonl")) == count


def test_lenet5_smoke_works_offline_without_data(tmp_path, monkeypatch):
    # No archive configured and no network: the packaged MNIST sample (or a tfds copy that is
    # already prepared on this machine) must carry the README's main command.
    monkeypatch.delenv("KERAS_CNNS_DATA_DIR", raising=False)

    def offline(*args, **kwargs):
        raise OSError("offline (test)")

    monkeypatch.setattr(socket, "create_connection", offline)
    code = cli.main(["reproduce", "lenet5-mnist", "--preset", "smoke", "--variants", "lenet5_modern", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    (record,) = read_records(tmp_path / "lenet5-mnist" / "records.jsonl")
    assert record["status"] == "completed"
    assert record["dataset"]["source"] in ("sample", "tfds")
    summary = json.loads(json.dumps(report.headline("lenet5-mnist", tmp_path, preset="smoke")))
    assert "too little training" in summary
