"""ImageNet (ILSVRC-2012), streamed from your own copy through tensorflow-datasets.

ImageNet does not fit in memory, so unlike ``keras_cnns.data`` (numpy arrays) this module
hands the engine ``tf.data`` pipelines, which ``fit`` reads on every Keras backend.

Where the data comes from: ImageNet cannot be downloaded without an account, so tfds reads the
archives you download from image-net.org (its "manual" directory):
``<data_dir>/imagenet2012/ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar``, with
``data_dir`` the engine's (``--data-dir`` or ``$KERAS_CNNS_DATA_DIR``). The first run prepares
them once into ``<data_dir>/imagenet2012/tfds/`` (hours, about 150 GB); after that the tars
are not read again. Nothing is ever downloaded: a missing archive is a one-line ``DataError``.

Splits: the training split is tfds ``train`` less its first ``val_size`` images (our validation
split); the test split is tfds ``validation``, the 50,000 images the papers report on.
``train_subset`` / ``test_subset`` take the first images of those splits (tfds shuffles the
images across files when it prepares them), not a seeded draw: a stream has no random access.

The pipeline (the standard ResNet recipe: Szegedy et al. 2015's crop as used by Goyal et al.
2017 and torchvision; He et al. 2016 used scale augmentation instead):

* training: a random crop of 8%-100% of the image's area with aspect ratio 3/4-4/3, resized to
  ``image_size`` (224), a random horizontal flip;
* evaluation: the shorter side resized to ``image_size * 8/7`` (256), the centre
  ``image_size`` crop;
* both: pixels scaled to [0, 1], then the ImageNet training set's published per-channel mean
  and standard deviation (``preprocess="standardize"``, not re-fitted over 1.28M images).

The random draws of an epoch are a function of ``(seed, epoch)`` (stateless ops, a seeded
shuffle of the files and of a 10,000-image buffer), so a resumed run reads what an
uninterrupted one would. On several devices the streams follow ``keras_cnns.training.distribute``: a
last training batch that does not split evenly loses its last images, the evaluation is
padded with weight-0 images, and with several JAX processes each reads its own shard.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns import data
from keras_cnns.errors import DataError, UserError

NAME = "imagenet2012"
ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
MEAN = (0.485, 0.456, 0.406)  # the ImageNet training set's channel statistics, on [0, 1]
STD = (0.229, 0.224, 0.225)
CROP_AREA = (0.08, 1.0)  # random-resized crop: fraction of the image's area
CROP_RATIO = (3 / 4, 4 / 3)  # and its aspect ratio
EVAL_RESIZE = 256 / 224  # shorter side / crop size at evaluation
SHUFFLE_BUFFER = 10_000


class StreamedImages:
    """Stands where an array of images would, for code that needs only ``len`` and ``shape``."""

    def __init__(self, size: int, image_shape: tuple[int, ...]):
        self.size, self.shape = size, (size, *image_shape)

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True)
class ImageNetSource:
    """A prepared ImageNet and the config's view of it.

    Attributes:
        builder: the tfds builder.
        splits: ``train`` / ``val`` / ``test`` -> tfds split name (with slices).
        sizes: the same keys -> number of images.
        image_size: the crop side.
        source: where the images come from, for the record.
    """

    builder: Any
    splits: dict[str, str]
    sizes: dict[str, int]
    image_size: int
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def preprocessing_info(self) -> dict[str, Any]:
        """The record's ``preprocessing`` entry."""
        return {
            "name": "standardize",
            "mean": list(MEAN),
            "std": list(STD),
            "fitted": "the published ImageNet training-set statistics",
            "train": f"random-resized crop {self.image_size} (area {CROP_AREA}, ratio 3/4-4/3), flip",
            "eval": f"shorter side {round(self.image_size * EVAL_RESIZE)}, centre crop {self.image_size}",
        }

    def feed(self, split: str, placement, *, seed: int, one_hot: bool) -> StreamFeed:
        """The ``split``'s feed for ``placement`` (see ``StreamFeed``)."""
        return StreamFeed(self, split, placement, seed=seed, one_hot=one_hot)


