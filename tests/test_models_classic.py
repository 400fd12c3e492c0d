"""LeNet-5, AlexNet, VGG and GoogLeNet: exact parameter counts, and layer semantics checked
against numbers computed by hand or by a NumPy reference.

Smoke tests (run on every backend) draw weights for nothing bigger than LeNet-5: the big nets
are checked as skeletons (shapes and counts, weights never drawn). The generic contract over
every registered model (build, run, save, load) lives in test_models_all.py."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_cnns import build_model, get_entry
from keras_cnns.errors import UserError
from keras_cnns.layers import (
    EuclideanRBF,
    LocalResponseNormalization,
    PartialConv2D,
    ScaledTanh,
    TrainableSubsampling,
)
from keras_cnns.models import lenet


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _value(variable):
    """A variable's value as NumPy (via a tensor: NumPy 2 warns on a TF variable itself)."""
    return keras.ops.convert_to_numpy(variable.value + 0)


def _skeleton(name: str, **kwargs):
    """The model with its weights left undrawn: layers, shapes and counts, but no values.

    Drawing the 143M random weights of VGG-19 takes seconds; inside
    ``keras.StatelessScope(initialize_variables=False)`` the variables only get shapes.
    ``clear_session`` then drops Keras's list of pending initialisers, so nothing draws
    them later.
    """
    with keras.StatelessScope(initialize_variables=False):
        model = build_model(name, **kwargs)
    keras.backend.clear_session()
    return model


def _rng():
    return np.random.default_rng(0)


# --- parameter counts ---------------------------------------------------------------------------

# At each variant's default input shape and 1000 (ImageNet) or 10 (LeNet) classes.
# alexnet: 3,747,200 conv + 37,752,832 + 16,781,312 + 4,097,000 dense (by hand);
# alexnet_grouped saves 307,200 (conv2) + 663,552 (conv4) + 442,368 (conv5);
# vgg16/vgg19: keras.applications.VGG16/VGG19; vgg11/vgg13: Table 2's "133" million;
# googlenet: Table 1 sums to about 6.8M weights; 6,998,552 with biases.
PARAMS = {
    "lenet5": 60_840,  # 60,000 trainable + 840 fixed RBF prototypes
    "lenet5_modern": 61_706,
    "alexnet": 62_378_344,
    "alexnet_grouped": 60_965_224,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "googlenet": 6_998_552,
}


@pytest.mark.smoke
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_at_default_shape(name):
    model = _skeleton(name)
    assert model.count_params() == PARAMS[name]
    if name == "googlenet":
        assert 6_600_000 <= model.count_params() <= 7_100_000


@pytest.mark.smoke
def test_lenet5_counts_exactly_the_papers_60000_trainable_parameters():
    model = _skeleton("lenet5")
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    fixed = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    assert (trainable, fixed) == (60_000, 840)
    per_layer = {layer.name: layer.count_params() for layer in model.layers if layer.weights}
    assert per_layer == {
        "c1_conv": 156,
        "s2_subsample": 12,
        "c3_conv": 1_516,
        "s4_subsample": 32,
        "c5_conv": 48_120,
        "f6_dense": 10_164,
        "logits": 840,
    }


@pytest.mark.smoke
def test_lenet5_modern_layer_counts():
    model = _skeleton("lenet5_modern")
    per_layer = [layer.count_params() for layer in model.layers if layer.weights]
    assert per_layer == [156, 2_416, 48_120, 10_164, 850]


@pytest.mark.smoke
def test_googlenet_aux_heads_add_two_classifiers():
    # Each head: avgpool 5x5/3 on 14x14 -> 4x4; conv 1x1 128; dense 2048 -> 1024; linear.
    def head(channels):
        return (channels * 128 + 128) + (4 * 4 * 128 * 1024 + 1024) + (1024 * 1000 + 1000)

    model = _skeleton("googlenet", aux_classifiers=True)
    assert model.count_params() == PARAMS["googlenet"] + head(512) + head(528)


# --- LeNet-5 layers -----------------------------------------------------------------------------


@pytest.mark.smoke
def test_scaled_tanh_at_hand_computed_points():
    x = np.array([0.0, 1.0, -1.0, 0.5, 30.0], dtype="float32")
    y = _np(ScaledTanh()(x))
    expected = [0.0, 1.7159 * math.tanh(2 / 3), -1.7159 * math.tanh(2 / 3), 1.7159 * math.tanh(1 / 3), 1.7159]
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    # The paper's design point (Appendix A): f(1) = 1 and f(-1) = -1.
    np.testing.assert_allclose(y[1:3], [1.0, -1.0], atol=2e-4)


