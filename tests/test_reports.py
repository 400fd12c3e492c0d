"""The reports (keras_cnns.lab.runs, .claims, .report) on records built here: statistics, groups, sentences, CSV and plots.

No training and no Keras: every record is constructed with numbers chosen so the expected
table cells can be computed by hand.
"""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from keras_cnns.lab import claims, report, runs
from keras_cnns.lab.experiments import get_experiment, list_experiments
from keras_cnns.storage import append_record
from keras_cnns.training.record import RunRecord, tag_key

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_record(
    experiment: str,
    variant: str,
    seed: int = 0,
    *,
    test_error: float | None = 10.0,
    train_errors: tuple[float, ...] = (60.0, 40.0),
    val_errors: tuple[float, ...] | None = None,
    times: tuple[float, ...] | None = None,
    preset: str = "smoke",
    dataset: str = "cifar10",
    status: str = "completed",
    overrides: tuple[str, ...] = (),
    phase: str = "main",
    n_train: int = 256,
    run_id: str | None = None,
    sweep_value: float | None = None,
    tuned: tuple[str, ...] = (),
) -> dict:
    """A record shaped like training.train's, with chosen errors (percent)."""
    val_errors = val_errors or train_errors
    times = times or tuple(1.0 for _ in train_errors)
    history = [
        {
            "epoch": i + 1,
            "loss": 1.0,
            "accuracy": 1 - t / 100,
            "val_loss": 1.0,
            "val_accuracy": 1 - v / 100,
            "lr": 0.1,
            "time": s,
        }
        for i, (t, v, s) in enumerate(zip(train_errors, val_errors, times, strict=True))
    ]
    tags = {
        "experiment": experiment,
        "preset": preset,
        "variant": variant,
        "dataset": dataset,
        "seed": seed,
        "phase": phase,
        "overrides": list(overrides),
        "host": "test host",
    }
    if sweep_value is not None:
        tags.update(sweep_param="learning_rate", sweep_value=sweep_value)
    if tuned:
        tags["tuned"] = list(tuned)
    completed = status == "completed"
    return {
        "run_id": run_id or f"{variant}-{dataset}-{preset}-{seed}-{'-'.join(overrides)}-{sweep_value}",
        "status": status,
        "tags": tags,
        "config": {"dataset": dataset, "epochs": len(train_errors), "seed": seed},
        "model": variant,
        "params": 1000,
        "trainable_params": 1000,
        "dataset": {"name": dataset, "source": "archive:/x.npz", "n_train": n_train, "n_val": 100, "n_test": 100},
        "history": history,
        "test": {"loss": 1.0, "accuracy": 1 - test_error / 100, "error": test_error} if completed else None,
        "selected_epoch": len(history) if completed else None,
        "wall_time": float(sum(times)),
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:01:00+00:00",
        "backend": "tensorflow",
        "versions": {"keras": "3.15.1"},
        "device": "cpu",
        "git": None,
        "seed": seed,
        "precision": "float32",
        **({"divergence": {"epoch": len(history), "batch": 3}} if not completed else {}),
    }


def write_records(tmp_path, experiment: str, records) -> None:
    for r in records:
        append_record(tmp_path / experiment / "records.jsonl", r)


PVR = "plain-vs-residual"


@pytest.mark.smoke
def test_per_epoch_quantities_by_hand():
    r = make_record(PVR, "plain20", train_errors=(60.0, 30.0, 20.0, 24.0), times=(5.0, 2.0, 3.0, 4.0))
    h = RunRecord.from_json(r).history
    assert runs.train_errors(h) == pytest.approx([60.0, 30.0, 20.0, 24.0])
    assert runs.final_train_error(h) == pytest.approx(24.0)
    assert runs.epochs_to_error(h, 25.0) == 3  # the first epoch at or below 25%
    assert runs.epochs_to_error(h, 10.0) is None
    assert runs.seconds_to_error(h, 25.0) == pytest.approx(6.0)  # 3 epochs x fastest 2 s
    assert runs.epoch_time(h) == pytest.approx(2.0)  # fastest of 2, 3, 4: first left out
    assert runs.median_epoch_time(h) == pytest.approx(3.0)  # median of 2, 3, 4
    assert math.isnan(runs.final_train_error([]))


@pytest.mark.smoke
def test_stat_is_mean_and_sample_std_and_counts_missing():
    s = runs.stat([10.0, 12.0, 14.0, None])
    assert (s.mean, s.std, s.n, s.missing) == (pytest.approx(12.0), pytest.approx(2.0), 3, 1)
    assert runs.format_stat(runs.stat([10.0, 12.0, 14.0])) == "12.00 ± 2.00 (n=3)"
    assert runs.format_stat(runs.stat([7.5])) == "7.50 (n=1)"
    assert runs.format_stat(runs.stat([None, None]), max_epochs=3) == "not reached in 3 epochs (n=2)"


