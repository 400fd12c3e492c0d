"""Every registered model: builds, runs, names its layers uniquely, round-trips its config and
a ``.keras`` file, on whichever Keras backend the suite runs under; and the reference parameter
counts from the papers and keras.applications."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_cnns import build_model, get_entry, list_models

NAMES = [e.name for e in list_models()]

# The figures the project promises (issue "Foundation"; ../shared/papers.md), at each model's
# default input shape and number of classes. "total" includes BN statistics and fixed weights.
REFERENCE_COUNTS = {
    # name: (kind, count)
    "lenet5": ("trainable", 60_000),
    "lenet5_modern": ("total", 61_706),
    "alexnet": ("total", 62_378_344),
    "alexnet_grouped": ("total", 60_965_224),
    "vgg16": ("total", 138_357_544),  # keras.applications.VGG16
    "vgg19": ("total", 143_667_240),  # keras.applications.VGG19
    "resnet50": ("total", 25_636_712),  # keras.applications.ResNet50
    "resnet101": ("total", 44_707_176),
    "resnet152": ("total", 60_419_944),
    "densenet121": ("total", 8_062_504),  # keras.applications.DenseNet121
    "densenet169": ("total", 14_307_880),
    "densenet201": ("total", 20_242_984),
    "resnet20_cifar": ("trainable", 269_722),  # He et al. 2016, option A
    "resnet32_cifar": ("trainable", 464_154),
    "resnet44_cifar": ("trainable", 658_586),
    "resnet56_cifar": ("trainable", 853_018),
    "resnet110_cifar": ("trainable", 1_727_962),
    "resnet1202_cifar": ("trainable", 19_421_274),
    "plain20_cifar": ("trainable", 269_722),  # plain twins: identical counts
    "plain56_cifar": ("trainable", 853_018),
    "plain110_cifar": ("trainable", 1_727_962),
}

# Every architecture the course material names must be registered.
REQUIRED = set(REFERENCE_COUNTS) | {
    "vgg11", "vgg13", "googlenet", "resnet18", "resnet34", "plain18", "plain34",
    "densenet40_cifar", "densenet_bc100_cifar", "dropout_cifar", "cifar_4layer",
}  # fmt: skip


def _count(model, kind: str) -> int:
    if kind == "trainable":
        return int(sum(np.prod(v.shape) for v in model.trainable_weights))
    return int(model.count_params())


def test_every_required_architecture_is_registered():
    missing = sorted(REQUIRED - set(NAMES))
    assert not missing, f"not registered: {missing}"


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_reference_parameter_count(name):
    kind, expected = REFERENCE_COUNTS[name]
    # Shapes only: drawing 143M random weights would cost seconds and count nothing more.
    with keras.StatelessScope(initialize_variables=False):
        model = build_model(name)
    keras.backend.clear_session()
    assert _count(model, kind) == expected


def _small(name):
    entry = get_entry(name)
    shape = entry.small_input_shape or entry.input_shape
    return build_model(name, input_shape=shape, num_classes=10), shape


def _outputs(model, x):
    out = model(x, training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [keras.ops.convert_to_numpy(o) for o in outs]


# The contract runs for every model on TensorFlow; on JAX and PyTorch (the CI smoke subset) for
# one or two variants of every family, covering every builder code path: deeper variants stack
# more of the same blocks, and building them eagerly on JAX costs minutes each on 2 CPU cores
# (measured: densenet40_cifar 106 s to build under load). They were checked on both backends by
# hand; `KERAS_BACKEND=jax pytest tests/test_models_all.py` checks them all again.
SMOKE_MODELS = {
    "lenet5", "lenet5_modern", "alexnet_grouped", "vgg11", "googlenet", "resnet18", "plain50",
    "resnet20_cifar", "plain20_cifar", "densenet40_cifar", "densenet_bc100_cifar",
    "dropout_cifar", "cifar_4layer",
}  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.smoke) if n in SMOKE_MODELS else n for n in NAMES]
)
def test_model_contract(name, tmp_path):
    """Builds, float32 logits of the right shape, finite, unique names, config and .keras round trips."""
    model, shape = _small(name)
    assert model.name == name
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names)), "layer names must be unique"

    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    outs = _outputs(model, x)
    assert outs[0].shape == (2, 10)
    for o in outs:
        assert np.all(np.isfinite(o))
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"

    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    for a, b in zip(outs, _outputs(clone, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(outs, _outputs(loaded, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    keras.backend.clear_session()


def test_unknown_model_names_closest_matches():
    from keras_cnns.errors import UserError

    with pytest.raises(UserError, match="resnet20_cifar"):
        build_model("resnet20_cifr")


def test_unknown_builder_option_is_a_user_error():
    from keras_cnns.errors import UserError

    with pytest.raises(UserError, match="no option 'bogus'"):
        build_model("resnet20_cifar", bogus=1)
