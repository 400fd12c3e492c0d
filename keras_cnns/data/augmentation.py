"""On-device augmentation: which augmentations there are, and ``make_augmenter``.

The layer it makes (``keras_cnns.data.augmentation_layer.ImageAugmentation``) goes first in the
training model, after preprocessing, and augments each batch inside the compiled step on any
backend, only while training (the identity at inference): crops and flips (He et al. 2016,
Sec. 4.2), AlexNet's colour jitter (Krizhevsky et al. 2012, Sec. 4.1), LeNet-5's affine
distortions (LeCun et al. 1998, Sec. III-C) and the usual small shifts, rotations and noise.
Only numpy here; Keras is imported when a layer is made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_cnns.data.preprocessing import image_chunks
from keras_cnns.errors import UserError

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
    for chunk in image_chunks(x_float):
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

    The layer (``augmentation_layer.ImageAugmentation``; magnitudes in its docstring) goes
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
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be an integer of 0 or more, got {seed!r}")
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

    from keras_cnns.data.augmentation_layer import ImageAugmentation  # lazily: imports Keras

    return ImageAugmentation(names, seed=int(seed), fill_value=float(fill_value), name="augment", **pca)
