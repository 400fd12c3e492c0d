"""Shared tensor -> tensor helpers used by every family.

Blocks are functions ``(x, ..., *, name) -> x``; every layer they make is named
``f"{name}_{op}"`` so names are deterministic and hierarchical (``stage2_block3_conv1``).
Keras is imported when a block is built, not with this module: the families import it to
register their variants, which stores data only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvStyle:
    """How every conv + BN pair of a family is made (passed on to ``conv_bn_act``)."""

    use_bias: bool = False
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.99
    kernel_initializer: str = "he_normal"


# The CIFAR families' conv + BN: He init, no conv bias (BN follows), and Torch's batch norm
# (epsilon 1e-5, momentum 0.1: Keras momentum 0.9), as the papers' and the well-known
# reproductions' frameworks.
CIFAR_STYLE = ConvStyle(use_bias=False, bn_epsilon=1e-5, bn_momentum=0.9)


def conv_bn_act(
    x,
    filters: int,
    kernel_size: int | tuple[int, int],
    *,
    name: str,
    strides: int = 1,
    padding: str = "same",
    activation: str | None = "relu",
    use_bias: bool = False,
    batch_norm: bool = True,
    kernel_initializer: str = "he_normal",
    bn_epsilon: float = 1e-3,
    bn_momentum: float = 0.99,
):
    """Conv2D, then batch norm (``keras_cnns.layers.BatchNorm``), then activation (each
    optional but the conv).

    ``padding="symmetric"`` gives 'same''s output size with the padding split evenly, as Caffe,
    Torch and PyTorch pad (``{name}_pad``, then a 'valid' convolution). It matters for a
    strided convolution: TensorFlow's 'same' pads a stride-2 3x3 convolution on an even map
    only at the bottom and right, so its output pixel i is centred on input pixel 2i + 1, one
    pixel off the 2i that a subsampling shortcut (``x[:, ::2, ::2]``) or a 1x1 stride-2
    projection takes.
    """
    from keras import layers

    from keras_cnns.layers import BatchNorm

    if padding == "symmetric":
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"symmetric padding needs an odd kernel, got {kernel_size}")
        if kh > 1 or kw > 1:
            x = layers.ZeroPadding2D((kh // 2, kw // 2), name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=kernel_initializer,
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = BatchNorm(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_bn")(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}_{activation_name(activation)}")(x)
    return x


def activation_name(activation) -> str:
    """A layer-name-safe name for an activation given as a string or a callable."""
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", type(activation).__name__).lower()


def classifier_head(x, num_classes: int, *, name: str = "logits", use_bias: bool = True, **dense_kwargs):
    """The float32 logits layer every model ends with.

    The layer's dtype policy is pinned to float32, so under a mixed-precision global policy
    the logits (and therefore the softmax inside the loss) stay in full precision.
    """
    from keras import layers

    return layers.Dense(num_classes, dtype="float32", use_bias=use_bias, name=name, **dense_kwargs)(x)


def model_input(input_shape: tuple[int, ...], *, name: str = "image"):
    """The model's ``keras.Input``."""
    import keras

    return keras.Input(shape=tuple(input_shape), name=name)
