"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012).

Paper: "ImageNet Classification with Deep Convolutional Neural Networks", Sec. 3.3 (local
response normalisation, k=2, n=5, alpha=1e-4, beta=0.75), Sec. 3.4 (overlapping pooling,
3x3 windows at stride 2), Sec. 3.5 and Fig. 2 (the architecture), Sec. 4.2 (dropout 0.5 in
the first two fully connected layers).

Five convolutions (96 11x11/4, 256 5x5, 384 3x3, 384 3x3, 256 3x3), each followed by ReLU;
LRN after the first two; overlapping max pooling after conv1, conv2 and conv5; dense
4096-4096-classes. Two variants, one builder:

* ``alexnet``: one tower, every convolution sees all maps below it: 62,378,344 parameters
  at 227x227x3 and 1000 classes (conv 3,747,200 + dense 58,631,144).
* ``alexnet_grouped``: the paper's two-GPU net. conv2, conv4 and conv5 only see the maps on
  their own GPU, i.e. grouped convolutions with groups=2 (conv1 sees the whole image, conv3
  and the dense layers cross GPUs): 60,965,224 parameters ("60 million"), 1,413,120 fewer.

The paper says 224x224 inputs, but 11x11/4 without padding gives Fig. 2's 55x55 maps only from
227x227, so 227 is the default. The smallest input the net builds on is 67x67 (conv1 15x15,
then the three 3/2 pools 7, 3, 1).

Deviation from paper: Keras's default initialisation (Glorot uniform, zero biases) instead of
N(0, 0.01) weights with biases of 1 in conv2, conv4, conv5 and the dense layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_cnns import registry
from keras_cnns.errors import UserError
from keras_cnns.options import check_activation, check_rate

