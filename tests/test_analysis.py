"""The lecture's CNN arithmetic (keras_cnns.analysis), checked against the lecture notes'
numbers, against what Keras itself computes, and against brute force."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from keras import layers

from keras_cnns.analysis import (
    conv_output_formula,
    conv_output_size,
    conv_params,
    format_table,
    layer_table,
    receptive_field,
    same_padding,
    same_padding_split,
)
from keras_cnns.errors import UserError

# --- output size -----------------------------------------------------------------------------


@pytest.mark.smoke
def test_worked_example_output_size():
    # CS480/680 Lec 9: a 5x5x3 input padded by 1 (7x7x3), 3x3 filters at stride 2 -> 3x3.
    assert conv_output_size(5, 3, 2, 1) == 3
    assert conv_output_formula(5, 3, 2, 1) == "floor((5 + 2*1 - 1*(3 - 1) - 1) / 2) + 1 = 3"


def _hand_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation by the definition: one window at a time."""
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    k = w.shape[0]
    size = (xp.shape[0] - k) // stride + 1
    out = np.zeros((size, size, w.shape[-1]))
    for i in range(size):
        for j in range(size):
            window = xp[i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[i, j] = np.tensordot(window, w, axes=3) + b
    return out


@pytest.mark.smoke
def test_worked_example_in_keras():
    """The notes' x[:,:,0] (other channels zero), W0[:,:,0] and W1[:,:,0] from the slide
    (other filter channels random: they meet zeros), b0 = 1, b1 = 0."""
    x = np.zeros((5, 5, 3), "float32")
    x[:, :, 0] = [[0, 2, 2, 1, 0], [2, 2, 1, 2, 0], [1, 2, 0, 0, 0], [2, 1, 0, 0, 2], [2, 1, 0, 2, 2]]
    w = np.random.default_rng(0).integers(-1, 2, size=(3, 3, 3, 2)).astype("float32")
    w[:, :, 0, 0] = [[1, -1, 0], [0, -1, -1], [1, 0, 1]]
    w[:, :, 0, 1] = [[-1, 0, 1], [0, -1, 0], [0, 0, 0]]
    b = np.array([1.0, 0.0], "float32")

    inputs = keras.Input((5, 5, 3))
    conv = layers.Conv2D(2, 3, strides=2, name="conv")
    model = keras.Model(inputs, conv(layers.ZeroPadding2D(1)(inputs)))
    conv.set_weights([w, b])
    got = keras.ops.convert_to_numpy(model(x[None]))[0]

    assert got.shape == (conv_output_size(5, 3, 2, 1), conv_output_size(5, 3, 2, 1), 2)
    np.testing.assert_allclose(got, _hand_conv(x, w, b, stride=2, pad=1), atol=1e-5)
    # Worked by hand from the slide's numbers, e.g. o[0,0,0] = (-2 + 2) + 1 = 1.
    np.testing.assert_allclose(got[:, :, 0], [[1, 2, 3], [-3, 3, 3], [-4, 0, -3]], atol=1e-5)
    np.testing.assert_allclose(got[:, :, 1], [[0, -2, 0], [1, 0, -2], [-1, -1, -2]], atol=1e-5)
    keras.backend.clear_session()


@pytest.mark.smoke
def test_lenet_and_alexnet_sizes_from_the_notes():
    assert conv_output_size(32, 5) == 28  # LeNet C1
    assert conv_output_size(28, 2, 2) == 14  # S2
    assert conv_output_size(227, 11, 4) == 55  # AlexNet CONV1, pad 0
    assert conv_output_size(55, 3, 2) == 27  # MAX POOL1
    assert conv_output_size(27, 5, 1, 2) == 27  # CONV2, pad 2


@pytest.mark.smoke
def test_padding_question():
    # Deeper-architectures lecture: a 5x5 map keeps its size under 3x3 with pad 1, 5x5 with pad 2.
    assert same_padding(3) == 1
    assert same_padding(5) == 2
    assert conv_output_size(5, 3, 1, same_padding(3)) == 5
    assert conv_output_size(5, 5, 1, same_padding(5)) == 5
    assert same_padding(3, dilation=2) == 2  # a dilated 3x3 spans 5 pixels


@pytest.mark.smoke
def test_even_kernel_has_no_symmetric_same_padding():
    with pytest.raises(UserError, match="spans 4 pixels, an even number"):
        same_padding(4)
    assert same_padding_split(7, 4, 2) == (1, 2)  # Keras puts the odd pixel after


@pytest.mark.smoke
def test_too_large_kernel_says_why():
    with pytest.raises(UserError, match=r"kernel 7 with dilation 2 spans 13 pixels but the padded input has only 9"):
        conv_output_size(5, 7, 1, 2, 2)
    with pytest.raises(UserError, match="kernel 7 spans 7 pixels but the padded input has only 5"):
        conv_output_size(5, 7, padding="valid")


@pytest.mark.smoke
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kernel": 0}, "kernel size must be a positive integer, got 0"),
        ({"stride": 0}, "stride must be a positive integer, got 0"),
        ({"dilation": -1}, "dilation must be a positive integer, got -1"),
        ({"input_size": 0}, "input size must be a positive integer, got 0"),
        ({"padding": -1}, "padding must be 0 or more pixels, got -1"),
        ({"padding": "full"}, "padding must be an integer, 'valid' or 'same'"),
    ],
)
def test_bad_geometry_is_a_user_error(kwargs, message):
    args = {"input_size": 5, "kernel": 3, **kwargs}
    with pytest.raises(UserError, match=message):
        conv_output_size(**args)


