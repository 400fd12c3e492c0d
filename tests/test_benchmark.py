"""The engine's fast paths and the benchmark that times them.

Every fast path must train exactly like the plain one: the same compiled step runs on the
same batches in the same order, so on a CPU (deterministic kernels) the losses, metrics and
weights must be bitwise equal, not merely close. ``smoke`` tests also run on JAX (where data
on the device is tested) and PyTorch in CI.
"""

from __future__ import annotations

import csv
import threading
import types

import keras
import numpy as np
import pytest

from keras_cnns import benchmark, data, training
from keras_cnns.cli import main
from keras_cnns.registry import build_model
from keras_cnns.training.config import TrainConfig

N_IMAGES, BATCH, SIDE = 96, 32, 8  # three steps an epoch, 8x8 images: quick to compile


class _StepLosses(keras.callbacks.Callback):
    """Each batch's running-mean loss, by batch index; async-safe like the engine's own hooks."""

    async_safe = True

    def __init__(self):
        super().__init__()
        self.losses: dict[tuple[int, int], float] = {}
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.losses[(self.epoch, batch)] = float(logs["loss"])


def _arrays(poison_batch: int | None = None):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N_IMAGES, SIDE, SIDE, 3)).astype("float32")
    y = rng.integers(0, 10, N_IMAGES)
    if poison_batch is not None:
        x[poison_batch * BATCH : (poison_batch + 1) * BATCH] = np.nan
    return x, y


def _small_net():
    """Every kind of state a step touches: kernels (L2), batch-norm statistics, a dropout seed."""
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.25, seed=5, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="small")