FAMILY = "alexnet"
PAPER = "Krizhevsky et al. 2012, Sec. 3.3-3.5, Fig. 2"


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of Fig. 2, with what follows it.

    Attributes:
        filters: output maps (both GPUs together).
        kernel_size: side of the square kernel.
        strides: convolution stride.
        padding: ``"valid"`` (conv1) or ``"same"``.
        groups: 2 where the paper's layer only sees maps on its own GPU.
        lrn: local response normalisation after the ReLU.
        pool: overlapping max pooling after the ReLU (and LRN).
    """

    filters: int
    kernel_size: int
    strides: int = 1
    padding: str = "same"
    groups: int = 1
    lrn: bool = False
    pool: bool = False


@dataclass(frozen=True)
class AlexNetSpec:
    """One AlexNet variant.

    Attributes:
        convs: the five convolutions, in order.
        dense_units: widths of the hidden fully connected layers.
        pool_size: side of the max-pooling window (3: overlapping, Sec. 3.4).
        pool_strides: stride of the max pooling (2 < pool_size).
        description: one line for ``keras-cnns models``.
    """

    convs: tuple[ConvLayer, ...]
    dense_units: tuple[int, ...]
    pool_size: int
    pool_strides: int
    description: str


def _alexnet(groups: int, description: str) -> AlexNetSpec:
    # Krizhevsky et al. 2012, Fig. 2 and Sec. 3.5; `groups` on the layers whose kernels "are
    # connected only to those kernel maps in the previous layer which reside on the same GPU".
    return AlexNetSpec(
        convs=(
            ConvLayer(96, 11, strides=4, padding="valid", lrn=True, pool=True),
            ConvLayer(256, 5, groups=groups, lrn=True, pool=True),
            ConvLayer(384, 3),
            ConvLayer(384, 3, groups=groups),
            ConvLayer(256, 3, groups=groups, pool=True),
        ),
        dense_units=(4096, 4096),
        pool_size=3,
        pool_strides=2,
        description=description,
    )


SPECS: dict[str, AlexNetSpec] = {
    "alexnet": _alexnet(1, "AlexNet, single tower (no grouped convolutions)"),
    "alexnet_grouped": _alexnet(2, "AlexNet as published: conv2/4/5 grouped in two (two GPUs)"),
}


def smallest_input_size(spec: AlexNetSpec) -> int:
    """The smallest square input on which every pooling window still fits (67 for AlexNet)."""
    size = 1  # one pixel left after the last pooling
    for conv in reversed(spec.convs):
        if conv.pool:
            size = (size - 1) * spec.pool_strides + spec.pool_size
        reach = conv.kernel_size if conv.padding == "valid" else 1
        size = (size - 1) * conv.strides + reach
    return size


def _check_options(spec: AlexNetSpec, input_shape, activation, dropout: float, name: str) -> None:
    check_activation(activation)
    check_rate("dropout", dropout)
    minimum = smallest_input_size(spec)
    if len(input_shape) != 3 or min(input_shape[:2]) < minimum:
        raise UserError(
            f"{name} needs a (height, width, channels) input of at least {minimum}x{minimum}, "
            f"got {'x'.join(map(str, input_shape))}; resize the images (the paper uses 227x227 "
            "crops) or pick a CIFAR-sized net"
        )
    channels = input_shape[-1]
    for i, conv in enumerate(spec.convs, start=1):
        previous = channels if i == 1 else spec.convs[i - 2].filters
        if previous % conv.groups or conv.filters % conv.groups:
            raise UserError(f"conv{i} has groups={conv.groups}, which must divide its channels")


def build_alexnet(
    spec: AlexNetSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    activation="relu",
    dropout: float = 0.5,
    lrn: bool = True,
):
    """Build AlexNet (either variant) returning float32 logits.

    Args:
        spec: a ``SPECS`` entry.
        input_shape: channels-last input, at least 67x67 (default 227x227x3).
        num_classes: number of logits.
        name: model name (the registry name).
        activation: activation after every convolution and hidden dense layer.
        dropout: dropout rate after each hidden dense layer (the paper's 0.5; 0 adds none).
        lrn: local response normalisation after conv1 and conv2 (``False`` for the ablation
            of Sec. 3.3).

    Returns:
        A ``keras.Model`` mapping images to float32 logits.
    """
    import keras
    from keras import layers

    from keras_cnns.blocks import activation_name, classifier_head, model_input
    from keras_cnns.layers import LocalResponseNormalization

    _check_options(spec, input_shape, activation, dropout, name)
    act = activation_name(activation)

    inputs = model_input(input_shape)
    x = inputs
    for i, conv in enumerate(spec.convs, start=1):
        block = f"conv{i}"
        x = layers.Conv2D(
            conv.filters,
            conv.kernel_size,
            strides=conv.strides,
            padding=conv.padding,
            groups=conv.groups,
            name=block,
        )(x)
        x = layers.Activation(activation, name=f"{block}_{act}")(x)
        if conv.lrn and lrn:
            # Sec. 3.3: k=2, n=5, alpha=1e-4 (not divided by n), beta=0.75.
            x = LocalResponseNormalization(size=5, k=2.0, alpha=1e-4, beta=0.75, name=f"{block}_lrn")(x)
        if conv.pool:
            x = layers.MaxPooling2D(spec.pool_size, spec.pool_strides, name=f"{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)  # 6x6x256 = 9216 features at 227x227
    for i, units in enumerate(spec.dense_units, start=len(spec.convs) + 1):
        x = layers.Dense(units, name=f"fc{i}")(x)
        x = layers.Activation(activation, name=f"fc{i}_{act}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    outputs = classifier_head(x, num_classes, name="logits")
    return keras.Model(inputs, outputs, name=name)


for _name, _spec in SPECS.items():
    _size = smallest_input_size(_spec)
    registry.register(
        _name,
        family=FAMILY,
        builder=build_alexnet,
        spec=_spec,
        paper=PAPER,
        input_shape=(227, 227, 3),
        num_classes=1000,
        description=_spec.description,
        small_input_shape=(_size, _size, 3),
    )
