"""The training engine: schedules, weight decay, precision, records, resume, divergence, CLI.

Runs use real data subsets (the ``data_dir`` fixture) and tiny models so the file stays fast on
two CPU cores. ``smoke`` tests also run on JAX and PyTorch in CI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from keras_cnns import storage, training
from keras_cnns.cli import main
from keras_cnns.errors import DivergedError, UserError
from keras_cnns.training import learning_rate_at
from keras_cnns.training.config import PRECISIONS, TrainConfig
from keras_cnns.training.record import SCHEMA_VERSION, RunRecord

# --- schedules ---------------------------------------------------------------------------------


def cfg(**changes) -> TrainConfig:
    return TrainConfig(**{"model": "cifar_4layer", "learning_rate": 0.1, **changes})


@pytest.mark.smoke
def test_step_schedule_multiplies_by_the_factor_at_each_boundary_epoch():
    config = cfg(schedule="step", lr_boundaries=(2, 4), epochs=6)
    values = {s: learning_rate_at(config, s, 10) for s in (0, 19, 20, 39, 40, 59)}
    assert values == pytest.approx({0: 0.1, 19: 0.1, 20: 0.01, 39: 0.01, 40: 0.001, 59: 0.001})


@pytest.mark.smoke
def test_warmups_linear_and_constant():
    linear = cfg(warmup_epochs=1.0, epochs=3)
    assert [learning_rate_at(linear, s, 10) for s in (0, 4, 9, 10, 29)] == pytest.approx(
        [0.01, 0.05, 0.1, 0.1, 0.1]
    )
    # He et al. 2016's ResNet-110: 0.01 for the warm-up, then 0.1, /10 at epochs 82 and 123.
    resnet110 = cfg(
        warmup_epochs=1.0, warmup_lr=0.01, schedule="step", lr_boundaries=(82, 123), epochs=164
    )
    spe = 391
    got = [learning_rate_at(resnet110, s, spe) for s in (0, spe - 1, spe, 82 * spe - 1, 82 * spe, 123 * spe)]
    assert got == pytest.approx([0.01, 0.01, 0.1, 0.1, 0.01, 0.001])


@pytest.mark.smoke
def test_cosine_and_onecycle_values():
    cosine = cfg(schedule="cosine", epochs=10)  # 100 steps at 10 per epoch
    assert learning_rate_at(cosine, 0, 10) == pytest.approx(0.1)
    assert learning_rate_at(cosine, 50, 10) == pytest.approx(0.05)
    assert learning_rate_at(cosine, 99, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.99)))
    warm = cfg(schedule="cosine", epochs=11, warmup_epochs=1.0)  # cosine over the last 100 steps
    assert learning_rate_at(warm, 4, 10) == pytest.approx(0.05)
    assert learning_rate_at(warm, 10, 10) == pytest.approx(0.1)
    assert learning_rate_at(warm, 60, 10) == pytest.approx(0.05)

    onecycle = cfg(schedule="onecycle", epochs=10)  # peak at step round(0.3 * 99) = 30
    initial = 0.1 / training.ONECYCLE_DIV_FACTOR
    final = initial / training.ONECYCLE_FINAL_DIV_FACTOR
    got = [learning_rate_at(onecycle, s, 10) for s in (0, 15, 30, 99)]
    assert got == pytest.approx([initial, (initial + 0.1) / 2, 0.1, final])
    assert learning_rate_at(cfg(schedule="plateau"), 1000, 10) == 0.1  # before any reduction


@pytest.mark.smoke
def test_the_optimizer_schedule_computes_the_pure_values():
    """The in-graph schedule (keras.ops, every backend) equals learning_rate_at."""
    configs = [
        cfg(schedule="step", lr_boundaries=(2, 4), epochs=6, warmup_epochs=0.5),
        cfg(schedule="step", lr_boundaries=(3,), epochs=6, warmup_epochs=1.0, warmup_lr=0.01),
        cfg(schedule="cosine", epochs=6, warmup_epochs=1.0),
        cfg(schedule="onecycle", epochs=6),
        cfg(warmup_epochs=2.0, epochs=6),
    ]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    for config in configs:
        optimizer = training.make_optimizer(config, 10, model)
        schedule = optimizer._learning_rate  # the PlanSchedule object
        assert isinstance(schedule, training.PlanSchedule)
        for step in (0, 3, 4, 9, 10, 25, 30, 31, 45, 59):
            got = float(keras.ops.convert_to_numpy(schedule(step)))
            assert got == pytest.approx(learning_rate_at(config, step, 10), rel=1e-5), (config, step)
        # Serialisable (it is saved inside .keras archives with the optimizer).
        again = training.PlanSchedule.from_config(schedule.get_config())
        assert again.plan == schedule.plan
    # Constant and plateau keep a float learning rate (plateau lowers it between epochs).
    assert not isinstance(training.make_optimizer(cfg(), 10, model)._learning_rate, training.PlanSchedule)


@pytest.mark.smoke
def test_plateau_and_early_stopping_rules():
    best, wait, lr = None, 0, 0.1
    trace = []
    for val_loss in (1.0, 0.9, 0.95, 0.92, 0.9, 0.8, 0.85, 0.85):
        best, wait, lr = training.plateau_step(val_loss, best=best, wait=wait, lr=lr, patience=2, factor=0.1)
        trace.append(lr)
    # 0.95 and 0.92 do not beat 0.9: reduce after the second; 0.9 (equal) again no; 0.8 yes.
    assert trace == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001])

    best, wait, stops = None, 0, []
    for val_loss in (1.0, 0.9, 0.95, 0.9, 0.91):
        best, wait, stop = training.early_stopping_step(val_loss, best=best, wait=wait, patience=3)
        stops.append(stop)
    assert stops == [False, False, False, False, True]


@pytest.mark.smoke
def test_early_stopping_and_plateau_on_the_validation_error():
    # An overfitting net: its validation loss rises from epoch 2 while its error still falls
    # until epoch 4 (made-up numbers).
    epochs = [
        {"val_loss": 1.00, "val_accuracy": 0.60},
        {"val_loss": 1.10, "val_accuracy": 0.65},
        {"val_loss": 1.20, "val_accuracy": 0.70},
        {"val_loss": 1.30, "val_accuracy": 0.72},
        {"val_loss": 1.40, "val_accuracy": 0.71},
        {"val_loss": 1.50, "val_accuracy": 0.72},
    ]
    assert training.monitored_value(epochs[3], "val_error") == pytest.approx(0.28)
    assert training.monitored_value(epochs[3], "val_loss") == 1.30
    assert training.monitored_value({"val_loss": None, "val_accuracy": None}, "val_error") is None

    def run(monitor):
        best, wait, stops, lr, lrs = None, 0, [], 0.1, []
        p_best, p_wait = None, 0
        for entry in epochs:
            value = training.monitored_value(entry, monitor)
            best, wait, stop = training.early_stopping_step(value, best=best, wait=wait, patience=2)
            p_best, p_wait, lr = training.plateau_step(value, best=p_best, wait=p_wait, lr=lr, patience=1, factor=0.1)
            stops.append(stop)
            lrs.append(lr)
        return best, stops, lrs

    # On the loss: no improvement after epoch 1, so it stops after epoch 3 and the rate is cut
    # after every epoch from the second.
    best, stops, lrs = run("val_loss")
    assert best == 1.0 and stops.index(True) == 2
    assert lrs == pytest.approx([0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6])
    # On the error: it improves until epoch 4 (0.28; epoch 6 only equals it), so the stop comes
    # two epochs later, after epoch 6, and the first cut after epoch 5.
    best, stops, lrs = run("val_error")
    assert best == pytest.approx(0.28) and stops == [False] * 5 + [True]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.001])


# --- weight decay and precision ----------------------------------------------------------------


def _tiny_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))


def _batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 8, 8, 3)).astype("float32"), rng.integers(0, 3, size=16)


@pytest.mark.smoke
def test_l2_penalty_is_in_the_training_loss_on_this_backend():
    keras.utils.set_random_seed(1)
    model = _tiny_model()
    l2 = 0.01
    assert training.apply_l2(model, l2) == 2  # the conv and dense kernels, not the biases
    x, y = _batch()
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    reported = float(model.train_on_batch(x, y, return_dict=True)["loss"])
    cross_entropy = float(
        keras.ops.convert_to_numpy(
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x))
        )
    )
    penalty = l2 * sum(
        float(np.sum(np.square(keras.ops.convert_to_numpy(v))))
        for v in (model.get_layer("conv").kernel, model.get_layer("dense").kernel)
    )
    assert penalty > 1e-3 * cross_entropy  # big enough to see
    assert reported == pytest.approx(cross_entropy + penalty, rel=1e-5)


@pytest.mark.smoke
def test_l2_reaches_every_kernel_of_a_registry_model():
    from keras_cnns import build_model

    model = build_model("cifar_4layer")
    count = training.apply_l2(model, 5e-5)
    kernels = [v for v in model.trainable_variables if v.name == "kernel"]
    assert count == len(kernels) == 4  # three convolutions and the logits
    assert all(v.regularizer is None for v in model.trainable_variables if v.name == "bias")


@pytest.mark.smoke
def test_l2_scope_all_puts_batch_norm_gamma_and_beta_in_the_loss():
    """``weight_decay_scope="all"``: every trainable variable, batch norm's gamma and beta
    included (Torch's and PyTorch's SGD decay every parameter), and the penalty is in the loss."""
    from keras_cnns import build_model

    keras.utils.set_random_seed(3)
    model = build_model("resnet20_cifar", input_shape=(8, 8, 3))
    beta = model.get_layer("stem_bn").beta
    beta.assign(np.full(beta.shape, 0.5, "float32"))  # a nonzero beta: its penalty shows
    count = training.apply_l2(model, 0.01, "all")
    assert count == len(model.trainable_variables) == 19 * 3 + 2  # (kernel, gamma, beta) x 19 convs + the logits
    assert all(v.regularizer is not None for v in model.trainable_variables)
    penalty = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    expected = 0.01 * sum(float(np.sum(np.square(keras.ops.convert_to_numpy(v)))) for v in model.trainable_variables)
    assert penalty == pytest.approx(expected, rel=1e-5)
    kernels_only = 0.01 * sum(
        float(np.sum(np.square(keras.ops.convert_to_numpy(v)))) for v in model.trainable_variables if len(v.shape) >= 2
    )
    assert penalty > kernels_only + 0.01 * 16 * 0.25  # the stem's 16 betas of 0.5 at least


@pytest.mark.smoke
def test_decoupled_weight_decay_shrinks_kernels_only():
    keras.utils.set_random_seed(2)
    x, y = _batch()
    lr, wd = 0.1, 0.01
    start = _tiny_model().get_weights()
    trained = {}
    for decay in (0.0, wd):
        config = cfg(learning_rate=lr, momentum=0.0, weight_decay=decay, weight_decay_mode="decoupled")
        model = _tiny_model()
        model.set_weights(start)
        model.compile(
            optimizer=training.make_optimizer(config, 1, model),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.train_on_batch(x, y)
        trained[decay] = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}
    initial = {v.path: w for v, w in zip(model.trainable_variables, start, strict=True)}
    for path, w0 in initial.items():
        difference = trained[0.0][path] - trained[wd][path]
        if path.endswith("kernel"):
            # SGD: w <- w - lr * wd * w, then the gradient step (same gradient in both runs).
            np.testing.assert_allclose(difference, lr * wd * w0, rtol=1e-4, atol=1e-7)
            assert np.abs(difference).max() > 0
        else:
            np.testing.assert_array_equal(difference, 0.0)


@pytest.mark.smoke
@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_policies_and_float32_logits(precision):
    from keras_cnns import build_model

    before = keras.config.dtype_policy().name
    with training.dtype_policy(precision):
        model = build_model("cifar_4layer")
        optimizer = training.make_optimizer(cfg(precision=precision), 10, model)
    assert keras.config.dtype_policy().name == before  # no hidden global state
    compute = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[precision]
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == compute
    assert all(v.dtype == "float32" for v in model.trainable_variables)  # float32 master weights
    logits = model(np.zeros((2, 32, 32, 3), dtype="float32"))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")


# --- end-to-end runs on real data subsets ------------------------------------------------------


def _mnist(**changes) -> TrainConfig:
    """LeNet-5 (modern variant) on a tiny MNIST subset: about a second an epoch on a CPU."""
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


@pytest.mark.smoke
def test_cpu_slowdowns_are_announced_once_with_their_measured_factor(monkeypatch, capsys):
    from keras_cnns.training import environment

    monkeypatch.setattr(environment, "_announced", set())
    monkeypatch.setattr(environment, "device_name", lambda: "cpu")
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    for backend in ("tensorflow", "jax", "torch"):
        monkeypatch.setattr(environment.keras.backend, "backend", lambda b=backend: b)
        assert environment.cpu_slowdowns("float32") == (
            [environment.CPU_SLOWDOWNS[("jax", None)][1].format(factor=2.8)] if backend == "jax" else []
        )
    monkeypatch.setattr(environment.keras.backend, "backend", lambda: "tensorflow")
    (line,) = environment.cpu_slowdowns("mixed_bfloat16")
    assert "without bf16 instructions" in line and "about 11x slower than float32" in line and "use float32" in line
    assert len(environment.cpu_slowdowns("mixed_float16")) == 1
    environment.announce_cpu_slowdowns("mixed_bfloat16")
    environment.announce_cpu_slowdowns("mixed_bfloat16")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-cnns: note: mixed_bfloat16 on TensorFlow")
    # A CPU with bf16 instructions trains mixed_bfloat16 faster than float32 (measured with
    # AVX512_BF16): nothing to say there; float16 stays slow.
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert environment.cpu_slowdowns("mixed_bfloat16") == []
    assert len(environment.cpu_slowdowns("mixed_float16")) == 1
    monkeypatch.setattr(environment, "device_name", lambda: "NVIDIA H100")
    assert environment.cpu_slowdowns("mixed_bfloat16") == []  # an accelerator: nothing to say


def test_cpu_flags_reads_this_cpu():
    from keras_cnns.training import environment

    flags = environment.cpu_flags()
    assert isinstance(flags, frozenset)
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert "sse2" in flags  # every x86-64 CPU has it


def test_importing_keras_cnns_turns_on_onednn_on_x86_64_unless_the_user_set_it():
    import os
    import platform

    code = "import os, keras_cnns; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"

    def value(**env):
        base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True)
        return out.stdout.strip()

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert value() == ("1" if x86 else "None")
    assert value(TF_ENABLE_ONEDNN_OPTS="0") == "0"


@pytest.mark.smoke
def test_host_feed_batches_are_the_arrays_in_order_on_every_backend():
    x = np.arange(10 * 2 * 2 * 1, dtype=np.float32).reshape(10, 2, 2, 1)
    y = np.arange(10)
    feed = training.HostFeed(x, y)
    order = np.array([3, 1, 4, 0, 5, 9, 2, 6, 8, 7])
    data = feed.fit_data(4, order)
    if keras.backend.backend() == "tensorflow":  # our own tf.data pipeline, the autotuner off
        dataset = data["x"]
        assert dataset.options().autotune.enabled is False
        batches = [(bx.numpy(), by.numpy()) for bx, by in dataset]
    else:
        batches = [(data["x"][i : i + 4], data["y"][i : i + 4]) for i in range(0, 10, 4)]
    assert [len(b) for b, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), x[order])
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), y[order])


def test_record_fields(tmp_path, data_dir):
    config = _mnist(select="best_val", augment=("translate",))
    keras.config.set_dtype_policy("mixed_bfloat16")  # the caller's policy...
    try:
        record = training.train(
            config, out_dir=tmp_path, data_dir=data_dir, tags={"experiment": "t", "variant": "a"},
            verbose=0, tensorboard=training.tensorboard_available(),
        )  # fmt: skip
        assert keras.config.dtype_policy().name == "mixed_bfloat16"  # ...is back afterwards
    finally:
        keras.config.set_dtype_policy("float32")

    (on_disk,) = storage.read_records(tmp_path / "records.jsonl")
    assert on_disk == record.to_json() and RunRecord.from_json(on_disk) == record  # the line, typed
    assert on_disk["schema"] == SCHEMA_VERSION and on_disk["model_revision"] == 1
    assert record.run_id == config.run_id() and record.status == "completed"
    assert record.tags == {"experiment": "t", "variant": "a"}
    assert TrainConfig.from_dict(record.config) == config
    assert record.model == "lenet5_modern"
    assert record.params == record.trainable_params == 61_706  # LeCun et al. 1998's modern variant
    dataset = record.dataset
    assert dataset.name == "mnist" and dataset.source.startswith("archive:")
    assert (dataset.n_train, dataset.n_val, dataset.n_test) == (256, 64, 64)
    history = record.history
    assert [h.epoch for h in history] == [1, 2]
    for h, line in zip(history, on_disk["history"], strict=True):
        assert set(line) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
        assert all(math.isfinite(v) for v in (h.loss, h.accuracy, h.val_loss, h.val_accuracy))
        assert h.lr == pytest.approx(1e-3) and h.time > 0
    val = [h.val_accuracy for h in history]
    assert record.selected_epoch == 1 + val.index(max(val))  # best_val, earliest on a tie
    test = record.test
    assert 0.0 <= test.accuracy <= 1.0 and math.isfinite(test.loss)
    assert test.error == pytest.approx(100.0 * (1.0 - test.accuracy))
    assert record.wall_time >= sum(h.time for h in history)
    assert record.started <= record.finished and record.started.endswith("+00:00")
    assert record.backend == keras.backend.backend()
    assert {"keras", "python", "numpy", keras.backend.backend()} <= set(record.versions)
    assert record.device == "cpu" or record.device  # the GPU's name on a GPU machine
    assert record.git is None or len(record.git) == 40
    assert (record.seed, record.precision) == (0, "float32")
    assert record.preprocessing["name"] == "lenet"

    run_dir = tmp_path / "checkpoints" / config.run_id()
    assert json.loads((run_dir / "state.json").read_text())["status"] == "completed"
    assert (run_dir / "model.keras").is_file()
    if training.tensorboard_available():
        assert any((tmp_path / "tensorboard" / config.run_id()).rglob("events.out.tfevents*"))
    # The same command again: nothing is trained, nothing appended twice.
    again = training.train(config, out_dir=tmp_path, data_dir=data_dir, tags={"experiment": "t", "variant": "a"}, verbose=0)
    assert again == record
    assert len(storage.read_records(tmp_path / "records.jsonl")) == 1
    # Another experiment with the same config: its own line, without training again.
    other = training.train(config, out_dir=tmp_path, data_dir=data_dir, tags={"experiment": "u"}, verbose=0)
    assert other == dataclasses.replace(record, tags={"experiment": "u"})
    assert [r["tags"] for r in storage.read_records(tmp_path / "records.jsonl")] == [record.tags, {"experiment": "u"}]


def test_plateau_lowers_the_rate_and_early_stopping_stops(tmp_path, data_dir):
    # A rate so small the weights cannot change in float32: every validation loss is the same,
    # so the plateau (patience 1) cuts the rate after epoch 2 and early stopping (patience 2)
    # ends the run after epoch 3 of 5.
    config = _mnist(
        optimizer="sgd", momentum=0.0, learning_rate=1e-30, schedule="plateau", plateau_patience=1,
        early_stopping_patience=2, epochs=5,
    )  # fmt: skip
    record = training.train(config, out_dir=tmp_path, data_dir=data_dir, verbose=0)
    history = record.history
    assert len({h.val_loss for h in history}) == 1
    assert [h.lr for h in history] == pytest.approx([1e-30, 1e-30, 1e-31], rel=1e-6)
    assert record.stopped_early is True and record.selected_epoch == 3


def test_early_stopping_on_the_validation_error_continues_its_wait_after_a_resume(tmp_path, data_dir):
    # A rate so small the weights cannot change: the validation error never improves after
    # epoch 1, so patience 2 stops the run after epoch 3 of 5, interrupted in epoch 3 or not.
    # A resume that forgot the wait count would train a fourth epoch.
    config = _mnist(
        optimizer="sgd", momentum=0.0, learning_rate=1e-30, schedule="plateau", plateau_patience=1,
        early_stopping_patience=2, monitor="val_error", epochs=5,
    )  # fmt: skip
    with pytest.raises(_Interrupt):
        training.train(config, out_dir=tmp_path, data_dir=data_dir, verbose=0, callbacks=[_InterruptMidEpoch(2)])
    state = json.loads((tmp_path / "checkpoints" / config.run_id() / "state.json").read_text())
    first = state["history"][0]
    assert state["epochs_done"] == 2 and (state["stop_wait"], state["plateau_wait"]) == (1, 0)
    # Both rules hold the best validation ERROR (not the loss).
    assert state["stop_best"] == state["plateau_best"] == pytest.approx(1.0 - first["val_accuracy"])
    record = training.train(config, out_dir=tmp_path, data_dir=data_dir, verbose=0)
    assert [h.epoch for h in record.history] == [1, 2, 3]
    assert [h.lr for h in record.history] == pytest.approx([1e-30, 1e-30, 1e-31], rel=1e-6)
    assert record.stopped_early is True and record.config["monitor"] == "val_error"


def test_stop_at_train_error_ends_the_run_after_the_first_epoch_at_the_target(tmp_path, data_dir):
    # Any training error is at most 99.9%: the run stops after its first epoch of 3, and
    # resuming it trains nothing more.
    config = _mnist(epochs=3, stop_at_train_error=99.9)
    record = training.train(config, out_dir=tmp_path, data_dir=data_dir, verbose=0)
    assert len(record.history) == 1 and record.stopped_early is True
    # A target no run reaches in 2 epochs: all of them run.
    record = training.train(_mnist(stop_at_train_error=1e-9), out_dir=tmp_path, data_dir=data_dir, verbose=0)
    assert len(record.history) == 2 and record.stopped_early is False
    assert _mnist().run_id() != _mnist(stop_at_train_error=25.0).run_id()


@pytest.mark.smoke
def test_tensorboard_without_its_package_fails_before_any_work(tmp_path):
    if training.tensorboard_available():
        pytest.skip("tensorboard is installed: test_record_fields writes its logs")
    with pytest.raises(UserError, match="tensorboard"):
        training.train(_mnist(), out_dir=tmp_path, data_dir="/nonexistent", verbose=0, tensorboard=True)
    assert not (tmp_path / "checkpoints").exists()


class _Interrupt(Exception):
    pass


class _InterruptMidEpoch(keras.callbacks.Callback):
    """Raises in the middle of the given epoch (0-based): steps already taken are lost."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch
        self.current = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 1:
            raise _Interrupt()


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, data_dir):
    # Everything a resume must restore: momentum, the step schedule's position (boundary
    # after the interruption), L2, augmentation draws, the data order.
    config = TrainConfig(
        model="cifar_4layer", dataset="cifar10", epochs=3, batch_size=64, learning_rate=0.05,
        nesterov=True, weight_decay=5e-4, schedule="step", lr_boundaries=(2,),
        augment=("pad_crop", "flip"), val_size=64, train_subset=256, test_subset=64,
        deterministic=True, seed=3,
    )  # fmt: skip
    whole = training.train(config, out_dir=tmp_path / "whole", data_dir=data_dir, verbose=0)
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import config as tf_config

        assert not tf_config.is_op_determinism_enabled()  # switched on for the run only

    broken = tmp_path / "broken"
    with pytest.raises(_Interrupt):
        training.train(config, out_dir=broken, data_dir=data_dir, verbose=0, callbacks=[_InterruptMidEpoch(1)])
    run_dir = broken / "checkpoints" / config.run_id()
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 1
    assert not (broken / "records.jsonl").exists()
    resumed = training.train(config, out_dir=broken, data_dir=data_dir, verbose=0)

    final = f"epoch-{config.epochs:04d}.weights.h5"
    a = _h5_arrays(tmp_path / "whole" / "checkpoints" / config.run_id() / final)
    b = _h5_arrays(run_dir / final)
    assert a.keys() == b.keys() and any("optimizer" in k for k in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    strip = [dataclasses.replace(h, time=None) for h in whole.history]
    assert [dataclasses.replace(h, time=None) for h in resumed.history] == strip
    assert resumed.test == whole.test
    # Boundary 2: the rate drops once two epochs are done, so for the third.
    assert [h.lr for h in whole.history] == pytest.approx([0.05, 0.05, 0.005])


class _PoisonWeights(keras.callbacks.Callback):
    """Sets every weight to NaN at the start of the given epoch (0-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            for v in self.model.trainable_variables:
                v.assign(keras.ops.full(v.shape, float("nan"), dtype=v.dtype))


def test_a_non_finite_loss_stops_keeps_the_last_good_checkpoint_and_records(tmp_path, data_dir):
    config = _mnist(epochs=3)
    with pytest.raises(DivergedError, match="non-finite loss in epoch 2, batch 1") as info:
        training.train(config, out_dir=tmp_path, data_dir=data_dir, verbose=0, callbacks=[_PoisonWeights(1)])
    assert info.value.exit_code == 4
    (record,) = storage.read_records(tmp_path / "records.jsonl")
    assert record["status"] == "diverged" and record["test"] is None
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert math.isfinite(record["history"][0]["loss"]) and record["history"][1]["loss"] is None
    run_dir = tmp_path / "checkpoints" / config.run_id()
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["status"], state["epochs_done"], state["checkpoint"]) == ("running", 1, "epoch-0001.weights.h5")
    weights = _h5_arrays(run_dir / state["checkpoint"])
    assert all(np.isfinite(w).all() for w in weights.values() if w.dtype.kind == "f")


def test_cli_exits_4_when_the_learning_rate_diverges(tmp_path, data_dir, capsys):
    # ReLU: unbounded activations overflow within a few steps at this rate (tanh saturates).
    rc = main(
        ["train", "lenet5_modern", "--dataset", "mnist", "--epochs", "1", "--train-subset", "256",
         "--test-subset", "64", "--batch-size", "32", "--data-dir", str(data_dir), "--out", str(tmp_path),
         "--set", "learning_rate=1e6", "--set", "model_kwargs.activation=relu", "--set", "val_size=64",
         "--set", "preprocess=lenet", "--quiet"]
    )  # fmt: skip
    assert rc == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keras-cnns: diverged:")
    assert storage.read_records(tmp_path / "records.jsonl")[0]["status"] == "diverged"


# --- the command -----------------------------------------------------------------------------------

_BAD_COMMANDS = [
    (["--dataset", "imagenet"], "dataset"),
    (["--dataset", "cifar10", "--batch-size", "0"], "batch_size"),
    (["--dataset", "cifar10", "--precision", "fp16"], "precision"),
    (["--dataset", "cifar10", "--set", "colour=blue"], "colour"),
    (["--dataset", "cifar10", "--set", "epochs=ten"], "epochs"),
    (["--dataset", "cifar10", "--epochs", "0"], "epochs"),
    (["--dataset", "cifar10", "--augment", "flip,mixup"], "mixup"),
    (["--dataset", "cifar10", "--set", "learning_rate"], "key=value"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/data"], "--data-dir"),
]


@pytest.mark.smoke
def test_cli_rejects_bad_values_with_one_line_before_importing_keras(tmp_path):
    script = (
        "import sys, json\n"
        "from keras_cnns.cli import main\n"
        f"cases = {json.dumps([args for args, _ in _BAD_COMMANDS])}\n"
        "codes = [main(['train', 'resnet20_cifar', '--out', sys.argv[1], *a]) for a in cases]\n"
        "print(json.dumps({'codes': codes, 'keras': 'keras' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2] * len(_BAD_COMMANDS), "keras": False}
    lines = [line for line in done.stderr.splitlines() if line.startswith("keras-cnns: error:")]
    assert len(lines) == len(done.stderr.strip().splitlines()) == len(_BAD_COMMANDS)
    for line, (_, word) in zip(lines, _BAD_COMMANDS, strict=True):
        assert word in line
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.smoke
def test_cli_unknown_model_is_one_line(tmp_path, capsys):
    assert main(["train", "resnet21_cifar", "--dataset", "cifar10", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "resnet20_cifar" in err  # the close match is suggested


@pytest.mark.smoke
def test_cli_trains_resnet20_on_a_cifar10_subset(tmp_path, data_dir, capsys):
    # The README's smoke command, with a small validation split to stay fast on a CPU.
    rc = main(
        ["train", "resnet20_cifar", "--dataset", "cifar10", "--epochs", "1", "--train-subset", "512",
         "--test-subset", "256", "--batch-size", "128", "--set", "val_size=256",
         "--data-dir", str(data_dir), "--out", str(tmp_path), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    (record,) = storage.read_records(tmp_path / "records.jsonl")
    assert record["status"] == "completed" and record["backend"] == keras.backend.backend()
    assert record["trainable_params"] == 269_722  # He et al. 2016, Table 6, option A
    assert record["dataset"]["n_train"] == 512 and record["dataset"]["n_test"] == 256
    assert record["history"][0]["lr"] == 0.1 and math.isfinite(record["test"]["loss"])
    out = capsys.readouterr().out
    assert f"{record['run_id']}: test error" in out