def _compiled(steps_per_execution: int = 1):
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    config = TrainConfig(
        model="small",
        batch_size=BATCH,
        augment=("pad_crop", "flip"),
        learning_rate=0.05,
        weight_decay=5e-5,
        steps_per_execution=steps_per_execution,
    )
    augmenter = data.make_augmenter(config.augment, seed=3, image_shape=(SIDE, SIDE, 3))
    steps = -(-N_IMAGES // BATCH)
    return training.compile_for_training(
        _small_net(), config, augmenter=augmenter, steps_per_epoch=steps
    )


def _train_two_epochs(*, on_device: bool, steps_per_execution: int, sync_check: bool):
    wrapper = _compiled(steps_per_execution)
    x, y = _arrays()
    feed = training.make_feed(x, y, on_device=on_device)
    val = training.make_feed(x[:40], y[:40], on_device=on_device)
    losses = _StepLosses()
    detector = benchmark.measure._sync_detector(training)() if sync_check else training.StopOnNonFinite()
    histories = []
    for epoch in range(2):
        training.reset_seed_generators(wrapper, 3, epoch)
        order = np.random.default_rng([3, epoch]).permutation(N_IMAGES)
        fit = training.fit_epoch(
            wrapper,
            feed,
            batch_size=BATCH,
            epoch=epoch,
            order=order,
            validation=val,
            callbacks=[detector, losses],
        )
        histories.append(fit.history)
    weights = [keras.ops.convert_to_numpy(v) for v in wrapper.weights]
    return histories, losses.losses, weights


@pytest.mark.smoke
def test_every_fast_path_trains_bitwise_like_the_plain_path(backend):
    """Async NaN check, steps per execution, data on the device (JAX): same numbers as plain.

    Exact equality is the right bar: each path runs the same compiled step on identical
    batches in the same order, and CPU kernels are deterministic; any difference would mean
    another order, other data or a skipped step.
    """
    plain_history, plain_losses, plain_weights = _train_two_epochs(
        on_device=False, steps_per_execution=1, sync_check=True
    )
    assert len(plain_losses) == 6 and all(np.isfinite(v) for v in plain_losses.values())
    # The async check alone, then everything at once (data on the device where the backend
    # has it: JAX); each compiles anew, so two variants keep the test quick.
    for on_device, spe in [(False, 1), (backend == "jax", 3)]:
        history, losses, weights = _train_two_epochs(
            on_device=on_device, steps_per_execution=spe, sync_check=False
        )
        what = f"on_device={on_device}, steps_per_execution={spe}"
        assert history == plain_history, what  # loss, accuracy, val_loss, val_accuracy per epoch
        if backend != "torch":  # Keras runs one step per call on PyTorch: every batch reports
            expected_batches = {(e, b) for e in range(2) for b in range(3) if (b + 1) % spe == 0}
            assert set(losses) == expected_batches, what
        assert losses == {k: plain_losses[k] for k in losses}, what
        for a, b in zip(plain_weights, weights, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=what)


@pytest.mark.smoke
def test_data_on_the_device_sends_nothing_from_the_host_per_step(backend, capfd):
    """JAX's transfer guard logs every implicit host-to-device copy: with the data on the
    device a pass of three steps makes as many as a pass of one (Keras' per-pass resets);
    the plain path makes two more a step (the batch's images and labels)."""
    if backend != "jax":
        pytest.skip("data on the device is the JAX path")
    import jax

    wrapper = _compiled()
    x, y = _arrays()
    counts = {}
    for on_device in (True, False):
        for n in (BATCH, 3 * BATCH):
            feed = training.make_feed(x[:n], y[:n], on_device=on_device)
            training.fit_epoch(wrapper, feed, batch_size=BATCH, epoch=0)  # compiled, warm
            capfd.readouterr()
            with jax.transfer_guard_host_to_device("log"):
                training.fit_epoch(
                    wrapper, feed, batch_size=BATCH, epoch=1, order=np.arange(n)[::-1]
                )
            counts[on_device, n // BATCH] = capfd.readouterr().err.count("host-to-device transfer")
    assert counts[True, 3] == counts[True, 1]
    assert counts[False, 3] == counts[False, 1] + 2 * 2


@pytest.mark.smoke
def test_nan_check_off_the_main_thread_finds_the_same_first_batch():
    """Batch 1 holds NaN images: the check off the main thread names the batch the check on it
    names, and stops the epoch."""
    x, y = _arrays(poison_batch=1)
    found = []
    for sync in (True, False):
        wrapper = _compiled()
        detector = benchmark.measure._sync_detector(training)() if sync else training.StopOnNonFinite()
        fit = training.fit_epoch(
            wrapper, training.HostFeed(x, y), batch_size=BATCH, epoch=0, callbacks=[detector]
        )
        assert not np.isfinite(fit.history["loss"][-1])
        assert wrapper.stop_training
        found.append(detector.batch)
    # NaN images give a NaN loss at once, or one step later where ReLU maps NaN to 0 (XLA on a
    # CPU) and only the NaN gradients reach the loss through the weights.
    assert found[0] in (1, 2) and found[1] == found[0]


def test_stop_on_non_finite_keeps_the_earliest_batch_when_hooks_run_out_of_order():
    detector = training.StopOnNonFinite()
    fitted = types.SimpleNamespace(stop_training=False)
    detector.set_model(fitted)
    threads = [
        threading.Thread(target=detector.on_train_batch_end, args=(b, {"loss": v}))
        for b, v in ((7, float("nan")), (2, 0.5), (5, float("inf")), (6, float("nan")))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (detector.batch, detector.loss, fitted.stop_training) == (5, float("inf"), True)
    assert training.StopOnNonFinite.async_safe and training.callbacks.EpochProgbar.async_safe


def test_train_records_the_same_run_with_steps_per_execution(
    tmp_path, data_dir, monkeypatch, backend
):
    """train() end to end: steps_per_execution=2 (and, on JAX, data on the device) changes no number."""
    config = TrainConfig(
        model="cifar_4layer", epochs=2, batch_size=64, train_subset=256, test_subset=128,
        val_size=64, augment=("flip",), seed=4,
    )  # fmt: skip
    plain = training.train(config, out_dir=tmp_path / "plain", data_dir=data_dir, verbose=0).to_json()
    if backend == "jax":
        monkeypatch.setattr(training.feeds, "device_data_fits", lambda *arrays: True)
    fast = training.train(
        config.replace(steps_per_execution=2),
        out_dir=tmp_path / "fast",
        data_dir=data_dir,
        verbose=0,
    ).to_json()
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [[h[k] for k in keys] for h in fast["history"]] == [
        [h[k] for k in keys] for h in plain["history"]
    ]
    assert fast["test"] == plain["test"]
    # steps_per_execution is a placement field (keras_cnns.training.config.PLACEMENT_FIELDS): the same
    # steps in the same order are the same run, so it keeps its run_id; the config records it.
    assert fast["run_id"] == plain["run_id"] and fast["config"]["steps_per_execution"] == 2
    assert (plain["data_on_device"], fast["data_on_device"]) == (False, backend == "jax")


# --- the benchmark -----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [20, 110])
def test_reference_of_every_depth_has_the_keras_models_trainable_parameters(depth):
    pytest.importorskip("torch")
    model = benchmark.reference_resnet(depth)
    keras_model = build_model(f"resnet{depth}_cifar")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        int(np.prod(v.shape)) for v in keras_model.trainable_variables
    )


def test_each_cifar_resnet_benchmarked_gets_its_own_reference():
    from keras_cnns.benchmark.cases import reference_depth, reference_models

    assert reference_models(["cifar_4layer", "resnet20_cifar", "plain20_cifar", "resnet56_cifar"]) == (
        "resnet20_cifar", "resnet56_cifar",
    )  # fmt: skip
    assert reference_models(["cifar_4layer"]) == (benchmark.REFERENCE_MODEL,)
    assert reference_depth("resnet110_cifar") == 110
    with pytest.raises(ValueError):
        reference_depth("plain20_cifar")
    import argparse

    from keras_cnns.benchmark.cases import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--cpu-sizes", "--backends", "tensorflow", "--models", "resnet20_cifar,resnet56_cifar"])
    plan = benchmark.plan_from_args(args)
    refs = [c for c in plan.cases if c.backend == benchmark.REFERENCE]
    assert sorted({c.model for c in refs}) == ["resnet20_cifar", "resnet56_cifar"]


def test_on_a_cpu_each_reference_takes_turns_with_its_keras_row_in_one_worker(monkeypatch):
    import argparse

    from keras_cnns.benchmark import runner
    from keras_cnns.benchmark.cases import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--cpu-sizes", "--backends", "tensorflow,jax", "--models", "resnet20_cifar,cifar_4layer",
         "--batch-sizes", "16", "--augment", "off", "--isolate", "backend"]
    )  # fmt: skip
    plan = benchmark.plan_from_args(args)
    monkeypatch.setattr(runner, "gpu_visible", lambda: False)
    groups = runner._worker_groups(plan)
    assert [sorted({c.backend for c in g}) for g in groups] == [
        [benchmark.REFERENCE, "tensorflow"], ["jax"]
    ]  # the reference joins the first backend with its Keras row, not a worker of its own
    (reference,) = [c for c in groups[0] if c.backend == benchmark.REFERENCE]
    assert runner._partner_of(groups[0], reference).model == reference.model == "resnet20_cifar"
    monkeypatch.setattr(runner, "gpu_visible", lambda: True)  # a GPU: a worker of its own
    assert [sorted({c.backend for c in g}) for g in runner._worker_groups(plan)] == [
        ["tensorflow"], ["jax"], [benchmark.REFERENCE]
    ]