@pytest.mark.smoke
def test_table_mean_std_difference_and_diverged_runs_kept_apart(tmp_path):
    records = [make_record(PVR, "resnet20", s, test_error=e) for s, e in enumerate((10.0, 12.0, 14.0))]
    # A diverged seed with an absurd error must not move the mean.
    records.append(make_record(PVR, "resnet20", 3, test_error=None, status="diverged", train_errors=(60.0, 90.0)))
    write_records(tmp_path, PVR, records)
    report.write_report(PVR, tmp_path)

    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    (row,) = runs.summary_rows(experiment, rows, runs.Group("smoke", ""))
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(12.0)
    assert row["std"] == pytest.approx(2.0)
    assert row["paper"] == pytest.approx(8.75)
    assert row["difference"] == pytest.approx(12.0 - 8.75)

    text = (tmp_path / PVR / "README.md").read_text()
    # akamaster's PyTorch reproduction stands beside the paper, its recipe said in one line.
    assert "| resnet20 | cifar10 | 8.75 | 8.27 | 12.00 ± 2.00 (n=3) | +3.25 |" in text
    assert "- akamaster (PyTorch): akamaster/pytorch_resnet_cifar10" in text and "best test epoch" in text
    diverged = text.split("Diverged runs (not averaged in):")[1]
    assert "| resnet20 | cifar10 | main | 3 | 2 |" in diverged


@pytest.mark.smoke
def test_presets_and_overrides_are_reported_separately(tmp_path):
    write_records(
        tmp_path,
        PVR,
        [
            make_record(PVR, "resnet20", 0, test_error=50.0, preset="smoke"),
            make_record(PVR, "resnet20", 0, test_error=9.0, preset="quick"),
            make_record(PVR, "resnet20", 0, test_error=30.0, preset="smoke", overrides=("epochs=5",)),
            make_record(PVR, "resnet20", 0, test_error=40.0, preset="smoke", tuned=("learning_rate=0.05",), run_id="t"),
        ],
    )
    report.write_report(PVR, tmp_path)
    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    found = runs.groups(rows)
    assert [g.label for g in found] == ["quick", "smoke", "smoke with --set epochs=5", "smoke with tuned values"]
    means = [runs.summary_rows(experiment, rows, g)[0]["mean"] for g in found]
    assert means == pytest.approx([9.0, 50.0, 30.0, 40.0])  # never averaged across groups

    text = (tmp_path / PVR / "README.md").read_text()
    quick, smoke = text.split("## Preset `quick`")[1].split("## Preset `smoke`")[:2]
    assert "9.00 (n=1)" in quick and "50.00" not in quick
    assert "50.00 (n=1)" in smoke and "9.00 (n=1)" not in smoke
    assert "`--set epochs=5`" in text  # the override is listed as a deviation
    assert "resnet20: hyperparameters from `keras-cnns tune`: `learning_rate=0.05`" in text
    plots = sorted(p.name for p in (tmp_path / PVR).glob("*.png"))
    assert len(plots) == 4 and "quick-cifar10-curves.png" in plots and "smoke-cifar10-curves.png" in plots


@pytest.mark.smoke
def test_report_gives_each_variants_fastest_and_median_epoch_and_the_training_time_without_pauses(
    tmp_path,
):
    write_records(
        tmp_path,
        PVR,
        [
            # The second epoch of seed 0 was paused for an hour: the median ignores it; seed 1
            # shared the cores with another job but for its last epoch.
            make_record(PVR, "plain20", 0, train_errors=(50.0, 40.0, 30.0, 20.0), times=(90.0, 3600.0, 60.0, 60.0)),
            make_record(PVR, "plain20", 1, train_errors=(50.0, 40.0, 30.0, 20.0), times=(90.0, 80.0, 80.0, 58.0)),
            make_record(PVR, "resnet20", 0, train_errors=(50.0, 40.0), times=(9.0, 4.0)),
        ],
    )
    report.write_report(PVR, tmp_path)
    text = (tmp_path / PVR / "README.md").read_text()
    # plain20: fastest 60 and 58 -> 59, medians 60 and 80 -> 70; resnet20: 4.0 (4.0).
    # Training at the medians: 4 x 60 + 4 x 80 + 2 x 4 = 568 s.
    assert (
        "the fastest epoch (the median in brackets): plain20 59 (70), resnet20 4.0 (4.0)."
        in text
    )
    assert "9 min of training in all at the median pace" in text


@pytest.mark.smoke
def test_a_scaled_down_presets_verdict_says_what_it_cannot_show_and_reaches_the_index(tmp_path):
    errors = tuple(60.0 - 3 * i for i in range(10))  # 10 epochs of the paper recipe's 182: 5.5%
    write_records(
        tmp_path,
        PVR,
        [
            make_record(PVR, v, 0, test_error=e, train_errors=errors, preset="cpu", n_train=45_000)
            for v, e in (("plain20", 20.0), ("plain56", 25.0), ("resnet20", 19.0), ("resnet56", 18.0))
        ],
    )
    report.write_report(PVR, tmp_path)
    cannot = get_experiment(PVR).presets["cpu"].cannot_show
    assert cannot and f"What this preset cannot show: {cannot}." in (tmp_path / PVR / "README.md").read_text()
    index = report.write_index(tmp_path).read_text()
    (line,) = [x for x in index.splitlines() if x.startswith(f"| [{PVR}]")]
    # The whole verdict: the headline, each ordering, and what the preset cannot show.
    assert "cpu preset, 5.5% of the paper recipe's training images" in line
    assert "plain20 20.00 vs plain56 25.00" in line and cannot in line