def _brute_force_size(n: int, k: int, s: int, p: int, d: int) -> int:
    """Count the window positions that fit in the padded input, one by one."""
    span = d * (k - 1) + 1
    return sum(1 for start in range(0, n + 2 * p, s) if start + span <= n + 2 * p)


@pytest.mark.smoke
@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 64),
    k=st.integers(1, 9),
    s=st.integers(1, 5),
    p=st.integers(0, 4),
    d=st.integers(1, 4),
)
def test_formula_matches_brute_force(n, k, s, p, d):
    expected = _brute_force_size(n, k, s, p, d)
    if expected == 0:
        with pytest.raises(UserError, match="spans"):
            conv_output_size(n, k, s, p, d)
    else:
        assert conv_output_size(n, k, s, p, d) == expected


@pytest.mark.smoke
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 48),
    k=st.integers(1, 7),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same", 0, 1, 2, 3]),
)
def test_formula_matches_keras(n, k, s, d, padding):
    assume(s == 1 or d == 1)  # Keras refuses strides > 1 together with dilation > 1
    conv = layers.Conv2D(2, k, strides=s, dilation_rate=d, padding="valid" if isinstance(padding, int) else padding)
    shape = (1, n, n, 3)
    if isinstance(padding, int) and padding:
        shape = layers.ZeroPadding2D(padding).compute_output_shape(shape)
    try:
        keras_size = conv.compute_output_shape(shape)[1]
    except ValueError:  # Keras: "Computed output size would be zero or negative"
        keras_size = None
    if keras_size is None:
        with pytest.raises(UserError):
            conv_output_size(n, k, s, padding, d)
    else:
        assert conv_output_size(n, k, s, padding, d) == keras_size


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.smoke
def test_bottleneck_comparison():
    # "3*3*256*256 = ~590k" vs "1*1*256*64 + 3*3*64*64 + 1*1*64*256 = ~70k" (no biases).
    plain = conv_params(3, 3, 256, 256, bias=False)
    bottleneck = (
        conv_params(1, 1, 256, 64, bias=False)
        + conv_params(3, 3, 64, 64, bias=False)
        + conv_params(1, 1, 64, 256, bias=False)
    )
    assert (plain, bottleneck) == (589_824, 69_632)


