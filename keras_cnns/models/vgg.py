"""VGG (Simonyan and Zisserman, ICLR 2015).

Paper: "Very Deep Convolutional Networks for Large-Scale Image Recognition", Sec. 2.1
(3x3 convolutions at stride 1 with padding 1, 2x2 max pooling at stride 2, dense
4096-4096-classes), Table 1 (configurations A, B, D, E = VGG-11, -13, -16, -19), Table 2
(parameter counts: 133, 133, 138, 144 million), Sec. 3.1 (dropout 0.5 in the first two fully
connected layers).

At 224x224x3 and 1000 classes, vgg16 and vgg19 have exactly ``keras.applications``'
138,357,544 and 143,667,240 parameters. The classifier flattens whatever map the five
poolings leave (7x7 at 224, 1x1 at 32), so the same builder makes CIFAR-sized VGGs; 32x32 is
the smallest input. ``batch_norm=True`` adds batch normalisation after every convolution
(not in the paper, which predates it) and drops the then-redundant convolution biases.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_cnns import registry
from keras_cnns.errors import UserError
from keras_cnns.options import check_activation, check_rate

FAMILY = "vgg"
PAPER = "Simonyan & Zisserman 2015, Table 1"


@dataclass(frozen=True)
class VGGStage:
    """A run of 3x3 convolutions of equal width, closed by a 2x2 max pooling.

    Attributes:
        filters: width of every convolution of the stage.
        convs: number of convolutions.
    """

    filters: int
    convs: int


@dataclass(frozen=True)
class VGGSpec:
    """One column of Table 1.

    Attributes:
        config: the column's letter in Table 1.
        stages: the five stages, each closed by max pooling.
        dense_units: widths of the hidden fully connected layers.
    """

    config: str
    stages: tuple[VGGStage, ...]
    dense_units: tuple[int, ...] = (4096, 4096)


def _stages(*convs: int) -> tuple[VGGStage, ...]:
    return tuple(VGGStage(f, n) for f, n in zip((64, 128, 256, 512, 512), convs, strict=True))


# Simonyan & Zisserman 2015, Table 1: convolutions per stage of columns A, B, D, E
# (widths 64, 128, 256, 512, 512 in every column).
SPECS: dict[int, VGGSpec] = {
    11: VGGSpec("A", _stages(1, 1, 2, 2, 2)),
    13: VGGSpec("B", _stages(2, 2, 2, 2, 2)),
    16: VGGSpec("D", _stages(2, 2, 3, 3, 3)),
    19: VGGSpec("E", _stages(2, 2, 4, 4, 4)),
}


def smallest_input_size(spec: VGGSpec) -> int:
    """The smallest square input: every stage halves the map, so 2 ** stages (32)."""
    return 2 ** len(spec.stages)


def _check_options(spec: VGGSpec, input_shape, activation, dropout: float, name: str) -> None:
    check_activation(activation)
    check_rate("dropout", dropout)
    minimum = smallest_input_size(spec)
    if len(input_shape) != 3 or min(input_shape[:2]) < minimum:
        raise UserError(
            f"{name} needs a (height, width, channels) input of at least {minimum}x{minimum} "
            f"(it pools {len(spec.stages)} times), got {'x'.join(map(str, input_shape))}"
        )


def build_vgg(
    spec: VGGSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    activation="relu",
    dropout: float = 0.5,
    batch_norm: bool = False,
):
    """Build a VGG net returning float32 logits.

    Args:
        spec: a ``SPECS`` entry.
        input_shape: channels-last input, at least 32x32 (default 224x224x3).
        num_classes: number of logits.
        name: model name (the registry name).
        activation: activation after every convolution and hidden dense layer.
        dropout: dropout rate after each hidden dense layer (the paper's 0.5; 0 adds none).
        batch_norm: batch normalisation after every convolution, before the activation
            (the convolutions then have no bias).

    Returns:
        A ``keras.Model`` mapping images to float32 logits.
    """
    import keras
    from keras import layers

    from keras_cnns.blocks import activation_name, classifier_head, model_input
    from keras_cnns.layers import BatchNorm

    _check_options(spec, input_shape, activation, dropout, name)
    act = activation_name(activation)

    inputs = model_input(input_shape)
    x = inputs
    for s, stage in enumerate(spec.stages, start=1):
        for c in range(1, stage.convs + 1):
            conv = f"block{s}_conv{c}"
            x = layers.Conv2D(
                stage.filters, 3, padding="same", use_bias=not batch_norm, name=conv
            )(x)
            if batch_norm:
                x = BatchNorm(name=f"{conv}_bn")(x)
            x = layers.Activation(activation, name=f"{conv}_{act}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{s}_pool")(x)
    x = layers.Flatten(name="flatten")(x)  # 7x7x512 = 25088 features at 224x224
    for i, units in enumerate(spec.dense_units, start=1):
        x = layers.Dense(units, name=f"fc{i}")(x)
        x = layers.Activation(activation, name=f"fc{i}_{act}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    outputs = classifier_head(x, num_classes, name="logits")
    return keras.Model(inputs, outputs, name=name)


for _depth, _spec in SPECS.items():
    _size = smallest_input_size(_spec)
    registry.register(
        f"vgg{_depth}",
        family=FAMILY,
        builder=build_vgg,
        spec=_spec,
        paper=f"{PAPER}, column {_spec.config}",
        input_shape=(224, 224, 3),
        num_classes=1000,
        description=f"VGG-{_depth}, configuration {_spec.config} of Table 1",
        small_input_shape=(_size, _size, 3),
    )