@pytest.mark.smoke
def test_csv_has_one_row_per_run_with_its_numbers(tmp_path):
    write_records(
        tmp_path,
        PVR,
        [
            make_record(PVR, "plain20", 0, test_error=20.0, train_errors=(50.0, 30.0)),
            make_record(PVR, "plain20", 1, test_error=22.0, train_errors=(50.0, 32.0)),
            make_record(PVR, "plain56", 0, test_error=None, status="diverged"),
        ],
    )
    report.write_report(PVR, tmp_path)
    frame = pd.read_csv(tmp_path / PVR / "results.csv")
    assert list(frame.columns) == list(runs.RUN_COLUMNS)
    assert len(frame) == 3
    plain20 = frame[frame.variant == "plain20"].sort_values("seed")
    assert plain20["value"].tolist() == pytest.approx([20.0, 22.0])
    assert plain20["final_train_error"].tolist() == pytest.approx([30.0, 32.0])
    assert set(frame["preset"]) == {"smoke"}
    diverged = frame[frame.variant == "plain56"]
    assert diverged["status"].tolist() == ["diverged"] and diverged["value"].isna().all()


@pytest.mark.smoke
def test_plots_are_png_files(tmp_path):
    write_records(tmp_path, PVR, [make_record(PVR, v) for v in ("plain20", "plain56", "resnet20", "resnet56")])
    report.write_report(PVR, tmp_path)
    (plot,) = (tmp_path / PVR).glob("*.png")
    data = plot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert f"]({plot.name})" in (tmp_path / PVR / "README.md").read_text()


def _full_history(final: float, epochs: int = 182) -> tuple[float, ...]:
    return tuple(80.0 - (80.0 - final) * i / (epochs - 1) for i in range(epochs))


@pytest.mark.smoke
def test_ordering_sentences_follow_the_numbers(tmp_path):
    # Paper-sized runs (45,000 images, 182 epochs): plain-56 worse than plain-20 (the paper's
    # ordering holds), ResNet-56 also worse than ResNet-20 (it does not).
    finals = {"plain20": 5.0, "plain56": 9.0, "resnet20": 3.0, "resnet56": 4.0}
    tests = {"plain20": 9.0, "plain56": 12.0, "resnet20": 8.0, "resnet56": 8.5}
    write_records(
        tmp_path,
        PVR,
        [make_record(PVR, v, preset="paper", n_train=45_000, train_errors=_full_history(f), test_error=tests[v]) for v, f in finals.items()],
    )
    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    group = runs.Group("paper", "")
    assert claims.training_fraction(experiment, runs.in_group(rows, group)) == pytest.approx(1.0)
    outcomes = claims.ordering_results(experiment, rows, group)
    # The whole training curves (after the first epoch; depth within each family, then each
    # residual net against its plain twin), the final training errors, the tests.
    assert [o.holds for o in outcomes] == [True, False, True, True, True, False, True, False]
    assert outcomes[0].sentence == (
        "plain20 below plain56 in training error at every epoch after the first (epochs 2-182): "
        "the paper's ordering holds (gap 0.0 to 4.0 points) (one seed: the gap's noise is not measured)"
    )
    assert "does not hold at any of them (resnet56 above by 0.0 to 1.0 points)" in outcomes[1].sentence
    head = claims.verdict(experiment, rows, group)[0]
    assert "the paper's full training" in head and "5 of 8 hold" in head
    assert "resnet20 -0.75" in head  # 8.0 - 8.75


@pytest.mark.smoke
def test_curve_ordering_names_the_epochs_where_it_fails(tmp_path):
    curves = {"plain20": (70.0, 50.0, 40.0, 30.0), "plain56": (60.0, 55.0, 38.0, 35.0)}
    write_records(tmp_path, PVR, [
        make_record(PVR, v, 0, preset="cpu", n_train=45_000, train_errors=c) for v, c in curves.items()
    ])  # fmt: skip
    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    (curve, *_) = claims.ordering_results(experiment, rows, runs.Group("cpu", ""))
    # Epoch 1 is left out (plain56 below there); at epoch 3 plain20's 40 is above 38.
    assert curve == claims.Outcome(
        claims.DOES_NOT_HOLD,
        "plain20 below plain56 in training error at every epoch after the first (epochs 2-4): "
        "the paper's ordering does not hold at 1 of 3 epochs (3) (one seed: the gap's noise is not measured)",
    )


