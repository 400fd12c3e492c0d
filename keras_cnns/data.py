"""Datasets, the papers' preprocessing, and on-device augmentation.

Three parts, each a small set of pure helpers:

* ``load_dataset``: MNIST / CIFAR-10 / CIFAR-100 / Fashion-MNIST as uint8 NHWC images and
  int64 labels, from a local ``.npz`` archive (``data_dir`` or ``$KERAS_CNNS_DATA_DIR``), from
  tensorflow-datasets, or from the small MNIST sample shipped in the package, with a seeded
  validation split carved from the training set and seeded subsets for CPU smoke runs.
* ``fit_preprocessing``: the papers' input preprocessing, fitted on training images only:
  ``none`` (x / 255), ``standardize`` (per-channel mean / std; Huang et al. 2016),
  ``pixel_mean`` (per-pixel mean subtraction; He et al. 2016, Sec. 4.2), ``pixel_mean_255``
  (the same in pixel units, as cuda-convnet fed CIFAR to Krizhevsky et al. 2012), ``gcn_zca``
  (per-image mean subtraction then ZCA whitening; Srivastava et al. 2014, Sec. B.3) and
  ``lenet`` (pad to 32x32, background -0.1, ink 1.175; LeCun et al. 1998, Sec. II-A).
* ``make_augmenter``: a Keras layer (``layers.ImageAugmentation``) that augments each batch
  inside the model's graph on any backend, only while training.

Only numpy is imported here at import time: tensorflow-datasets (which needs TensorFlow) is
imported only on the tfds path and Keras only by ``make_augmenter``, so the archive path works
on a machine without TensorFlow.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.resources
import logging
import os
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.errors import DataError, UserError

DATA_DIR_ENV = "KERAS_CNNS_DATA_DIR"
SOURCES = ("auto", "archive", "tfds", "sample")
ARCHIVE_KEYS = ("x_train", "y_train", "x_test", "y_test")
SAMPLE_RESOURCE = ("sample_data", "mnist_sample.npz")  # inside the keras_cnns package

# The network probe: tfds downloads MNIST from Google Cloud Storage, and an offline tfds.load
# retries for minutes before it fails; a 3-second connection attempt answers first.
_PROBE_ADDRESS = ("storage.googleapis.com", 443)
_PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, independent of where it is read from.

    Attributes:
        name: our name, also the archive's file stem (``<data_dir>/<name>.npz``).
        num_classes: number of labels.
        image_shape: channels-last shape of one image (MNIST: 28x28x1).
        tfds_name: the tensorflow-datasets name.
        streamed: too large for memory: read batch by batch from tfds by ``keras_cnns.imagenet``
            (``image_shape`` is then the default crop), never by ``load_dataset``.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    tfds_name: str
    streamed: bool = False

    @property
    def archive_name(self) -> str:
        return f"{self.name}.npz"


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 10, (28, 28, 1), "mnist"),
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), "cifar10"),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3), "cifar100"),  # the 100 fine labels
    # No archive of Fashion-MNIST ships beside the project: tfds, or an archive you make.
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (28, 28, 1), "fashion_mnist"),
    # ILSVRC-2012 from your own copy of the archives (<data_dir>/imagenet2012/), streamed.
    "imagenet2012": DatasetInfo("imagenet2012", 1000, (224, 224, 3), "imagenet2012", streamed=True),
}


def streamed_datasets() -> tuple[str, ...]:
    """The datasets read as a stream (``keras_cnns.imagenet``), not loaded into memory."""
    return tuple(name for name, info in DATASETS.items() if info.streamed)


@dataclass(frozen=True)
class Splits:
    """A dataset split three ways. Images are uint8 NHWC, labels int64 1-D.

    Attributes:
        name: dataset name (a key of ``DATASETS``).
        source: where it came from: ``"archive:cifar10.npz sha256:<hex>"`` (the archive's
            file name and the checksum of its bytes, never the machine's path), ``"tfds"`` or
            ``"sample"``. Records written before the checksum hold ``"archive:cifar10.npz"``.
        x_train, y_train: training images and labels (without the validation images).
        x_val, y_val: the seeded validation split carved from the training set.
        x_test, y_test: test images and labels.
        num_classes: number of labels.
    """

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


# --- loading -----------------------------------------------------------------------------------


def get_info(name: str) -> DatasetInfo:
    """The ``DatasetInfo`` of ``name``; an unknown name is a ``UserError`` listing the known."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; the datasets are: {', '.join(DATASETS)}") from None


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    val_size: int = 5000,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    allow_sample: bool = False,
) -> Splits:
    """Load a dataset and split it into train / validation / test.

    Sources, in the order ``source="auto"`` tries them:

    1. ``archive``: ``<data_dir>/<name>.npz`` when ``data_dir`` (or ``$KERAS_CNNS_DATA_DIR``)
       is set; a configured directory that lacks the file is an error, not a reason to
       download something else.
    2. ``tfds``: tensorflow-datasets, when the dataset is already prepared locally or a
       3-second network probe succeeds (an offline ``tfds.load`` would retry for minutes).
    3. ``sample``: the MNIST sample shipped in the package (5,000 train / 1,000 test images),
       only if ``allow_sample`` and ``name == "mnist"``.

    Args:
        name: a key of ``DATASETS``.
        data_dir: directory holding ``<name>.npz`` (default: ``$KERAS_CNNS_DATA_DIR``).
        source: ``"auto"``, ``"archive"``, ``"tfds"`` or ``"sample"``.
        val_size: validation images drawn (seeded, uniformly, not stratified) from the
            training set; 0 for none.
        seed: seeds the validation split and the subsets.
        train_subset: keep this many training images (a seeded random draw made after the
            validation split); ``None`` keeps all.
        test_subset: keep this many test images (a seeded random draw; the CIFAR-10 test set
            is grouped by class, so the first N would be wrong); ``None`` keeps all.
        allow_sample: let ``auto`` fall back to the packaged MNIST sample.

    Returns:
        ``Splits``; subsets keep the images' original order.

    Raises:
        UserError: an unknown name or source, or sizes that do not fit the data.
        DataError: no source has the data, or the data is damaged or wrongly shaped.
    """
    info = get_info(name)
    if info.streamed:
        raise UserError(f"{name} does not fit in memory: it is streamed by keras_cnns.imagenet, not loaded")
    if source not in SOURCES:
        raise UserError(f"unknown data source {source!r}; the sources are: {', '.join(SOURCES)}")
    _check_count("val_size", val_size, minimum=0)
    _check_count("seed", seed, minimum=0)
    for key, value in (("train_subset", train_subset), ("test_subset", test_subset)):
        if value is not None:
            _check_count(key, value, minimum=1)

    arrays, origin = _read_source(info, data_dir=data_dir, source=source, allow_sample=allow_sample)
    return _split(
        info,
        arrays,
        origin,
        val_size=val_size,
        seed=seed,
        train_subset=train_subset,
        test_subset=test_subset,
    )


def _check_count(key: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _configured_dir(data_dir) -> Path | None:
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    return None if data_dir is None else Path(data_dir).expanduser().resolve()


def _read_source(info: DatasetInfo, *, data_dir, source: str, allow_sample: bool):
    """(validated arrays, source string) from the first source that has the data."""
    directory = _configured_dir(data_dir)
    if source == "archive" or (source == "auto" and directory is not None):
        if directory is None:
            raise DataError(
                f"source 'archive' needs a directory: pass data_dir or set {DATA_DIR_ENV}"
            )
        path = directory / info.archive_name
        if not path.is_file():
            raise DataError(
                f"no archive {path}: unpack the data there (bash scripts/data.sh) or point "
                f"data_dir / {DATA_DIR_ENV} at the directory holding {info.archive_name}"
            )
        return read_archive(path, info), archive_source(path)
    if source == "sample":
        return _read_sample(info), "sample"
    if source == "tfds":
        try:
            prepared = _tfds_prepared(info)
        except ImportError as err:
            raise DataError(
                f"source 'tfds' needs tensorflow-datasets and TensorFlow ({err}); use a local "
                f"archive instead (data_dir / {DATA_DIR_ENV})"
            ) from None
        if not prepared and not _network_available():
            raise DataError(
                f"tensorflow-datasets has not prepared {info.tfds_name!r} and the network is "
                f"unreachable: connect once, or use a local archive (data_dir / {DATA_DIR_ENV})"
            )
        return _read_tfds(info), "tfds"
    # auto, nothing configured: tfds if it can answer quickly, else the sample, else a clear error.
    try:
        tfds_ready = _tfds_prepared(info) or _network_available()
    except ImportError:
        tfds_ready = False  # no TensorFlow / tensorflow-datasets here: not a usable source
    if tfds_ready:
        return _read_tfds(info), "tfds"
    if allow_sample and info.name == "mnist":
        return _read_sample(info), "sample"
    hint = " or allow the packaged MNIST sample (allow_sample)" if info.name == "mnist" else ""
    raise DataError(
        f"no data for {info.name!r}: set {DATA_DIR_ENV} (or data_dir) to a directory holding "
        f"{info.archive_name} (bash scripts/data.sh makes one), or connect to the network so "
        f"tensorflow-datasets can download it{hint}"
    )


def archive_source(path: str | os.PathLike) -> str:
    """The source string of an archive: its file name and sha256, not where it lies.

    A record says which data it trained on without the path of the machine that ran it:
    ``sha256sum cifar10.npz`` on another machine tells whether it holds the same file.
    """
    path = Path(path)
    stat = path.stat()
    return f"archive:{path.name} sha256:{_file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}"


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, read once per (path, size, modification time): archives are large."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_archive(path: str | os.PathLike, info: DatasetInfo) -> dict[str, np.ndarray]:
    """Read and check a local ``.npz`` archive in the ``keras.datasets`` layout.

    The archive holds uint8 ``x_train`` / ``x_test`` (N x H x W for one channel, or N x H x W x C)
    and integer ``y_train`` / ``y_test`` (N or N x 1); extra arrays are ignored.

    Args:
        path: the ``.npz`` file.
        info: the dataset it must hold.

    Returns:
        ``x_train``, ``y_train``, ``x_test``, ``y_test``: uint8 NHWC images, int64 labels.

    Raises:
        DataError: naming the file and what is wrong, if it cannot be read, lacks an array,
            or has a wrong dtype, shape, length or label.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single array, not an .npz archive of named arrays")
        with archive:
            missing = [k for k in ARCHIVE_KEYS if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing {', '.join(missing)}; an archive holds "
                    f"{', '.join(ARCHIVE_KEYS)}"
                )
            raw = {k: archive[k] for k in ARCHIVE_KEYS}  # reads (and CRC-checks) every member
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(
            f"{path}: damaged or not an .npz archive ({type(err).__name__}: {err}); "
            f"make it again (bash scripts/data.sh)"
        ) from None
    return _checked_arrays(raw, info, where=str(path))


def _checked_arrays(raw: dict[str, np.ndarray], info: DatasetInfo, *, where: str):
    """Images to uint8 NHWC and labels to int64, or a DataError saying what does not fit."""
    out = {}
    for split in ("train", "test"):
        x, y = raw[f"x_{split}"], raw[f"y_{split}"]
        if x.dtype != np.uint8:
            raise DataError(f"{where}: x_{split} is {x.dtype}, expected uint8 pixels")
        stored_shape = x.shape
        if x.ndim == 3 and info.image_shape[-1] == 1:
            x = x[..., None]
        if x.ndim != 4 or x.shape[1:] != info.image_shape or len(x) == 0:
            expected = "x".join(map(str, info.image_shape))
            raise DataError(
                f"{where}: x_{split} has shape {stored_shape}, expected N images of {expected} "
                f"for {info.name}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: y_{split} is {y.dtype}, expected integer labels")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (len(x),):
            raise DataError(
                f"{where}: y_{split} has shape {y.shape}, expected ({len(x)},): one label per image"
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= info.num_classes:
            bad = low if low < 0 else high
            raise DataError(
                f"{where}: y_{split} holds label {bad}, outside 0..{info.num_classes - 1} of {info.name}"
            )
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = y.astype(np.int64)
    return out


def _read_sample(info: DatasetInfo) -> dict[str, np.ndarray]:
    if info.name != "mnist":
        raise UserError(f"the packaged sample is MNIST only, not {info.name!r}")
    resource = importlib.resources.files("keras_cnns").joinpath(*SAMPLE_RESOURCE)
    with importlib.resources.as_file(resource) as path:
        if not Path(path).is_file():
            raise DataError(f"the packaged MNIST sample {path} is missing: reinstall keras-cnns")
        return read_archive(path, info)


def _network_available() -> bool:
    """Does tfds's download host answer an HTTPS request within ``_PROBE_SECONDS``?

    A full request, not just a TCP connection: some sandboxes accept every connection and
    then never answer. The attempt runs in a daemon thread because a DNS lookup does not
    honour the socket timeout; whatever it is doing after the deadline, the answer is no.
    """
    answered = threading.Event()
    finished = threading.Event()

    def attempt():
        host, port = _PROBE_ADDRESS
        connection = http.client.HTTPSConnection(host, port, timeout=_PROBE_SECONDS)
        try:
            connection.request("HEAD", "/")
            connection.getresponse()
            answered.set()
        except (OSError, http.client.HTTPException):
            pass  # unreachable, refused, timed out, or not speaking HTTPS
        finally:
            connection.close()
            finished.set()

    threading.Thread(target=attempt, daemon=True).start()
    finished.wait(_PROBE_SECONDS)
    return answered.is_set()


def _tfds_prepared(info: DatasetInfo) -> bool:
    """Has tensorflow-datasets already prepared the dataset locally? (ImportError without it.)"""
    import tensorflow_datasets as tfds  # lazily: it needs TensorFlow

    # Only a question: tfds' warnings about half-written folders it finds while answering
    # ("Variant folder ... has no dataset_info.json") are not the user's concern here.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        return bool(tfds.builder(info.tfds_name).is_prepared())
    finally:
        absl_logger.setLevel(level)


def _read_tfds(info: DatasetInfo) -> dict[str, np.ndarray]:
    try:
        import tensorflow_datasets as tfds  # lazily: it needs TensorFlow
    except ImportError as err:
        raise DataError(
            f"source 'tfds' needs tensorflow-datasets and TensorFlow ({err}); use a local "
            f"archive instead (data_dir / {DATA_DIR_ENV})"
        ) from None
    raw = {}
    for split in ("train", "test"):
        dataset = tfds.load(info.tfds_name, split=split, as_supervised=True, shuffle_files=False)
        xs, ys = [], []
        # Batches, not batch_size=-1: that one needs the split's size up front.
        for x, y in tfds.as_numpy(dataset.batch(10_000)):
            xs.append(x)
            ys.append(y)
        if not xs:
            raise DataError(f"tfds {info.tfds_name!r}: the {split} split is empty")
        raw[f"x_{split}"] = np.concatenate(xs)
        raw[f"y_{split}"] = np.concatenate(ys)
    return _checked_arrays(raw, info, where=f"tfds {info.tfds_name!r}")


def _rng(seed: int, stream: int) -> np.random.Generator:
    # One independent stream per use, so changing val_size does not change the test subset.
    return np.random.default_rng([seed, stream])


def _draw(n: int, k: int, seed: int, stream: int) -> np.ndarray:
    """``k`` of ``range(n)``, a seeded draw without replacement, in increasing order."""
    return np.sort(_rng(seed, stream).choice(n, size=k, replace=False))


def _split(info, arrays, origin, *, val_size, seed, train_subset, test_subset) -> Splits:
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    x_test, y_test = arrays["x_test"], arrays["y_test"]
    n = len(x_train)
    if val_size >= n:
        raise UserError(
            f"val_size={val_size} leaves no training images: {origin} has {n}; pass a smaller val_size"
        )
    order = _rng(seed, 0).permutation(n)
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    if train_subset is not None:
        if train_subset > len(train_idx):
            raise UserError(
                f"train_subset={train_subset} is more than the {len(train_idx)} training images "
                f"left after the validation split; pass at most {len(train_idx)}"
            )
        train_idx = train_idx[_draw(len(train_idx), train_subset, seed, 1)]
    if test_subset is not None:
        if test_subset > len(x_test):
            raise UserError(
                f"test_subset={test_subset} is more than the {len(x_test)} test images; "
                f"pass at most {len(x_test)}"
            )
        test_idx = _draw(len(x_test), test_subset, seed, 2)
        x_test, y_test = x_test[test_idx], y_test[test_idx]
    return Splits(
        name=info.name,
        source=origin,
        x_train=x_train[train_idx],
        y_train=y_train[train_idx],
        x_val=x_train[val_idx],
        y_val=y_train[val_idx],
        x_test=x_test,
        y_test=y_test,
        num_classes=info.num_classes,
    )


# --- preprocessing -----------------------------------------------------------------------------

PREPROCESSING = ("none", "standardize", "pixel_mean", "pixel_mean_255", "gcn_zca", "lenet")

# gcn_zca: epsilon added to every eigenvalue of the covariance before the inverse square root,
# in units of the MEAN eigenvalue (the mean pixel variance), so it does not depend on the
# pixel scale. 0.1 matches pylearn2's ZCA (filter_bias=0.1) after its global contrast
# normalisation, which leaves pixels of about unit variance: the pipeline of Goodfellow et al.
# 2013 that the dropout paper's CIFAR experiments follow. Smaller values whiten harder and
# amplify the noise in the smallest components.
ZCA_EPSILON = 0.1
# lenet: LeCun et al. 1998, Sec. II-A: "the background level (white) corresponds to a value of
# -0.1 and the foreground (black) corresponds to 1.175", on a 32x32 field (28x28 padded by 2).
LENET_BACKGROUND = -0.1
LENET_INK = 1.175
LENET_PAD = 2

_CHUNK = 4096  # images per chunk: keeps float copies of CIFAR's 50k images out of memory


@dataclass(frozen=True, eq=False)
class Preprocessor:
    """A preprocessing fitted on training images; ``apply`` maps uint8 images to float32.

    Attributes:
        name: one of ``PREPROCESSING``.
        image_shape: the shape of one input image it was fitted on.
        n_fit: how many training images it was fitted on.
        stats: the fitted arrays (``mean``, ``std``, ``zca``...), float32.
        settings: scalar settings (``epsilon``...), JSON-safe.
    """

    name: str
    image_shape: tuple[int, ...]
    n_fit: int
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, float] = field(default_factory=dict)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of one preprocessed image (lenet pads 28x28 to 32x32)."""
        if self.name == "lenet":
            h, w, c = self.image_shape
            return (h + 2 * LENET_PAD, w + 2 * LENET_PAD, c)
        return self.image_shape

    @property
    def fill_value(self) -> float:
        """The value of "empty" pixels after preprocessing: what augmentation shifts in."""
        return LENET_BACKGROUND if self.name == "lenet" else 0.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Preprocess uint8 NHWC images of the fitted shape into float32 (same N).

        Raises:
            UserError: if ``x`` is not uint8 images of the shape it was fitted on.
        """
        _check_images(x, self.image_shape, what=f"{self.name} preprocessing")
        out = np.empty((len(x),) + self.output_shape, dtype=np.float32)
        for start in range(0, len(x), _CHUNK):
            out[start : start + _CHUNK] = self._apply_chunk(x[start : start + _CHUNK])
        return out

    def _apply_chunk(self, x: np.ndarray) -> np.ndarray:
        unit = _unit(x)
        if self.name == "none":
            return unit
        if self.name == "standardize":
            return (unit - self.stats["mean"]) / self.stats["std"]
        if self.name == "pixel_mean":
            return unit - self.stats["mean"]
        if self.name == "pixel_mean_255":
            return (unit - self.stats["mean"]) * np.float32(255.0)
        if self.name == "gcn_zca":
            flat = _gcn(unit).reshape(len(x), -1) - self.stats["mean"]
            return (flat @ self.stats["zca"]).reshape(x.shape)
        if self.name == "lenet":
            pad = LENET_PAD
            padded = np.pad(unit, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # 0 = background
            return (padded * np.float32(LENET_INK - LENET_BACKGROUND) + np.float32(LENET_BACKGROUND))
        raise AssertionError(self.name)

    def info(self) -> dict[str, Any]:
        """A JSON-safe description for the run record."""
        described: dict[str, Any] = {
            "name": self.name,
            "n_fit": int(self.n_fit),
            "input_shape": list(self.image_shape),
            "output_shape": list(self.output_shape),
        }
        if self.name in ("standardize",):
            described["mean"] = [float(v) for v in self.stats["mean"]]
            described["std"] = [float(v) for v in self.stats["std"]]
        if self.name in ("pixel_mean", "pixel_mean_255"):
            described["mean_of_pixel_means"] = [
                float(v) for v in self.stats["mean"].reshape(-1, self.image_shape[-1]).mean(0)
            ]
        if self.name == "lenet":
            described.update(background=LENET_BACKGROUND, ink=LENET_INK, pad=LENET_PAD)
        described.update({k: float(v) for k, v in self.settings.items()})
        return described


def _unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) * np.float32(1.0 / 255.0)


def _gcn(unit: np.ndarray) -> np.ndarray:
    # Srivastava et al.'s "global contrast normalisation": subtract each image's own mean,
    # per channel; no rescaling.
    return unit - unit.mean(axis=(1, 2), keepdims=True)


def _check_images(x: Any, image_shape: tuple[int, ...] | None, *, what: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise UserError(f"{what} takes uint8 NHWC images (Splits.x_train), got a {got}")
    if image_shape is not None and x.shape[1:] != tuple(image_shape):
        raise UserError(
            f"{what} was fitted on images of {tuple(image_shape)}, got {x.shape[1:]}"
        )


def fit_preprocessing(
    name: str, x_train: np.ndarray, *, zca_epsilon: float = ZCA_EPSILON
) -> Preprocessor:
    """Fit a preprocessing on the training images (never on validation or test images).

    Args:
        name: one of ``PREPROCESSING``: ``none`` (x / 255); ``standardize`` (x / 255, then
            per-channel mean 0 and std 1 over the training set); ``pixel_mean`` (x / 255
            minus the per-pixel training mean; He et al. 2016); ``pixel_mean_255`` (the same
            in pixel units, 0-255: cuda-convnet's CIFAR input, Krizhevsky et al. 2012); ``gcn_zca`` (x / 255, each
            image's per-channel mean subtracted, then ZCA whitening fitted on the training
            set; Srivastava et al. 2014); ``lenet`` (pad 2 px of background, then background
            -0.1 and ink 1.175; LeCun et al. 1998).
        x_train: uint8 NHWC training images.
        zca_epsilon: ``gcn_zca`` only: the epsilon added to each covariance eigenvalue, in
            units of the mean eigenvalue (see ``ZCA_EPSILON``).

    Returns:
        The fitted ``Preprocessor``.
    """
    if name not in PREPROCESSING:
        raise UserError(f"unknown preprocessing {name!r}; the choices are: {', '.join(PREPROCESSING)}")
    _check_images(x_train, None, what="fit_preprocessing")
    if len(x_train) == 0:
        raise UserError("fit_preprocessing needs at least one training image")
    shape, n = tuple(x_train.shape[1:]), len(x_train)
    if name in ("none", "lenet"):
        return Preprocessor(name, shape, n)
    if name == "standardize":
        # Float64 sums over chunks: exact enough, and no float copy of the whole set.
        total = np.zeros(shape[-1])
        squares = np.zeros(shape[-1])
        for chunk in _chunks(x_train):
            unit = _unit(chunk).astype(np.float64)
            total += unit.sum(axis=(0, 1, 2))
            squares += np.square(unit).sum(axis=(0, 1, 2))
        count = n * shape[0] * shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        if np.any(std == 0):
            raise UserError("standardize: a channel is constant over the training images")
        return Preprocessor(name, shape, n, {"mean": mean.astype(np.float32), "std": std.astype(np.float32)})
    if name in ("pixel_mean", "pixel_mean_255"):
        total = np.zeros(shape)
        for chunk in _chunks(x_train):
            total += _unit(chunk).sum(axis=0, dtype=np.float64)
        return Preprocessor(name, shape, n, {"mean": (total / n).astype(np.float32)})
    return _fit_zca(x_train, zca_epsilon)


def _chunks(x: np.ndarray):
    for start in range(0, len(x), _CHUNK):
        yield x[start : start + _CHUNK]


def _fit_zca(x_train: np.ndarray, relative_epsilon: float) -> Preprocessor:
    """ZCA on per-image-centred images: W = U diag(1 / sqrt(lambda + eps)) U^T.

    Float32 throughout, with the covariance accumulated chunk by chunk in float64; one
    symmetric eigendecomposition of the D x D covariance (D = 3072 for CIFAR: seconds, a minute
    on 2 busy cores). With fewer images than dimensions (smoke runs), the same W comes from a
    thin SVD of the n x D data instead (``_zca_thin``), in well under a second.
    """
    if not relative_epsilon > 0:
        raise UserError(f"zca_epsilon must be > 0, got {relative_epsilon}")
    shape, n = tuple(x_train.shape[1:]), len(x_train)
    dims = int(np.prod(shape))
    total = np.zeros(dims)
    for chunk in _chunks(x_train):
        total += _gcn(_unit(chunk)).reshape(len(chunk), -1).sum(axis=0, dtype=np.float64)
    mean = (total / n).astype(np.float32)
    if n < dims:
        zca, epsilon = _zca_thin(x_train, mean, relative_epsilon)
    else:
        cov = np.zeros((dims, dims))
        for chunk in _chunks(x_train):
            centred = _gcn(_unit(chunk)).reshape(len(chunk), -1) - mean
            cov += centred.T @ centred  # float32 product, float64 sum over chunks
        cov = (cov / n).astype(np.float32)
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        eigenvalues = np.maximum(eigenvalues, 0.0)  # rounding makes null directions slightly < 0
        epsilon = float(relative_epsilon * eigenvalues.mean())
        zca = (eigenvectors / np.sqrt(eigenvalues + epsilon)) @ eigenvectors.T
    return Preprocessor(
        "gcn_zca",
        shape,
        n,
        {"mean": mean, "zca": zca.astype(np.float32)},
        {"epsilon_relative": float(relative_epsilon), "epsilon": epsilon},
    )


def _zca_thin(x_train: np.ndarray, mean: np.ndarray, relative_epsilon: float) -> tuple[np.ndarray, float]:
    """The ZCA matrix of ``_fit_zca`` when n < D, from the thin SVD X = U S V^T (X: n x D, centred).

    The covariance X^T X / n has eigenvalues S^2 / n along the rows of V^T and 0 on the rest of
    the space, so W = I / sqrt(eps) + V diag(1 / sqrt(S^2 / n + eps) - 1 / sqrt(eps)) V^T: the
    same matrix as the eigendecomposition gives, for O(n^2 D) work instead of O(D^3).
    """
    n = len(x_train)
    centred = (_gcn(_unit(x_train)).reshape(n, -1) - mean).astype(np.float64)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    eigenvalues = singular**2 / n
    epsilon = float(relative_epsilon * eigenvalues.sum() / centred.shape[1])  # mean over all D
    scale = 1.0 / np.sqrt(eigenvalues + epsilon) - 1.0 / np.sqrt(epsilon)
    zca = (vt.T * scale) @ vt
    zca[np.diag_indices_from(zca)] += 1.0 / np.sqrt(epsilon)
    return zca, epsilon


# --- augmentation ------------------------------------------------------------------------------

AUGMENTATIONS = (
    "pad_crop",
    "flip",
    "translate",
    "rotate",
    "shift",
    "scale",
    "noise",
    "pca_jitter",
    "lenet_distort",
)


def channel_pca(x_float: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors (one per column) and eigenvalues, largest first, of the channel covariance
    over every pixel of ``x_float`` (N x H x W x C): the "PCA on the set of RGB pixel values"
    of AlexNet's colour augmentation (Krizhevsky et al. 2012, Sec. 4.1)."""
    x_float = np.asarray(x_float)
    if x_float.ndim != 4 or len(x_float) == 0:
        raise UserError(f"pca_jitter needs float NHWC training images, got shape {x_float.shape}")
    channels = x_float.shape[-1]
    total = np.zeros(channels)
    outer = np.zeros((channels, channels))
    for chunk in _chunks(x_float):
        pixels = chunk.reshape(-1, channels).astype(np.float64)
        total += pixels.sum(axis=0)
        outer += pixels.T @ pixels
    count = x_float.shape[0] * x_float.shape[1] * x_float.shape[2]
    mean = total / count
    eigenvalues, eigenvectors = np.linalg.eigh(outer / count - np.outer(mean, mean))
    order = np.argsort(eigenvalues)[::-1]
    return eigenvectors[:, order], np.maximum(eigenvalues[order], 0.0)


def make_augmenter(
    names: Sequence[str],
    *,
    seed: int,
    image_shape: Sequence[int],
    x_train_float: np.ndarray | None = None,
    fill_value: float = 0.0,
):
    """The augmentation layer for ``names``, or ``None`` when ``names`` is empty.

    The layer (``keras_cnns.layers.ImageAugmentation``; magnitudes in its docstring) goes
    first in the model, after preprocessing: it augments each batch inside the graph only
    when ``training=True`` and is the identity at inference. It is serializable and runs on
    TensorFlow, JAX and PyTorch.

    Args:
        names: names from ``AUGMENTATIONS``, in any order.
        seed: seed of the layer's random draws (same seed, same batch, same augmentation).
        image_shape: channels-last shape of one (preprocessed) image.
        x_train_float: the preprocessed training images; needed by ``pca_jitter`` to fit
            its principal components.
        fill_value: value of pixels shifted in from outside the image; pass
            ``Preprocessor.fill_value`` (LeNet's background is -0.1, not 0).

    Returns:
        A ``keras.layers.Layer`` named ``"augment"``, or ``None``.
    """
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise UserError(
            f"unknown augmentation {unknown[0]!r}; the augmentations are: {', '.join(AUGMENTATIONS)}"
        )
    if len(set(names)) != len(names):
        raise UserError(f"an augmentation is listed twice in {names}; list each once")
    if not names:
        return None
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or min(image_shape) <= 0:
        raise UserError(f"image_shape must be (height, width, channels), got {image_shape}")
    _check_count("seed", seed, minimum=0)
    pca = {}
    if "pca_jitter" in names:
        if x_train_float is None:
            raise UserError("pca_jitter fits its colour components on the training images: pass x_train_float")
        if tuple(np.shape(x_train_float)[1:]) != image_shape:
            raise UserError(
                f"x_train_float holds images of {tuple(np.shape(x_train_float)[1:])}, expected {image_shape}"
            )
        vectors, values = channel_pca(x_train_float)
        pca = {"pca_eigenvectors": vectors.tolist(), "pca_eigenvalues": values.tolist()}

    from keras_cnns.layers import ImageAugmentation  # lazily: imports Keras

    return ImageAugmentation(names, seed=int(seed), fill_value=float(fill_value), name="augment", **pca)