def test_on_a_cpu_a_workers_compiled_steps_take_turns_and_a_failure_stays_its_own(monkeypatch):
    from keras_cnns.benchmark import measure, runner
    from keras_cnns.benchmark.cases import Case, Sizes

    calls = []

    class Timer:
        def __init__(self, cases, sizes, *, isolated, fresh_session=True):
            self.cases, self.fresh, self.turns = list(cases), fresh_session, 0

        def take_turn(self):
            calls.append((self.cases[0].model, self.cases[0].augment))
            self.turns += 1
            if self.cases[0].model == "resnet56_cifar" and self.turns == 2:
                raise MemoryError("out of memory")

        def rows(self):
            return [{"model": c.model, "augment": c.augment, "turns": self.turns, "fresh": self.fresh} for c in self.cases]

    monkeypatch.setattr(measure, "EngineStep", Timer)

    def case(model, augment):
        return Case("tensorflow", model, "float32", 8, augment, "engine", 1)

    groups = runner._compile_groups([case("resnet20_cifar", False), case("resnet20_cifar", True), case("resnet56_cifar", False)])
    assert len(groups) == 3
    sizes = Sizes("t", 8, 1, 2, (8,), ("resnet20_cifar",), ("float32",))
    rows = runner.measure_in_turns(groups, sizes, isolated=False)
    # Round by round, every compiled step trains one pass; the failed one drops out in round 2.
    assert calls == [
        ("resnet20_cifar", False), ("resnet20_cifar", True), ("resnet56_cifar", False),
        ("resnet20_cifar", False), ("resnet20_cifar", True), ("resnet56_cifar", False),
        ("resnet20_cifar", False), ("resnet20_cifar", True),
    ]  # fmt: skip
    assert [r.get("turns") for r in rows[:2]] == [3, 3] and [r["fresh"] for r in rows[:2]] == [True, False]
    assert rows[2]["status"] == "error: MemoryError: out of memory" and rows[2]["model"] == "resnet56_cifar"