@pytest.mark.smoke
def test_curve_ordering_that_fails_only_at_the_start_says_from_which_epoch_it_holds(tmp_path):
    # A deeper net's slow start: resnet56 above resnet20 at epochs 2 and 3, below from 4 on
    # (by 1.0 at epoch 4, 3.0 at epoch 5); with a second seed that agrees, from 4 on beyond noise.
    resnet20 = {0: (60.0, 40.0, 30.0, 20.0, 10.0), 1: (60.0, 40.0, 30.0, 20.2, 10.2)}
    resnet56 = {0: (80.0, 60.0, 35.0, 19.0, 7.0), 1: (80.0, 62.0, 36.0, 19.0, 7.4)}
    for seeds, expected in (
        ((0,), "the paper's ordering does not hold at 2 of 4 epochs (2, 3); it holds at every epoch "
               "from 4 on (gap 1.0 to 3.0 points) (one seed: the gap's noise is not measured)"),
        ((0, 1), "the paper's ordering holds at 2 of 4 epochs (4, 5); does not hold at 2 of 4 epochs "
                 "(2, 3); it holds beyond noise at every epoch from 4 on (gap 1.1 to 2.9 points)"),
    ):
        out = tmp_path / str(len(seeds))
        write_records(out, PVR, [
            make_record(PVR, v, s, preset="cpu", n_train=45_000, train_errors=c[s])
            for v, c in (("resnet20", resnet20), ("resnet56", resnet56)) for s in seeds
        ])  # fmt: skip
        rows, _ = runs.load_rows(get_experiment(PVR), out)
        (curve,) = [
            o for o in claims.ordering_results(get_experiment(PVR), rows, runs.Group("cpu", ""))
            if o.sentence.startswith("resnet56 below resnet20 in training error")
        ]
        assert curve.status == claims.DOES_NOT_HOLD
        assert curve.sentence.endswith(expected), curve.sentence


@pytest.mark.smoke
def test_curve_ordering_over_seeds_reads_each_epoch_against_its_noise(tmp_path):
    # Epoch 2: plain56 above in both seeds by 5 and 7 (holds); epoch 3: by -2 and +4 (the seeds
    # disagree: within noise); epoch 4: by 4.9 and 5.1 (holds).
    plain20 = {0: (70.0, 50.0, 40.0, 30.0), 1: (70.0, 50.0, 40.0, 30.0)}
    plain56 = {0: (60.0, 55.0, 38.0, 34.9), 1: (60.0, 57.0, 44.0, 35.1)}
    write_records(tmp_path, PVR, [
        make_record(PVR, v, s, preset="cpu", n_train=45_000, train_errors=c)
        for v, runs in (("plain20", plain20), ("plain56", plain56)) for s, c in runs.items()
    ])  # fmt: skip
    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    (curve, *_) = claims.ordering_results(experiment, rows, runs.Group("cpu", ""))
    assert curve == claims.Outcome(
        claims.WITHIN_NOISE,
        "plain20 below plain56 in training error at every epoch after the first (epochs 2-4, 2 seeds): "
        "the paper's ordering holds at 2 of 3 epochs (2, 4); within noise at 1 of 3 epochs (3)",
    )


@pytest.mark.smoke
def test_the_verdict_says_whether_the_presets_regime_held(tmp_path):
    name = "dropout-cifar"
    val = (50.0, 40.0, 35.0, 36.0, 37.0)  # lowest at epoch 3, then it climbs: overfitting
    records = [
        make_record(name, "none", s, preset="cpu", n_train=10_000, test_error=38.0,
                    train_errors=(60.0, 30.0, 10.0, 4.0, f), val_errors=val)
        for s, f in ((0, 2.0), (1, 3.0))
    ] + [make_record(name, "fc", 0, preset="cpu", n_train=10_000, test_error=33.0, train_errors=(60.0, 40.0, 30.0, 20.0, 12.0))]  # fmt: skip
    write_records(tmp_path, name, records)
    experiment = get_experiment(name)
    rows, _ = runs.load_rows(experiment, tmp_path)
    group = runs.Group("cpu", "")
    assert claims.regime_results(experiment, rows, group) == [
        (
            True,
            "The regime this preset needs, the net without dropout overfits (none's final "
            "training error below 5%): holds, 2.50% (its validation error 36.00% at epoch 4, when "
            "its training error first fell below 5%, and 37.00% after epoch 5)",
        )
    ]
    # 5 epochs on 10,000 images: 0.56% of the paper's images, but a cpu preset tests the claim at
    # its scale: the verdict judges it (without the paper's errors) and says what it cannot show.
    sentences = claims.verdict(experiment, rows, group)
    assert sentences[0] == (
        "cpu preset, 0.56% of the paper recipe's training images, 1 to 2 seeds a variant: the paper's orderings all hold."
    )
    assert sentences[1] == (
        "fc 33.00 vs none 38.00 ± 0.00 (test error %): the paper's ordering holds (one seed: the gap's "
        "noise is not measured)."
    )
    assert sentences[-1].startswith("What this preset cannot show: the paper's error rates")
    report.write_report(name, tmp_path)
    assert "the net without dropout overfits (none's final training error below 5%): holds, 2.50%" in (
        tmp_path / name / "README.md"
    ).read_text()
    (line,) = [x for x in report.write_index(tmp_path).read_text().splitlines() if x.startswith(f"| [{name}]")]
    assert all(s in line for s in sentences)
    # A net that still underfits: the verdict says the comparison was made outside the regime.
    write_records(tmp_path, name, [make_record(name, "none", 2, preset="cpu", n_train=10_000, train_errors=(60.0, 40.0, 22.0))])
    rows, _ = runs.load_rows(experiment, tmp_path)
    ((holds, sentence),) = claims.regime_results(experiment, rows, group)
    assert not holds and "does not hold, 9.00%" in sentence  # (2 + 3 + 22) / 3
    assert sentence.endswith("the comparison was not made in the regime the claim is about")


