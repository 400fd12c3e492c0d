"""Stochastic depth that skips a dropped block (Huang et al. 2016, Sec. 3; mode="batch").

A ``StochasticDepth`` given its ``branch`` runs the branch only when the block is kept: a
dropped block's layers do not run and their state (batch-norm moving statistics, a call
counter) does not change, in eager calls and in compiled training on every backend. A kept
block is bitwise the old computation (``shortcut + branch(x)``), the expected training output
is the inference output, the seed fixes the draws, and the layer survives a ``.keras`` round
trip. Parameter counts and the other layer semantics are pinned in ``test_models_resnet.py``.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from keras_cnns import build_model
from keras_cnns.layers import StochasticDepth
from keras_cnns.training import reset_seed_generators


class CallCounter(keras.layers.Layer):
    """``x @ ones``, counting its training calls in a non-trainable variable (a test probe)."""

    def __init__(self, units: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="ones", name="kernel"
        )
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x, training=None):
        if training:
            self.calls.assign(self.calls + 1.0)
        return keras.ops.matmul(x, self.kernel)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _branch(features: int = 4, *, name: str = "branch") -> keras.Model:
    """A functional branch: counter (x @ ones), then batch norm."""
    inputs = keras.Input((features,))
    y = CallCounter(features, name=f"{name}_counter")(inputs)
    y = keras.layers.BatchNormalization(momentum=0.5, name=f"{name}_bn")(y)
    return keras.Model(inputs, y, name=name)


def _state(model: keras.Model) -> list[np.ndarray]:
    return [_np(v) for v in model.non_trainable_variables]


def _data(batch: int = 8, features: int = 4):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(batch, features)).astype("float32"),
        rng.normal(size=(batch, features)).astype("float32"),
    )


@pytest.mark.smoke
def test_dropped_block_skips_its_branch_kept_block_is_the_old_computation():
    shortcut, x = _data()
    branch, twin = _branch(), _branch(name="twin")
    twin.set_weights(branch.get_weights())
    layer = StochasticDepth(0.5, mode="batch", seed=11, branch=branch)
    seen = {"kept": 0, "dropped": 0}
    for _ in range(12):
        before = _state(branch)
        out = _np(layer([shortcut, x], training=True))
        if np.array_equal(out, shortcut):  # dropped: the branch did not run
            seen["dropped"] += 1
            for a, b in zip(before, _state(branch), strict=True):
                np.testing.assert_array_equal(a, b)
        else:  # kept: bitwise shortcut + branch(x), state updated as the branch alone does
            seen["kept"] += 1
            expected = shortcut + _np(twin(x, training=True))
            np.testing.assert_array_equal(out, expected)
            for a, b in zip(_state(twin), _state(branch), strict=True):
                np.testing.assert_array_equal(a, b)
    counter = branch.get_layer("branch_counter")
    assert float(_np(counter.calls)) == seen["kept"]
    assert seen["kept"] > 0 and seen["dropped"] > 0  # P(all 12 alike) = 2**-11


@pytest.mark.smoke
def test_compiled_training_skips_dropped_branches():
    # One fixed batch, zero learning rate: only the draws change between epochs. A dropped
    # block outputs its input, so the loss is then exactly mean(x**2) (the target is zero);
    # a kept block adds the batch-normalised branch and changes it. The counter must count
    # exactly the kept epochs, and the moving mean must have had exactly that many updates.
    shortcut, _ = _data()
    branch = _branch()
    inputs = keras.Input((4,))
    outputs = StochasticDepth(0.5, mode="batch", seed=7, branch=branch)([inputs, inputs])
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    history = model.fit(shortcut, np.zeros_like(shortcut), batch_size=8, epochs=16, verbose=0)
    identity_loss = float(np.mean(shortcut**2))
    kept = sum(not np.isclose(loss, identity_loss, rtol=1e-6) for loss in history.history["loss"])
    assert 0 < kept < 16  # P(all 16 alike) = 2**-15
    assert float(_np(branch.get_layer("branch_counter").calls)) == kept
    # Each update: m <- 0.5 m + 0.5 mean, from m = 0 and the same batch mean every time.
    batch_mean = (shortcut @ np.ones((4, 4), "float32")).mean(axis=0)
    np.testing.assert_allclose(
        _np(branch.get_layer("branch_bn").moving_mean), batch_mean * (1 - 0.5**kept), rtol=1e-5
    )


@pytest.mark.smoke
def test_expected_training_output_is_the_inference_output():
    shortcut, x = _data()
    p, draws = 0.7, 200
    inputs = keras.Input((4,))
    branch = keras.Model(inputs, CallCounter(4)(inputs))  # deterministic: no batch norm
    layer = StochasticDepth(p, mode="batch", seed=3, branch=branch)
    residual = x @ np.ones((4, 4), "float32")
    inference = _np(layer([shortcut, x], training=False))
    np.testing.assert_allclose(inference, shortcut + p * residual, rtol=1e-6)
    outputs = np.stack([_np(layer([shortcut, x], training=True)) for _ in range(draws)])
    kept = np.all(np.isclose(outputs, shortcut + residual, rtol=0, atol=1e-5), axis=(1, 2))
    dropped = np.all(outputs == shortcut, axis=(1, 2))
    assert np.all(kept ^ dropped)
    # E[output] = shortcut + p * residual; the kept fraction has standard error 0.032.
    assert abs(kept.mean() - p) < 4 * np.sqrt(p * (1 - p) / draws)
    np.testing.assert_allclose(
        outputs.mean(axis=0), inference, atol=4 * 0.033 * np.abs(residual).max()
    )


def _kept_sequence(layer, shortcut, x, n: int = 10) -> list[bool]:
    return [
        not np.array_equal(_np(layer([shortcut, x], training=True)), shortcut) for _ in range(n)
    ]


@pytest.mark.smoke
def test_seed_fixes_the_draws_and_the_engine_reseeds_them():
    shortcut, x = _data()
    first = StochasticDepth(0.5, seed=21, branch=_branch())
    second = StochasticDepth(0.5, seed=21, branch=_branch())
    assert _kept_sequence(first, shortcut, x) == _kept_sequence(second, shortcut, x)
    # The training engine reseeds every SeedGenerator from (seed, epoch) before each epoch.
    inputs = keras.Input((4,))
    layer = StochasticDepth(0.5, branch=_branch())
    model = keras.Model(inputs, layer([inputs, inputs]))
    assert reset_seed_generators(model, seed=1, epoch=3) == 1
    drawn = _kept_sequence(layer, shortcut, x)
    reset_seed_generators(model, seed=1, epoch=3)
    assert _kept_sequence(layer, shortcut, x) == drawn


@pytest.mark.smoke
def test_resnet_batch_mode_moves_the_branch_into_the_layer_and_round_trips(tmp_path):
    model = build_model("resnet20_cifar", input_shape=(4, 4, 3), drop_path=0.5)
    plain = build_model("resnet20_cifar", input_shape=(4, 4, 3))
    assert model.count_params() == plain.count_params()
    gate = model.get_layer("stage3_block3_add")
    assert isinstance(gate, StochasticDepth) and gate.survival_probability == 0.5
    # The branch keeps its layer names, one level down.
    assert gate.branch.name == "stage3_block3_branch"
    gate.branch.get_layer("stage3_block3_conv2_bn")
    assert sum(isinstance(layer, StochasticDepth) for layer in model.layers) == 9
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    path = tmp_path / "resnet20_sd.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(_np(restored(x)), _np(model(x)))
    assert json.loads(json.dumps(restored.get_config())) == json.loads(
        json.dumps(model.get_config())
    )
    # Reseeded alike (as the engine does each epoch), both draw the same blocks in training.
    assert reset_seed_generators(model, 5, 0) == reset_seed_generators(restored, 5, 0) == 9
    np.testing.assert_array_equal(_np(restored(x, training=True)), _np(model(x, training=True)))


@pytest.mark.smoke
def test_layer_table_counts_the_branch_inside_the_layer():
    from keras_cnns.analysis import layer_table

    plain = layer_table(build_model("resnet20_cifar", input_shape=(8, 8, 3)))[-1]
    sd = layer_table(build_model("resnet20_cifar", input_shape=(8, 8, 3), drop_path=0.5))[-1]
    assert (sd.macs, sd.params) == (plain.macs, plain.params)


@pytest.mark.smoke
def test_receptive_field_sees_through_the_branch_inside_the_layer():
    from keras_cnns.analysis import receptive_field

    plain = receptive_field(build_model("resnet20_cifar", input_shape=(8, 8, 3)))
    sd = receptive_field(build_model("resnet20_cifar", input_shape=(8, 8, 3), drop_path=0.5))
    for name in ("stage1_block1_add", "stage3_block3_out", "logits"):
        assert sd[name] == plain[name]


def _by_layer_and_name(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's weights keyed ``layer/variable`` (a branch's layers keep their names)."""
    return {"/".join(v.path.split("/")[-2:]): v for v in model.weights}