@pytest.mark.smoke
def test_conv_params_bias_and_groups():
    assert conv_params(3, 3, 3, 64, bias=False) == 1_728  # VGG's first conv, "not counting biases"
    assert conv_params(3, 3, 3, 64) == 1_792
    assert conv_params(5, 5, 96, 256, groups=2) == 5 * 5 * 48 * 256 + 256  # AlexNet conv2
    with pytest.raises(UserError, match="groups=3 must divide"):
        conv_params(3, 3, 64, 64, groups=3)


# --- receptive field -------------------------------------------------------------------------


def _stack(kernels: list[int], channels: int = 8) -> keras.Model:
    inputs = keras.Input((32, 32, channels))
    x = inputs
    for i, k in enumerate(kernels):
        x = layers.Conv2D(channels, k, padding="same", use_bias=False, name=f"conv{i}")(x)
    return keras.Model(inputs, x)


def _kernel_weights(model: keras.Model) -> int:
    return sum(math.prod(layer.kernel.shape) for layer in model.layers if isinstance(layer, layers.Conv2D))


@pytest.mark.smoke
@pytest.mark.parametrize("big, small, n_small", [(5, 3, 2), (7, 3, 3)])
def test_stacked_small_kernels_see_as_far_with_fewer_weights(big, small, n_small):
    # CS480/680: "7x7 filter vs. 3x3 filter x 3 (stride 1): both have receptive field 7x7,
    # params O(7x7) vs O(3x3x3)"; likewise 5x5 vs two 3x3: 25C^2 vs 18C^2.
    c = 8
    one, stacked = _stack([big], c), _stack([small] * n_small, c)
    assert receptive_field(one)["conv0"].size == (big, big)
    assert receptive_field(stacked)[f"conv{n_small - 1}"].size == (big, big)
    assert _kernel_weights(one) == big * big * c * c
    assert _kernel_weights(stacked) == n_small * small * small * c * c
    keras.backend.clear_session()


@pytest.mark.smoke
def test_receptive_field_matches_impulse_responses():
    """Size, jump and start against the real network: with positive weights and linear layers,
    the input pixels that reach an output unit are exactly its receptive field."""
    n = 40
    inputs = keras.Input((n, n, 1))
    x = layers.ZeroPadding2D(1, name="pad")(inputs)
    x = layers.Conv2D(1, 3, strides=2, name="conv_s2", kernel_initializer="ones", use_bias=False)(x)
    x = layers.Conv2D(1, 3, dilation_rate=2, padding="same", name="conv_d2", kernel_initializer="ones", use_bias=False)(x)
    x = layers.AveragePooling2D(2, name="pool")(x)
    x = layers.Conv2D(1, (3, 5), padding="same", name="conv_3x5", kernel_initializer="ones", use_bias=False)(x)
    model = keras.Model(inputs, x)
    rf = receptive_field(model)["conv_3x5"]

    impulses = np.eye(n * n, dtype="float32").reshape(n * n, n, n, 1)  # one image per pixel
    out = keras.ops.convert_to_numpy(model(impulses))  # (pixels, h, w, 1)
    i, j = 4, 5  # an interior output unit, so no zero padding clips its field
    rows, cols = np.nonzero(out[:, i, j, 0].reshape(n, n))
    for axis, (seen, unit) in enumerate(((rows, i), (cols, j))):
        centre = rf.start[axis] + unit * rf.jump[axis]
        assert seen.min() == centre - (rf.size[axis] - 1) / 2
        assert seen.max() == centre + (rf.size[axis] - 1) / 2
    assert rf.jump == (4, 4)
    assert rf.size == (21, 29)  # 3 -> 3 + 4*2 -> + 1*2 -> + (2, 4)*4
    keras.backend.clear_session()


@pytest.mark.smoke
def test_branches_take_the_largest_field():
    inputs = keras.Input((16, 16, 4))
    a = layers.Conv2D(4, 1, name="a")(inputs)
    b = layers.Conv2D(4, 5, padding="same", name="b")(inputs)
    c = layers.Concatenate(name="cat")([a, b])
    d = layers.Add(name="add")([layers.Conv2D(8, 3, padding="same", name="c")(c), c])
    rf = receptive_field(keras.Model(inputs, d))
    assert rf["cat"].size == (5, 5)
    assert rf["add"].size == (7, 7)
    keras.backend.clear_session()