@pytest.mark.smoke
def test_a_regime_must_name_a_variant_of_its_preset():
    from keras_cnns.lab.experiments import Preset, Regime

    configs = get_experiment("dropout-cifar").presets["smoke"].configs
    with pytest.raises(ValueError, match="regime names a variant not in the preset: 'nope'"):
        Preset(configs=configs, datasets=("cifar10",), purpose="p", runtime="r", regime=(Regime("nope", 5.0, "m"),))


@pytest.mark.smoke
def test_small_runs_say_they_cannot_be_compared(tmp_path):
    write_records(tmp_path, PVR, [make_record(PVR, v) for v in ("plain20", "plain56")])
    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    head = claims.verdict(experiment, rows, runs.Group("smoke", ""))[0]
    assert head.startswith("smoke preset: too little training to compare with the paper")


@pytest.mark.smoke
def test_ratio_and_epochs_to_target_for_relu_vs_tanh(tmp_path):
    name = "relu-vs-tanh"
    write_records(
        tmp_path,
        name,
        [
            make_record(name, "relu", train_errors=(40.0, 24.0, 20.0, 18.0, 15.0, 12.0), times=(4.0,) * 6, n_train=45_000),
            make_record(name, "tanh", train_errors=(50.0, 45.0, 40.0, 35.0, 30.0, 25.0), times=(5.0,) * 6, n_train=45_000),
        ],
    )
    experiment = get_experiment(name)
    rows, _ = runs.load_rows(experiment, tmp_path)
    group = runs.Group("smoke", "")
    assert claims.ratio_results(experiment, rows, group) == [
        "Epochs to 25% training error, tanh / ReLU: 3.00 (paper: 6)",  # 6 / 2
        "Seconds to 25% training error, tanh / ReLU: 3.75; from runs that did not take turns on the "
        "machine, so other jobs' load can move it",  # 30 / 8
    ]
    assert [o.holds for o in claims.ordering_results(experiment, rows, group)] == [True]


@pytest.mark.smoke
def test_pick_sweep_prefers_fewest_epochs_then_lowest_final_error():
    name = "relu-vs-tanh"
    slow = make_record(name, "relu", train_errors=(40.0, 30.0, 24.0), sweep_value=0.01, phase="sweep")
    fast = make_record(name, "relu", train_errors=(30.0, 20.0, 19.0), sweep_value=0.02, phase="sweep")
    diverged = make_record(name, "relu", train_errors=(10.0, 5.0), sweep_value=0.08, phase="sweep", status="diverged", test_error=None)
    value, reason = runs.pick_sweep([RunRecord.from_json(r) for r in (slow, fast, diverged)], "learning_rate", 25.0)
    assert value == 0.02 and "fewest epochs" in reason
    low = make_record(name, "relu", train_errors=(60.0, 50.0), sweep_value=0.01, phase="sweep")
    lower = make_record(name, "relu", train_errors=(60.0, 45.0), sweep_value=0.04, phase="sweep")
    value, reason = runs.pick_sweep([RunRecord.from_json(r) for r in (low, lower)], "learning_rate", 25.0)
    assert value == 0.04 and "no value reached" in reason
    assert runs.pick_sweep([RunRecord.from_json(diverged)], "learning_rate", 25.0)[0] is None


@pytest.mark.smoke
def test_latest_record_of_a_run_wins_and_completed_beats_diverged():
    experiment = get_experiment(PVR)
    old = make_record(PVR, "plain20", test_error=30.0, run_id="old-config")
    new = make_record(PVR, "plain20", test_error=20.0, run_id="new-config")
    diverged_after = make_record(PVR, "plain20", test_error=None, status="diverged", run_id="new-config")
    assert tag_key(old["tags"]) == tag_key(new["tags"])
    records = [RunRecord.from_json(r) for r in (old, new, diverged_after)]
    rows, superseded = runs.run_rows(experiment, records)
    assert [r["value"] for r in rows] == [20.0]
    assert superseded == 2


@pytest.mark.smoke
def test_index_has_one_line_per_experiment_and_links_only_those_with_records(tmp_path):
    write_records(tmp_path, PVR, [make_record(PVR, "plain20")])
    report.write_index(tmp_path)
    index = (tmp_path / "README.md").read_text()
    table = index.splitlines()[index.splitlines().index("|---|---|---|---|") + 1 :]
    first_cells = [t.split(" | ")[0].removeprefix("| ") for t in table]
    assert first_cells == [f"[{n}]({n}/README.md)" if n == PVR else n for n in list_experiments()]
    (line,) = [t for t in table if t.startswith(f"| [{PVR}]({PVR}/README.md)")]
    assert "smoke (CPU)" in line and "too little training" in line
    # An experiment not run in this folder has no page there: named, not linked.
    assert next(t for t in table if "dropout-cifar" in t).startswith("| dropout-cifar |")
    assert "not run yet" in next(t for t in table if "dropout-cifar" in t)