@pytest.mark.smoke
def test_compiled_step_with_no_block_dropped_is_the_constant_depth_step():
    # drop_path=1e-9: every block runs inside its conditional and none is dropped (float32
    # rounds each survival probability to 1). One compiled SGD step must then move every
    # weight as the constant-depth net's step does (to rounding: the compiler fuses the
    # elementwise work inside a conditional differently). On JAX's CPU backend this checks the
    # canonical convolution gradients inside the conditionals (bitwise in the test below).
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 10
    nets = {}
    for drop_path in (0.0, 1e-9):
        keras.utils.set_random_seed(0)
        model = build_model("resnet20_cifar", input_shape=(8, 8, 3), drop_path=drop_path)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        nets[drop_path] = model
    constant, kept = (_by_layer_and_name(nets[p]) for p in (0.0, 1e-9))
    assert constant.keys() == kept.keys()
    start = {key: _np(variable) for key, variable in constant.items()}
    for key, variable in kept.items():
        variable.assign(start[key])  # a copy: JAX donates the step's buffers
    for model in nets.values():
        model.train_on_batch(x, y)
    moved = 0
    for key, variable in constant.items():
        after = _np(variable)
        np.testing.assert_allclose(_np(kept[key]), after, rtol=1e-4, atol=1e-6, err_msg=key)
        moved += "kernel" in key and not np.allclose(after, _np(start[key]), rtol=1e-3)
    assert moved == sum("kernel" in key for key in constant)  # every kernel took the step


