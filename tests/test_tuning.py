"""``keras-cnns tune``: search spaces, the keras-tuner search through the engine, resume,
stale-space protection, reports, and feeding the best values back.

Most tests replace ``training.train`` with a scorer that trains nothing (a known function of
the learning rate), so the keras-tuner logic is tested in seconds; ``test_tiny_search_end_to_end``
and ``test_interrupted_search_resumes`` run the real engine on a few hundred MNIST images.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys

import pandas as pd
import pytest

from keras_cnns.errors import DataError, DivergedError, UserError
from keras_cnns.lab import experiments, tuning, tuning_report
from keras_cnns.training.record import RunRecord

EXPERIMENT = "lenet5-mnist"

# keras-tuner 1.4 calls threading.currentThread(), deprecated since Python 3.10.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras_tuner.*")


# --- helpers ------------------------------------------------------------------------------------


def _tiny(config):
    """The smoke preset shrunk further: 1 epoch on a few hundred images."""
    return config.replace(epochs=1, train_subset=512, test_subset=256, batch_size=128)


def _smoke_configs(name=EXPERIMENT):
    from keras_cnns.lab import experiments

    return experiments.preset_configs(name, "smoke")


class FakeEngine:
    """Stands in for ``training.train``: scores a config by its learning rate, trains nothing.

    val_accuracy peaks at lr = 0.01; lr above ``diverge_above`` raises DivergedError (after
    "appending" nothing: the tuner must not rely on a record for a failed trial).
    """

    def __init__(self, diverge_above=math.inf, interrupt_on_call=None):
        self.calls = []
        self.options = []  # the other keyword arguments of each call
        self.diverge_above = diverge_above
        self.interrupt_on_call = interrupt_on_call

    def __call__(self, config, *, out_dir, data_dir=None, tags=None, verbose=1, **kwargs):
        self.calls.append((tags["trial"], config, dict(tags)))
        self.options.append(kwargs)
        if len(self.calls) == self.interrupt_on_call:
            raise KeyboardInterrupt
        if config.learning_rate > self.diverge_above:
            raise DivergedError("loss became nan at epoch 1")
        history = [
            {"epoch": e, "val_accuracy": self.score(config, e), "accuracy": 0.5, "loss": 1.0, "val_loss": 1.0}
            for e in range(1, config.epochs + 1)
        ]
        return RunRecord.from_json({
            "run_id": config.run_id(), "status": "completed", "tags": tags, "config": config.to_dict(),
            "model": config.model, "dataset": {"name": config.dataset}, "history": history, "wall_time": 0.01,
        })  # fmt: skip

    @staticmethod
    def score(config, epoch=None):
        """The validation accuracy of ``epoch`` (default: the last, which is the best)."""
        epoch = epoch or config.epochs
        return 0.9 - 0.1 * abs(math.log10(config.learning_rate) + 2) - 0.05 / epoch

    @property
    def trial_ids(self):
        return [c[0] for c in self.calls]


class ToyExperiment:
    """An experiment "toy" beside the real ones: two variants of a small LeNet config and a
    search space of the learning rate alone (``set_space`` changes it, as an edit would)."""

    def __init__(self, monkeypatch):
        from keras_cnns.training.config import TrainConfig

        base = TrainConfig(model="lenet5_modern", dataset="mnist", epochs=3, optimizer="sgd", learning_rate=0.1)
        self.configs = {"sgd": base, "adam": base.replace(optimizer="adam", learning_rate=1e-3)}
        preset = experiments.Preset(configs=self.configs, datasets=("mnist",), purpose="toy", runtime="none")
        self.experiment = experiments.Experiment(
            name="toy", title="toy", paper="none", claim="none", metric="test_error", paper_numbers={},
            presets={"paper": preset, "quick": preset, "smoke": preset},
            search_space=(experiments.HyperParam("learning_rate", "float", 1e-4, 1.0, log=True),),
        )  # fmt: skip
        real = experiments.get_experiment
        monkeypatch.setattr(experiments, "get_experiment", lambda name: self.experiment if name == "toy" else real(name))

    @property
    def space(self):
        return self.experiment.search_space

    def set_space(self, space) -> None:
        self.experiment = dataclasses.replace(self.experiment, search_space=tuple(space))


@pytest.fixture
def fake_experiment(monkeypatch) -> ToyExperiment:
    return ToyExperiment(monkeypatch)


def _fake_engine(monkeypatch, **kwargs) -> FakeEngine:
    from keras_cnns import training

    engine = FakeEngine(**kwargs)
    monkeypatch.setattr(training, "train", engine)
    return engine


# --- search spaces ------------------------------------------------------------------------------


@pytest.mark.smoke
def test_every_reproduction_has_a_valid_search_space():
    for name in experiments.EXPERIMENTS:
        space = tuning.search_space(name)
        assert space, name
        assert len({p.name for p in space}) == len(space), name
        for preset in ("smoke", "paper"):
            for config in experiments.preset_configs(name, preset).values():
                tuning.check_space(space, config)  # raises if a name fits neither config nor model


@pytest.mark.smoke
def test_hyperparam_validates_its_range():
    with pytest.raises(ValueError):
        experiments.HyperParam("learning_rate", "float", 0.1, 0.01)
    with pytest.raises(ValueError):
        experiments.HyperParam("learning_rate", "float", 0.0, 0.1, log=True)
    with pytest.raises(ValueError):
        experiments.HyperParam("optimizer", "choice")
    with pytest.raises(ValueError):
        experiments.HyperParam("x", "complex", 0, 1)


@pytest.mark.smoke
def test_space_hash_changes_with_any_range():
    space = tuning.search_space(EXPERIMENT)
    assert tuning_report.space_hash(space) == tuning_report.space_hash(tuple(space))
    changed = (experiments.HyperParam("learning_rate", "float", 1e-4, 0.2, log=True), *space[1:])
    assert tuning_report.space_hash(changed) != tuning_report.space_hash(space)


@pytest.mark.smoke
def test_trial_values_and_overrides_give_the_same_config():
    from keras_cnns.training.config import TrainConfig

    base = TrainConfig(model="lenet5_modern", dataset="mnist", epochs=4, learning_rate=0.1)
    values = {"learning_rate": 0.0123, "optimizer": "adam", "momentum": 0.85, "tuner/epochs": 2}
    tuned = tuning.apply_values(base, values)
    assert (tuned.learning_rate, tuned.optimizer, tuned.momentum, tuned.epochs) == (0.0123, "adam", 0.85, 2)
    # What reproduce --from-tuning applies is exactly what the trial trained with (bar epochs).
    assert base.with_overrides(tuning_report.values_to_overrides(values)) == tuned.replace(epochs=4)


@pytest.mark.smoke
def test_trials_are_scored_on_a_validation_split():
    from keras_cnns.training.config import TrainConfig

    whole = TrainConfig(model="lenet5", dataset="mnist", val_size=0)
    assert tuning.with_validation(whole).val_size == tuning.TUNING_VAL_SIZE
    assert tuning.with_validation(whole.replace(train_subset=2000)).val_size == 2000
    assert tuning.with_validation(whole.replace(val_size=1000)).val_size == 1000


@pytest.mark.smoke
def test_with_epochs_scales_the_schedule():
    from keras_cnns.training.config import TrainConfig

    base = TrainConfig(model="resnet20_cifar", epochs=90, schedule="step", lr_boundaries=(45, 68))
    short = tuning.with_epochs(base, 10)
    assert short.epochs == 10 and short.lr_boundaries == (5, 8)


# --- the search (fake engine) -------------------------------------------------------------------


@pytest.mark.smoke
def test_search_reports_and_best_values(tmp_path, monkeypatch, fake_experiment):
    engine = _fake_engine(monkeypatch, diverge_above=0.3)
    best = tuning.tune("toy", trials=6, preset="smoke", out_dir=tmp_path, verbose=0)

    assert [c[2]["variant"] for c in engine.calls] == ["sgd"] * 6 + ["adam"] * 6
    tags = engine.calls[0][2]
    assert tags["tuning"] is True and tags["experiment"] == "toy" and tags["preset"] == "smoke"
    exp_dir = tmp_path / "toy"
    md = (exp_dir / "tuning.md").read_text()
    csv = (exp_dir / "tuning.csv").read_text().splitlines()
    assert len(csv) == 1 + 12
    on_disk = json.loads((exp_dir / "tuning_best.json").read_text())
    assert on_disk == best and set(best["variants"]) == {"sgd", "adam"}

    # The best trial is the completed trial with the highest score, recomputed here.
    for variant in ("sgd", "adam"):
        scored = [
            (FakeEngine.score(config), config.learning_rate)
            for _, config, tags in engine.calls
            if tags["variant"] == variant and config.learning_rate <= 0.3
        ]
        entry = best["variants"][variant]
        assert entry["val_accuracy"] == pytest.approx(max(scored)[0])
        assert entry["hyperparameters"]["learning_rate"] == pytest.approx(max(scored)[1])
        assert entry["space_hash"] == tuning_report.space_hash(fake_experiment.space)
        assert tuning_report.best_overrides("toy", tmp_path, variant=variant) == entry["overrides"]
    assert "Preset `smoke`, tuner `random`" in md
    assert md.count("**best**") == 2
    # The search's plot, linked from the report.
    assert (exp_dir / "tuning.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "![the search](tuning.png)" in md

    # `keras-cnns report` regenerates them from keras-tuner's trial files alone.
    for generated in ("tuning.md", "tuning.csv", "tuning.png", "tuning_best.json"):
        (exp_dir / generated).unlink()
    assert tuning_report.has_search("toy", tmp_path) and not tuning_report.has_search("other", tmp_path)
    assert tuning_report.write_reports("toy", tmp_path) == best
    assert (exp_dir / "tuning.md").read_text() == md
    assert (exp_dir / "tuning.csv").read_text().splitlines() == csv


@pytest.mark.smoke
def test_trials_never_see_the_test_set_and_are_numbered_as_keras_tuner_announces_them(
    tmp_path, monkeypatch, fake_experiment, capsys
):
    engine = _fake_engine(monkeypatch)
    tuning.tune("toy", trials=3, variant="sgd", out_dir=tmp_path, verbose=1)
    assert [o.get("evaluate_test") for o in engine.options] == [False] * 3
    announced = [int(n) for n in re.findall(r"Running Trial #(\d+)", capsys.readouterr().out)]
    frame = pd.read_csv(tmp_path / "toy" / "tuning.csv")
    assert announced == [1, 2, 3] and sorted(frame["trial"]) == announced
    best = tuning_report.load_best("toy", tmp_path)["variants"]["sgd"]
    scores = {t: FakeEngine.score(c) for t, c, _ in engine.calls}  # keras-tuner's ids: 0, 1, 2
    assert best["trial"] == tuning_report.trial_number(max(scores, key=scores.get))


@pytest.mark.smoke
def test_epochs_shortens_every_trial_and_is_part_of_the_search(tmp_path, monkeypatch, fake_experiment):
    engine = _fake_engine(monkeypatch, diverge_above=1.0)
    full = tuning._experiment_configs("toy", "smoke")["sgd"].epochs
    tuning.tune("toy", trials=2, variant="sgd", epochs=1, out_dir=tmp_path, verbose=0)
    assert full > 1 and [c[1].epochs for c in engine.calls] == [1, 1]
    assert "Each trial trains up to 1 epochs." in (tmp_path / "toy" / "tuning.md").read_text()
    # Another trial length is another search: refused on resume, as a changed space is.
    with pytest.raises(UserError, match="overwrite"):
        tuning.tune("toy", trials=3, variant="sgd", out_dir=tmp_path, verbose=0)
    with pytest.raises(UserError, match="--epochs"):
        tuning.tune("toy", trials=3, variant="sgd", epochs=0, out_dir=tmp_path, verbose=0)


@pytest.mark.smoke
def test_diverged_trials_fail_and_the_search_goes_on(tmp_path, monkeypatch, fake_experiment):
    engine = _fake_engine(monkeypatch, diverge_above=1e-3)  # most of the range diverges
    best = tuning.tune("toy", trials=6, variant="sgd", out_dir=tmp_path, verbose=0)
    assert len(engine.calls) == 6  # not stopped after 3 consecutive failures
    csv = (tmp_path / "toy" / "tuning.csv").read_text()
    n_diverged = sum(c[1].learning_rate > 1e-3 for c in engine.calls)
    assert n_diverged >= 3 and csv.count(",diverged,") == n_diverged
    if n_diverged < 6:
        assert best["variants"]["sgd"]["hyperparameters"]["learning_rate"] <= 1e-3


@pytest.mark.smoke
def test_resume_after_interrupt_keeps_finished_trials(tmp_path, monkeypatch, fake_experiment):
    engine = _fake_engine(monkeypatch, interrupt_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune("toy", trials=3, variant="sgd", out_dir=tmp_path, verbose=0)
    first = engine.calls[0]
    interrupted = engine.calls[1]
    csv = (tmp_path / "toy" / "tuning.csv").read_text()
    assert ",completed," in csv and ",unfinished," in csv  # the reports are written anyway

    engine = _fake_engine(monkeypatch)
    tuning.tune("toy", trials=3, variant="sgd", out_dir=tmp_path, verbose=0)
    # Trial 0 is not re-run; the interrupted trial runs again with its values; the count continues.
    assert engine.trial_ids == [interrupted[0], "2"]
    assert engine.calls[0][1] == interrupted[1]
    assert first[0] == "0"
    # Asking for more trials continues the same search.
    engine = _fake_engine(monkeypatch)
    tuning.tune("toy", trials=5, variant="sgd", out_dir=tmp_path, verbose=0)
    assert len(engine.calls) == 2
    assert len((tmp_path / "toy" / "tuning.csv").read_text().splitlines()) == 1 + 5


@pytest.mark.smoke
def test_changed_space_is_refused_until_overwrite(tmp_path, monkeypatch, fake_experiment):
    engine = _fake_engine(monkeypatch)
    tuning.tune("toy", trials=2, variant="sgd", out_dir=tmp_path, verbose=0)
    original = fake_experiment.space
    narrower = (experiments.HyperParam("learning_rate", "float", 1e-4, 0.5, log=True),)
    fake_experiment.set_space(narrower)
    directory = tmp_path / "toy" / "tuning" / "sgd"
    with pytest.raises(UserError) as err:
        tuning.tune("toy", trials=3, variant="sgd", out_dir=tmp_path, verbose=0)
    assert str(err.value) == (
        f"the search space of toy changed since the search in {directory} was started: "
        "re-run with --overwrite to start again"
    )
    assert len(engine.calls) == 2
    assert tuning_report.load_best("toy", tmp_path)["variants"]["sgd"]["stale"] is True

    fake_experiment.set_space(original)
    with pytest.raises(UserError, match="--tuner random"):
        tuning.tune("toy", tuner="hyperband", trials=3, variant="sgd", out_dir=tmp_path, verbose=0)
    assert len(engine.calls) == 2

    fake_experiment.set_space(narrower)
    engine = _fake_engine(monkeypatch)
    tuning.tune("toy", trials=2, variant="sgd", out_dir=tmp_path, verbose=0, overwrite=True)
    assert engine.trial_ids == ["0", "1"]  # a fresh search
    assert all(c[1].learning_rate <= 0.5 for c in engine.calls)
    best = tuning_report.load_best("toy", tmp_path)["variants"]["sgd"]
    assert best["stale"] is False and best["trials"] == 2


@pytest.mark.smoke
def test_hyperband_sets_epochs(tmp_path, monkeypatch, fake_experiment):
    engine = _fake_engine(monkeypatch)
    tuning.tune("toy", tuner="hyperband", trials=30, variant="sgd", out_dir=tmp_path, verbose=0)
    epochs = [c[1].epochs for c in engine.calls]
    assert set(epochs) <= {1, 2, 3} and min(epochs) == 1 and max(epochs) == 3
    assert tuning_report.load_best("toy", tmp_path)["variants"]["sgd"]["epochs"] in (1, 2, 3)


@pytest.mark.smoke
def test_bayesian_without_sklearn_is_a_user_error(tmp_path, monkeypatch, fake_experiment):
    _fake_engine(monkeypatch)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(UserError, match="scikit-learn"):
        tuning.tune("toy", tuner="bayesian", trials=2, variant="sgd", out_dir=tmp_path, verbose=0)


@pytest.mark.smoke
def test_bad_arguments_are_user_errors(tmp_path, fake_experiment):
    with pytest.raises(UserError, match="unknown experiment"):
        tuning.tune("no-such-experiment", out_dir=tmp_path)
    with pytest.raises(UserError, match="unknown variant"):
        tuning.tune("toy", variant="relu6", out_dir=tmp_path)
    with pytest.raises(UserError, match="unknown tuner"):
        tuning.tune("toy", tuner="grid", out_dir=tmp_path)
    with pytest.raises(UserError, match="--trials"):
        tuning.tune("toy", trials=0, out_dir=tmp_path)


@pytest.mark.smoke
def test_feedback_without_a_search(tmp_path):
    assert tuning_report.load_best(EXPERIMENT, tmp_path) is None
    with pytest.raises(UserError, match="keras-cnns tune lenet5-mnist"):
        tuning_report.best_overrides(EXPERIMENT, tmp_path)
    (tmp_path / EXPERIMENT).mkdir()
    (tmp_path / EXPERIMENT / tuning_report.BEST_JSON).write_text("{not json")
    with pytest.raises(DataError):
        tuning_report.load_best(EXPERIMENT, tmp_path)


# --- CLI ----------------------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.parametrize(
    "argv, message",
    [
        (["tune", "lenet5-mnis"], "unknown experiment 'lenet5-mnis'; did you mean lenet5-mnist?"),
        (["tune", EXPERIMENT, "--trials", "0"], "expected a positive integer, got 0"),
        (["tune", EXPERIMENT, "--tuner", "grid"], "invalid choice: 'grid'"),
    ],
)
def test_cli_bad_inputs_are_one_line_exit_2(argv, message):
    # A subprocess: also checks that a bad command fails before Keras is imported.
    code = (
        "import sys; from keras_cnns.cli import main\n"
        "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
        "assert 'keras' not in sys.modules, 'keras imported'\nsys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


# --- the real engine ----------------------------------------------------------------------------


# Not in the smoke subset: on JAX each trial's XLA compile alone takes ~20 s on CPU; the
# fake-engine tests above cover the search logic on every backend.
def test_tiny_search_end_to_end(tmp_path, monkeypatch, data_dir, capsys):
    """The lenet5-mnist smoke preset, shrunk: 2 trials of 1 epoch on 512 images, through the
    CLI and the real engine; interrupted inside trial 2, then resumed."""
    from keras_cnns import training
    from keras_cnns.cli import main
    from keras_cnns.storage import read_records

    variant = "lenet5_modern"
    configs = {variant: _tiny(_smoke_configs()[variant])}
    monkeypatch.setattr(tuning, "_experiment_configs", lambda name, preset: configs)
    argv = ["tune", EXPERIMENT, "--preset", "smoke", "--trials", "2", "--out", str(tmp_path),
            "--data-dir", str(data_dir), "--quiet"]  # fmt: skip

    real_train, calls = training.train, []

    def interrupt_second_trial(config, **kwargs):
        calls.append(kwargs["tags"]["trial"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(config, **kwargs)

    monkeypatch.setattr(training, "train", interrupt_second_trial)
    assert main(argv) == 130  # the CLI's "interrupted; re-run to resume"
    assert calls == ["0", "1"]
    capsys.readouterr()

    calls.clear()
    assert main(argv) == 0
    assert calls == ["1"]  # trial 0 is not trained again
    out = capsys.readouterr().out
    assert f"{EXPERIMENT} {variant}: best val_accuracy" in out

    exp_dir = tmp_path / EXPERIMENT
    records = read_records(exp_dir / "tuning" / variant / "records.jsonl")
    assert sorted(r["tags"]["trial"] for r in records) == ["0", "1"]
    assert all(r["tags"]["tuning"] is True and r["tags"]["preset"] == "smoke" for r in records)
    # The smoke preset has no validation split; the search held one out of the training set.
    assert all(r["dataset"]["n_val"] == 512 for r in records)
    best = tuning_report.load_best(EXPERIMENT, tmp_path)["variants"][variant]
    # The score is the best validation accuracy in the best trial's record (not test accuracy).
    val_best = {r["tags"]["trial"]: max(h["val_accuracy"] for h in r["history"]) for r in records}
    assert best["trial"] == tuning_report.trial_number(max(val_best, key=val_best.get))
    assert all(r["test"] is None for r in records)  # the test set plays no part
    assert best["val_accuracy"] == pytest.approx(max(val_best.values()))
    csv = (exp_dir / "tuning.csv").read_text().splitlines()
    assert len(csv) == 3 and (exp_dir / "tuning.md").is_file()
    # What reproduce --from-tuning applies.
    tuned = configs[variant].with_overrides(tuning_report.best_overrides(EXPERIMENT, tmp_path, variant=variant))
    assert tuned.learning_rate == pytest.approx(best["hyperparameters"]["learning_rate"])
    assert tuned.optimizer == best["hyperparameters"]["optimizer"]
