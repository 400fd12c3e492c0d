"""The lecture's CNN arithmetic: output sizes, padding, parameters, receptive fields, and a
per-layer table of parameters, activation memory and multiply-adds for any Keras model.

One module (about 780 lines, in three sections: sizes and padding, receptive fields, the
per-layer table) because the three share the same layer-by-layer reading of a Keras graph and
the lectures' conventions, stated once below.

Sources (the lecture notes named below):

* the output-size formula with dilation (STOR566 Lecture 8, from the PyTorch ``Conv2d`` docs):
  ``H_out = floor((H_in + 2p - d(k - 1) - 1) / s) + 1``;
* the VGG-16 per-layer table (CS480/680 Lecture 9): memory ``224*224*64 = 3.2M``, parameters
  ``(3*3*3)*64 = 1,728`` "not counting biases", "TOTAL memory: 24M * 4 bytes ~= 96MB / image
  (only forward!)", "TOTAL params: 138M";
* the bottleneck comparison and the padding question (the deeper-architectures lecture):
  ``3*3*256*256 ~ 590k`` against ``1*1*256*64 + 3*3*64*64 + 1*1*64*256 ~ 70k``; a 5x5 map
  keeps its size under a 3x3 conv with padding 1 and under a 5x5 conv with padding 2.

Conventions. Every count in ``layer_table`` is for ``batch_size`` images (1 by default).
Activations are the elements of each layer's output; the total sums every layer output,
the input image included and pooling outputs included, as the lecture's table does, but
skips layers whose output is only a view or an inference-time identity of their input
(``Flatten``, ``Reshape``, dropout and noise layers) and elementwise activation layers, which
run in place on the output of the layer before (the lecture's "CONV3-64" row is the conv and
its ReLU, one tensor). Those rows still show their output size, with a note. Counted this
way VGG-16 has 15,237,608 activations (61 MB at 4 bytes): exactly the sum of the slide's own
rows; the slide's "24M" total does not follow from them.

Multiply-adds (MACs) count the multiplications of convolutions and dense layers; bias
additions, activations, batch norm (which folds into the preceding convolution at
inference), pooling and residual additions are 0 MACs, and the row's note names the other
work (comparisons or additions). LeNet-5's own layers count too: C3's partial convolution its
connected map pairs only, a trainable subsampling one multiply per output, the RBF output one
multiply-add per input and unit (LeNet-5: 328,096). Layers the table does not know (custom
layers) count their parameters through ``count_params`` and 0 MACs, with a note, and the
total then says it is partial.

Receptive fields use the standard recurrence along the graph, per spatial axis, in input
pixels: ``r_out = r_in + (k - 1) * d * j_in``, ``j_out = j_in * s`` and
``start_out = start_in + ((k_eff - 1) / 2 - pad_before) * j_in``, where ``k_eff = d(k - 1) + 1``
and ``start`` is the centre of the first output unit's field in input pixel coordinates
(pixel ``i`` has centre ``i``). Models are channels-last.

Only the functions that take a model import Keras, so the pure arithmetic (and
``keras-cnns shape``) stays instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keras_cnns.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import keras

Padding = int | str

# --- output size and padding -----------------------------------------------------------------


def _check_positive(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{what} must be a positive integer, got {value!r}")


def _span(kernel: int, dilation: int) -> int:
    """Pixels a dilated kernel covers: ``d(k - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def _check_geometry(input_size: int, kernel: int, stride: int, dilation: int) -> None:
    _check_positive("input size", input_size)
    _check_positive("kernel size", kernel)
    _check_positive("stride", stride)
    _check_positive("dilation", dilation)


def _explicit_padding(padding: Padding) -> int | str:
    """Normalise ``padding`` to a non-negative int, ``"valid"`` or ``"same"``."""
    if isinstance(padding, str):
        text = padding.strip().lower()
        if text in ("valid", "same"):
            return text
        try:
            padding = int(text)
        except ValueError:
            raise UserError(
                f"padding must be an integer, 'valid' or 'same', got {padding!r}"
            ) from None
    if isinstance(padding, bool) or not isinstance(padding, int):
        raise UserError(f"padding must be an integer, 'valid' or 'same', got {padding!r}")
    if padding < 0:
        raise UserError(f"padding must be 0 or more pixels, got {padding}")
    return padding


def same_padding_split(input_size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """The zeros Keras adds before and after an axis for ``padding="same"``.

    Keras (like TensorFlow) makes the output ``ceil(n / s)`` long and puts the odd pixel of
    padding, if any, after the input (bottom/right).

    Args:
        input_size: input length along the axis.
        kernel: kernel length.
        stride: stride.
        dilation: dilation rate.

    Returns:
        ``(before, after)`` padding in pixels.
    """
    _check_geometry(input_size, kernel, stride, dilation)
    out = -(-input_size // stride)
    total = max((out - 1) * stride + _span(kernel, dilation) - input_size, 0)
    return total // 2, total - total // 2


def conv_output_size(
    input_size: int,
    kernel: int,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
) -> int:
    """Output length of a convolution or pooling along one axis.

    ``floor((n + 2p - d(k - 1) - 1) / s) + 1`` for an integer padding ``p`` (the lecture's
    formula); ``"valid"`` is ``p = 0`` and ``"same"`` is Keras's ``ceil(n / s)``.

    Args:
        input_size: ``n``, the input height or width.
        kernel: ``k``, the kernel (or pooling window) size.
        stride: ``s``.
        padding: zeros added on each side, or ``"valid"`` / ``"same"`` (Keras semantics).
        dilation: ``d``; a dilated kernel spans ``d(k - 1) + 1`` pixels.

    Returns:
        The output size, at least 1.

    Raises:
        UserError: a size, kernel, stride or dilation that is not positive, a negative or
            unknown padding, or a kernel that spans more pixels than the padded input has.
    """
    _check_geometry(input_size, kernel, stride, dilation)
    pad = _explicit_padding(padding)
    if pad == "same":
        return -(-input_size // stride)
    if pad == "valid":
        pad = 0
    span = _span(kernel, dilation)
    padded = input_size + 2 * pad
    if span > padded:
        what = f"kernel {kernel} with dilation {dilation}" if dilation != 1 else f"kernel {kernel}"
        how = f" ({input_size} + 2*{pad})" if pad else ""
        raise UserError(
            f"{what} spans {span} pixels but the padded input has only {padded}{how}; "
            "use a larger input, more padding, or a smaller kernel or dilation"
        )
    return (padded - span) // stride + 1


def conv_output_formula(
    input_size: int,
    kernel: int,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
) -> str:
    """``conv_output_size`` written out with the numbers filled in, for teaching output.

    Raises:
        UserError: as ``conv_output_size``.
    """
    out = conv_output_size(input_size, kernel, stride, padding, dilation)
    pad = _explicit_padding(padding)
    if pad == "same":
        before, after = same_padding_split(input_size, kernel, stride, dilation)
        return (
            f"ceil({input_size} / {stride}) = {out}   "
            f"(Keras 'same': {before + after} zeros in total, {before} before and {after} after)"
        )
    p = 0 if pad == "valid" else pad
    return (
        f"floor(({input_size} + 2*{p} - {dilation}*({kernel} - 1) - 1) / {stride}) + 1 = {out}"
    )


def same_padding(kernel: int, dilation: int = 1) -> int:
    """The padding on each side that keeps the size at stride 1: ``(d(k - 1)) / 2``.

    The lecture's question: a 5x5 map keeps its size under a 3x3 conv with padding 1, and
    under a 5x5 conv with padding 2.

    Args:
        kernel: kernel size.
        dilation: dilation rate.

    Returns:
        Pixels of zero padding on each side.

    Raises:
        UserError: a non-positive kernel or dilation, or a kernel whose span is even, which no
            symmetric padding can keep at the same size.
    """
    _check_positive("kernel size", kernel)
    _check_positive("dilation", dilation)
    span = _span(kernel, dilation)
    if span % 2 == 0:
        what = f"kernel {kernel} with dilation {dilation}" if dilation != 1 else f"kernel {kernel}"
        raise UserError(
            f"{what} spans {span} pixels, an even number: keeping the size needs {span - 1} "
            "zeros, which cannot be split evenly between the two sides; use an odd kernel, or "
            f"padding='same' (Keras pads {(span - 1) // 2} before and {span // 2} after)"
        )
    return (span - 1) // 2


def conv_params(
    kernel_h: int,
    kernel_w: int,
    in_ch: int,
    out_ch: int,
    *,
    bias: bool = True,
    groups: int = 1,
) -> int:
    """Parameters of a 2D convolution: ``k_h * k_w * (C_in / groups) * C_out (+ C_out)``.

    Args:
        kernel_h: kernel height.
        kernel_w: kernel width.
        in_ch: input channels.
        out_ch: output channels (filters).
        bias: count one bias per output channel.
        groups: grouped convolution (AlexNet's two GPUs are ``groups=2``).

    Returns:
        The number of weights.

    Raises:
        UserError: a non-positive argument, or channels not divisible by ``groups``.
    """
    for what, value in (
        ("kernel height", kernel_h),
        ("kernel width", kernel_w),
        ("input channels", in_ch),
        ("output channels", out_ch),
        ("groups", groups),
    ):
        _check_positive(what, value)
    if in_ch % groups or out_ch % groups:
        raise UserError(
            f"groups={groups} must divide both the input ({in_ch}) and output ({out_ch}) channels"
        )
    return kernel_h * kernel_w * (in_ch // groups) * out_ch + (out_ch if bias else 0)


# --- receptive field -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's output, per spatial axis (height, width), in input pixels.

    Attributes:
        size: pixels of the input one output unit can see.
        jump: distance in input pixels between neighbouring output units (effective stride).
        start: centre of the first output unit's field, in input pixel coordinates (negative
            when the field reaches into the padding).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]

    def __str__(self) -> str:
        return _fmt_axes(self.size)


def _fmt_axes(values: tuple) -> str:
    if not values:
        return "-"
    if all(v == values[0] for v in values):
        return f"{values[0]:g}"
    return "x".join(f"{v:g}" for v in values)


def _tuple(value, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    return value if len(value) == n else (value[0],) * n


def _spatial(shape) -> tuple:
    """Spatial dims of a channels-last shape ``(batch, *spatial, channels)``."""
    return tuple(shape[1:-1]) if len(shape) >= 3 else ()


def _nodes_in_order(model) -> list:
    """The model's call nodes, inputs first (Keras keeps them by depth, outputs at depth 0)."""
    import keras

    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None) or model
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        raise UserError(
            f"{type(model).__name__} is not a functional model with a known graph; build it "
            "with keras.Input (or give the Sequential model an Input) first"
        )
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def _window(op, in_shape):
    """``(kernel, stride, dilation, pad_before)`` per axis for a sliding-window layer, or None."""
    import keras

    from keras_cnns.layers import ZeroPadShortcut

    n_in = _spatial(in_shape)
    nd = len(n_in)
    transposed = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
    if nd == 0 or isinstance(op, transposed):  # upsampling is not modelled
        return None
    ones = (1,) * nd
    if isinstance(op, keras.layers.ZeroPadding2D | keras.layers.ZeroPadding1D | keras.layers.ZeroPadding3D):
        pads = op.padding if nd > 1 else (op.padding,)
        return ones, ones, ones, tuple(p[0] for p in pads)
    if isinstance(op, keras.layers.Cropping2D | keras.layers.Cropping1D | keras.layers.Cropping3D):
        crops = op.cropping if nd > 1 else (op.cropping,)
        return ones, ones, ones, tuple(-c[0] for c in crops)
    if isinstance(op, ZeroPadShortcut):
        # "subsample" keeps every s-th pixel (a 1x1 window); "avgpool" is a 'same' s x s pool.
        s = _tuple(op.strides, nd)
        if op.downsample == "avgpool":
            return s, s, ones, _pads("same", n_in, s, s, ones)
        return ones, s, ones, (0,) * nd
    kernel = getattr(op, "kernel_size", None) or getattr(op, "pool_size", None)
    if kernel is not None and getattr(op, "strides", None) is not None:
        k = _tuple(kernel, nd)
        s = _tuple(op.strides, nd)
        d = _tuple(getattr(op, "dilation_rate", 1), nd)
        return k, s, d, _pads(getattr(op, "padding", "valid"), n_in, k, s, d)
    return None


def _pads(padding: str, n_in: tuple, k: tuple, s: tuple, d: tuple) -> tuple[int, ...]:
    if padding == "causal":  # Conv1D: all the padding goes before the input
        return tuple(_span(kk, dd) - 1 for kk, dd in zip(k, d, strict=True))
    if padding != "same":
        return (0,) * len(k)
    before = []
    for n, kk, ss, dd in zip(n_in, k, s, d, strict=True):
        if n is None:  # unknown size: the split for a size divisible by the stride
            before.append(max(_span(kk, dd) - ss, 0) // 2)
        else:
            before.append(same_padding_split(n, kk, ss, dd)[0])
    return tuple(before)


def _rf_step(rf: ReceptiveField, k, s, d, pad) -> ReceptiveField:
    size, jump, start = [], [], []
    for r, j, st, kk, ss, dd, p in zip(rf.size, rf.jump, rf.start, k, s, d, pad, strict=True):
        span = _span(kk, dd)
        size.append(r + (span - 1) * j)
        jump.append(j * ss)
        start.append(st + ((span - 1) / 2 - p) * j)
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _rf_merge(fields: list[ReceptiveField]) -> ReceptiveField:
    """Several inputs (Add, Concatenate): per axis, the field of the input that sees most."""
    axes = range(len(fields[0].size))
    best = [max(fields, key=lambda f, a=a: f.size[a]) for a in axes]
    return ReceptiveField(
        tuple(b.size[a] for a, b in zip(axes, best, strict=True)),
        tuple(b.jump[a] for a, b in zip(axes, best, strict=True)),
        tuple(b.start[a] for a, b in zip(axes, best, strict=True)),
    )


def _rf_compose(outer: ReceptiveField, inner: ReceptiveField) -> ReceptiveField:
    """The field of ``inner`` (relative to its input) applied after ``outer``."""
    return ReceptiveField(
        tuple(r + (b - 1) * j for r, b, j in zip(outer.size, inner.size, outer.jump, strict=True)),
        tuple(j * jb for j, jb in zip(outer.jump, inner.jump, strict=True)),
        tuple(st + sb * j for st, sb, j in zip(outer.start, inner.start, outer.jump, strict=True)),
    )


def _rf_of_node(node, fields: list[ReceptiveField]) -> ReceptiveField:
    import keras

    from keras_cnns.layers import StochasticDepth

    op = node.operation
    if isinstance(op, StochasticDepth) and op.branch is not None and len(fields) == 2:
        # Called on [shortcut, x]: the branch inside sees x through its own layers.
        branch = list(receptive_field(op.branch).values())[-1]
        return _rf_merge([fields[0], _rf_compose(fields[1], branch)])
    rf = fields[0] if len(fields) == 1 else _rf_merge(fields)
    op = node.operation
    in_shape = tuple(node.input_tensors[0].shape)
    out_shape = tuple(node.output_tensors[0].shape)
    n_in, n_out = _spatial(in_shape), _spatial(out_shape)
    window = _window(op, in_shape)
    if window is not None and len(window[0]) == len(rf.size):
        return _rf_step(rf, *window)
    global_op = (
        keras.layers.GlobalAveragePooling2D,
        keras.layers.GlobalMaxPooling2D,
        keras.layers.GlobalAveragePooling1D,
        keras.layers.GlobalMaxPooling1D,
        keras.layers.GlobalAveragePooling3D,
        keras.layers.GlobalMaxPooling3D,
        keras.layers.Flatten,
    )
    if n_in and len(n_in) == len(rf.size) and (isinstance(op, global_op) or len(n_out) < len(n_in)):
        # Every output unit sees the whole map: a window as large as the map, stride alike.
        if any(n is None for n in n_in):
            return rf
        return _rf_step(rf, n_in, n_in, (1,) * len(n_in), (0,) * len(n_in))
    if n_in and len(n_in) == len(n_out) == len(rf.size) and None not in n_in + n_out and n_in != n_out:
        # An unknown layer that shrinks the map by a whole factor: read it as a pooling.
        if all(a % b == 0 for a, b in zip(n_in, n_out, strict=True)):
            s = tuple(a // b for a, b in zip(n_in, n_out, strict=True))
            return _rf_step(rf, s, s, (1,) * len(s), (0,) * len(s))
    return rf


def receptive_field(model: keras.Model) -> dict[str, ReceptiveField]:
    """Receptive field, jump and start of every layer's output, by walking the functional graph.

    Sliding windows (convolutions, depthwise/separable convolutions, pooling) follow the
    recurrence in the module docstring; zero padding and cropping shift ``start``; global
    pooling and ``Flatten`` see the whole map; layers that keep the map size (activations,
    batch norm, dense on the channel axis, dropout, ...) pass the field through. Where a layer
    has several inputs (residual ``Add``, ``Concatenate`` of Inception branches) the field is,
    per axis, that of the input with the largest field (the branch that sees most), with that
    input's jump and start. An unknown layer that shrinks the map by a whole factor ``s`` is
    read as an ``s`` x ``s`` pooling at stride ``s``; upsampling (transposed convolutions,
    ``UpSampling2D``) is not modelled and passes the field through unchanged.

    Args:
        model: a functional (or built Sequential) channels-last Keras model.

    Returns:
        ``{layer_name: ReceptiveField}`` in graph order, input layers included (field 1). A
        layer called more than once keeps the field of its last call.

    Raises:
        UserError: a model without a functional graph (an unbuilt subclassed model).
    """
    fields: dict[int, ReceptiveField] = {}
    result: dict[str, ReceptiveField] = {}
    for node in _nodes_in_order(model):
        inputs = node.input_tensors
        if not inputs:  # an Input: one pixel sees itself
            for t in node.output_tensors:
                nd = len(_spatial(tuple(t.shape)))
                fields[id(t)] = ReceptiveField((1,) * nd, (1,) * nd, (0.0,) * nd)
            result[node.operation.name] = fields[id(node.output_tensors[0])]
            continue
        known = [fields[id(t)] for t in inputs if id(t) in fields]
        if not known:
            continue
        rf = _rf_of_node(node, known)
        for t in node.output_tensors:
            fields[id(t)] = rf
        result[node.operation.name] = rf
    return result


# --- per-layer table -------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRow:
    """One row of ``layer_table`` (the last row is the totals, with ``kind == "total"``).

    Attributes:
        name: layer name (``"total"`` for the totals row).
        kind: layer class name.
        output_shape: output shape without the batch axis (the first output's, for layers
            with several outputs).
        params: all weights, trainable or not (BN moving statistics included).
        trainable_params: trainable weights only.
        activations: output elements for ``batch_size`` images (all outputs of the layer).
        activation_bytes: ``activations * dtype_bytes``.
        counted: whether ``activations`` enters the total (False for views such as Flatten
            and for in-place activations).
        macs: multiply-accumulates for ``batch_size`` images.
        note: what the MACs leave out (comparisons, additions, an unknown layer).
        receptive_field: the output's receptive field, or None where it is not defined.
    """

    name: str
    kind: str
    output_shape: tuple
    params: int
    trainable_params: int
    activations: int
    activation_bytes: int
    counted: bool
    macs: int
    note: str = ""
    receptive_field: ReceptiveField | None = None


def _n_weights(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


def _elements(shape, batch_size: int) -> int:
    dims = tuple(shape[1:])
    if any(d is None for d in dims):
        raise UserError(
            f"a layer output has an unknown size {tuple(shape)}: build the model with a fixed "
            "input shape, for example input_shape=(224, 224, 3)"
        )
    return batch_size * math.prod(dims)


def _view_types() -> tuple:
    import keras

    layers = keras.layers
    return (
        layers.Flatten,
        layers.Reshape,
        layers.Dropout,
        layers.SpatialDropout1D,
        layers.SpatialDropout2D,
        layers.SpatialDropout3D,
        layers.GaussianNoise,
        layers.GaussianDropout,
        layers.AlphaDropout,
        layers.Identity,
    )


def _in_place_types() -> tuple:
    """Elementwise activations: they can overwrite their input, so they add no memory."""
    import keras

    layers = keras.layers
    return (layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU, layers.Softmax)


def _free_types() -> tuple:
    """Layers with no arithmetic worth a note (data movement, elementwise activations)."""
    import keras

    from keras_cnns.layers import ZeroPadShortcut

    layers = keras.layers
    return (
        layers.InputLayer,
        layers.Concatenate,
        layers.ZeroPadding1D,
        layers.ZeroPadding2D,
        layers.ZeroPadding3D,
        layers.Cropping1D,
        layers.Cropping2D,
        layers.Cropping3D,
        layers.Rescaling,
        ZeroPadShortcut,
        *_in_place_types(),
        *_view_types(),
    )


def _fmt_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:g}"


_NOT_COUNTED = "MACs not counted"


def _macs(op, node, batch_size: int) -> tuple[int, str]:
    """Multiply-accumulates of one call, and a note on the work they leave out."""
    import keras

    from keras_cnns.layers import EuclideanRBF, PartialConv2D, StochasticDepth, TrainableSubsampling

    layers = keras.layers
    in_shape = tuple(node.input_tensors[0].shape) if node.input_tensors else ()
    out_shape = tuple(node.output_tensors[0].shape)
    out_elems = _elements(out_shape, batch_size)
    if isinstance(op, layers.SeparableConv1D | layers.SeparableConv2D):
        c_in, c_out = in_shape[-1], out_shape[-1]
        pix = batch_size * math.prod(_spatial(out_shape))
        depthwise = pix * math.prod(op.kernel_size) * c_in * op.depth_multiplier
        return depthwise + pix * c_in * op.depth_multiplier * c_out, ""
    if isinstance(op, layers.DepthwiseConv1D | layers.DepthwiseConv2D):
        return out_elems * math.prod(op.kernel_size), ""
    if isinstance(op, layers.Conv1DTranspose | layers.Conv2DTranspose | layers.Conv3DTranspose):
        pix_in = batch_size * math.prod(_spatial(in_shape))
        return pix_in * math.prod(op.kernel_size) * in_shape[-1] * out_shape[-1], ""
    if isinstance(op, layers.Conv1D | layers.Conv2D | layers.Conv3D):
        groups = getattr(op, "groups", 1)
        return out_elems * math.prod(op.kernel_size) * in_shape[-1] // groups, ""
    if isinstance(op, layers.Dense):
        return batch_size * math.prod(in_shape[1:]) * out_shape[-1], ""
    # LeNet-5's own layers (LeCun et al. 1998, Sec. II-B).
    if isinstance(op, PartialConv2D):
        # Only connected (input map, output map) pairs are computed: C3's 60 of 96.
        connected = sum(sum(row) for row in op.connections)
        return batch_size * math.prod(_spatial(out_shape)) * op.kernel_size**2 * connected, ""
    if isinstance(op, TrainableSubsampling):
        # Each output: a window's sum (additions) times the trainable coefficient.
        return out_elems, f"{_fmt_count(out_elems * (op.pool_size**2 - 1))} additions"
    if isinstance(op, EuclideanRBF):
        # Each unit: sum over the inputs of (x - w)^2, one subtraction and one multiply-add each.
        macs = batch_size * in_shape[-1] * op.units
        return macs, f"{_fmt_count(macs)} subtractions"
    pool_max = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D)
    pool_avg = (layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
    if isinstance(op, pool_max + pool_avg):
        ops = out_elems * (math.prod(op.pool_size) - 1)
        what = "comparisons" if isinstance(op, pool_max) else "additions"
        return 0, f"{_fmt_count(ops)} {what}"
    global_max = (layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D)
    global_avg = (
        layers.GlobalAveragePooling1D,
        layers.GlobalAveragePooling2D,
        layers.GlobalAveragePooling3D,
    )
    if isinstance(op, global_max + global_avg):
        ops = _elements(in_shape, batch_size) - out_elems
        what = "comparisons" if isinstance(op, global_max) else "additions"
        return 0, f"{_fmt_count(ops)} {what}"
    if isinstance(op, layers.BatchNormalization):
        return 0, "folds into the conv at inference"
    if isinstance(op, StochasticDepth) and op.branch is not None:
        # Batch-mode stochastic depth computes its branch itself (skipped when dropped): count
        # the branch as at inference, where it always runs.
        return layer_table(op.branch, batch_size=batch_size)[-1].macs, (
            f"branch inside; {_fmt_count(out_elems)} additions"
        )
    if isinstance(op, layers.Add | layers.Subtract | StochasticDepth):
        return 0, f"{_fmt_count(out_elems * (len(node.input_tensors) - 1))} additions"
    if isinstance(op, _free_types()):
        return 0, ""
    if isinstance(op, keras.Model):
        try:
            return layer_table(op, batch_size=batch_size)[-1].macs, "nested model"
        except UserError:
            return 0, f"nested model: {_NOT_COUNTED}"
    if not getattr(op, "weights", None) and in_shape == out_shape:
        return 0, ""  # a weightless elementwise layer (a custom activation): no multiply-adds
    return 0, f"custom layer: {_NOT_COUNTED}"


def layer_table(model: keras.Model, batch_size: int = 1, dtype_bytes: int = 4) -> list[LayerRow]:
    """Per-layer parameters, activation memory, multiply-adds and receptive field.

    Works on any functional model with a fixed input shape, multi-output models and custom
    layers included (see the module docstring for what each column counts).

    Args:
        model: a functional (or built Sequential) channels-last Keras model.
        batch_size: images per forward pass; activations, bytes and MACs scale with it.
        dtype_bytes: bytes per activation element (4 for float32, 2 for float16).

    Returns:
        One ``LayerRow`` per layer call in graph order, input layers included, then a totals
        row (``kind == "total"``) whose ``params`` is ``model.count_params()``.

    Raises:
        UserError: a non-positive ``batch_size`` or ``dtype_bytes``, a model without a
            functional graph, or a layer output of unknown size.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("dtype_bytes", dtype_bytes)
    fields = receptive_field(model)
    views, in_place = _view_types(), _in_place_types()
    rows: list[LayerRow] = []
    seen: set[int] = set()
    for node in _nodes_in_order(model):
        op = node.operation
        first_call = id(op) not in seen  # a shared layer's weights count once
        seen.add(id(op))
        built = getattr(op, "built", True)
        params = int(op.count_params()) if first_call and built and hasattr(op, "count_params") else 0
        trainable = _n_weights(getattr(op, "trainable_weights", [])) if first_call else 0
        activations = sum(_elements(tuple(t.shape), batch_size) for t in node.output_tensors)
        macs, note = _macs(op, node, batch_size)
        counted = not isinstance(op, views + in_place)
        if isinstance(op, views):
            note = "view: not in the memory total"
        elif isinstance(op, in_place):
            note = "in place: not in the memory total"
        rows.append(
            LayerRow(
                name=op.name,
                kind=type(op).__name__,
                output_shape=tuple(node.output_tensors[0].shape[1:]),
                params=params,
                trainable_params=trainable,
                activations=activations,
                activation_bytes=activations * dtype_bytes,
                counted=counted,
                macs=macs,
                note=note,
                receptive_field=fields.get(op.name),
            )
        )
    total_activations = sum(r.activations for r in rows if r.counted)
    rows.append(
        LayerRow(
            name="total",
            kind="total",
            output_shape=(),
            params=int(model.count_params()),
            trainable_params=_n_weights(model.trainable_weights),
            activations=total_activations,
            activation_bytes=total_activations * dtype_bytes,
            counted=True,
            macs=sum(r.macs for r in rows),
        )
    )
    return rows


def format_table(rows: list[LayerRow], *, dtype_bytes: int = 4) -> str:
    """``layer_table`` rows as an aligned text table, with a totals line underneath.

    Args:
        rows: the result of ``layer_table`` (the totals row last).
        dtype_bytes: the bytes per element the rows were computed with (for the footer).

    Returns:
        The table, one line per row, columns separated by two spaces.
    """
    header = ("layer", "type", "output", "params", "activations", "memory MB", "MACs", "RF", "jump", "note")
    right = {3, 4, 5, 6, 7, 8}
    lines = []
    for r in rows:
        rf = r.receptive_field
        lines.append(
            (
                r.name,
                "" if r.kind == "total" else r.kind,
                "x".join("?" if d is None else str(d) for d in r.output_shape),
                f"{r.params:,}",
                f"{r.activations:,}",
                f"{r.activation_bytes / 1e6:,.2f}",
                f"{r.macs:,}",
                _fmt_axes(rf.size) if rf else "",
                _fmt_axes(rf.jump) if rf else "",
                r.note,
            )
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]

    def fmt(cells) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [fmt(header), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1])]
    total = rows[-1]
    uncounted = [r.name for r in rows[:-1] if r.note.endswith(_NOT_COUNTED)]
    partial = (
        f" (a partial total: without {', '.join(uncounted)}, whose MACs are not counted)" if uncounted else ""
    )
    body.append(
        f"params {total.params:,} (trainable {total.trainable_params:,}); activations "
        f"{total.activations:,} = {total.activation_bytes / 1e6:,.1f} MB at {dtype_bytes} bytes "
        f"(forward only, about twice that to train); multiply-adds {_fmt_count(total.macs)}{partial}"
    )
    return "\n".join(body)

