"""The models' custom layers (the augmentation layer a run trains with lives with the data:
``keras_cnns.data.augmentation_layer``).

Every layer here is Keras-serializable (registered under the ``keras_cnns`` package, with
``get_config`` chained to ``super()``), and uses ``keras.ops`` / ``keras.random`` only, so a
model that contains it saves to ``.keras``, reloads, and runs on TensorFlow, JAX and PyTorch.
Two speed paths are the exception, each computing the same function as its portable code on
one backend: ``BatchNorm``'s fused kernel on TensorFlow, and ``StochasticDepth``'s
convolutions on JAX's CPU backend.

Sections are owned by family: add a layer to the section of the family that needs it. The
module is longer than most (about 780 lines) because each layer carries the detail of its paper
and its backend-specific kernel in its docstring; one file keeps every layer findable by name.
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from keras_cnns.options import DROP_PATH_MODES

PACKAGE = "keras_cnns"

# --- Shared by the families: batch normalization ---------------------------------------------


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` (same arguments, weights and function), with its
    training step as one fused kernel on TensorFlow.

    Keras writes a training-mode batch norm as a dozen small operations (the batch mean, the
    variance, normalising, scaling and shifting, and the gradient of each), which TensorFlow
    runs one by one; on a CPU that is where most of the gap to a plain PyTorch loop went (the
    measurements: ``results/benchmarks/``). So on TensorFlow, in training, on channels-last
    4-D input computed in float32 (mixed precision included: Keras computes batch norm in
    float32 too) with no mask, renorm or synchronisation, the layer calls TensorFlow's fused
    kernel (``FusedBatchNormV3``, oneDNN's on a CPU): the same normalisation
    ``(x - mean) / sqrt(var + epsilon) * gamma + beta`` over the batch and spatial axes, its
    exact gradient, and the same moving-statistics update as Keras (the biased batch variance:
    the kernel returns it with Bessel's correction, undone here). Only the rounding differs
    (``tests/test_layers.py`` pins it). Every other case, every other backend and inference
    run Keras' own code, and so does a step XLA compiles (Keras compiles with XLA on
    TensorFlow only with a GPU): XLA fuses Keras' operations itself, and it expands the fused
    kernel with a one-pass variance that loses the digits of a channel whose mean is far
    larger than its spread.
    """

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and self._fused_training(inputs, mask):
            return _fused_batch_norm_training(self, inputs)
        return super().call(inputs, training=training, mask=mask)

    def _fused_training(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis % 4 == 3
            and keras.backend.result_type(inputs.dtype, "float32") == "float32"
            and not _inside_xla()
        )


def _inside_xla() -> bool:
    """Whether TensorFlow is tracing for XLA (``jit_compile``) here; ``True`` where that
    cannot be told (then Keras' own code runs: never wrong, only slower)."""
    try:
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util

        if tf.executing_eagerly():
            return False
        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except (ImportError, AttributeError):  # a TensorFlow whose private helper moved
        return True