@pytest.mark.smoke
def test_report_without_records_says_so(tmp_path):
    path = report.write_report("lenet5-mnist", tmp_path)
    assert "No runs recorded yet." in path.read_text()
    assert pd.read_csv(io.StringIO((tmp_path / "lenet5-mnist" / "results.csv").read_text())).empty


@pytest.mark.smoke
def test_report_links_a_search_beside_it_and_lists_the_presets(tmp_path):
    text = report.write_report("lenet5-mnist", tmp_path).read_text()
    assert "Hyperparameter search" not in text and "--preset paper|quick|smoke " in text
    (tmp_path / "lenet5-mnist" / "tuning.md").write_text("# a search\n")
    text = report.write_report("lenet5-mnist", tmp_path).read_text()
    assert "- **Hyperparameter search:** [tuning.md](tuning.md)" in text


def test_summary_table_for_the_terminal_has_the_readme_rows(tmp_path):
    write_records(tmp_path, PVR, [make_record(PVR, "plain20", test_error=12.5), make_record(PVR, "resnet20", test_error=9.0)])
    table = report.summary_table(PVR, tmp_path, preset="smoke").splitlines()
    assert table[0].split()[:3] == ["variant", "dataset", "paper"] and set(table[1]) <= {"-", " "}
    assert [line.split()[0] for line in table[2:]] == ["plain20", "resnet20"]
    assert "12.50 (n=1)" in table[2] and "9.00 (n=1)" in table[3]
    assert report.summary_table(PVR, tmp_path, preset="quick") == ""  # nothing recorded


def test_front_page_shows_only_the_folder_it_was_generated_from(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n{report.README_START}\nfrom [results/](results/README.md)\n{report.README_END}\n"
    )
    before = readme.read_text()
    write_records(tmp_path / "runs", PVR, [make_record(PVR, "plain20")])
    report.write_index(tmp_path / "runs")  # a user's own runs: the front page stays
    assert readme.read_text() == before
    write_records(tmp_path / "results", PVR, [make_record(PVR, "plain20")])
    report.write_index(tmp_path / "results")
    assert "[plain-vs-residual](results/plain-vs-residual/README.md)" in readme.read_text()


@pytest.mark.smoke
def test_runs_of_an_earlier_model_revision_are_kept_apart_never_averaged(tmp_path):
    """A record of an earlier revision of its model (no ``model_revision``: revision 1) forms a
    group of its own, shown after the current runs, and never enters their mean."""
    from keras_cnns.registry import get_entry

    current = get_entry("resnet20_cifar").revision
    assert current >= 2

    def record(seed, test_error, revision):
        r = make_record(PVR, "resnet20", seed, test_error=test_error, preset="cpu")
        r["model"] = "resnet20_cifar"
        if revision is not None:
            r["model_revision"] = revision
        return r

    write_records(tmp_path, PVR, [record(0, 30.0, None), record(1, 32.0, None), record(0, 10.0, current)])
    experiment = get_experiment(PVR)
    rows, superseded = runs.load_rows(experiment, tmp_path)
    assert superseded == 0 and len(rows) == 3  # the same tags, two revisions: three runs
    found = runs.groups(rows)
    assert found == [runs.Group("cpu", ""), runs.Group("cpu", "", earlier_models=True)]
    assert [r["test_error"] for r in runs.in_group(rows, found[0])] == [10.0]
    assert sorted(r["test_error"] for r in runs.in_group(rows, found[1])) == [30.0, 32.0]
    report.write_report(PVR, tmp_path)
    text = (tmp_path / PVR / "README.md").read_text()
    assert "## Preset `cpu`" in text and "## Preset `cpu, earlier models`" in text
    assert text.index("## Preset `cpu`") < text.index("## Preset `cpu, earlier models`")
    assert get_entry("resnet20_cifar").revision_note in text
    # The headline (which the index shows on its own) names the earlier models; the index
    # lists the groups apart.
    assert claims.verdict(experiment, rows, found[1])[0].startswith("cpu preset (earlier models)")
    assert claims.verdict(experiment, rows, found[0])[0].startswith("cpu preset,")
    report.write_index(tmp_path)
    assert "cpu (CPU); cpu, earlier models (CPU)" in (tmp_path / "README.md").read_text()
    csv = (tmp_path / PVR / "results.csv").read_text()
    assert csv.splitlines()[0].split(",").count("model_revision") == 1


# --- the noise rule ---------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("gaps", "status", "phrase"),
    [
        ((1.5,), claims.HOLDS, "holds (one seed: the gap's noise is not measured)"),
        ((-0.5,), claims.DOES_NOT_HOLD, "does not hold (one seed: the gap's noise is not measured)"),
        ((0.8, 1.1, 1.4), claims.HOLDS, "holds in 3 of 3 seeds, gap 1.10 ± 0.30 points"),
        ((-2.0, -1.0, -1.5), claims.DOES_NOT_HOLD, "does not hold in any of 3 seeds, gap -1.50 ± 0.50 points"),
        # The seeds disagree in sign: within noise whatever the mean.
        ((3.0, 2.0, -0.1), claims.WITHIN_NOISE, "within noise: holds in 2 of 3 seeds, gap 1.63 ± 1.58 points"),
        # All positive, but the mean is below twice its std.
        ((0.1, 0.2, 1.5), claims.WITHIN_NOISE, "within noise: holds in 3 of 3 seeds, gap 0.60 ± 0.78 points"),
        # A zero gap agrees with neither sign.
        ((1.0, 0.0), claims.WITHIN_NOISE, "within noise: holds in 1 of 2 seeds, gap 0.50 ± 0.71 points"),
    ],
)
def test_the_noise_rule(gaps, status, phrase):
    assert claims.gap_verdict(gaps) == claims.GapVerdict(status, phrase)