@pytest.mark.smoke
def test_trainable_subsampling_is_window_sum_times_coefficient_plus_bias():
    layer = TrainableSubsampling(2)
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    # Starts as average pooling: coefficient 1/4, bias 0.
    np.testing.assert_allclose(_np(layer(x))[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    layer.set_weights([np.array([3.0], "float32"), np.array([0.5], "float32")])
    # Window sums 0+1+4+5 = 10, 2+3+6+7 = 18, 8+9+12+13 = 42, 10+11+14+15 = 50.
    np.testing.assert_allclose(_np(layer(x))[0, :, :, 0], [[30.5, 54.5], [126.5, 150.5]])
    assert layer.count_params() == 2


# LeCun et al. 1998, Sec. II-B, in words: C3 maps 0-5 see every contiguous (cyclic) triple of
# S2 maps, 6-11 every contiguous quadruple, 12-14 some discontinuous quadruples, 15 all six.
# Transcribed here independently of the table in lenet.py.
TABLE_I_COLUMNS = [
    {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1},
    {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2},
    {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},
    {0, 1, 2, 3, 4, 5},
]  # fmt: skip


@pytest.mark.smoke
def test_c3_connection_table_is_table_i():
    table = lenet.connection_table()
    assert len(table) == 6 and all(len(row) == 16 for row in table)
    columns = [{i for i in range(6) if table[i][j]} for j in range(16)]
    assert columns == TABLE_I_COLUMNS
    assert sum(map(sum, table)) == 60  # 60 * 25 weights + 16 biases = 1,516


def _c3_layer():
    layer = PartialConv2D(lenet.connection_table(), 5)
    x = _rng().normal(size=(1, 14, 14, 6)).astype("float32")
    return layer, x, _np(layer(x))


@pytest.mark.smoke
def test_partial_conv_is_a_convolution_with_zeros_where_table_i_has_no_x():
    layer, x, y = _c3_layer()
    assert y.shape == (1, 10, 10, 16)
    assert layer.count_params() == 1_516
    mask = np.array(lenet.connection_table())
    full = _np(layer.full_kernel())
    assert full.shape == (5, 5, 6, 16)
    assert np.all(full[:, :, ~mask] == 0)
    assert np.all(full[:, :, mask] != 0)
    # The stored weights fill the connections row by row (input map, then output map).
    np.testing.assert_array_equal(full[:, :, mask], _value(layer.kernel))
    # Same output as an ordinary 'valid' convolution with that kernel, done in NumPy.
    windows = np.lib.stride_tricks.sliding_window_view(x[0], (5, 5), axis=(0, 1))  # 10,10,6,5,5
    expected = np.einsum("hwcij,ijco->hwo", windows, full) + _value(layer.bias)
    np.testing.assert_allclose(y[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.smoke
def test_partial_conv_input_map_reaches_only_its_table_i_columns():
    layer, x, y = _c3_layer()
    for i in range(6):
        bumped = x.copy()
        bumped[..., i] += 1.0
        changed = np.abs(_np(layer(bumped)) - y).max(axis=(0, 1, 2)) > 1e-4
        assert {j for j in range(16) if changed[j]} == {j for j, c in enumerate(TABLE_I_COLUMNS) if i in c}


@pytest.mark.smoke
def test_lenet5_training_keeps_missing_c3_connections_at_zero():
    model = build_model("lenet5")
    c3, rbf = model.get_layer("c3_conv"), model.get_layer("logits")
    before, prototypes = _value(c3.kernel).copy(), _value(rbf.prototypes).copy()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = _rng().normal(size=(8, 32, 32, 1)).astype("float32")
    model.train_on_batch(x, np.arange(8) % 10)
    assert np.any(_value(c3.kernel) != before), "the connected C3 weights must train"
    mask = np.array(lenet.connection_table())
    assert np.all(_np(c3.full_kernel())[:, :, ~mask] == 0)
    np.testing.assert_array_equal(_value(rbf.prototypes), prototypes)  # fixed, not trained


@pytest.mark.smoke
def test_euclidean_rbf_logits_are_minus_squared_distances_to_fixed_codes():
    layer = EuclideanRBF(3, seed=7)
    x = _rng().normal(size=(4, 84)).astype("float32")
    logits = _np(layer(x))
    w = _value(layer.prototypes)
    assert w.shape == (84, 3) and set(np.unique(w)) == {-1.0, 1.0}
    assert layer.trainable_weights == [] and layer.count_params() == 252
    expected = -((x[:, :, None] - w[None]) ** 2).sum(axis=1)
    np.testing.assert_allclose(logits, expected, rtol=1e-5)
    # Class i's code does not depend on the number of classes, and the seed fixes it.
    wider = EuclideanRBF(5, seed=7)
    wider.build((None, 84))
    np.testing.assert_array_equal(_value(wider.prototypes)[:, :3], w)


@pytest.mark.smoke
def test_lenet5_prototypes_are_random_codes_not_the_papers_bitmaps():
    # What the docs and the lenet5-mnist deviations say: random +-1 codes of 84 bits, any two
    # of the ten differing in 34 to 52 bits (the paper's bitmaps make confusable classes close).
    codes = _value(build_model("lenet5").get_layer("logits").prototypes).T  # (10, 84)
    distances = [int((a != b).sum()) for i, a in enumerate(codes) for b in codes[i + 1 :]]
    assert codes.shape == (10, 84) and (min(distances), max(distances)) == (34, 52)


@pytest.mark.smoke
def test_lenet5_respects_num_classes():
    model = _skeleton("lenet5", num_classes=5)
    assert model.output_shape == (None, 5)
    assert model.get_layer("logits").count_params() == 84 * 5


# --- AlexNet layers -----------------------------------------------------------------------------


def _lrn_reference(a, size, k, alpha, beta):
    """The paper's formula, loop by loop (Krizhevsky et al. 2012, Sec. 3.3)."""
    n_channels = a.shape[-1]
    b = np.empty_like(a)
    for i in range(n_channels):
        lo, hi = max(0, i - size // 2), min(n_channels - 1, i + size // 2)
        b[..., i] = a[..., i] / (k + alpha * (a[..., lo : hi + 1] ** 2).sum(-1)) ** beta
    return b


@pytest.mark.smoke
def test_lrn_by_hand():
    # size 3, k=1, alpha=1, beta=1 on channels (1, 2, 3):
    # 1 / (1 + 1 + 4), 2 / (1 + 1 + 4 + 9), 3 / (1 + 4 + 9).
    layer = LocalResponseNormalization(size=3, k=1.0, alpha=1.0, beta=1.0)
    y = _np(layer(np.array([[[[1.0, 2.0, 3.0]]]], dtype="float32")))
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / 15, 3 / 14], rtol=1e-6)


@pytest.mark.smoke
@pytest.mark.parametrize(
    "size, k, alpha, beta",
    [(5, 2.0, 1e-4, 0.75), (5, 2.0, 0.05, 0.75), (3, 1.0, 0.3, 0.5), (1, 2.0, 0.1, 1.0)],
)
def test_lrn_matches_numpy_reference(size, k, alpha, beta):
    # Large activations, so that even the paper's alpha = 1e-4 changes the output visibly.
    a = (_rng().normal(size=(2, 3, 3, 7)) * 30).astype("float32")
    y = _np(LocalResponseNormalization(size=size, k=k, alpha=alpha, beta=beta)(a))
    np.testing.assert_allclose(y, _lrn_reference(a, size, k, alpha, beta), rtol=1e-5)
    assert not np.allclose(y, a / k**beta, rtol=1e-3), "the window sum must matter"


@pytest.mark.smoke
def test_lrn_under_float16_does_not_overflow():
    # 300**2 * 5 channels is far above float16's 65504: the sum must be taken in float32.
    a = np.full((1, 1, 1, 5), 300.0, dtype="float32")
    y = _np(LocalResponseNormalization(dtype="mixed_float16")(a)).astype("float32")
    np.testing.assert_allclose(y, _lrn_reference(a, 5, 2.0, 1e-4, 0.75), rtol=2e-3)


@pytest.mark.smoke
def test_alexnet_grouped_convolutions_really_are_grouped():
    model = _skeleton("alexnet_grouped")
    groups = {f"conv{i}": model.get_layer(f"conv{i}").groups for i in range(1, 6)}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert tuple(model.get_layer("conv2").kernel.shape) == (5, 5, 48, 256)
    # The model's conv2 made again with drawn weights (a skeleton has none): GPU 1's maps
    # reach only GPU 1's kernels.
    skeleton = model.get_layer("conv2")
    conv2 = keras.layers.Conv2D(
        skeleton.filters, skeleton.kernel_size, padding=skeleton.padding, groups=skeleton.groups
    )
    x = _rng().normal(size=(1, 7, 7, 96)).astype("float32")
    y = _np(conv2(x))
    bumped = x.copy()
    bumped[..., :48] += 1.0  # the first GPU's maps only
    changed = np.abs(_np(conv2(bumped)) - y).max(axis=(0, 1, 2)) > 1e-4
    assert changed[:128].all() and not changed[128:].any()


@pytest.mark.smoke
def test_alexnet_layout():
    model = _skeleton("alexnet", input_shape=(227, 227, 3), num_classes=10, dropout=0.5)
    assert model.get_layer("conv1").output.shape[1:] == (55, 55, 96)  # Fig. 2
    assert model.get_layer("conv5_pool").output.shape[1:] == (6, 6, 256)
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.endswith("_lrn")] == ["conv1_lrn", "conv2_lrn"]
    assert [n for n in names if n.endswith("_dropout")] == ["fc6_dropout", "fc7_dropout"]
    assert model.get_layer("fc6_dropout").rate == 0.5
    no_extras = _skeleton("alexnet", input_shape=(67, 67, 3), dropout=0.0, lrn=False)
    assert not [n.name for n in no_extras.layers if n.name.endswith(("_lrn", "_dropout"))]


# --- VGG and GoogLeNet --------------------------------------------------------------------------


@pytest.mark.smoke
def test_vgg_conv_layers_follow_table_1():
    for depth, convs in ((11, 8), (13, 10), (16, 13), (19, 16)):
        spec = get_entry(f"vgg{depth}").spec
        assert sum(stage.convs for stage in spec.stages) + 3 == depth
        assert sum(stage.convs for stage in spec.stages) == convs


@pytest.mark.smoke
def test_vgg_on_cifar_and_with_batch_norm():
    model = _skeleton("vgg11", input_shape=(32, 32, 3), num_classes=10, batch_norm=True)
    assert model.get_layer("flatten").output.shape[1:] == (512,)  # 1x1x512 after five pools
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 8
    assert model.get_layer("block1_conv1").bias is None  # BN makes the bias redundant
    assert model.output_shape == (None, 10)


@pytest.mark.smoke
def test_googlenet_follows_table_1():
    model = _skeleton("googlenet", input_shape=(224, 224, 3), num_classes=10)
    sizes = {
        m.name: tuple(model.get_layer(f"inception{m.name}_concat").output.shape[1:])
        for m in get_entry("googlenet").spec.modules
    }
    assert sizes == {  # Table 1's "output size" column
        "3a": (28, 28, 256), "3b": (28, 28, 480),
        "4a": (14, 14, 512), "4b": (14, 14, 512), "4c": (14, 14, 512),
        "4d": (14, 14, 528), "4e": (14, 14, 832),
        "5a": (7, 7, 832), "5b": (7, 7, 1024),
    }  # fmt: skip
    assert model.get_layer("dropout").rate == 0.4
    assert len(model.outputs) == 1


@pytest.mark.smoke
def test_googlenet_smallest_aux_input_is_exact():
    from keras_cnns.models.googlenet import smallest_aux_input_size

    size = smallest_aux_input_size(get_entry("googlenet").spec)
    assert size == 65
    # ceil(65 / 16) = 5 fits the 5x5 pooling; ceil(64 / 16) = 4 does not.
    model = _skeleton("googlenet", input_shape=(size, size, 3), aux_classifiers=True)
    assert model.get_layer("aux1_pool").output.shape[1:3] == (1, 1)
    assert model.get_layer("inception4a_concat").output.shape[1:3] == (5, 5)
    with pytest.raises(UserError, match="at least 65x65"):
        build_model("googlenet", input_shape=(size - 1, size - 1, 3), aux_classifiers=True)


def test_googlenet_aux_outputs_exist_when_asked():
    model = build_model("googlenet", input_shape=(65, 65, 3), num_classes=10, aux_classifiers=True)
    heads = [model.get_layer(n) for n in ("logits", "aux1_logits", "aux2_logits")]
    assert len(model.outputs) == 3
    assert all(h.output is o for h, o in zip(heads, model.outputs, strict=True))  # main first
    outputs = model(np.zeros((2, 65, 65, 3), "float32"), training=False)
    assert [tuple(o.shape) for o in outputs] == [(2, 10)] * 3
    assert all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs)
    assert model.get_layer("aux1_dropout").rate == 0.7


@pytest.mark.smoke
@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("lenet5", {"input_shape": (28, 28, 1)}, "at least 32x32"),
        ("alexnet", {"input_shape": (32, 32, 3)}, "at least 67x67"),
        ("vgg16", {"input_shape": (16, 16, 3)}, "at least 32x32"),
        ("googlenet", {"input_shape": (32, 32, 3), "aux_classifiers": True}, "at least 65x65"),
        ("vgg11", {"activation": "relux"}, "not a Keras activation"),
        ("lenet5", {"activation": "relux"}, "scaled_tanh"),
        ("alexnet", {"dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_user_mistakes_are_one_line_user_errors(name, overrides, message):
    with pytest.raises(UserError, match=message) as err:
        build_model(name, **overrides)
    assert "\n" not in str(err.value)