def test_reference_resnet56_has_the_keras_models_trainable_parameters():
    torch = pytest.importorskip("torch")
    model = benchmark.reference_resnet(56)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    keras_model = build_model("resnet56_cifar")
    keras_trainable = sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables)
    assert trainable == keras_trainable == benchmark.REFERENCE_TRAINABLE_PARAMS
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert model(x).shape == (4, 10)
    augmented = benchmark.reference_augment(x, torch.Generator().manual_seed(0))
    assert augmented.shape == x.shape
    # Every output pixel is an input pixel of its image, or a zero from the padding.
    for i in range(4):
        values = set(x[i].flatten().tolist()) | {0.0}
        assert set(augmented[i].flatten().tolist()) <= values


@pytest.mark.smoke
def test_cpu_sized_benchmark_writes_its_table(tmp_path, backend, capsys):
    out = tmp_path / "bench"
    # The whole run once, on CI's first backend; elsewhere one augmented case and no reference
    # (plain PyTorch is the same whatever the Keras backend).
    first = backend == "tensorflow"
    args = [
        "benchmark", "--cpu-sizes", "--backends", backend, "--models", "cifar_4layer",
        "--batch-sizes", "8", "--images", "8", "--repeats", "1", "--augment", "both" if first else "on",
        "--out", str(out), "--note", "a CPU check", *([] if first else ["--no-reference"]),
    ]  # fmt: skip
    assert main(args) == 0
    with open(out / "benchmark.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keras_rows = [r for r in rows if r["backend"] == backend]
    expected = [("off", "engine"), ("on", "engine")] if first else [("on", "engine")]
    assert [(r["augment"], r["mode"]) for r in keras_rows] == expected
    for r in keras_rows:
        assert r["status"] == "ok", r
        assert float(r["images_per_s"]) > 0 and float(r["step_ms"]) > 0
        assert (r["device"], r["peak_memory_mib"], r["trainable_params"]) == ("cpu", "n/a", "89578")
        assert r["data"] == "host" and r["passes"] == "1" and r["steps_per_pass"] == "1"
    reference = [r for r in rows if r["backend"] == benchmark.REFERENCE]
    if benchmark.cases._installed("torch") and first:
        assert [r["status"] for r in reference] == ["ok", "ok"]
        assert {r["trainable_params"] for r in reference} == {"853018"}
    readme = (out / "README.md").read_text()
    assert "> a CPU check" in readme and "**CPU run.**" in readme
    assert readme.count("not measured: this run had no GPU rows") == 5
    assert "| cifar_4layer |" in capsys.readouterr().out
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    table = (out / "benchmark.csv").read_text()
    assert (
        main(["benchmark", "--cpu-sizes", "--report-only", "--out", str(out), "--note", "again"])
        == 0
    )
    assert (
        "> again" in (out / "README.md").read_text()
        and (out / "benchmark.csv").read_text() == table
    )


@pytest.mark.smoke
@pytest.mark.parametrize(
    "option, message",
    [
        (["--models", "resnet57_cifar"], "unknown model 'resnet57_cifar'"),
        (["--precisions", "float8"], "--precisions: unknown 'float8'"),
        (["--batch-sizes", "0"], "--batch-sizes takes positive integers, got 0"),
        (["--batch-sizes", "12,x"], "--batch-sizes takes positive integers, got 'x'"),
        (["--augment", "sometimes"], "--augment must be one of"),
        (["--modes", "turbo"], "--modes: unknown 'turbo'"),
        (["--backends", "mxnet"], "--backends: unknown 'mxnet'"),
        (["--isolate", "thread"], "--isolate must be one of"),
        (["--models", "cifar_4layer,cifar_4layer"], "--models lists a name twice"),
        (["--report-only"], "--report-only needs"),
    ],
)
def test_bad_options_are_one_line(option, message, tmp_path, capsys):
    assert main(["benchmark", "--cpu-sizes", "--out", str(tmp_path), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def _gpu_row(precision, batch, augment, images_per_s, **extra):
    row = {c: "" for c in benchmark.CSV_COLUMNS}
    row.update(
        backend="jax", model="resnet56_cifar", precision=precision, batch_size=str(batch),
        augment=augment, mode="engine", steps_per_execution="1", status="ok",
        images_per_s=str(images_per_s), step_ms=str(1000 * batch / images_per_s),
        device="NVIDIA H100 80GB HBM3",
    )  # fmt: skip
    row.update(extra)
    return row


def test_targets_are_judged_from_gpu_rows_only():
    rows = [
        _gpu_row("float32", 128, "off", 21_000),
        _gpu_row("mixed_bfloat16", 128, "off", 19_000),
        _gpu_row("mixed_bfloat16", 128, "on", 18_000),
        _gpu_row("float32", 512, "off", 30_000),
        _gpu_row("mixed_bfloat16", 512, "off", 39_000),
    ]
    verdicts = dict(benchmark.report._targets(rows))
    first, second, mixed, augment, recipe = verdicts.values()
    assert first.startswith("met: 21,000 (float32")
    assert second.startswith("NOT met: 39,000")
    assert (
        "batch 128 mixed_bfloat16 0.90x float32" in mixed
        and "batch 512 mixed_bfloat16 1.30x float32" in mixed
    )
    assert augment == "mixed_bfloat16 b128: 5.3% (over)"
    # 64,000 steps x 128 images at 18,000 img/s (the augmented batch-128 row): 7.6 minutes.
    assert recipe.startswith("estimate only") and "7.6 min" in recipe
    cpu = [dict(r, device="cpu") for r in rows]
    assert all(v.startswith("not measured") for _, v in benchmark.report._targets(cpu))


def test_ratio_to_the_reference_matches_precision_batch_augment_and_device():
    rows = [
        _gpu_row("float32", 128, "off", 20_000),
        _gpu_row("float32", 128, "off", 5_000, backend=benchmark.REFERENCE),
        _gpu_row("float32", 128, "on", 9_000),  # no reference with augmentation
        _gpu_row("float32", 128, "off", 8_000, model="resnet20_cifar"),  # no ResNet-20 reference
    ]
    benchmark.report._add_ratios(rows)
    assert [r["vs_reference"] for r in rows] == [4.0, 1.0, "", ""]
    # Each depth against its own reference.
    rows.append(_gpu_row("float32", 128, "off", 16_000, model="resnet20_cifar", backend=benchmark.REFERENCE))
    benchmark.report._add_ratios(rows)
    assert [r["vs_reference"] for r in rows] == [4.0, 1.0, "", 0.5, 1.0]
    # A row kept from another run (--merge) is not compared with this run's reference.
    rows[0]["command"] = "keras-cnns benchmark --no-reference"
    benchmark.report._add_ratios(rows)
    assert [r["vs_reference"] for r in rows] == ["", 1.0, "", 0.5, 1.0]


def test_modes_table_compares_each_mode_with_plain():
    rows = [
        _gpu_row("float32", 128, "off", 10_000, mode="plain"),
        _gpu_row("float32", 128, "off", 15_000, mode="async"),
        _gpu_row("float32", 128, "off", 16_000, mode="engine", steps_per_execution="8"),
        _gpu_row("float32", 512, "off", 30_000, mode="engine"),  # no plain row to compare with
    ]
    table = benchmark.report._modes_table(rows)
    assert "| async | 1 | 15,000 | 1.50 |" in table and "| engine | 8 | 16,000 | 1.60 |" in table
    assert "| 512 |" not in table
    assert benchmark.report._modes_table(rows[:1]) == ""  # plain alone: nothing to compare
    share = benchmark.report._augment_table([rows[0], dict(rows[0], augment="on", step_ms="14.08")])
    assert "| 12.80 | 14.08 | 9.1% |" in share


def test_merge_keeps_earlier_rows_this_run_did_not_measure():
    old = [_gpu_row("float32", 128, "off", 9_000), _gpu_row("float32", 512, "off", 25_000)]
    new = [_gpu_row("float32", 128, "off", 11_000)]
    rows = benchmark.report.combine_rows(old, new)
    assert sorted(float(r["images_per_s"]) for r in rows) == [11_000, 25_000]


def test_a_worker_that_outlives_its_timeout_leaves_error_rows(tmp_path, backend):
    args = [
        "benchmark", "--cpu-sizes", "--backends", backend, "--models", "cifar_4layer",
        "--augment", "off", "--no-reference", "--timeout", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    with open(tmp_path / "benchmark.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["status"] == "error: worker stopped after 1 s (--timeout)"
    assert "| error: worker stopped after 1 s (--timeout) |" in (tmp_path / "README.md").read_text()