@pytest.mark.smoke
def test_the_noise_rule_needs_a_gap():
    with pytest.raises(ValueError):
        claims.gap_verdict(())


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("fc", "none", "status", "words"),
    [
        ((27.0, 27.2, 26.9), (28.0, 28.1, 28.2), claims.HOLDS, "holds in 3 of 3 seeds, gap 1.07 ± 0.21 points"),
        ((27.5, 26.8, 27.9), (27.6, 27.4, 27.5), claims.WITHIN_NOISE, "within noise: holds in 2 of 3 seeds"),
        ((29.0, 29.5, 29.2), (28.0, 28.1, 28.2), claims.DOES_NOT_HOLD, "does not hold in any of 3 seeds"),
        ((27.0,), (28.0,), claims.HOLDS, "holds (one seed: the gap's noise is not measured)"),
    ],
)
def test_orderings_pair_the_seeds_and_read_the_gap_against_its_noise(tmp_path, fc, none, status, words):
    name = "dropout-cifar"
    write_records(tmp_path, name, [
        make_record(name, v, s, preset="cpu", n_train=10_000, test_error=e)
        for v, errors in (("fc", fc), ("none", none)) for s, e in enumerate(errors)
    ])  # fmt: skip
    experiment = get_experiment(name)
    rows, _ = runs.load_rows(experiment, tmp_path)
    (outcome,) = claims.ordering_results(experiment, rows, runs.Group("cpu", ""))
    assert outcome.status == status and words in outcome.sentence, outcome.sentence
    head = claims.verdict(experiment, rows, runs.Group("cpu", ""))[0]
    if status == claims.WITHIN_NOISE:
        assert head.endswith("of the paper's 1 orderings 1 within noise.")


@pytest.mark.smoke
def test_a_verdict_says_when_the_validation_split_ranks_the_variants_otherwise(tmp_path):
    name = "dropout-cifar"
    # Test error: fc below none; validation error of the tested (final) epoch: none below fc.
    write_records(tmp_path, name, [
        make_record(name, "fc", 0, preset="cpu", n_train=10_000, test_error=27.26, train_errors=(50.0, 0.0), val_errors=(50.0, 26.84)),
        make_record(name, "none", 0, preset="cpu", n_train=10_000, test_error=27.83, train_errors=(50.0, 0.0), val_errors=(50.0, 25.80)),
    ])  # fmt: skip
    experiment = get_experiment(name)
    rows, _ = runs.load_rows(experiment, tmp_path)
    (outcome,) = claims.ordering_results(experiment, rows, runs.Group("cpu", ""))
    assert outcome.sentence.endswith(
        "; the validation split ranks them the other way (fc 26.84 vs none 25.80 validation error %)"
    )


@pytest.mark.smoke
def test_a_section_lists_only_the_deviations_its_own_runs_have(tmp_path):
    name = "lenet5-mnist"
    adam = make_record(name, "lenet5", 0, preset="paper", n_train=60_000)
    adam["config"].update(optimizer="adam")
    tuned = make_record(name, "lenet5", 0, preset="paper", n_train=60_000, tuned=("optimizer=sgd",))
    tuned["config"].update(optimizer="sgd")
    modern = make_record(name, "lenet5_modern", 0, preset="paper", n_train=60_000)
    modern["config"].update(optimizer="adam")
    write_records(tmp_path, name, [adam, tuned, modern])
    report.write_report(name, tmp_path)
    text = (tmp_path / name / "README.md").read_text()
    plain, rest = text.split("## Preset `paper with tuned values`")
    assert "Adam (lr 1e-3" in plain and "lenet5_modern is a textbook variant" in plain
    assert "Runtime:" in plain
    assert "Adam" not in rest and "lenet5_modern" not in rest and "Runtime:" not in rest
    assert "Plain SGD instead of" in rest and "lenet5_distort" not in rest
    # A subset with its own small validation split: no "Trained on 45,000 images" line.
    small = make_record(PVR, "plain20", 0, preset="smoke", n_train=128)
    small["config"].update(val_size=128, train_subset=128)
    full = make_record(PVR, "plain20", 0, preset="cpu", n_train=45_000)
    full["config"].update(val_size=5000)
    write_records(tmp_path, PVR, [small, full])
    report.write_report(PVR, tmp_path)
    cpu, smoke = (tmp_path / PVR / "README.md").read_text().split("## Preset `smoke`")
    assert "Trained on 45,000 images" in cpu and "Trained on 45,000 images" not in smoke


