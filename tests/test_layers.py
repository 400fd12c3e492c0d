"""keras_cnns.layers.BatchNorm: Keras' batch norm, fused into one kernel on TensorFlow in training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_cnns.layers import BatchNorm


def _inputs(shape=(8, 5, 5, 4), seed=0):
    # Channels far from zero mean and unit variance, one with a variance near epsilon, so a
    # wrong mean, variance, epsilon or scale shows.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype("float32")
    spread = np.array([1.0, 30.0, 0.003, 2.0], "float32")[: shape[-1]]
    shift = np.array([0.5, -40.0, 3.0, 0.0], "float32")[: shape[-1]]
    return x * spread + shift


def _pair(x_shape, **kwargs):
    """A keras BatchNormalization and a BatchNorm with the same config and weights."""
    ref, ours = keras.layers.BatchNormalization(**kwargs), BatchNorm(**kwargs)
    ref.build(x_shape)
    ours.build(x_shape)
    rng = np.random.default_rng(1)
    for a, b in zip(ref.weights, ours.weights, strict=True):
        value = rng.uniform(0.5, 1.5, a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    return ref, ours


def _exact(layer, x, upstream):
    """Batch norm of ``x`` in float64 with ``layer``'s weights: the output, the batch mean and
    (biased) variance, and the gradients of ``sum(y * upstream)`` for x, gamma and beta."""
    x = np.asarray(x, "float64")
    n = x.size // x.shape[-1]
    gamma = np.asarray(keras.ops.convert_to_numpy(layer.gamma), "float64") if layer.scale else 1.0
    beta = np.asarray(keras.ops.convert_to_numpy(layer.beta), "float64") if layer.center else 0.0
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    inv = 1.0 / np.sqrt(var + layer.epsilon)
    xhat = (x - mean) * inv
    up = np.asarray(upstream, "float64")
    dgamma, dbeta = (up * xhat).sum((0, 1, 2)), up.sum((0, 1, 2))
    dx = gamma * inv / n * (n * up - dbeta - xhat * dgamma)
    return xhat * gamma + beta, mean, var, dx, dgamma, dbeta


def _errors(value, exact):
    """The largest absolute error per channel (last axis)."""
    value = np.asarray(keras.ops.convert_to_numpy(value), "float64")
    return np.abs(value - exact).reshape(-1, exact.shape[-1]).max(axis=0)


@pytest.mark.smoke
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"epsilon": 1e-5, "momentum": 0.9},  # the CIFAR ResNets' (below the fused op's wrapper minimum)
        {"center": False, "scale": False},
        {"axis": -1, "epsilon": 1.001e-5},
    ],
)
def test_training_call_is_keras_batch_norm(kwargs):
    x = _inputs()
    ref, ours = _pair(x.shape, **kwargs)
    y_exact, mean, var, *_ = _exact(ours, x, np.zeros_like(x))
    moving_mean, moving_variance = (keras.ops.convert_to_numpy(w) for w in ours.non_trainable_weights)
    y_ref, y = ref(x, training=True), ours(x, training=True)
    if keras.backend.backend() != "tensorflow":  # Keras' own code there, bitwise
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), keras.ops.convert_to_numpy(y_ref))
        for a, b in zip(ref.non_trainable_weights, ours.non_trainable_weights, strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a))
        return
    keras_err, our_err = _errors(y_ref, y_exact), _errors(y, y_exact)
    # Within rounding of the exact batch norm on every channel, and no less accurate than
    # Keras' own code (TensorFlow's fused kernel computes (x - mean) * scale where Keras
    # computes x * scale + (beta - mean * scale): on channel 2, a mean 1,000 standard
    # deviations from zero, Keras' output loses digits the fused kernel keeps).
    assert np.all(our_err <= 2 * keras_err + 2e-6), (our_err, keras_err)
    assert np.all(our_err < 3e-5), our_err
    momentum = ours.momentum
    np.testing.assert_allclose(  # the moving statistics, updated as Keras does (biased variance)
        keras.ops.convert_to_numpy(ours.moving_mean), moving_mean * momentum + mean * (1 - momentum), rtol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours.moving_variance), moving_variance * momentum + var * (1 - momentum), rtol=1e-6
    )
    for a, b in zip(ref.non_trainable_weights, ours.non_trainable_weights, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a), rtol=1e-6)
    # Inference uses the moving statistics: Keras' own code, the same numbers from the same weights.
    for a, b in zip(ref.non_trainable_weights, ours.non_trainable_weights, strict=True):
        b.assign(a)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(ours(x, training=False)), keras.ops.convert_to_numpy(ref(x, training=False))
    )


@pytest.mark.smoke
@pytest.mark.parametrize("shape,axis", [((8, 5, 5, 4), 1), ((16, 4), -1), ((2, 3, 4, 4, 4), -1)])
def test_other_cases_are_keras_own_code(shape, axis):
    x = _inputs(shape)
    ref, ours = _pair(x.shape, axis=axis)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(ours(x, training=True)), keras.ops.convert_to_numpy(ref(x, training=True))
    )
    for a, b in zip(ref.non_trainable_weights, ours.non_trainable_weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a))


@pytest.mark.smoke
def test_serialises_with_keras_config():
    layer = BatchNorm(epsilon=1e-5, momentum=0.9, center=False, name="bn")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is BatchNorm
    assert clone.get_config() == layer.get_config()
    assert isinstance(clone, keras.layers.BatchNormalization)  # analysis and distribution see a batch norm


def _tf_gradient_tensors(layer, x, upstream):
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
    return tape.gradient(loss, [x, *layer.trainable_weights])


def _tf_gradients(layer, x, upstream):
    return [g.numpy() for g in _tf_gradient_tensors(layer, x, upstream)]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's")
@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_tensorflow_runs_one_fused_kernel_with_exact_gradients(policy):
    import tensorflow as tf

    x = _inputs()
    upstream = np.random.default_rng(2).standard_normal(x.shape).astype("float32")
    ref, ours = _pair(x.shape, dtype=policy, epsilon=1e-5, momentum=0.9)
    if policy != "float32":  # the input a mixed-precision layer gets; Keras and the kernel compute in float32
        x = tf.cast(x, ours.compute_dtype).numpy()
    _, _, _, *exact = _exact(ours, x, upstream)
    for g, g_ref, g_exact in zip(_tf_gradients(ours, x, upstream), _tf_gradients(ref, x, upstream), exact, strict=True):
        keras_err, our_err = _errors(g_ref, g_exact), _errors(g, g_exact)
        # A half-precision input gradient is rounded to 8 (bfloat16) or 11 (float16) bits.
        tolerance = {"float32": 2e-6, "mixed_float16": 2e-3, "mixed_bfloat16": 2e-2}[policy] * np.abs(g_exact).max()
        assert np.all(our_err <= 2 * keras_err + tolerance), (our_err, keras_err)

    graph = tf.function(lambda t: ours(t, training=True)).get_concrete_function(tf.constant(x)).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in kinds and "Mean" not in kinds, sorted(kinds)
    graph = tf.function(lambda t: ref(t, training=True)).get_concrete_function(tf.constant(x)).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}  # Keras' own: unfused


@pytest.mark.smoke
def test_models_use_it():
    from keras_cnns.registry import build_model

    model = build_model("resnet20_cifar", input_shape=(32, 32, 3), num_classes=10)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 19 and all(type(layer) is BatchNorm for layer in norms)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's")
def test_tensorflow_under_xla_runs_keras_own_code():
    # Keras compiles the step with XLA on TensorFlow with a GPU. XLA expands the fused kernel
    # with a one-pass variance (channel 2's gradients came out up to 40% off), so there the
    # layer is Keras' batch norm, bitwise.
    import tensorflow as tf

    x = _inputs()
    upstream = np.random.default_rng(3).standard_normal(x.shape).astype("float32")
    ref, ours = _pair(x.shape, epsilon=1e-5, momentum=0.9)
    ours_xla = tf.function(lambda t: _tf_gradient_tensors(ours, t, upstream), jit_compile=True)
    ref_xla = tf.function(lambda t: _tf_gradient_tensors(ref, t, upstream), jit_compile=True)
    for g, g_ref in zip(ours_xla(tf.constant(x)), ref_xla(tf.constant(x)), strict=True):
        np.testing.assert_array_equal(g.numpy(), g_ref.numpy())
    graph = ours_xla.get_concrete_function(tf.constant(x)).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's")
def test_tensorflow_without_its_xla_helper_runs_keras_own_code(monkeypatch):
    # Whether a graph is traced for XLA is told by a private TensorFlow helper; a TensorFlow
    # that moved it gets Keras' own code (never wrong, only slower), not an error.
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    monkeypatch.delattr(control_flow_util, "GraphOrParentsInXlaContext")
    x = _inputs()
    _, ours = _pair(x.shape)
    graph = tf.function(lambda t: ours(t, training=True)).get_concrete_function(tf.constant(x)).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}