@pytest.mark.smoke
def test_canonical_gradient_convolution_is_bitwise_keras_convolution():
    if keras.backend.backend() != "jax":
        pytest.skip("a JAX-only kernel (the CPU backend's conditionals need it)")
    import jax

    from keras_cnns.layers import _canonical_gradient_conv

    rng = np.random.default_rng(0)
    cases = [  # (input shape, kernel size, stride, padding)
        ((2, 8, 8, 3), 3, 1, "same"),
        ((2, 8, 8, 3), 3, 2, "same"),
        ((2, 9, 7, 3), 3, 2, "same"),
        ((2, 9, 7, 3), 3, 2, "valid"),
        ((2, 8, 8, 3), 1, 2, "same"),
        ((2, 10, 10, 2), 5, 3, "valid"),
    ]
    for shape, k, s, padding in cases:
        x = rng.normal(size=shape).astype("float32")
        w = rng.normal(size=(k, k, shape[-1], 4)).astype("float32")

        def native(x, w, s=s, padding=padding):
            return keras.ops.conv(x, w, strides=s, padding=padding)

        canonical = _canonical_gradient_conv((s, s), padding)
        y, native_vjp = jax.vjp(native, x, w)
        y_canonical, canonical_vjp = jax.vjp(canonical, x, w)
        np.testing.assert_array_equal(np.asarray(y_canonical), np.asarray(y))
        dy = rng.normal(size=y.shape).astype("float32")
        grads = jax.jit(lambda dy, f=native_vjp: f(dy))(dy)
        canonical_grads = jax.jit(lambda dy, f=canonical_vjp: f(dy))(dy)
        for a, b in zip(canonical_grads, grads, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{k} {s} {padding}")