@pytest.mark.smoke
def test_a_scaled_down_verdict_links_the_full_length_runs_and_plots_mark_the_drops(tmp_path):
    cpu = [
        make_record(PVR, v, 0, preset="cpu", n_train=45_000, test_error=e, train_errors=(60.0, 50.0, 40.0))
        for v, e in (("resnet20", 17.6), ("resnet56", 33.1))
    ]
    full = []
    for variant, error in (("resnet20", 8.9), ("resnet56", 7.2)):
        r = make_record(PVR, variant, 0, preset="paper", n_train=45_000, test_error=error, train_errors=_full_history(2.0))
        for h in r["history"]:
            h["lr"] = 0.1 if h["epoch"] <= 91 else (0.01 if h["epoch"] <= 136 else 0.001)
        full.append(r)
    write_records(tmp_path, PVR, cpu + full)
    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    assert report._lr_changes(runs.in_group(rows, runs.Group("paper", ""))) == [91, 136]
    sentences = claims.verdict(experiment, rows, runs.Group("cpu", ""))
    assert sentences[-1].startswith("At full length, [the paper preset](#preset-paper): paper preset, the paper's full training")
    assert "resnet56 7.20 vs resnet20 8.90 (test error %): the paper's ordering holds" in " ".join(
        claims.verdict(experiment, rows, runs.Group("paper", ""))
    )
    assert claims.untested_orderings(experiment, rows, runs.Group("paper", "")) == [
        "Not tested yet, for want of a completed run of plain20, plain56 among these runs: "
        "resnet20 below plain20, resnet56 below plain56"
    ]
    index = report.write_index(tmp_path).read_text()
    (line,) = [x for x in index.splitlines() if x.startswith(f"| [{PVR}]")]
    # Both groups that test the claim, the link pointing into the experiment's page.
    assert f"[the paper preset]({PVR}/README.md#preset-paper)" in line
    assert line.index("paper preset, the paper's full training") < line.index("cpu preset, ")


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("bf16", "reading"),
    [
        ((17.5, 17.9), "within the seeds' noise (-0.05 ± 0.07 over 2 paired seeds)"),
        ((19.0, 19.3), "higher beyond the seeds' noise (+1.40 ± 0.00 over 2 paired seeds)"),
    ],
)
def test_an_overrides_group_is_read_against_the_presets_own_runs(tmp_path, bf16, reading):
    float32 = (17.6, 17.9)
    write_records(tmp_path, PVR, [
        make_record(PVR, "resnet20", s, preset="cpu", n_train=45_000, test_error=e, overrides=o)
        for o, errors in (((), float32), (("precision=mixed_bfloat16",), bf16)) for s, e in enumerate(errors)
    ])  # fmt: skip
    experiment = get_experiment(PVR)
    rows, _ = runs.load_rows(experiment, tmp_path)
    group = runs.Group("cpu", "precision=mixed_bfloat16")
    # Its headline names the overrides (the index shows the headline on its own).
    assert claims.verdict(experiment, rows, group)[0].startswith("cpu preset with --set precision=mixed_bfloat16, ")
    sentence, speed = claims.baseline_results(experiment, rows, group)
    assert sentence.startswith("resnet20 with --set precision=mixed_bfloat16: ")
    assert sentence.endswith(reading)
    # Equal epoch times in the made-up records: a ratio of 1, said to come from runs apart.
    assert speed.startswith("resnet20 seconds per epoch (fastest epoch) with --set precision=mixed_bfloat16 over without: 1.00; from runs that did not take turns")
    assert claims.baseline_results(experiment, rows, runs.Group("cpu", "")) == []


@pytest.mark.smoke
def test_runs_with_a_stopping_rule_say_whether_their_validation_error_stopped_improving(tmp_path):
    name = "dropout-cifar"

    def run(variant, seed, val, stopped):
        r = make_record(name, variant, seed, preset="cpu", n_train=10_000, train_errors=tuple(v - 10 for v in val), val_errors=val)
        r["config"].update(early_stopping_patience=3, epochs=10)
        r["stopped_early"] = stopped
        return r

    records = [
        run("none", 0, (50.0, 40.0, 35.0, 36.0, 37.0, 38.0), True),  # lowest at 3, stopped after 6
        run("none", 1, (50.0, 40.0, 36.0, 34.0, 37.0, 38.0, 39.0), True),  # lowest at 4, after 7
        run("all", 0, (60.0, 55.0, 50.0, 48.0, 47.0, 46.0, 45.0, 44.0, 43.0, 42.0), False),  # the cap
    ]
    write_records(tmp_path, name, records)
    experiment = get_experiment(name)
    rows, _ = runs.load_rows(experiment, tmp_path)
    assert claims.stopping_results(rows, runs.Group("cpu", "")) == [
        "none: the stopping rule (3 epochs without a lower validation error) ended 2 of 2 runs; "
        "lowest validation error at epoch 3.5 ± 0.7 of 6.5 ± 0.7 trained: its validation error had stopped "
        "improving in every run",
        "all: the stopping rule (3 epochs without a lower validation error) ended 0 of 1 runs; "
        "lowest validation error at epoch 10 of 10 trained; 1 reached the 10-epoch cap with the "
        "validation error still falling (its lowest within the last 3 epochs)",
    ]