def _fused_batch_norm_training(layer: BatchNorm, inputs):
    """``layer``'s training-mode call on TensorFlow, as one ``FusedBatchNormV3``."""
    import tensorflow as tf

    x = tf.cast(inputs, "float32")
    channels = x.shape[-1]
    gamma = tf.cast(layer.gamma, "float32") if layer.scale else tf.ones([channels])
    beta = tf.cast(layer.beta, "float32") if layer.center else tf.zeros([channels])
    empty = tf.constant([], "float32")  # no running statistics in: training mode
    y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty,
        epsilon=layer.epsilon, data_format="NHWC", is_training=True,
    )  # fmt: skip
    # The kernel's batch variance carries Bessel's correction n / (n - 1); Keras updates the
    # moving variance with the biased one.
    n = tf.cast(tf.size(x) // channels, "float32")
    variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))
    momentum = layer.momentum
    moving_mean = tf.cast(layer.moving_mean, "float32")
    moving_variance = tf.cast(layer.moving_variance, "float32")
    layer.moving_mean.assign(moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(y, layer.compute_dtype)


# --- LeNet-5 (LeCun et al. 1998) ------------------------------------------------------------


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScaledTanh(keras.layers.Layer):
    """LeNet-5's squashing function ``f(a) = A * tanh(S * a)`` (LeCun et al. 1998, Appendix A).

    With the paper's ``A = 1.7159`` and ``S = 2/3``, ``f(1) = 1`` and ``f(-1) = -1`` (to four
    decimals), the points where the second derivative is largest, and ``|f| < A``.

    Args:
        amplitude: ``A``.
        slope: ``S``.
        **kwargs: base ``Layer`` arguments (``name``, ``dtype``...).
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0, **kwargs):
        super().__init__(**kwargs)
        self.amplitude = float(amplitude)
        self.slope = float(slope)

    def call(self, x):
        return self.amplitude * ops.tanh(self.slope * x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "amplitude": self.amplitude, "slope": self.slope}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TrainableSubsampling(keras.layers.Layer):
    """LeNet-5's S2/S4: sum each non-overlapping window, times a per-channel coefficient, plus a
    per-channel bias (LeCun et al. 1998, Sec. II-B). The squashing function is a separate layer.

    Parameters: ``2 * channels`` (S2: 12, S4: 32). The coefficient starts at
    ``1 / pool_size**2``, so the layer starts as average pooling (the paper gives no
    initial value for it).

    Args:
        pool_size: side of the square window, also the stride.
        **kwargs: base ``Layer`` arguments.
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.coefficient = self.add_weight(
            shape=(channels,),
            initializer=keras.initializers.Constant(1.0 / self.pool_size**2),
            name="coefficient",
        )
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")

    def call(self, x):
        p = self.pool_size
        # The paper *adds* the p*p inputs; the mean times p*p is that sum on every backend.
        window_sum = ops.average_pool(x, pool_size=p, strides=p, padding="valid") * float(p * p)
        return window_sum * self.coefficient + self.bias

    def compute_output_shape(self, input_shape):
        def reduce(size):
            return None if size is None else size // self.pool_size

        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PartialConv2D(keras.layers.Layer):
    """A 2D convolution in which output map ``j`` sees only the input maps ``i`` with
    ``connections[i][j]`` true: LeNet-5's C3 (LeCun et al. 1998, Sec. II-B, Table I).

    Only the connected weights exist: the kernel variable holds ``kh * kw * n_connected``
    numbers and the full ``(kh, kw, in, out)`` kernel is assembled in ``call`` with zeros where
    there is no connection. So ``count_params()`` counts exactly the paper's parameters
    (C3: 60 connections * 25 + 16 biases = 1,516) and a missing connection has no weight to
    train, change, or leak gradient through.

    Args:
        connections: ``in_channels`` rows of ``filters`` booleans (the connection table).
        kernel_size: side of the square kernel.
        strides: convolution stride.
        padding: ``"valid"`` or ``"same"``.
        use_bias: add one bias per output map.
        kernel_initializer: drawn for the full kernel, then the connected entries are kept.
        **kwargs: base ``Layer`` arguments.
    """

    def __init__(
        self,
        connections,
        kernel_size: int = 5,
        strides: int = 1,
        padding: str = "valid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.connections = [[bool(c) for c in row] for row in connections]
        widths = {len(row) for row in self.connections}
        if not self.connections or len(widths) != 1 or 0 in widths:
            raise ValueError("connections must be a non-empty table of equal-length rows")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.filters = widths.pop()
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        flat = [c for row in self.connections for c in row]  # row-major: input i, output j
        self._connected = [p for p, c in enumerate(flat) if c]
        # For every (i, j) of the full kernel: the index of its weight, or the zero slot.
        zero_slot = len(self._connected)
        slot = {p: k for k, p in enumerate(self._connected)}
        self._gather = [slot.get(p, zero_slot) for p in range(len(flat))]

    def build(self, input_shape):
        in_channels = len(self.connections)
        if input_shape[-1] != in_channels:
            raise ValueError(
                f"the connection table has {in_channels} rows but the input has "
                f"{input_shape[-1]} channels"
            )
        k = self.kernel_size
        full_shape = (k, k, in_channels, self.filters)

        def initializer(shape, dtype=None):
            full = self.kernel_initializer(full_shape, dtype=dtype)
            return ops.take(ops.reshape(full, (k, k, -1)), self._connected, axis=-1)

        self.kernel = self.add_weight(
            shape=(k, k, len(self._connected)), initializer=initializer, name="kernel"
        )
        self.bias = (
            self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
            if self.use_bias
            else None
        )

    def full_kernel(self):
        """The ``(kh, kw, in, out)`` kernel the convolution uses: zero where not connected."""
        k = self.kernel_size
        kernel = ops.convert_to_tensor(self.kernel)
        with_zero = ops.concatenate([kernel, ops.zeros((k, k, 1), dtype=kernel.dtype)], axis=-1)
        full = ops.take(with_zero, self._gather, axis=-1)
        return ops.reshape(full, (k, k, len(self.connections), self.filters))

    def call(self, x):
        y = ops.conv(x, self.full_kernel(), strides=self.strides, padding=self.padding)
        if self.bias is not None:
            y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        def reduce(size):
            if size is None:
                return None
            if self.padding == "same":
                return -(-size // self.strides)
            return (size - self.kernel_size) // self.strides + 1

        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "connections": [[int(c) for c in row] for row in self.connections],
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class EuclideanRBF(keras.layers.Layer):
    """LeNet-5's output layer: one Euclidean radial basis unit per class with FIXED prototypes
    (LeCun et al. 1998, Sec. II-B, Eq. 7), returned as logits ``-sum_j (x_j - w_ij)^2``.

    The paper's unit outputs the penalty ``y_i = sum_j (x_j - w_ij)^2``; its negation is a
    logit, so the softmax cross-entropy in the loss favours the closest prototype.

    Deviation from paper: the paper's prototypes are hand-designed stylised images of the
    characters drawn on a 7x12 bitmap (+1/-1 pixels, Fig. 3; hence F6's 84 units), and they
    are deliberately not orthogonal: confusable characters (O, o and 0, say) get similar codes
    (Sec. II-B, which names random codes as the alternative it did not take). We do not have
    those bitmaps exactly, so the prototypes here are RANDOM codes of +1/-1 bits (84 = 7x12 for
    LeNet-5; no bitmap layout), drawn from ``numpy.random.default_rng(seed)``, fixed (not
    trained): close to orthogonal, any two differing in about half their bits. Class ``i``'s
    code is the ``i``-th row drawn, so it does not depend on ``units``. The prototypes are a
    non-trainable weight (84 * classes numbers).

    Args:
        units: number of classes.
        seed: seed of the prototype codes.
        **kwargs: base ``Layer`` arguments.
    """

    def __init__(self, units: int, seed: int = 1998, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.seed = int(seed)

    def build(self, input_shape):
        import numpy as np  # only to draw the fixed codes, identically on every backend

        features = int(input_shape[-1])
        codes = np.random.default_rng(self.seed).integers(0, 2, size=(self.units, features))
        prototypes = (2.0 * codes - 1.0).T  # (features, units)

        def initializer(shape, dtype=None):
            return ops.convert_to_tensor(prototypes, dtype=dtype)

        self.prototypes = self.add_weight(
            shape=(features, self.units),
            initializer=initializer,
            trainable=False,
            name="prototypes",
        )

    def call(self, x):
        # (batch, features, 1) - (features, units) -> (batch, features, units); small for LeNet.
        diff = ops.expand_dims(x, -1) - self.prototypes
        return -ops.sum(ops.square(diff), axis=-2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "seed": self.seed}


# --- AlexNet (Krizhevsky et al. 2012) -------------------------------------------------------


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012, Sec. 3.3).

    ``b[..., i] = a[..., i] / (k + alpha * sum_{j = i - size//2}^{i + size//2} a[..., j]^2)^beta``,
    the sum clipped to the existing channels (channels last).

    ``alpha`` is used exactly as the paper writes it: it is NOT divided by ``size``. Caffe's
    and PyTorch's ``LocalResponseNorm`` divide it by ``size``: to match them, pass
    ``alpha * size``. (TensorFlow's ``tf.nn.local_response_normalization`` does not divide; its
    ``depth_radius`` is ``size // 2`` and its ``bias`` is ``k``.)

    Args:
        size: ``n``, the (odd) number of adjacent channels summed over.
        k: additive constant.
        alpha: scale of the sum of squares.
        beta: exponent.
        **kwargs: base ``Layer`` arguments.
    """

    def __init__(
        self, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs
    ):
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd number, got {size}")
        self.size = int(size)
        self.k = float(k)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, x):
        half = self.size // 2
        channels = x.shape[-1]
        # float32 even under mixed precision: squares of activations above 256 overflow float16.
        a = ops.cast(x, "float32")
        padded = ops.pad(ops.square(a), [[0, 0]] * (len(x.shape) - 1) + [[half, half]])
        # Sum of `size` shifted copies = the windowed sum, zero beyond the edges.
        window = padded[..., 0:channels]
        for shift in range(1, self.size):
            window = window + padded[..., shift : shift + channels]
        return ops.cast(a / ops.power(self.k + self.alpha * window, self.beta), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "k": self.k,
            "alpha": self.alpha,
            "beta": self.beta,
        }


# --- ResNet / stochastic depth (He et al. 2016; Huang et al. 2016) -------------------------

_DOWNSAMPLE_MODES = ("subsample", "avgpool")


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroPadShortcut(keras.layers.Layer):
    """Parameter-free shortcut for a shape change: "option A" of He et al. 2016, Sec. 3.3.

    The spatial size is reduced by ``strides`` and the missing channels are appended as
    zeros, so a residual net and its plain twin have identical parameter counts.

    Args:
        filters: output channels; must be at least the input channels.
        strides: spatial reduction factor (1 keeps the size).
        downsample: ``"subsample"`` keeps every ``strides``-th pixel (He et al. 2016);
            ``"avgpool"`` averages ``strides`` x ``strides`` windows (the transition of
            Huang et al. 2016, stochastic depth, Sec. 4).
        **kwargs: base ``Layer`` arguments (``name``, ``dtype``...).
    """

    def __init__(self, filters: int, strides: int = 2, downsample: str = "subsample", **kwargs):
        super().__init__(**kwargs)
        if downsample not in _DOWNSAMPLE_MODES:
            raise ValueError(f"downsample must be one of {_DOWNSAMPLE_MODES}, got {downsample!r}")
        self.filters = int(filters)
        self.strides = int(strides)
        self.downsample = downsample

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] > self.filters:
            raise ValueError(
                f"ZeroPadShortcut can only add channels: input has {input_shape[-1]}, "
                f"filters={self.filters}"
            )

    def call(self, x):
        s = self.strides
        if s > 1 and self.downsample == "subsample":
            x = x[:, ::s, ::s, :]
        elif s > 1:
            # 'same' so odd sizes round up exactly like the stride-s 'same' conv beside it.
            x = ops.average_pool(x, pool_size=s, strides=s, padding="same")
        extra = self.filters - x.shape[-1]
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        def reduce(size):
            return None if size is None else -(-size // self.strides)  # ceil, as 'same'

        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "downsample": self.downsample,
        }


def _conditionals_need_canonical_convolutions() -> bool:
    """True on JAX's CPU backend, where a conditional's convolution gradients run slowly.

    XLA's CPU compiler rewrites a convolution that is not in its canonical NHWC/HWIO form
    (every kernel gradient, as JAX writes it) into transposes around a canonical one, but that
    pass visits the entry computation only: inside a side of a conditional the kernel
    gradient is left to a naive loop, many times slower (``results/benchmarks/``). The branches' 2-D
    convolutions therefore compute their gradients with convolutions already in canonical form
    there (``_CanonicalGradientConvolutions``): the same arithmetic as XLA's own rewrite,
    so the gradients are bitwise those of the entry computation, at its speed.
    """
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def _canonical_gradient_conv(strides: tuple[int, int], padding: str):
    """A 2-D convolution (NHWC input, HWIO kernel) whose gradients are canonical convolutions.

    JAX only (``jax.custom_vjp``; see ``_conditionals_need_canonical_convolutions``). The
    forward pass is ``lax.conv_general_dilated`` as Keras calls it. The input gradient is the
    convolution of the output gradient with the flipped kernel, its input and output channels
    swapped (the output gradient dilated by the stride); the kernel gradient is a convolution
    of the input, batch and channels swapped (``C, H, W, N``), with the output gradient as its
    kernel (``H', W', N, O``, dilated by the stride): JAX's own transpose rules, with the
    operands transposed explicitly so that XLA finds canonical convolutions.
    """
    import jax
    from jax import lax

    dims = ("NHWC", "HWIO", "NHWC")

    def pads(x, w):  # (low, high) per spatial dimension, as XLA pads SAME and VALID
        return lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding.upper())

    @jax.custom_vjp
    def conv(x, w):
        return lax.conv_general_dilated(x, w, strides, pads(x, w), dimension_numbers=dims)

    def forward(x, w):
        return conv(x, w), (x, w)

    def backward(residuals, dy):
        x, w = residuals
        forward_pads = pads(x, w)
        input_pads, kernel_pads = [], []
        for i, (low, _) in enumerate(forward_pads):
            size, k, s, out = x.shape[1 + i], w.shape[i], strides[i], dy.shape[1 + i]
            dilated_out = (out - 1) * s + 1
            before = k - low - 1
            input_pads.append((before, size + k - 1 - dilated_out - before))
            kernel_pads.append((low, dilated_out - size + k - low - 1))
        flipped = lax.transpose(lax.rev(w, (0, 1)), (0, 1, 3, 2))
        dx = lax.conv_general_dilated(
            dy, flipped, (1, 1), input_pads, lhs_dilation=strides, dimension_numbers=dims
        )
        dw = lax.conv_general_dilated(
            lax.transpose(x, (3, 1, 2, 0)),
            lax.transpose(dy, (1, 2, 0, 3)),
            (1, 1),
            kernel_pads,
            rhs_dilation=strides,
            dimension_numbers=dims,
        )
        return dx, lax.transpose(dw, (1, 2, 0, 3))

    conv.defvjp(forward, backward)

    def convolution_op(inputs, kernel):
        # The kernel is a Keras variable (its value in a stateless call, cast under autocast).
        return conv(ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel))

    return convolution_op


class _CanonicalGradientConvolutions:
    """Context manager: the plain 2-D convolutions of ``layer`` (and of the layers inside it)
    use ``_canonical_gradient_conv`` while inside; their own ``convolution_op`` after.

    Plain means a ``keras.layers.Conv2D`` with channels-last data, no dilation and one group;
    any other convolution keeps its own operation (correct, only slower in a conditional).
    """

    def __init__(self, layer: keras.layers.Layer):
        self.convolutions = [
            sub
            for sub in layer._flatten_layers(include_self=True, recursive=True)
            if type(sub) is keras.layers.Conv2D
            and sub.data_format == "channels_last"
            and tuple(sub.dilation_rate) == (1, 1)
            and sub.groups == 1
        ]

    def __enter__(self):
        for conv in self.convolutions:
            conv.convolution_op = _canonical_gradient_conv(tuple(conv.strides), conv.padding)
        return self

    def __exit__(self, *exc):
        for conv in self.convolutions:
            del conv.convolution_op
        return False


@keras.saving.register_keras_serializable(package=PACKAGE)
class StochasticDepth(keras.layers.Layer):
    """Residual addition with stochastic depth (Huang et al. 2016, Sec. 3).

    Two ways to call it:

    * without ``branch``: called on ``[shortcut, residual]`` (the branch's output, already
      computed); returns ``shortcut + gate * residual``.
    * with ``branch`` (a built layer or functional model ``f``): called on
      ``[shortcut, inputs]``; returns ``shortcut + gate * f(inputs)``, and the layer computes
      ``f`` itself, so a dropped block can skip it.

    The ReLU that follows a residual block is applied after this layer.

    Convention (the paper's, not timm's "inverted" DropPath):

    * training: ``gate`` is a Bernoulli draw with ``P(gate = 1) = survival_probability``,
      and the branch is used raw (NOT divided by the survival probability). A dropped block
      is exactly ``shortcut + 0``: the block is the identity.
    * inference: deterministic, ``gate = survival_probability``, i.e. the branch is scaled
      by ``p_l`` (the paper's ``H = ReLU(p_l * f(H) + H)``). So the expected training output
      equals the inference output.

    ``mode="batch"`` is the paper: one draw per mini-batch (per call) for the whole block.
    With a ``branch``, a dropped block is skipped as in the paper's Torch code: the draw is
    the predicate of the backend's own conditional (``keras.ops.cond``: a TensorFlow graph
    ``cond``, ``jax.lax.cond`` under ``jit``, a Python ``if`` on PyTorch), and only the taken
    side runs, so the branch's layers (convolutions, batch norms) do not run forward or
    backward and its batch-norm moving statistics are not updated. The branch runs through
    ``stateless_call`` inside the conditional, which returns its updated non-trainable
    variables as outputs of the conditional (the dropped side returns them unchanged); they
    are assigned after it. So no variable is assigned inside a side of the conditional, which
    under JAX's tracing would leak tracers. The branch's losses (activity regularisers,
    ``add_loss``) are not collected; weight regularisers on its variables still count.
    On JAX's CPU backend, XLA leaves the kernel-gradient convolutions inside a conditional
    to a naive loop (see ``_conditionals_need_canonical_convolutions``), so there the
    branch's plain 2-D convolutions compute their gradients with convolutions XLA runs fast
    (``_CanonicalGradientConvolutions``): the same values, bitwise. What skipping saves per
    training step, on each backend, is measured by ``scripts/benchmark_stochastic_depth.py``
    (``results/benchmarks/stochastic_depth.md``).

    ``mode="sample"`` is DropPath: one draw per example, so examples in a batch differ, and
    every branch is computed (and multiplied by its examples' gates): nothing can be skipped.

    Args:
        survival_probability: ``p_l`` in ``(0, 1]``.
        mode: ``"batch"`` or ``"sample"``.
        seed: seed of the layer's ``keras.random.SeedGenerator`` (``None``: random).
        branch: the residual branch, computed by this layer (``None``: the layer is given
            the branch's output).
        **kwargs: base ``Layer`` arguments.
    """

    def __init__(
        self,
        survival_probability: float = 1.0,
        mode: str = "batch",
        seed: int | None = None,
        branch: keras.layers.Layer | None = None,
        **kwargs,
    ):
        # Variables are read raw (float32) to feed them to the branch's stateless call; the
        # branch's own layers still autocast under mixed precision.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not 0.0 < survival_probability <= 1.0:
            raise ValueError(f"survival_probability must be in (0, 1], got {survival_probability}")
        if mode not in DROP_PATH_MODES:
            raise ValueError(f"mode must be one of {DROP_PATH_MODES}, got {mode!r}")
        self.survival_probability = float(survival_probability)
        self.mode = mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.branch = branch

    def build(self, input_shapes):
        if self.branch is not None and not self.branch.built:
            self.branch.build(input_shapes[1])
        self.built = True

    def call(self, inputs, training=None):
        shortcut, x = inputs
        p = self.survival_probability
        if self.branch is not None and (p == 1.0 or not training):
            x = self.branch(x, training=training)
        if p == 1.0:
            return shortcut + x
        if not training:
            return shortcut + ops.cast(p, x.dtype) * x
        if self.mode == "batch":
            shape = ()
        else:
            shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        draw = keras.random.uniform(shape, seed=self.seed_generator)
        if self.branch is not None and self.mode == "batch":
            return self._skip_or_add(shortcut, x, ops.less(draw, p))
        if self.branch is not None:
            x = self.branch(x, training=training)
        gate = ops.cast(ops.less(draw, p), x.dtype)
        return shortcut + gate * x

    def _skip_or_add(self, shortcut, x, keep):
        """``shortcut + branch(x)`` if ``keep`` else ``shortcut``; the branch runs only if kept."""
        branch = self.branch
        trainable = [v.value for v in branch.trainable_variables]
        state = [ops.convert_to_tensor(v.value) for v in branch.non_trainable_variables]

        def kept():
            convolutions = (
                _CanonicalGradientConvolutions(branch)
                if _conditionals_need_canonical_convolutions()
                else contextlib.nullcontext()
            )
            with convolutions:
                residual, new_state = branch.stateless_call(trainable, state, x, training=True)
            return shortcut + residual, new_state

        def dropped():
            # Zero, but a function of the branch's weights: every backend then gives them a
            # zero gradient, so momentum and weight decay still update them as in the paper's
            # code (PyTorch would give no gradient, and Keras's optimizers skip such weights).
            if not trainable:
                return shortcut, state
            zero = ops.sum(ops.stack([ops.sum(w) for w in trainable])) * 0.0
            return shortcut + ops.cast(zero, shortcut.dtype), state

        outputs, new_state = ops.cond(keep, kept, dropped)
        for variable, value in zip(branch.non_trainable_variables, new_state, strict=True):
            variable.assign(value)
        return outputs

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        config = {
            **super().get_config(),
            "survival_probability": self.survival_probability,
            "mode": self.mode,
            "seed": self.seed,
        }
        if self.branch is not None:
            config["branch"] = keras.saving.serialize_keras_object(self.branch)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("branch") is not None:
            config["branch"] = keras.saving.deserialize_keras_object(config["branch"])
        return cls(**config)


# Keras maps a functional graph with a recursive helper, one Python frame per layer on the
# longest path; ResNet-1202 has 4,208 layers, well past Python's default limit of 1,000.
DEEP_GRAPH_RECURSION_LIMIT = 10_000


class RecursionLimit:
    """Context manager: Python's recursion limit is at least ``limit`` inside, restored after.

    Building, ``from_config`` and ``keras.saving.load_model`` of graphs deeper than about
    900 layers need it (saving, training and inference do not). ``DeepFunctional`` models
    apply it themselves; use it directly for anything else::

        with RecursionLimit():
            model = keras.Model.from_config(config)

    Args:
        limit: the minimum recursion limit inside the block (it is never lowered).
    """

    def __init__(self, limit: int = DEEP_GRAPH_RECURSION_LIMIT):
        self.limit = int(limit)
        self._saved: list[int] = []  # a stack, so one instance can be re-entered

    def __enter__(self) -> RecursionLimit:
        import sys

        self._saved.append(sys.getrecursionlimit())
        sys.setrecursionlimit(max(self._saved[-1], self.limit))
        return self

    def __exit__(self, *exc) -> None:
        import sys

        sys.setrecursionlimit(self._saved.pop())


@keras.saving.register_keras_serializable(package=PACKAGE)
class DeepFunctional(keras.Model):
    """A functional model too deep for Python's default recursion limit (ResNet-1202).

    Built exactly like ``keras.Model(inputs, outputs, name=...)``. The only difference:
    ``from_config`` (and therefore ``keras.saving.load_model``) rebuilds the graph inside
    ``RecursionLimit()``, so a saved ResNet-1202 reloads without the caller touching
    ``sys.setrecursionlimit``. Build the graph itself inside ``RecursionLimit()`` too.
    """

    @classmethod
    def from_config(cls, config, custom_objects=None):
        with RecursionLimit():
            return super().from_config(config, custom_objects=custom_objects)
