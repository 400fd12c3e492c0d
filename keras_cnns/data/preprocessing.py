"""The papers' input preprocessing, fitted on the training images only (``fit_preprocessing``).

``none`` (x / 255), ``standardize`` (per-channel mean / std; Huang et al. 2016), ``pixel_mean``
(per-pixel mean subtraction; He et al. 2016, Sec. 4.2), ``pixel_mean_255`` (the same in pixel
units, as cuda-convnet fed CIFAR to Krizhevsky et al. 2012), ``gcn_zca`` (per-image mean
subtraction then ZCA whitening; Srivastava et al. 2014, Appendix B.3) and ``lenet`` (pad to
32x32, background -0.1, ink 1.175; LeCun et al. 1998, Sec. II-A). Only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_cnns.errors import UserError

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

CHUNK = 4096  # images per chunk: keeps float copies of CIFAR's 50k images out of memory


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
        for start in range(0, len(x), CHUNK):
            out[start : start + CHUNK] = self._apply_chunk(x[start : start + CHUNK])
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
        for chunk in image_chunks(x_train):
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
        for chunk in image_chunks(x_train):
            total += _unit(chunk).sum(axis=0, dtype=np.float64)
        return Preprocessor(name, shape, n, {"mean": (total / n).astype(np.float32)})
    return _fit_zca(x_train, zca_epsilon)


def image_chunks(x: np.ndarray):
    """``x`` in chunks of ``CHUNK`` images (float copies of each, never of all 50,000)."""
    for start in range(0, len(x), CHUNK):
        yield x[start : start + CHUNK]


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
    for chunk in image_chunks(x_train):
        total += _gcn(_unit(chunk)).reshape(len(chunk), -1).sum(axis=0, dtype=np.float64)
    mean = (total / n).astype(np.float32)
    if n < dims:
        zca, epsilon = _zca_thin(x_train, mean, relative_epsilon)
    else:
        cov = np.zeros((dims, dims))
        for chunk in image_chunks(x_train):
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