# --- the VGG-16 table ------------------------------------------------------------------------

# CS480/680 Lec 9, the VGG-16 slide: each layer's output (its "memory") and its parameters
# "not counting biases" (0 for the input and pooling).
VGG16_NOTES = [
    ((224, 224, 3), 0),
    ((224, 224, 64), 1_728),
    ((224, 224, 64), 36_864),
    ((112, 112, 64), 0),
    ((112, 112, 128), 73_728),
    ((112, 112, 128), 147_456),
    ((56, 56, 128), 0),
    ((56, 56, 256), 294_912),
    ((56, 56, 256), 589_824),
    ((56, 56, 256), 589_824),
    ((28, 28, 256), 0),
    ((28, 28, 512), 1_179_648),
    ((28, 28, 512), 2_359_296),
    ((28, 28, 512), 2_359_296),
    ((14, 14, 512), 0),
    ((14, 14, 512), 2_359_296),
    ((14, 14, 512), 2_359_296),
    ((14, 14, 512), 2_359_296),
    ((7, 7, 512), 0),
    ((4096,), 102_760_448),
    ((4096,), 16_777_216),
    ((1000,), 4_096_000),
]

# The sum of the slide's own memory column (every layer output, the input and the pooling
# outputs included). The slide's "TOTAL memory: 24M" does not follow from its rows, which
# add up to 15.2M (61 MB at 4 bytes, forward only); we pin the exact sum.
VGG16_ACTIVATIONS = 15_237_608


@pytest.fixture(scope="module")
def vgg16_rows():
    from keras_cnns import build_model

    model = build_model("vgg16")
    rows = layer_table(model)
    fields = receptive_field(model)
    yield model, rows, fields
    keras.backend.clear_session()


def test_vgg16_table_matches_the_notes(vgg16_rows):
    model, rows, _ = vgg16_rows
    listed = [r for r in rows[:-1] if r.counted]  # the rows the slide lists
    assert [r.output_shape for r in listed] == [shape for shape, _ in VGG16_NOTES]
    assert [r.activations for r in listed] == [math.prod(shape) for shape, _ in VGG16_NOTES]
    weights = [
        math.prod(model.get_layer(r.name).kernel.shape) if r.kind in ("Conv2D", "Dense") else 0
        for r in listed
    ]
    assert weights == [w for _, w in VGG16_NOTES]
    # Parameters with biases: every kernel plus one bias per output channel.
    assert [r.params for r in listed] == [w + (s[-1] if w else 0) for s, w in VGG16_NOTES]


def test_vgg16_totals(vgg16_rows):
    _, rows, _ = vgg16_rows
    total = rows[-1]
    print(f"VGG-16 activations {total.activations:,} = {total.activation_bytes / 1e6:.1f} MB")
    assert total.params == 138_357_544
    assert 15.0e6 <= total.activations <= 25e6
    assert total.activations == VGG16_ACTIVATIONS
    assert total.activation_bytes == 4 * VGG16_ACTIVATIONS
    # MACs: each kernel weight is used once per output pixel.
    spatial = [math.prod(s[:2]) if len(s) == 3 else 1 for s, _ in VGG16_NOTES]
    assert total.macs == sum(w * hw for (_, w), hw in zip(VGG16_NOTES, spatial, strict=True))


def test_vgg16_receptive_fields(vgg16_rows):
    _, _, fields = vgg16_rows
    assert fields["block1_conv2"].size == (5, 5)
    # 212 is the field of the last pooling layer (what the literature quotes as VGG-16's);
    # the last convolution, block5_conv3, sees 196 pixels.
    assert fields["block5_conv3"].size == (196, 196)
    assert fields["block5_pool"].size == (212, 212)
    assert fields["block5_pool"].jump == (32, 32)


# --- any model -------------------------------------------------------------------------------