def open_imagenet(config, data_dir: str | os.PathLike | None) -> ImageNetSource:
    """The ImageNet of ``config`` from ``<data_dir>/imagenet2012/``, prepared if needed.

    Raises:
        DataError: no data directory, no TensorFlow / tensorflow-datasets, or neither a
            prepared copy nor the two archives.
        UserError: sizes that do not fit the splits.
    """
    directory = data_dir or os.environ.get(data.DATA_DIR_ENV)
    if not directory:
        raise DataError(
            f"{NAME} needs your copy of the ILSVRC-2012 archives: put {' and '.join(ARCHIVES)} "
            f"in DIR/{NAME}/ and pass --data-dir DIR (or set {data.DATA_DIR_ENV})"
        )
    root = Path(directory).expanduser().resolve() / NAME
    try:
        import tensorflow_datasets as tfds  # lazily: it needs TensorFlow
    except ImportError as err:
        raise DataError(f"{NAME} is read with tensorflow-datasets and TensorFlow ({err})") from None
    builder = tfds.builder(NAME, data_dir=str(root / "tfds"))
    if not builder.is_prepared():
        missing = [name for name in ARCHIVES if not (root / name).is_file()]
        if missing:
            raise DataError(
                f"{NAME} is not prepared in {root / 'tfds'} and {root} lacks {', '.join(missing)}: "
                f"download the ILSVRC-2012 archives from image-net.org into {root}"
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=str(root),
                try_download_gcs=False,
                compute_stats=tfds.download.ComputeStatsMode.SKIP,
            )
        )
    val = config.val_size
    train_end = "" if config.train_subset is None else str(val + config.train_subset)
    splits = {
        "train": f"train[{val}:{train_end}]",
        "val": f"train[:{val}]",
        "test": "validation"
        if config.test_subset is None
        else f"validation[:{config.test_subset}]",
    }
    sizes = {key: _count(builder, split) for key, split in splits.items() if key != "val" or val}
    sizes.setdefault("val", 0)
    for key, wanted in (("train", config.train_subset), ("test", config.test_subset)):
        if wanted is not None and sizes[key] < wanted:
            raise UserError(
                f"{key}_subset={wanted} is more than the {sizes[key]} {key} images of {NAME}"
            )
    return ImageNetSource(
        builder=builder,
        splits=splits,
        sizes=sizes,
        image_size=config.image_size or data.DATASETS[NAME].image_shape[0],
        source=f"tfds:{root / 'tfds'}",
    )


def _count(builder, split: str) -> int:
    """Images in ``split``: from the prepared metadata, else (a mock, in tests) by reading."""
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError):
        dataset = builder.as_dataset(split=split)
        return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


# --- the pipeline -------------------------------------------------------------------------------


def _normalise(image):
    import tensorflow as tf

    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(MEAN)) / tf.constant(STD)


