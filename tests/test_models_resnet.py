"""Residual, dense and small CIFAR nets: pinned parameter counts and layer semantics.

Counts are checked against outside figures where they exist: keras.applications (ResNet-50/
101/152, DenseNet-121/169/201, totals), He et al. 2016 Table 6 via the exact option-A
trainable counts, torchvision (ResNet-18/34 without conv biases), and the DenseNet and dropout
papers' rounded figures. The generic build / config / save-load test over every registered
model lives elsewhere; here only the residual-specific variants are saved and reloaded.

Speed: counts do not depend on the spatial input size (global pooling), so ImageNet nets are
built on ``small_input_shape``; ResNet-1202 is built once.
"""

from __future__ import annotations

import inspect
import sys

import keras
import numpy as np
import pytest

from keras_cnns import build_model, get_entry, list_models
from keras_cnns.errors import UserError
from keras_cnns.layers import DeepFunctional, RecursionLimit, StochasticDepth, ZeroPadShortcut
from keras_cnns.models.cifar_nets import SPECS, max_norm_bounds
from keras_cnns.models.resnet import survival_probabilities


def _counts(model) -> tuple[int, int]:
    """(trainable, total) parameters; total includes BN moving statistics, as Keras reports."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return trainable, model.count_params()


def _small(name: str, **kwargs):
    entry = get_entry(name)
    return build_model(name, input_shape=entry.small_input_shape, **kwargs)


def _weight_layers(model) -> int:
    return sum(
        isinstance(layer, keras.layers.Conv2D | keras.layers.Dense) for layer in model.layers
    )


# --- pinned counts ------------------------------------------------------------------------------

# (trainable, total) at the registered number of classes.
PINNED = {
    # He et al. 2016 Table 6 ("0.27M ... 1.7M"); trainable counts are the well-known exact
    # option-A figures. Plain twins are identical: option A has no parameters.
    "resnet20_cifar": (269_722, 271_098),
    "resnet32_cifar": (464_154, 466_426),
    "resnet44_cifar": (658_586, 661_754),
    "resnet56_cifar": (853_018, 857_082),
    "resnet110_cifar": (1_727_962, 1_736_058),
    "plain20_cifar": (269_722, 271_098),
    "plain32_cifar": (464_154, 466_426),
    "plain44_cifar": (658_586, 661_754),
    "plain56_cifar": (853_018, 857_082),
    "plain110_cifar": (1_727_962, 1_736_058),
    # keras.applications ResNet50/101/152 totals (conv biases, projection shortcuts).
    "resnet50": (25_583_592, 25_636_712),
    "resnet101": (44_601_832, 44_707_176),
    "resnet152": (60_268_520, 60_419_944),
    # Same conventions for the basic-block nets (torchvision's figures: see below).
    "resnet18": (11_694_312, 11_703_912),
    "resnet34": (21_806_184, 21_823_208),
    # Plain twins: the residual count minus the projection shortcuts.
    "plain18": (11_519_592, 11_527_400),
    "plain34": (21_631_464, 21_646_696),
    "plain50": (22_803_176, 22_848_616),
    "plain101": (41_821_416, 41_919_080),
    "plain152": (57_488_104, 57_631_848),
    # keras.applications DenseNet121/169/201 totals.
    "densenet121": (7_978_856, 8_062_504),
    "densenet169": (14_149_480, 14_307_880),
    "densenet201": (20_013_928, 20_242_984),
    # Huang et al. 2017 Table 2: "1.0M" and "0.8M".
    "densenet40_cifar": (1_019_722, 1_037_818),
    "densenet_bc100_cifar": (769_162, 793_150),
    # Srivastava et al. 2014, Appendix B.2 (96/128/256 conv, 2048/2048 dense) with 'same' padding.
    "dropout_cifar": (13_741_578, 13_741_578),
    # cuda-convnet CIFAR net: 2,432 + 25,632 + 51,264 + 10,250.
    "cifar_4layer": (89_578, 89_578),
}
# ResNet-1202 is checked on its own (one build); plain-1202 only in the opt-in slow test.
RESNET1202 = (19_421_274, 19_510_906)


def test_every_variant_is_pinned():
    mine = {"resnet", "resnet_cifar", "densenet", "cifar_nets"}
    names = {e.name for e in list_models() if e.family in mine}
    assert names == set(PINNED) | {"resnet1202_cifar", "plain1202_cifar"}


# Plain-101/152 exist for completeness (the paper trains neither); building them costs as
# much as ResNet-101/152 and adds no outside checkpoint, so their builds are opt-in: the
# generic test still builds them, and test_plain_imagenet_is_residual_minus_projections
# ties their pinned counts to keras.applications'.
_SLOW_COUNTS = {"plain101", "plain152"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_COUNTS else n for n in sorted(PINNED)],
)
def test_pinned_parameter_counts(name):
    entry = get_entry(name)
    # Counts do not depend on the spatial size, except through dropout_cifar's Flatten.
    shape = entry.input_shape if entry.family == "cifar_nets" else entry.small_input_shape
    model = build_model(name, input_shape=shape)
    assert _counts(model) == PINNED[name]
    assert model.name == name
    # The paper's depth counts weighted layers; projection shortcuts are not counted, so
    # check it where there are none (plain nets, option A, DenseNets).
    if entry.defaults.get("shortcut") in ("A", "none") or entry.family == "densenet":
        assert _weight_layers(model) == entry.spec.depth
    if name.startswith("plain"):
        assert not any(isinstance(layer, keras.layers.Add) for layer in model.layers)


def test_dropout_cifar_100_classes():
    model = build_model("dropout_cifar", num_classes=100)
    assert _counts(model)[0] == 13_925_988  # the same net with 100 outputs


@pytest.mark.parametrize("name, expected", [("resnet18", 11_689_512), ("resnet34", 21_797_672)])
def test_basic_block_nets_match_torchvision_without_conv_bias(name, expected):
    assert _counts(_small(name, conv_bias=False))[0] == expected


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_plain_imagenet_is_residual_minus_projections(depth):
    # The projection shortcut of the first block of each bottleneck stage: a 1x1 conv with
    # bias (in * out + out) and BN (2 * out trainable, 2 * out moving statistics).
    shapes = ((64, 256), (256, 512), (512, 1024), (1024, 2048))
    trainable = sum(c_in * c_out + c_out + 2 * c_out for c_in, c_out in shapes)
    total = trainable + sum(2 * c_out for _, c_out in shapes)
    residual, plain = PINNED[f"resnet{depth}"], PINNED[f"plain{depth}"]
    assert (residual[0] - plain[0], residual[1] - plain[1]) == (trainable, total)


def test_plain_twins_pin_the_residual_counts():
    for name, counts in PINNED.items():
        if name.startswith("plain") and name.endswith("_cifar"):
            assert counts == PINNED[name.replace("plain", "resnet")]


@pytest.mark.smoke
def test_plain_cifar_equals_residual_and_has_no_shortcuts():
    residual = _small("resnet20_cifar")
    plain = _small("plain20_cifar")
    assert _counts(plain) == _counts(residual) == PINNED["resnet20_cifar"]
    assert sum(isinstance(layer, keras.layers.Add) for layer in residual.layers) == 9
    assert sum(isinstance(layer, ZeroPadShortcut) for layer in residual.layers) == 2
    assert not any(isinstance(layer, keras.layers.Add | ZeroPadShortcut) for layer in plain.layers)


@pytest.mark.smoke
def test_cifar_shortcut_options():
    a = _small("resnet20_cifar")
    b = _small("resnet20_cifar", shortcut="B")
    a_avg = _small("resnet20_cifar", shortcut="A_avgpool")
    # Option B adds a 1x1 conv + BN on the two shape changes: 16->32 and 32->64.
    extra_trainable = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert _counts(b)[0] == PINNED["resnet20_cifar"][0] + extra_trainable
    assert _counts(a_avg) == _counts(a)
    assert b.get_layer("stage2_block1_shortcut_conv").kernel.shape == (1, 1, 16, 32)
    pads = [layer for layer in a_avg.layers if isinstance(layer, ZeroPadShortcut)]
    assert [p.downsample for p in pads] == ["avgpool", "avgpool"]


@pytest.mark.smoke
def test_layer_names_are_hierarchical():
    model = _small("resnet20_cifar")
    for expected in (
        "stem_conv",
        "stage2_block3_conv1_conv",
        "stage2_block3_conv2_bn",
        "stage3_block1_shortcut",
        "stage3_block3_add",
        "stage3_block3_out",
        "logits",
    ):
        model.get_layer(expected)


# --- downsampling alignment -------------------------------------------------------------------


def _producer(tensor):
    return tensor._keras_history.operation


@pytest.mark.smoke
@pytest.mark.parametrize("name", ["resnet20_cifar", "plain20_cifar", "resnet18", "plain34"])
def test_every_strided_convolution_is_centred_on_the_pixel_the_shortcut_takes(name):
    """A stride-2 convolution's output pixel i must be centred on input pixel 2i, the pixel the
    option-A shortcut (``x[::2, ::2]``) and a 1x1 stride-2 projection take. With a centre-tap
    identity kernel its output must then equal the subsampled input; TensorFlow's 'same'
    padding (bottom/right only) centres it on 2i + 1 and fails this."""
    model = _small(name)
    strided = [
        layer for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.strides == (2, 2) and layer.name != "stem_conv"
    ]  # fmt: skip
    assert len(strided) >= 2
    images = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype("float32")
    for conv in strided:
        source = _producer(conv.input)
        block_input = source.input if isinstance(source, keras.layers.ZeroPadding2D) else conv.input
        kh, kw, cin, cout = conv.kernel.shape
        kernel = np.zeros((kh, kw, cin, cout), "float32")
        for c in range(min(cin, cout)):
            kernel[kh // 2, kw // 2, c, c] = 1.0
        conv.kernel.assign(kernel)
        if conv.use_bias:
            conv.bias.assign(np.zeros(cout, "float32"))
        probe = keras.Model(model.input, [block_input, conv.output])
        x, y = (keras.ops.convert_to_numpy(t) for t in probe(images))
        c = min(cin, cout)
        np.testing.assert_allclose(y[..., :c], x[:, ::2, ::2, :c], atol=1e-6, err_msg=conv.name)


@pytest.mark.smoke
def test_option_a_shortcut_and_branch_see_the_same_pixels():
    """The block's two paths line up: with the branch's strided kernel a centre-tap identity,
    the shortcut's kept channels equal the branch convolution's output."""
    model = _small("resnet20_cifar")
    conv = model.get_layer("stage2_block1_conv1_conv")
    kernel = np.zeros(conv.kernel.shape, "float32")
    for c in range(16):
        kernel[1, 1, c, c] = 1.0
    conv.kernel.assign(kernel)
    probe = keras.Model(model.input, [model.get_layer("stage2_block1_shortcut").output, conv.output])
    images = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype("float32")
    s, y = (keras.ops.convert_to_numpy(t) for t in probe(images))
    np.testing.assert_allclose(y[..., :16], s[..., :16], atol=1e-6)


# --- option-A zero padding ----------------------------------------------------------------------


@pytest.mark.smoke
def test_zero_pad_shortcut_subsamples_and_pads_exact_zeros():
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")
    layer = ZeroPadShortcut(8, strides=2)
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (2, 3, 3, 8) == layer.compute_output_shape(x.shape)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    assert np.all(y[..., 3:] == 0.0)


@pytest.mark.smoke
def test_zero_pad_shortcut_avgpool():
    x = np.arange(2 * 4 * 4 * 2, dtype="float32").reshape(2, 4, 4, 2)
    y = keras.ops.convert_to_numpy(ZeroPadShortcut(6, strides=2, downsample="avgpool")(x))
    expected = x.reshape(2, 2, 2, 2, 2, 2).mean(axis=(2, 4))  # 2x2 windows
    np.testing.assert_allclose(y[..., :2], expected, rtol=1e-6)
    assert np.all(y[..., 2:] == 0.0)


@pytest.mark.smoke
def test_zero_pad_shortcut_rejects_fewer_channels():
    with pytest.raises(ValueError, match="only add channels"):
        ZeroPadShortcut(2)(np.zeros((1, 4, 4, 3), "float32"))


# --- stochastic depth ---------------------------------------------------------------------------


def _pair(batch: int = 4):
    rng = np.random.default_rng(1)
    shortcut = rng.normal(size=(batch, 2, 2, 3)).astype("float32")
    branch = (rng.normal(size=(batch, 2, 2, 3)) + 3.0).astype("float32")  # never ~0
    return shortcut, branch


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_survival_probabilities_decay_linearly():
    np.testing.assert_allclose(survival_probabilities(4, 0.5), [0.875, 0.75, 0.625, 0.5])
    assert survival_probabilities(3, 0.0) == [1.0, 1.0, 1.0]


@pytest.mark.smoke
def test_stochastic_depth_inference_is_deterministic_and_scaled():
    shortcut, branch = _pair()
    layer = StochasticDepth(0.7, seed=3)
    first = _np(layer([shortcut, branch], training=False))
    np.testing.assert_allclose(first, shortcut + 0.7 * branch, rtol=1e-6)
    np.testing.assert_array_equal(_np(layer([shortcut, branch], training=False)), first)
    np.testing.assert_array_equal(_np(layer([shortcut, branch])), first)  # default: inference


@pytest.mark.smoke
def test_stochastic_depth_batch_mode_keeps_or_removes_the_whole_branch_unbiased():
    shortcut, branch = _pair()
    p, draws = 0.7, 400
    layer = StochasticDepth(p, mode="batch", seed=3)
    outputs = np.stack([_np(layer([shortcut, branch], training=True)) for _ in range(draws)])
    dropped = np.all(outputs == shortcut, axis=(1, 2, 3, 4))  # exactly the identity
    kept = np.all(np.isclose(outputs, shortcut + branch, rtol=0, atol=1e-6), axis=(1, 2, 3, 4))
    assert np.all(dropped ^ kept)  # one draw for the whole batch, branch raw or absent
    # Unbiased: E[gate] = p, so the mean output approaches the inference output. The
    # kept fraction has standard error sqrt(p (1 - p) / draws) = 0.023; allow 4 of them.
    assert abs(kept.mean() - p) < 4 * np.sqrt(p * (1 - p) / draws)
    inference = _np(layer([shortcut, branch], training=False))
    np.testing.assert_allclose(
        outputs.mean(axis=0), inference, atol=4 * 0.023 * np.abs(branch).max()
    )


@pytest.mark.smoke
def test_drop_path_sample_mode_differs_across_the_batch_batch_mode_does_not():
    batch = 64
    shortcut = np.zeros((batch, 1, 1, 1), "float32")
    branch = np.ones((batch, 1, 1, 1), "float32")
    per_sample = StochasticDepth(0.5, mode="sample", seed=5)
    per_batch = StochasticDepth(0.5, mode="batch", seed=5)
    gates = _np(per_sample([shortcut, branch], training=True)).ravel()
    assert set(gates.tolist()) == {0.0, 1.0}  # P(all equal) = 2 * 2**-64
    assert abs(gates.mean() - 0.5) < 0.25
    for _ in range(5):
        assert len(set(_np(per_batch([shortcut, branch], training=True)).ravel().tolist())) == 1


@pytest.mark.smoke
@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_stochastic_depth_draws_fresh_gates_in_compiled_training(mode):
    # The loss of one fixed batch reveals the gates: each example's squared error is
    # |1 + 0|^2 = 1 (dropped) or |1 + 4|^2 = 25 (kept), so the batch loss is 1 + 3k for k
    # kept of 8. A zero learning rate leaves everything but the draws unchanged.
    inputs = keras.Input((4,))
    branch = keras.layers.Dense(4, kernel_initializer="ones", use_bias=False)(inputs)
    outputs = StochasticDepth(0.5, mode=mode, seed=7)([inputs, branch])
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.ones((8, 4), "float32")
    losses = model.fit(x, np.zeros_like(x), batch_size=8, epochs=24, verbose=0).history["loss"]
    kept = sorted({round((loss - 1.0) / 3.0, 3) for loss in losses})
    if mode == "batch":  # the whole batch together: none or all 8 kept
        assert kept == [0.0, 8.0]
    else:  # per example: counts in between; P(no more than 2 distinct in 24 epochs) ~ 1e-9
        assert all(k == int(k) and 0 <= k <= 8 for k in kept) and len(kept) > 2


@pytest.mark.smoke
def test_drop_path_builds_the_linear_decay_into_the_model():
    model = _small("resnet20_cifar", drop_path=0.5, drop_path_mode="sample")
    gates = [layer for layer in model.layers if isinstance(layer, StochasticDepth)]
    np.testing.assert_allclose(
        [g.survival_probability for g in gates], survival_probabilities(9, 0.5)
    )
    assert gates[-1].survival_probability == 0.5 and {g.mode for g in gates} == {"sample"}
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(_np(model(x)), _np(model(x)))  # inference is deterministic


@pytest.mark.smoke
def test_residual_variants_save_and_reload(tmp_path):
    # The generic test covers default options; these add the custom layers' configs.
    model = _small("resnet20_cifar", shortcut="A_avgpool", drop_path=0.5, activation="tanh")
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    path = tmp_path / "resnet20.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(_np(restored(x)), _np(model(x)), rtol=1e-5, atol=1e-6)
    assert isinstance(restored.get_layer("stage3_block3_add"), StochasticDepth)
    assert restored.get_layer("stage2_block1_shortcut").downsample == "avgpool"
    # Batch-mode stochastic depth moves each branch into its StochasticDepth layer (so a
    # dropped block can skip it); the branch's layers keep their names one level down.
    branch = restored.get_layer("stage1_block1_add").branch
    assert branch.get_layer("stage1_block1_conv1_tanh") is not None


# --- ResNet-1202 --------------------------------------------------------------------------------


def test_resnet1202_builds_within_default_recursion_limit():
    limit = sys.getrecursionlimit()
    model = _small("resnet1202_cifar")
    assert sys.getrecursionlimit() == limit  # the builder restores it
    assert _counts(model) == RESNET1202  # Table 6: 19.4M
    assert _weight_layers(model) == 1202
    assert isinstance(model, DeepFunctional)  # so from_config / load_model work as well


def test_recursion_limit_raises_never_lowers_and_restores():
    limit = sys.getrecursionlimit()
    with RecursionLimit(limit + 500):
        assert sys.getrecursionlimit() == limit + 500
        with RecursionLimit(10):  # never lowered
            assert sys.getrecursionlimit() == limit + 500
        assert sys.getrecursionlimit() == limit + 500
    assert sys.getrecursionlimit() == limit
    with pytest.raises(KeyError), RecursionLimit(limit + 1):
        raise KeyError("restored on errors too")
    assert sys.getrecursionlimit() == limit


def test_deep_functional_reloads_past_the_recursion_limit(tmp_path):
    # ResNet-1202's 4,208 layers outgrow Python's default 1,000 frames when Keras rebuilds
    # the graph. The same situation, cheaply: a 200-layer chain under a limit 100 frames
    # above the current depth (the ResNet-1202 round trip itself is the slow test below).
    depth, headroom = 200, 100
    inputs = keras.Input((2,))
    x = inputs
    for i in range(depth):
        x = keras.layers.Identity(name=f"id{i}")(x)
    model = DeepFunctional(inputs, x, name="chain")
    model.save(tmp_path / "chain.keras")
    config = model.get_config()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + headroom)
    try:
        with pytest.raises(RecursionError):  # what a plain functional model does
            keras.Model.from_config(config)
        restored = keras.saving.load_model(tmp_path / "chain.keras")  # DeepFunctional's
        assert sys.getrecursionlimit() == len(inspect.stack()) + headroom  # restored
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(restored, DeepFunctional) and len(restored.layers) == depth + 1


@pytest.mark.slow
def test_resnet1202_plain_twin_and_round_trip(tmp_path):
    assert _counts(_small("plain1202_cifar")) == RESNET1202
    model = _small("resnet1202_cifar")
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 3)).astype("float32")
    model.save(tmp_path / "r1202.keras")
    clone = model.__class__.from_config(model.get_config())  # no recursion limit by hand
    restored = keras.saving.load_model(tmp_path / "r1202.keras")
    assert _counts(clone) == RESNET1202
    np.testing.assert_allclose(_np(restored(x)), _np(model(x)), rtol=1e-5, atol=1e-5)


def test_densenet_options():
    model = _small("densenet40_cifar", activation="tanh", dropout=0.2)
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(drops) == 36 + 2 and {d.rate for d in drops} == {0.2}  # each conv but the stem
    assert model.get_layer("block2_layer12_conv1_tanh") is not None
    assert model.get_layer("transition2_conv").filters == 16 + 24 * 12  # no compression


# --- small CIFAR nets ---------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.parametrize(
    "placement, rates",
    [("none", []), ("fc", [0.5, 0.5]), ("all", [0.1, 0.25, 0.25, 0.5, 0.5, 0.5])],
)
def test_dropout_placement(placement, rates):
    model = _small("dropout_cifar", dropout=placement)
    found = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert found == rates


def _weighted(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)]


@pytest.mark.smoke
@pytest.mark.parametrize(
    "placement, bounds",
    [
        # c = 4 times the retention probability of each layer's input; conv1..conv3, fc1, fc2,
        # logits. all: 4 * 0.9 after input dropout 0.1, 4 * 0.75 after 0.25, 4 * 0.5 after 0.5.
        ("all", [3.6, 3.0, 3.0, 2.0, 2.0, 2.0]),
        ("fc", [4.0, 4.0, 4.0, 4.0, 2.0, 2.0]),
        ("none", [4.0] * 6),
    ],
)
def test_dropout_cifar_max_norm_is_the_papers_bound_under_inverted_dropout(placement, bounds):
    assert max_norm_bounds(SPECS["dropout_cifar"], placement) == pytest.approx(bounds)
    weighted = _weighted(_small("dropout_cifar", dropout=placement))
    names = ["conv1_conv", "conv2_conv", "conv3_conv", "fc1_dense", "fc2_dense", "logits"]
    assert [layer.name for layer in weighted] == names
    for layer, bound in zip(weighted, bounds, strict=True):
        constraint = layer.kernel_constraint
        assert isinstance(constraint, keras.constraints.MaxNorm), layer.name
        assert constraint.max_value == pytest.approx(bound), layer.name
        conv = isinstance(layer, keras.layers.Conv2D)
        # One output unit's incoming weights: a conv kernel's (kh, kw, in) slice.
        assert list(np.atleast_1d(constraint.axis)) == ([0, 1, 2] if conv else [0])


@pytest.mark.smoke
def test_dropout_cifar_max_norm_bounds_the_kernel_keras_trains():
    # A kernel column of norm 10 behind fc2's 0.5 dropout is rescaled to norm 2 (= 4 * 0.5).
    layer = _small("dropout_cifar", dropout="all").get_layer("logits")
    kernel = np.zeros(layer.kernel.shape, dtype="float32")
    kernel[:2, 0] = (6.0, 8.0)
    bounded = np.asarray(layer.kernel_constraint(keras.ops.convert_to_tensor(kernel)))
    assert np.linalg.norm(bounded[:, 0]) == pytest.approx(2.0, rel=1e-5)


@pytest.mark.smoke
def test_dropout_cifar_without_max_norm_has_no_constraint_and_the_same_parameters():
    model = build_model("dropout_cifar", dropout="none", max_norm=False)
    assert all(layer.kernel_constraint is None for layer in _weighted(model))
    assert _counts(model) == PINNED["dropout_cifar"]
    # The bounds changed what the net computes: a new revision keeps earlier runs apart.
    entry = get_entry("dropout_cifar")
    assert entry.revision == 2 and "retention probability" in entry.revision_note


@pytest.mark.smoke
def test_cifar_4layer_activation_option():
    model = _small("cifar_4layer", activation="tanh")
    acts = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert acts == ["conv1_tanh", "conv2_tanh", "conv3_tanh"]
    pools = [type(layer).__name__ for layer in model.layers if "pool" in layer.name]
    assert pools == ["MaxPooling2D", "AveragePooling2D", "AveragePooling2D"]
    assert model.output_shape == (None, 10)


@pytest.mark.smoke
def test_cifar_4layer_cuda_convnet_init_draws_each_layers_gaussian(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model("cifar_4layer", init="cuda_convnet")
    assert model.count_params() == 89_578  # the same net, only the draw differs
    stds = {"conv1_conv": 1e-4, "conv2_conv": 0.01, "conv3_conv": 0.01, "logits": 0.01}
    for name, std in stds.items():
        kernel, bias = (np.asarray(w) for w in model.get_layer(name).get_weights())
        assert abs(kernel.mean()) < 0.1 * std, name
        assert kernel.std() == pytest.approx(std, rel=0.1), name  # 1,600+ draws per kernel
        assert not bias.any(), name
    glorot = build_model("cifar_4layer")
    assert np.asarray(glorot.get_layer("conv1_conv").kernel).std() > 100 * stds["conv1_conv"]
    path = tmp_path / "cc.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(again.get_layer("conv1_conv").kernel), np.asarray(model.get_layer("conv1_conv").kernel))


# --- user errors --------------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("resnet20_cifar", {"shortcut": "D"}, "shortcut='D' is not valid"),
        ("plain20_cifar", {"drop_path": 0.5}, "needs a shortcut"),
        ("resnet20_cifar", {"drop_path": 1.0}, r"must be in \[0, 1\)"),
        ("resnet20_cifar", {"drop_path": 0.5, "drop_path_mode": "layer"}, "drop_path_mode"),
        ("resnet18", {"activation": "relu7"}, "not a Keras activation"),
        ("densenet40_cifar", {"dropout": 1.5}, "dropout=1.5"),
        ("dropout_cifar", {"dropout": "conv"}, "dropout='conv' is not valid"),
        ("cifar_4layer", {"dropout": "all"}, "no dropout rates"),
        ("cifar_4layer", {"init": "he"}, "init='he' is not valid"),
        ("dropout_cifar", {"init": "cuda_convnet"}, "no cuda-convnet initialisation"),
        ("cifar_4layer", {"max_norm": True}, "no max-norm bound"),
        ("dropout_cifar", {"max_norm": "yes"}, "max_norm='yes' is not valid"),
        ("resnet50", {"growth_rate": 12}, "takes no option 'growth_rate'"),
    ],
)
def test_user_errors_are_one_line(name, kwargs, message):
    with pytest.raises(UserError, match=message) as info:
        build_model(name, **kwargs)
    assert "\n" not in str(info.value)
