"""The data: datasets, the papers' preprocessing, and on-device augmentation.

* ``sources``: ``load_dataset`` (local archives, tensorflow-datasets, the packaged MNIST
  sample) with seeded validation splits and subsets; ``DATASETS``.
* ``preprocessing``: ``fit_preprocessing``, fitted on the training images only.
* ``augmentation``: ``make_augmenter``, the augmentation layer a run trains with
  (``augmentation_layer.ImageAugmentation``, on the device, inside the compiled step).
* ``imagenet``: ILSVRC-2012 streamed from your own archives through a ``tf.data`` pipeline.

The names a caller needs are importable from ``keras_cnns.data`` itself; nothing here imports
Keras or TensorFlow until a layer is made or a dataset is streamed.
"""

from keras_cnns.data.augmentation import AUGMENTATIONS, channel_pca, make_augmenter
from keras_cnns.data.preprocessing import (
    PREPROCESSING,
    ZCA_EPSILON,
    Preprocessor,
    fit_preprocessing,
)
from keras_cnns.data.sources import (
    ARCHIVE_KEYS,
    DATA_DIR_ENV,
    DATASETS,
    SAMPLE_RESOURCE,
    SOURCES,
    DatasetInfo,
    Splits,
    archive_source,
    get_info,
    load_dataset,
    read_archive,
    streamed_datasets,
)

__all__ = [
    "ARCHIVE_KEYS", "AUGMENTATIONS", "DATASETS", "DATA_DIR_ENV", "PREPROCESSING", "SAMPLE_RESOURCE",
    "SOURCES", "ZCA_EPSILON", "DatasetInfo", "Preprocessor", "Splits", "archive_source",
    "channel_pca", "fit_preprocessing", "get_info", "load_dataset", "make_augmenter",
    "read_archive", "streamed_datasets",
]  # fmt: skip
