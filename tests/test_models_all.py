"""Every registered model: builds, runs, names its layers uniquely, round-trips its config and
a ``.keras`` file, on whichever Keras backend the suite runs under; and the reference parameter
counts from the papers and keras.applications."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_cnns import build_model, get_entry, list_models

NAMES = [e.name for e in list_models()]

# The figures the project promises (the papers' and keras.applications' counts), at each model's
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


def _as_saved(config):
    """``config`` with tuples as lists, as a ``.keras`` file's JSON holds it."""
    if isinstance(config, dict):
        return {k: _as_saved(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_as_saved(v) for v in config]
    return config


def _outputs(model, x):
    out = model(x, training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [keras.ops.convert_to_numpy(o) for o in outs]


@pytest.fixture
def one_torch_thread():
    """PyTorch on one CPU thread for the duration of a test (no-op on other backends).

    The contract runs batches of 2 images of at most 67x67 pixels: every op is too small to
    split across threads, and waking a second thread for each costs more than the op (on 2
    shared cores: resnet110_cifar build 4.8 s -> 0.7 s, forward 1.6 s -> 0.4 s).
    """
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# Every model, on every backend CI runs (all of them are smoke). One build serves the config and
# the .keras checks: ``load_model`` rebuilds the model from its saved config with ``from_config``
# and loads the weights, so the reloaded model must give back the same config and the same
# outputs. A separate in-memory ``from_config`` clone would be a third build of the same graph
# and cost a third more (building is the slow part: 4,208 layers for resnet1202_cifar), while
# checking nothing the reload does not. On JAX, tests/conftest.py makes XLA compile faster.
#
# The weights are drawn from a fixed seed, so each backend checks the same model on every run.
# That matters for "finite": in inference mode an untrained network's batch norms are the
# identity (moving mean 0, variance 1), and resnet1202_cifar's 600 residual additions then grow
# the activations about 1.3x per block. Its logits land at 1e35-1e38 depending on the draw (seeds
# 0-3 on each backend, 2026-12), against float32's ceiling of 3.4e38: one of those 12 draws, and
# one unseeded CI run on JAX, overflowed to NaN. That is the untrained network in inference mode,
# not a bug: in training mode batch norm normalises each residual branch by its batch statistics.
@pytest.mark.smoke
@pytest.mark.parametrize("name", NAMES)
def test_model_contract(name, tmp_path, one_torch_thread):
    """Builds, float32 logits of the right shape, finite, unique names, .keras round trip."""
    keras.utils.set_random_seed(0)
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

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert _as_saved(loaded.get_config()) == _as_saved(model.get_config())
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