# Not smoke: building registered models is the slow part on JAX; the walk itself is
# backend-neutral and the smoke tests below cover it on every backend.
@pytest.mark.parametrize("name", ["lenet5", "alexnet_grouped", "googlenet", "resnet20_cifar", "densenet40_cifar"])
def test_layer_table_on_registered_families(name):
    """Custom layers, grouped convs, Inception concatenations, zero-padded shortcuts, dense blocks."""
    from keras_cnns import build_model, get_entry

    entry = get_entry(name)
    model = build_model(name, input_shape=entry.small_input_shape or entry.input_shape)
    rows = layer_table(model)
    assert rows[-1].params == model.count_params() == sum(r.params for r in rows[:-1])
    for r in rows[:-1]:
        layer = model.get_layer(r.name)
        if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.Conv2DTranspose):
            # H_out * W_out * k_h * k_w * C_in / groups * C_out
            assert r.macs == math.prod(r.output_shape[:2]) * math.prod(layer.kernel.shape)
        if isinstance(layer, layers.Dense) and len(layer.input.shape) == 2:
            assert r.macs == math.prod(layer.kernel.shape)
    assert rows[-1].macs > 0 and rows[-1].activations > 0
    keras.backend.clear_session()


@pytest.mark.slow
def test_layer_table_on_every_registered_model():
    """Opt-in (-m slow): every variant at its default shape (about 4 minutes on 2 cores)."""
    from keras_cnns import build_model, list_models

    for entry in list_models():
        model = build_model(entry.name)
        rows = layer_table(model)
        assert sum(r.params for r in rows[:-1]) == model.count_params(), entry.name
        assert rows[-1].macs > 0 and rows[-1].activations > 0, entry.name
        keras.backend.clear_session()


@pytest.mark.smoke
def test_sequential_model():
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), layers.Conv2D(2, 3, name="c1"), layers.MaxPooling2D(2, name="p")]
    )
    rows = layer_table(model)
    assert [r.kind for r in rows] == ["InputLayer", "Conv2D", "MaxPooling2D", "total"]
    assert rows[-2].receptive_field.size == (4, 4) and rows[-2].output_shape == (3, 3, 2)
    keras.backend.clear_session()


@pytest.mark.smoke
def test_layer_table_multi_output_and_custom_layers():
    @keras.saving.register_keras_serializable(package="keras_cnns_tests")
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, name="conv")(inputs)
    x = Scale(name="scale")(x)
    aux = layers.Dense(5, name="aux")(layers.GlobalAveragePooling2D(name="gap_aux")(x))
    x = layers.MaxPooling2D(2, name="pool")(x)
    main = layers.Dense(10, name="main")(layers.Flatten(name="flat")(x))
    model = keras.Model(inputs, [main, aux])
    rows = {r.name: r for r in layer_table(model, batch_size=2, dtype_bytes=2)}
    assert rows["scale"].params == 8 and "custom layer" in rows["scale"].note
    assert rows["conv"].macs == 2 * 14 * 14 * 3 * 3 * 3 * 8
    assert rows["main"].macs == 2 * 7 * 7 * 8 * 10
    assert rows["pool"].macs == 0 and "comparisons" in rows["pool"].note
    assert not rows["flat"].counted
    assert rows["total"].params == model.count_params()
    assert rows["total"].activation_bytes == 2 * rows["total"].activations
    assert rows["total"].activations == 2 * (16 * 16 * 3 + 2 * 14 * 14 * 8 + 8 + 5 + 7 * 7 * 8 + 10)
    assert rows["flat"].receptive_field.size == (3 + 1 + 6 * 2,) * 2  # the whole 7x7 pooled map
    # The total leaves the custom layer out, and says so.
    footer = format_table(list(rows.values())).splitlines()[-1]
    assert footer.endswith("(a partial total: without scale, whose MACs are not counted)")
    keras.backend.clear_session()


@pytest.mark.smoke
def test_layer_table_needs_a_fixed_input_size():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, layers.Conv2D(4, 3)(inputs))
    with pytest.raises(UserError, match="fixed input shape"):
        layer_table(model)
    keras.backend.clear_session()
