"""``ImageAugmentation``: the Keras layer that augments each batch on the device.

Made by ``keras_cnns.data.augmentation.make_augmenter``, which names the augmentations and fits
what they need (AlexNet's colour components) on the training images.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_cnns.layers import PACKAGE

_GEOMETRIC = ("lenet_distort", "scale", "rotate", "flip", "shift", "translate", "pad_crop")
_INTEGER_GEOMETRIC = ("flip", "translate", "pad_crop")  # exact with nearest-pixel sampling
_RADIANS_PER_DEGREE = 3.141592653589793 / 180.0


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageAugmentation(keras.layers.Layer):
    """Random image augmentation on the device, per batch, inside the model's graph.

    Augments only when called with ``training=True``; otherwise (inference, or ``training``
    left unset) it returns its input unchanged. Every draw is per image and comes from the
    layer's ``keras.random.SeedGenerator``, so two layers built with the same ``seed`` give
    the same batch. Inputs are channels-last float images, already preprocessed; the layer
    computes in float32.

    Operations (magnitudes are the class constants below):

    * ``pad_crop``: pad ``PAD = 4`` zeros per side, then a random crop of the original size,
      i.e. an integer shift in ``[-4, 4]`` px per axis with zero fill (He et al. 2016, Sec. 4.2).
    * ``flip``: horizontal flip with probability 1/2.
    * ``translate``: integer shift in ``[-TRANSLATE, TRANSLATE] = [-2, 2]`` px per axis, zero fill
      (the "2-pixel translate" of the fast CIFAR-10 trainers).
    * ``rotate``: rotation by an angle uniform in ``[-ROTATE_DEGREES, ROTATE_DEGREES]`` =
      ``[-10, 10]`` degrees about the image centre.
    * ``shift``: continuous shift uniform in ``[-SHIFT, SHIFT] = [-0.1, 0.1]`` of the image's
      height / width (bilinear).
    * ``scale``: isotropic zoom about the centre; the input is sampled at ``s`` times the output
      coordinates, ``s`` uniform in ``[1 - SCALE, 1 + SCALE] = [0.9, 1.1]``.
    * ``noise``: additive Gaussian noise, std ``NOISE_STD = 0.1`` in the units of the input
      (0.1 of a standardised pixel's std).
    * ``pca_jitter``: AlexNet's colour augmentation (Krizhevsky et al. 2012, Sec. 4.1): add
      ``eigenvectors @ (alpha * eigenvalues)`` to every pixel of an image, ``alpha ~ N(0, 0.1^2)``
      per image and component; the eigenvectors and eigenvalues are those of the training
      set's channel covariance (``keras_cnns.data.make_augmenter`` fits them).
    * ``lenet_distort``: LeCun et al. 1998, Sec. III-C: random planar affine distortions:
      translation, scaling, squeezing (horizontal compression with vertical elongation, or the
      reverse) and horizontal shearing. Deviation from paper: the paper gives no magnitudes;
      we draw shift ``U(-2, 2)`` px per axis, scale ``U(0.9, 1.1)``, squeeze ``q ~ U(-0.1, 0.1)``
      (x scaled by ``1 + q``, y by ``1 / (1 + q)``) and shear ``U(-0.2, 0.2)`` (x += shear * y).

    The geometric operations are composed into ONE affine map per image and the image is
    resampled once (nearest-pixel when only ``pad_crop``, ``translate`` and ``flip`` are used,
    which is then exact; bilinear otherwise); pixels from outside the image are ``fill_value``.
    Then ``pca_jitter``, then ``noise``. The order of ``operations`` does not matter.

    Args:
        operations: names from ``OPERATIONS``.
        seed: seed of the layer's ``SeedGenerator`` (``None``: random).
        fill_value: value of pixels shifted in from outside the image: 0 is the mean of
            standardised or mean-subtracted images; LeNet's background is -0.1.
        pca_eigenvectors: for ``pca_jitter``: ``channels x channels``, one eigenvector per
            column.
        pca_eigenvalues: for ``pca_jitter``: the ``channels`` eigenvalues.
        **kwargs: base ``Layer`` arguments (``dtype`` defaults to float32).
    """

    OPERATIONS = (
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
    PAD = 4
    TRANSLATE = 2
    ROTATE_DEGREES = 10.0
    SHIFT = 0.1
    SCALE = 0.1
    NOISE_STD = 0.1
    PCA_STD = 0.1
    DISTORT_TRANSLATE = 2.0
    DISTORT_SCALE = 0.1
    DISTORT_SQUEEZE = 0.1
    DISTORT_SHEAR = 0.2

    def __init__(
        self,
        operations,
        seed: int | None = None,
        fill_value: float = 0.0,
        pca_eigenvectors=None,
        pca_eigenvalues=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # resampling in float16 is not supported everywhere
        super().__init__(**kwargs)
        operations = [str(o) for o in operations]
        unknown = [o for o in operations if o not in self.OPERATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; valid: {', '.join(self.OPERATIONS)}")
        if len(set(operations)) != len(operations):
            raise ValueError(f"an augmentation is listed twice: {operations}")
        if "pca_jitter" in operations and (pca_eigenvectors is None or pca_eigenvalues is None):
            raise ValueError("pca_jitter needs pca_eigenvectors and pca_eigenvalues")
        self.operations = operations
        self.seed = seed
        self.fill_value = float(fill_value)
        self.pca_eigenvectors = (
            None if pca_eigenvectors is None else [[float(v) for v in row] for row in pca_eigenvectors]
        )
        self.pca_eigenvalues = None if pca_eigenvalues is None else [float(v) for v in pca_eigenvalues]
        self.seed_generator = keras.random.SeedGenerator(seed)

    # Each helper returns per-image 3x3 maps from OUTPUT to INPUT pixel coordinates (x = column,
    # y = row) in a frame centred on the image; the product of all of them is applied once.

    def _uniform(self, batch, low, high):
        return keras.random.uniform((batch,), low, high, seed=self.seed_generator)

    def _integer_shift(self, batch, limit):
        draw = keras.random.randint((batch,), -limit, limit + 1, seed=self.seed_generator)
        return ops.cast(draw, "float32")

    @staticmethod
    def _matrix(a, b, tx, c, d, ty):
        zero, one = ops.zeros_like(a), ops.ones_like(a)
        rows = [ops.stack(r, axis=-1) for r in ((a, b, tx), (c, d, ty), (zero, zero, one))]
        return ops.stack(rows, axis=-2)  # (batch, 3, 3)

    def _translation(self, tx, ty):
        one, zero = ops.ones_like(tx), ops.zeros_like(tx)
        return self._matrix(one, zero, tx, zero, one, ty)

    def _linear(self, a, b, c, d):
        zero = ops.zeros_like(a)
        return self._matrix(a, b, zero, c, d, zero)

    def _geometric_map(self, batch, height, width):
        maps = []
        for op in _GEOMETRIC:
            if op not in self.operations:
                continue
            if op == "pad_crop" or op == "translate":
                limit = self.PAD if op == "pad_crop" else self.TRANSLATE
                maps.append(
                    self._translation(
                        self._integer_shift(batch, limit), self._integer_shift(batch, limit)
                    )
                )
            elif op == "flip":
                sign = 2.0 * ops.cast(self._uniform(batch, 0.0, 1.0) < 0.5, "float32") - 1.0
                one, zero = ops.ones_like(sign), ops.zeros_like(sign)
                maps.append(self._linear(sign, zero, zero, one))
            elif op == "shift":
                maps.append(
                    self._translation(
                        self._uniform(batch, -self.SHIFT * width, self.SHIFT * width),
                        self._uniform(batch, -self.SHIFT * height, self.SHIFT * height),
                    )
                )
            elif op == "rotate":
                limit = self.ROTATE_DEGREES * _RADIANS_PER_DEGREE
                angle = self._uniform(batch, -limit, limit)
                cos, sin = ops.cos(angle), ops.sin(angle)
                maps.append(self._linear(cos, -sin, sin, cos))
            elif op == "scale":
                s = self._uniform(batch, 1.0 - self.SCALE, 1.0 + self.SCALE)
                maps.append(self._linear(s, ops.zeros_like(s), ops.zeros_like(s), s))
            elif op == "lenet_distort":
                t = self.DISTORT_TRANSLATE
                s = self._uniform(batch, 1.0 - self.DISTORT_SCALE, 1.0 + self.DISTORT_SCALE)
                q = 1.0 + self._uniform(batch, -self.DISTORT_SQUEEZE, self.DISTORT_SQUEEZE)
                shear = self._uniform(batch, -self.DISTORT_SHEAR, self.DISTORT_SHEAR)
                zero = ops.zeros_like(s)
                maps.append(self._translation(self._uniform(batch, -t, t), self._uniform(batch, -t, t)))
                maps.append(self._linear(s * q, s * q * shear, zero, s / q))
        total = maps[0]
        for m in maps[1:]:
            total = ops.matmul(total, m)
        # Back from the centred frame to pixel indices: p_in = C @ total @ C^-1 @ p_out.
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a, b, tx = total[:, 0, 0], total[:, 0, 1], total[:, 0, 2]
        c, d, ty = total[:, 1, 0], total[:, 1, 1], total[:, 1, 2]
        zero = ops.zeros_like(a)
        return ops.stack(
            [a, b, tx + cx - a * cx - b * cy, c, d, ty + cy - c * cx - d * cy, zero, zero], axis=-1
        )

    def call(self, images, training=None):
        if not training or not self.operations:
            return images
        batch = ops.shape(images)[0]
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        x = images
        if any(op in self.operations for op in _GEOMETRIC):
            exact = all(op in _INTEGER_GEOMETRIC for op in self.operations if op in _GEOMETRIC)
            x = ops.image.affine_transform(
                x,
                self._geometric_map(batch, height, width),
                interpolation="nearest" if exact else "bilinear",
                fill_mode="constant",
                fill_value=self.fill_value,
                data_format="channels_last",
            )
        if "pca_jitter" in self.operations:
            vectors = ops.convert_to_tensor(self.pca_eigenvectors, dtype=x.dtype)
            values = ops.convert_to_tensor(self.pca_eigenvalues, dtype=x.dtype)
            alpha = keras.random.normal(
                (batch, channels), stddev=self.PCA_STD, dtype=x.dtype, seed=self.seed_generator
            )
            offset = ops.matmul(alpha * values, ops.transpose(vectors))  # (batch, channels)
            x = x + offset[:, None, None, :]
        if "noise" in self.operations:
            x = x + keras.random.normal(
                ops.shape(x), stddev=self.NOISE_STD, dtype=x.dtype, seed=self.seed_generator
            )
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "operations": list(self.operations),
            "seed": self.seed,
            "fill_value": self.fill_value,
            "pca_eigenvectors": self.pca_eigenvectors,
            "pca_eigenvalues": self.pca_eigenvalues,
        }
