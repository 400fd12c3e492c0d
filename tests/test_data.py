"""keras_cnns.data: loading (archive, tfds, sample), splits, preprocessing, augmentation.

Real-data tests take the ``data_dir`` fixture and use seeded subsets; damaged archives are
written to ``tmp_path``; the tfds path runs under ``tfds.testing.mock_data`` with the network
probe monkeypatched, so nothing here touches the network. The augmentation tests are
backend-neutral (``smoke``) and run on TensorFlow, JAX and PyTorch in CI.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import zipfile

import numpy as np
import pytest

from keras_cnns import data
from keras_cnns.data import sources
from keras_cnns.errors import DataError, UserError

# Per-class image counts of the full sets (train includes the validation split).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    # Tests say where their data is; a developer's $KERAS_CNNS_DATA_DIR must not leak in.
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


@pytest.fixture
def offline(monkeypatch):
    """No prepared tfds data and no network: load_dataset must not wait for tfds."""
    monkeypatch.setattr(sources, "_tfds_prepared", lambda info: False)
    monkeypatch.setattr(sources, "_network_available", lambda: False)


def _fake_mnist(n_train=600, n_test=200):
    """An MNIST-shaped archive whose images encode their own index (pixels 0 and 1)."""
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.zeros((n, 28, 28), np.uint8)
        x[:, 0, 0], x[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = (np.arange(n) % 10).astype(np.uint8)
    return arrays


def _index(x: np.ndarray) -> np.ndarray:
    return x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 1, 0].astype(int)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


# --- loading real archives ---------------------------------------------------------------------


def test_dataset_table():
    assert set(data.DATASETS) == {"mnist", "cifar10", "cifar100", "fashion_mnist", "imagenet2012"}
    assert data.DATASETS["mnist"].image_shape == (28, 28, 1)
    assert data.DATASETS["cifar100"].num_classes == 100
    assert data.streamed_datasets() == ("imagenet2012",)
    with pytest.raises(UserError, match="cifar10, cifar100"):
        data.load_dataset("imagenet")
    with pytest.raises(UserError, match="streamed"):
        data.load_dataset("imagenet2012")  # never into memory
    with pytest.raises(UserError, match="auto, archive, tfds, sample"):
        data.load_dataset("mnist", source="web")


def test_mnist_archive(data_dir):
    s = data.load_dataset("mnist", data_dir=data_dir)
    digest = hashlib.sha256((data_dir / "mnist.npz").read_bytes()).hexdigest()
    assert s.source == f"archive:mnist.npz sha256:{digest}"  # the file, not this machine's path
    assert (s.name, s.num_classes) == ("mnist", 10)
    assert s.x_train.shape == (55000, 28, 28, 1) and s.x_val.shape == (5000, 28, 28, 1)
    assert s.x_test.shape == (10000, 28, 28, 1)
    for x in (s.x_train, s.x_val, s.x_test):
        assert x.dtype == np.uint8
    for y in (s.y_train, s.y_val, s.y_test):
        assert y.dtype == np.int64 and y.ndim == 1
    train_and_val = np.bincount(np.concatenate([s.y_train, s.y_val]), minlength=10)
    assert train_and_val.tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(s.y_test).tolist() == MNIST_TEST_COUNTS
    # MNIST pixel statistics (README): mean / std of x / 255 over the training set.
    train_all = np.concatenate([s.x_train, s.x_val])
    assert train_all.mean() / 255 == pytest.approx(0.1307, abs=1e-4)


@pytest.mark.parametrize(("name", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_archive(data_dir, name, classes):
    s = data.load_dataset(name, data_dir=data_dir, val_size=5000)
    assert s.x_train.shape == (45000, 32, 32, 3) and s.x_val.shape == (5000, 32, 32, 3)
    assert s.x_test.shape == (10000, 32, 32, 3) and s.x_train.dtype == np.uint8
    assert s.y_train.dtype == s.y_test.dtype == np.int64 and s.num_classes == classes
    per_class = 50000 // classes
    train_and_val = np.bincount(np.concatenate([s.y_train, s.y_val]), minlength=classes)
    assert (train_and_val == per_class).all()
    assert (np.bincount(s.y_test, minlength=classes) == 10000 // classes).all()
    # A uniform 5,000-image draw: every class is there, none wildly over-represented.
    val_counts = np.bincount(s.y_val, minlength=classes)
    assert val_counts.min() > 0.5 * 5000 / classes and val_counts.max() < 1.5 * 5000 / classes


def test_env_data_dir(data_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))
    s = data.load_dataset("mnist", val_size=0, test_subset=10)
    assert s.source.startswith("archive:") and len(s.x_val) == 0 and len(s.x_train) == 60000


def test_cifar10_test_subset_is_random(data_dir):
    # The stored CIFAR-10 test set is grouped by class: a subset must still hold every class.
    s = data.load_dataset("cifar10", data_dir=data_dir, train_subset=1000, test_subset=500, seed=3)
    assert s.x_train.shape == (1000, 32, 32, 3) and s.x_test.shape == (500, 32, 32, 3)
    assert len(np.unique(s.y_test)) == 10 and len(np.unique(s.y_train)) == 10
    again = data.load_dataset("cifar10", data_dir=data_dir, train_subset=1000, test_subset=500, seed=3)
    assert np.array_equal(s.x_test, again.x_test) and np.array_equal(s.y_train, again.y_train)


# --- splits and subsets (an archive whose images carry their index) ----------------------------


@pytest.fixture
def fake_dir(tmp_path):
    _write(tmp_path / "mnist.npz", **_fake_mnist())
    return tmp_path


def test_validation_split(fake_dir):
    s = data.load_dataset("mnist", data_dir=fake_dir, val_size=100, seed=7)
    train, val = _index(s.x_train), _index(s.x_val)
    assert (len(train), len(val)) == (500, 100)
    assert not set(train) & set(val)
    assert sorted(set(train) | set(val)) == list(range(600))
    assert np.array_equal(s.y_val, val % 10) and np.array_equal(s.y_train, train % 10)
    again = data.load_dataset("mnist", data_dir=fake_dir, val_size=100, seed=7)
    assert np.array_equal(_index(again.x_val), val)
    other = data.load_dataset("mnist", data_dir=fake_dir, val_size=100, seed=8)
    assert not np.array_equal(_index(other.x_val), val)
    # Not "the last 100": a random draw.
    assert val.min() < 400


def test_subsets(fake_dir):
    s = data.load_dataset("mnist", data_dir=fake_dir, val_size=100, seed=1, train_subset=50, test_subset=30)
    full = data.load_dataset("mnist", data_dir=fake_dir, val_size=100, seed=1)
    train = _index(s.x_train)
    assert len(train) == 50 and set(train) <= set(_index(full.x_train))
    assert np.array_equal(_index(s.x_val), _index(full.x_val))  # subsets come after the split
    test = _index(s.x_test)
    assert len(test) == 30 == len(set(test)) and test.max() < 200
    assert test.max() > 100  # not the first 30
    assert np.array_equal(s.y_test, test % 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": 600}, "val_size=600 leaves no training images"),
        ({"val_size": -1}, "val_size must be an integer >= 0"),
        ({"train_subset": 501}, "train_subset=501 is more than the 500"),
        ({"test_subset": 0}, "test_subset must be an integer >= 1"),
        ({"test_subset": 201}, "test_subset=201 is more than the 200"),
        ({"seed": -2}, "seed must be"),
    ],
)
def test_bad_sizes(fake_dir, kwargs, message):
    kwargs = {"val_size": 100, **kwargs}
    with pytest.raises(UserError, match=message):
        data.load_dataset("mnist", data_dir=fake_dir, **kwargs)


# --- damaged archives --------------------------------------------------------------------------


def _damage(kind, path):
    arrays = _fake_mnist()
    if kind == "missing key":
        del arrays["y_test"]
    elif kind == "float pixels":
        arrays["x_train"] = arrays["x_train"].astype(np.float32)
    elif kind == "wrong shape":
        arrays["x_test"] = np.zeros((200, 32, 32), np.uint8)
    elif kind == "label out of range":
        arrays["y_train"][5] = 10
    elif kind == "negative label":
        arrays["y_test"] = arrays["y_test"].astype(np.int64) - 1
    elif kind == "one label short":
        arrays["y_train"] = arrays["y_train"][:-1]
    elif kind == "float labels":
        arrays["y_train"] = arrays["y_train"].astype(np.float32)
    _write(path, **arrays)
    if kind == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "not a zip":
        path.write_bytes(b"this is not an archive" * 100)
    elif kind == "npy not npz":
        with open(path, "wb") as f:
            np.save(f, arrays["x_train"])
    elif kind == "corrupt member":
        # Flip bytes inside a stored member: the zip opens, the CRC check must catch it.
        raw = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("x_train.npy")
        start = info.header_offset + 30 + len(info.filename) + 200
        raw[start : start + 64] = bytes(255 - b for b in raw[start : start + 64])
        path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing key", "missing y_test"),
        ("float pixels", "x_train is float32, expected uint8"),
        ("wrong shape", r"x_test has shape \(200, 32, 32\)"),
        ("label out of range", "y_train holds label 10, outside 0..9"),
        ("negative label", "y_test holds label -1"),
        ("one label short", r"y_train has shape \(599,\)"),
        ("float labels", "y_train is float32, expected integer"),
        ("truncated", "damaged or not an .npz"),
        ("not a zip", "damaged or not an .npz"),
        ("npy not npz", "a single array, not an .npz archive"),
        ("corrupt member", "damaged or not an .npz"),
    ],
)
def test_damaged_archive(tmp_path, kind, message):
    path = tmp_path / "mnist.npz"
    _damage(kind, path)
    with pytest.raises(DataError, match=message) as err:
        data.load_dataset("mnist", data_dir=tmp_path, val_size=10)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_archive_in_configured_dir(tmp_path, offline):
    with pytest.raises(DataError, match=f"no archive {tmp_path.resolve() / 'cifar10.npz'}"):
        data.load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(DataError, match="needs a directory"):
        data.load_dataset("cifar10", source="archive")


# --- no archive, no network; the packaged sample -----------------------------------------------


def test_offline_without_archive_fails_fast(offline):
    start = time.monotonic()
    with pytest.raises(DataError, match=data.DATA_DIR_ENV) as err:
        data.load_dataset("cifar10")
    assert "\n" not in str(err.value) and "network" in str(err.value)
    with pytest.raises(DataError, match="allow_sample"):
        data.load_dataset("mnist")
    with pytest.raises(DataError, match="network is unreachable"):
        data.load_dataset("mnist", source="tfds")
    assert time.monotonic() - start < 5


def test_network_probe_gives_up_quickly(monkeypatch):
    # A server that accepts the connection and never answers: the probe must not wait on it.
    server = socket.create_server(("127.0.0.1", 0))
    try:
        monkeypatch.setattr(sources, "_PROBE_ADDRESS", server.getsockname())
        monkeypatch.setattr(sources, "_PROBE_SECONDS", 0.5)
        start = time.monotonic()
        assert sources._network_available() is False
        assert time.monotonic() - start < 2
    finally:
        server.close()


def test_sample_fallback(offline):
    s = data.load_dataset("mnist", allow_sample=True, val_size=500, seed=0)
    assert s.source == "sample"
    assert s.x_train.shape == (4500, 28, 28, 1) and s.x_val.shape == (500, 28, 28, 1)
    assert s.x_test.shape == (1000, 28, 28, 1) and s.y_test.dtype == np.int64
    assert len(np.unique(s.y_train)) == 10
    with pytest.raises(UserError, match="MNIST only"):
        data.load_dataset("cifar10", source="sample")
    with pytest.raises(UserError, match="leaves no training images"):
        data.load_dataset("mnist", source="sample")  # the default val_size=5000 is the whole sample


def test_sample_is_real_mnist(data_dir):
    from importlib.resources import files

    path = files("keras_cnns").joinpath(*data.SAMPLE_RESOURCE)
    assert path.is_file() and path.stat().st_size < 4 * 2**20
    sample = data.load_dataset("mnist", source="sample", val_size=0)
    full = data.load_dataset("mnist", data_dir=data_dir, val_size=0)
    full_test = {x.tobytes(): y for x, y in zip(full.x_test, full.y_test, strict=True)}
    assert all(full_test.get(x.tobytes()) == y for x, y in zip(sample.x_test, sample.y_test, strict=True))
    assert len(sample.x_train) == 5000


# --- tensorflow-datasets, through its own mock ------------------------------------------------


@pytest.mark.parametrize(("name", "classes", "shape"), [("mnist", 10, (28, 28, 1)), ("cifar100", 100, (32, 32, 3))])
def test_tfds_source(monkeypatch, name, classes, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(sources, "_network_available", lambda: True)
    with tfds.testing.mock_data(num_examples=40):
        s = data.load_dataset(name, source="tfds", val_size=8, seed=0)
    assert s.source == "tfds" and s.num_classes == classes
    assert s.x_train.shape == (32, *shape) and s.x_val.shape == (8, *shape)
    assert s.x_test.shape == (40, *shape) and s.x_train.dtype == np.uint8
    assert s.y_train.dtype == np.int64 and 0 <= s.y_train.min() and s.y_train.max() < classes


def test_auto_uses_tfds_when_reachable(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(sources, "_tfds_prepared", lambda info: False)
    monkeypatch.setattr(sources, "_network_available", lambda: True)
    with tfds.testing.mock_data(num_examples=20):
        s = data.load_dataset("fashion_mnist", val_size=5, allow_sample=True)
    assert s.source == "tfds" and s.x_train.shape == (15, 28, 28, 1)


# --- preprocessing -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_subset(data_dir):
    return data.load_dataset("cifar10", data_dir=data_dir, train_subset=2000, test_subset=200, seed=0)


def test_preprocessing_none_and_unknown(cifar_subset):
    pre = data.fit_preprocessing("none", cifar_subset.x_train)
    out = pre.apply(cifar_subset.x_test)
    assert out.dtype == np.float32 and out.shape == cifar_subset.x_test.shape
    np.testing.assert_allclose(out, cifar_subset.x_test / 255.0, rtol=1e-6)
    with pytest.raises(UserError, match="none, standardize, pixel_mean, pixel_mean_255, gcn_zca, lenet"):
        data.fit_preprocessing("whiten", cifar_subset.x_train)
    with pytest.raises(UserError, match="uint8 NHWC"):
        pre.apply(out)
    with pytest.raises(UserError, match="fitted on images of"):
        pre.apply(np.zeros((2, 28, 28, 1), np.uint8))


def test_standardize(cifar_subset):
    pre = data.fit_preprocessing("standardize", cifar_subset.x_train)
    out = pre.apply(cifar_subset.x_train)
    # float64 reductions: numpy sums a float32 array over leading axes without pairwise summation.
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2), dtype=np.float64), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2), dtype=np.float64), 1.0, atol=1e-5)
    info = json.loads(json.dumps(pre.info()))
    assert info["name"] == "standardize" and len(info["mean"]) == 3 and info["n_fit"] == 2000
    # Fitted on the training images only: the test images are not exactly centred.
    assert np.abs(pre.apply(cifar_subset.x_test).mean(axis=(0, 1, 2))).max() > 1e-4


def test_pixel_mean(cifar_subset):
    pre = data.fit_preprocessing("pixel_mean", cifar_subset.x_train)
    out = pre.apply(cifar_subset.x_train)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    # Only a shift: the spread of x / 255 is untouched.
    np.testing.assert_allclose(out[0] - out[1], (cifar_subset.x_train[0] / 255.0) - (cifar_subset.x_train[1] / 255.0), atol=1e-6)
    json.dumps(pre.info())


def test_pixel_mean_255_is_pixel_mean_in_pixel_units(cifar_subset):
    unit = data.fit_preprocessing("pixel_mean", cifar_subset.x_train).apply(cifar_subset.x_test)
    pre = data.fit_preprocessing("pixel_mean_255", cifar_subset.x_train)
    out = pre.apply(cifar_subset.x_test)
    np.testing.assert_allclose(out, unit * 255.0, rtol=1e-6, atol=1e-4)
    # cuda-convnet's input: raw pixel differences, so two images differ by whole pixel values.
    diff = out[0] - out[1]
    np.testing.assert_allclose(diff, cifar_subset.x_test[0].astype(np.float32) - cifar_subset.x_test[1], atol=1e-3)
    assert json.loads(json.dumps(pre.info()))["name"] == "pixel_mean_255"


def test_gcn_zca_whitens(cifar_subset):
    # An 8x8 crop keeps the covariance small (192 dims) and well estimated by 2,000 images.
    crop = np.ascontiguousarray(cifar_subset.x_train[:, 12:20, 12:20, :])
    pre = data.fit_preprocessing("gcn_zca", crop, zca_epsilon=1e-6)
    out = pre.apply(crop).reshape(len(crop), -1).astype(np.float64)
    cov = np.cov(out, rowvar=False, bias=True)
    # Per-image, per-channel centring removes one direction per channel (the constant image),
    # so the whitened covariance is the identity on everything else: I - P.
    const = np.zeros((192, 3))
    for c in range(3):
        const[c::3, c] = 1 / 8.0  # unit vector: 64 pixels of channel c
    expected = np.eye(192) - const @ const.T
    assert np.abs(cov - expected).max() < 0.02
    # The default epsilon regularises: no direction is amplified beyond unit variance.
    default = data.fit_preprocessing("gcn_zca", crop)
    eig = np.linalg.eigvalsh(np.cov(default.apply(crop).reshape(len(crop), -1), rowvar=False, bias=True))
    assert eig.max() < 1.0 + 1e-3 and eig.max() > 0.9 and eig[eig > 1e-6].min() < 0.5
    info = json.loads(json.dumps(default.info()))
    assert info["epsilon_relative"] == data.ZCA_EPSILON and info["epsilon"] > 0


def test_gcn_zca_fewer_images_than_dimensions_matches_the_eigendecomposition():
    # n < D takes the thin-SVD path; it must give the matrix the textbook formula gives.
    x = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    pre = data.fit_preprocessing("gcn_zca", x)
    unit = x.astype(np.float64) / 255.0
    centred = (unit - unit.mean(axis=(1, 2), keepdims=True)).reshape(40, -1)
    centred -= centred.mean(axis=0)
    lam, vec = np.linalg.eigh(centred.T @ centred / 40)
    lam = np.maximum(lam, 0.0)
    eps = data.ZCA_EPSILON * lam.mean()
    expected = (vec / np.sqrt(lam + eps)) @ vec.T
    np.testing.assert_allclose(pre.stats["zca"], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert pre.info()["epsilon"] == pytest.approx(eps, rel=1e-6)


@pytest.mark.slow
def test_gcn_zca_full_size(cifar_subset):
    pre = data.fit_preprocessing("gcn_zca", cifar_subset.x_train)
    out = pre.apply(cifar_subset.x_test)
    assert out.shape == (200, 32, 32, 3) and np.isfinite(out).all()


def test_lenet(data_dir):
    s = data.load_dataset("mnist", data_dir=data_dir, train_subset=500, test_subset=100)
    pre = data.fit_preprocessing("lenet", s.x_train)
    out = pre.apply(s.x_test)
    assert out.shape == (100, 32, 32, 1) and out.dtype == np.float32
    assert pre.output_shape == (32, 32, 1) and pre.fill_value == pytest.approx(-0.1)
    assert out.min() == pytest.approx(-0.1) and out.max() == pytest.approx(1.175)
    # The two-pixel border is background; the 28x28 centre keeps the digit.
    border = np.concatenate([out[:, :2].ravel(), out[:, -2:].ravel(), out[:, :, :2].ravel(), out[:, :, -2:].ravel()])
    assert np.all(border == np.float32(-0.1))
    ink = s.x_test[..., 0] == 255
    assert np.allclose(out[:, 2:30, 2:30, 0][ink], 1.175)
    json.dumps(pre.info())


# --- augmentation (backend-neutral: smoke) -----------------------------------------------------

SHAPE = (16, 16, 3)
BATCH = 32


def _images(seed=0):
    # Random floats: no value repeats and none is 0, so shifted-in zeros are recognisable.
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(BATCH, *SHAPE)) + 3.0).astype("float32")


def _augment(names, seed, x, *, training=True, **kwargs):
    import keras

    layer = data.make_augmenter(names, seed=seed, image_shape=SHAPE, **kwargs)
    return keras.ops.convert_to_numpy(layer(x, training=training))


def _pca_kwargs(name):
    return {"x_train_float": _images(5)} if name == "pca_jitter" else {}


@pytest.mark.smoke
def test_augmentation_names_agree():
    from keras_cnns.data.augmentation_layer import ImageAugmentation

    assert data.AUGMENTATIONS == ImageAugmentation.OPERATIONS
    assert data.make_augmenter([], seed=0, image_shape=SHAPE) is None
    with pytest.raises(UserError, match="pad_crop, flip, translate"):
        data.make_augmenter(["cutout"], seed=0, image_shape=SHAPE)
    with pytest.raises(UserError, match="listed twice"):
        data.make_augmenter(["flip", "flip"], seed=0, image_shape=SHAPE)
    with pytest.raises(UserError, match="x_train_float"):
        data.make_augmenter(["pca_jitter"], seed=0, image_shape=SHAPE)


@pytest.mark.smoke
@pytest.mark.parametrize("name", data.AUGMENTATIONS)
def test_augmentation_contract(name):
    x = _images()
    kwargs = _pca_kwargs(name)
    y = _augment([name], 1, x, **kwargs)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.array_equal(_augment([name], 1, x, training=False, **kwargs), x)  # identity
    assert np.array_equal(_augment([name], 1, x, training=None, **kwargs), x)
    assert np.array_equal(_augment([name], 1, x, **kwargs), y)  # same seed, same batch
    assert not np.array_equal(_augment([name], 2, x, **kwargs), y)  # another seed, another batch
    changed = [not np.array_equal(y[i], x[i]) for i in range(BATCH)]
    assert sum(changed) >= BATCH // 4
    if name in ("pad_crop", "translate", "flip"):
        # Nearest-pixel moves only: every value is an input value of that image or a zero.
        for i in range(BATCH):
            assert np.isin(y[i], np.append(x[i], 0.0)).all()
    elif name in ("rotate", "shift", "scale", "lenet_distort"):
        # Bilinear resampling with zero fill: convex combinations of pixels and zeros.
        assert y.min() >= min(x.min(), 0) - 1e-4 and y.max() <= x.max() + 1e-4
    elif name == "noise":
        assert np.std(y - x) == pytest.approx(0.1, rel=0.05) and abs(np.mean(y - x)) < 0.01
    elif name == "pca_jitter":
        offset = y - x  # one colour shift per image, the same for every pixel
        np.testing.assert_allclose(offset, offset[:, :1, :1, :] + np.zeros_like(offset), atol=1e-5)


@pytest.mark.smoke
def test_pad_crop_is_an_integer_shift_with_zeros():
    x = _images()
    y = _augment(["pad_crop"], 3, x)
    shifts = set()
    for i in range(BATCH):
        padded = np.pad(x[i], ((4, 4), (4, 4), (0, 0)))
        found = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if np.array_equal(padded[4 + dy : 4 + dy + 16, 4 + dx : 4 + dx + 16], y[i])
        ]
        assert len(found) == 1, f"image {i} is not a zero-padded crop"
        shifts.add(found[0])
    assert len(shifts) > 5  # per-image draws, not one shift for the batch


@pytest.mark.smoke
def test_flip_flips():
    x = _images()
    y = _augment(["flip"], 4, x)
    flipped = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(BATCH)]
    kept = [np.array_equal(y[i], x[i]) for i in range(BATCH)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < BATCH


@pytest.mark.smoke
def test_translate_limit_and_fill_value():
    x = _images()
    y = _augment(["translate"], 5, x, fill_value=-0.1)
    # At most 2 px: the 12x12 centre of every output comes from the image, never the fill.
    assert not np.isclose(y[:, 2:-2, 2:-2], -0.1).any()
    assert np.isclose(y, -0.1).any()  # some pixels were shifted in


@pytest.mark.smoke
def test_pca_jitter_follows_the_principal_components():
    rng = np.random.default_rng(0)
    # Colour that varies along one direction only: the jitter must move along it.
    direction = np.array([0.6, 0.0, 0.8])
    train = (rng.normal(size=(64, 16, 16, 1)) * direction).astype("float32")
    vectors, values = data.channel_pca(train)
    assert abs(vectors[:, 0] @ direction) == pytest.approx(1.0, abs=1e-6)
    assert values[1] < 1e-9 * values[0] + 1e-12
    x = _images()
    y = _augment(["pca_jitter"], 6, x, x_train_float=train)
    offsets = (y - x)[:, 0, 0, :]
    assert np.allclose(np.cross(offsets, direction), 0, atol=1e-5)
    # alpha ~ N(0, 0.1) times the eigenvalue (here ~1): offsets of about 0.1.
    assert 0.03 < np.abs(offsets @ direction).mean() < 0.3


@pytest.mark.smoke
def test_augmenter_serializes_and_trains(tmp_path):
    import keras

    names = ["pad_crop", "rotate", "pca_jitter"]  # integer, uniform and normal draws; bilinear
    layer = data.make_augmenter(names, seed=9, image_shape=SHAPE, x_train_float=_images(1))
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = _images()
    assert np.array_equal(
        keras.ops.convert_to_numpy(clone(x, training=True)),
        keras.ops.convert_to_numpy(layer(x, training=True)),
    )
    inputs = keras.Input(SHAPE)
    hidden = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # One compiled training step: the layer must trace inside fit on every backend.
    model.fit(x[:16], np.arange(16) % 2, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("augment").get_config() == layer.get_config()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )
