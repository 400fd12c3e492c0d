"""Where the images come from: ``load_dataset`` and the datasets it knows.

MNIST / CIFAR-10 / CIFAR-100 / Fashion-MNIST as uint8 NHWC images and int64 labels, from a
local ``.npz`` archive (``data_dir`` or ``$KERAS_CNNS_DATA_DIR``), from tensorflow-datasets, or
from the small MNIST sample shipped in the package, with a seeded validation split carved from
the training set and seeded subsets for CPU smoke runs. ImageNet is streamed instead
(``keras_cnns.data.imagenet``).

Only numpy is imported here at import time: tensorflow-datasets (which needs TensorFlow) is
imported only on the tfds path, so the archive path works on a machine without TensorFlow.
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
from dataclasses import dataclass
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
        streamed: too large for memory: read batch by batch from tfds by ``keras_cnns.data.imagenet``
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
    """The datasets read as a stream (``keras_cnns.data.imagenet``), not loaded into memory."""
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
        raise UserError(f"{name} does not fit in memory: it is streamed by keras_cnns.data.imagenet, not loaded")
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