def train_image(jpeg, seed, size: int):
    """A random-resized crop of the JPEG ``jpeg``, randomly flipped; ``seed`` a stateless pair."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, num=2)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(jpeg),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
        seed=seeds[0],
        min_object_covered=0.0,
        aspect_ratio_range=CROP_RATIO,
        area_range=CROP_AREA,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    return _normalise(image)


def eval_image(jpeg, size: int):
    """The shorter side resized to ``size * 8/7``, then the centre ``size`` x ``size`` crop."""
    import tensorflow as tf

    image = tf.io.decode_jpeg(jpeg, channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = round(size * EVAL_RESIZE) / tf.reduce_min(shape)
    resized = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, resized, method="bilinear", antialias=True)
    top = (resized[0] - size) // 2
    left = (resized[1] - size) // 2
    return _normalise(image[top : top + size, left : left + size])


class StreamFeed:
    """One split as a ``tf.data`` pipeline, with the engine's feed interface
    (``fit_data`` / ``validation_data``, as ``training.HostFeed``).

    Attributes:
        size: the split's images.
        padding: weight-0 images added to evaluations (``keras_cnns.training.distribute``).
    """

    on_device = False

    def __init__(self, source: ImageNetSource, split: str, placement, *, seed: int, one_hot: bool):
        self.source, self.split, self.placement = source, split, placement
        self.seed, self.one_hot = seed, one_hot
        self.size = source.sizes[split]
        self.padding = (-self.size % placement.replicas) if placement.distributed else 0

    def steps_per_epoch(self, batch_size: int) -> int:
        """Training steps per epoch: the placement's count (the same on every process)."""
        return self.placement.steps_per_epoch(self.size, batch_size)

    def _labels(self, label):
        import tensorflow as tf

        if self.one_hot:
            return tf.one_hot(label, data.DATASETS[NAME].num_classes)
        return label

    def fit_data(self, batch_size: int, order: np.ndarray | None = None) -> dict:
        """``fit`` arguments for one epoch.

        ``order`` is the engine's permutation for the epoch, a function of ``(seed, epoch)``;
        its first entries seed this epoch's shuffle and augmentation draws.
        """
        import tensorflow as tf
        import tensorflow_datasets as tfds

        order = np.arange(self.size) if order is None else np.asarray(order)
        epoch_seed = zlib.crc32(np.asarray(order[:16], dtype=np.int64).tobytes()) ^ self.seed
        placement, size = self.placement, self.source.image_size
        kept = placement.kept(self.size, batch_size)
        dataset = self.source.builder.as_dataset(
            split=self.source.splits[self.split],
            shuffle_files=True,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(
                shuffle_seed=epoch_seed, shuffle_reshuffle_each_iteration=False
            ),
        )
        dataset = dataset.take(kept)
        if placement.feeds_share:
            # JAX on several hosts: each process reads its own shard, of equal length.
            dataset = dataset.shard(placement.processes, placement.process_index)
            dataset = dataset.take(kept // placement.processes)
        dataset = dataset.shuffle(min(SHUFFLE_BUFFER, max(1, kept)), seed=epoch_seed)

        def prepare(index, example):
            seed = tf.stack([tf.cast(epoch_seed, tf.int64), index])
            return train_image(example["image"], seed, size), self._labels(example["label"])

        dataset = dataset.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        return {"x": self._batched(dataset, placement.local_batch(batch_size))}

    def validation_data(self, batch_size: int):
        """Every image of the split once (padded with weight-0 copies when distributed)."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        placement, size = self.placement, self.source.image_size
        dataset = self.source.builder.as_dataset(
            split=self.source.splits[self.split],
            shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )

        def prepare(example, weight):
            return eval_image(example["image"], size), self._labels(example["label"]), weight

        dataset = dataset.map(lambda e: (e, tf.constant(1.0)))
        if self.padding:
            dataset = dataset.concatenate(
                dataset.take(1).map(lambda e, w: (e, tf.constant(0.0))).repeat(self.padding)
            )
        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if not placement.distributed:
            dataset = dataset.map(lambda x, y, w: (x, y))
        if placement.feeds_share:
            # Every process reads the whole split and keeps its slice of each global batch.
            parts, index = placement.processes, placement.process_index

            def mine(*batch):
                n = tf.shape(batch[0])[0] // parts
                return tuple(v[index * n : (index + 1) * n] for v in batch)

            return self._batched(dataset, batch_size).map(mine)
        return self._batched(dataset, batch_size)

    def _batched(self, dataset, batch_size: int):
        import tensorflow as tf

        options = tf.data.Options()
        options.deterministic = True
        return dataset.batch(batch_size).with_options(options).prefetch(tf.data.AUTOTUNE)
