"""DenseNets (Huang, Liu, van der Maaten, Weinberger, CVPR 2017).

Paper: "Densely Connected Convolutional Networks". Sec. 3 (dense connectivity, composite
function BN-ReLU-Conv, bottleneck layers "-B", compression "-C"), Table 1 (the ImageNet
DenseNet-121/169/201, growth rate k = 32) and Sec. 4.1-4.2 with Table 2 (CIFAR: DenseNet
L=40, k=12, 1.0M parameters; DenseNet-BC L=100, k=12, 0.8M parameters).

The ImageNet nets follow ``keras.applications`` exactly (8,062,504 / 14,307,880 / 20,242,984
parameters at 224x224x3, 1000 classes: no conv biases, BN epsilon 1.001e-5). The CIFAR nets
have three dense blocks on 32/16/8 maps after a 3x3 stem conv with 16 filters (2k for BC);
a layer is BN-ReLU-Conv3x3(k), or BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) with a bottleneck;
transitions are BN-ReLU-Conv1x1 (with compression) and 2x2 average pooling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from keras_cnns import registry
from keras_cnns.blocks import CIFAR_STYLE, ConvStyle
from keras_cnns.errors import UserError
from keras_cnns.options import check_activation

FAMILY = "densenet"


@dataclass(frozen=True)
class DenseNetSpec:
    """A DenseNet: stem, dense blocks separated by transitions, BN-ReLU, pooling, logits.

    Attributes:
        depth: L, the paper's layer count.
        growth_rate: k, channels each layer adds.
        block_layers: layers per dense block.
        bottleneck: 1x1 conv to 4k channels before each 3x3 ("-B").
        compression: fraction of channels a transition keeps (theta; 1.0 = none, "-C" = 0.5).
        stem: ``"imagenet"`` (7x7/2 conv, BN-ReLU, 3x3/2 max pool) or ``"cifar"`` (3x3 conv).
        stem_filters: output channels of the stem conv (2k for the BC and ImageNet nets).
    """

    depth: int
    growth_rate: int
    block_layers: tuple[int, ...]
    bottleneck: bool
    compression: float
    stem: str
    stem_filters: int


def _imagenet(depth: int, *block_layers: int) -> DenseNetSpec:
    return DenseNetSpec(depth, 32, block_layers, True, 0.5, "imagenet", 64)


# Huang et al. 2017, Table 1 (ImageNet, k = 32): layers per dense block.
IMAGENET_SPECS: dict[int, DenseNetSpec] = {
    121: _imagenet(121, 6, 12, 24, 16),
    169: _imagenet(169, 6, 12, 32, 32),
    201: _imagenet(201, 6, 12, 48, 32),
}

# Huang et al. 2017, Sec. 4.2 and Table 2 (CIFAR): (L - 4) / 3 layers per block, each
# bottleneck layer counting as two. Keyed by registry name: depth alone does not say "BC".
CIFAR_SPECS: dict[str, DenseNetSpec] = {
    "densenet40_cifar": DenseNetSpec(40, 12, (12, 12, 12), False, 1.0, "cifar", 16),
    "densenet_bc100_cifar": DenseNetSpec(100, 12, (16, 16, 16), True, 0.5, "cifar", 24),
}

# keras.applications' settings, so the ImageNet counts match it exactly.
IMAGENET_STYLE = ConvStyle(use_bias=False, bn_epsilon=1.001e-5)
# The CIFAR nets: Torch's batch norm (blocks.CIFAR_STYLE), as the paper's Torch code.


def bn_act_conv(
    x, filters: int, kernel_size: int, *, style: ConvStyle, activation, dropout: float, name: str
):
    """The pre-activation composite function BN-ReLU-Conv (Sec. 3), then optional dropout."""
    from keras import layers

    from keras_cnns.blocks import activation_name
    from keras_cnns.layers import BatchNorm

    x = BatchNorm(
        epsilon=style.bn_epsilon, momentum=style.bn_momentum, name=f"{name}_bn"
    )(x)
    x = layers.Activation(activation, name=f"{name}_{activation_name(activation)}")(x)
    x = layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=style.use_bias,
        kernel_initializer=style.kernel_initializer,
        name=f"{name}_conv",
    )(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def dense_layer(x, spec: DenseNetSpec, *, style: ConvStyle, activation, dropout: float, name: str):
    """One layer of a dense block: its ``k`` new feature maps concatenated to its input."""
    from keras import layers

    y = x
    if spec.bottleneck:
        y = bn_act_conv(
            y,
            4 * spec.growth_rate,
            1,
            style=style,
            activation=activation,
            dropout=dropout,
            name=f"{name}_conv1",
        )
    y = bn_act_conv(
        y,
        spec.growth_rate,
        3,
        style=style,
        activation=activation,
        dropout=dropout,
        name=f"{name}_conv{2 if spec.bottleneck else 1}",
    )
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def build_densenet(
    spec: DenseNetSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    activation="relu",
    dropout: float = 0.0,
):
    """Build a DenseNet that returns logits.

    Args:
        spec: an ``IMAGENET_SPECS`` or ``CIFAR_SPECS`` entry.
        input_shape: channels-last input shape.
        num_classes: number of logits.
        name: model name (the registry name).
        activation: activation in every BN-activation-conv unit.
        dropout: dropout rate after every conv but the stem (the paper uses 0.2 on CIFAR
            without augmentation, 0 otherwise).

    Returns:
        A ``keras.Model`` mapping images to float32 logits.
    """
    check_activation(activation)
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"dropout={dropout} must be a rate in [0, 1) (the paper uses 0.2 or 0)")
    import keras
    from keras import layers

    from keras_cnns.blocks import activation_name, classifier_head, conv_bn_act, model_input
    from keras_cnns.layers import BatchNorm

    style = IMAGENET_STYLE if spec.stem == "imagenet" else CIFAR_STYLE
    inputs = model_input(input_shape)
    if spec.stem == "imagenet":
        x = layers.ZeroPadding2D(3, name="stem_pad")(inputs)
        x = conv_bn_act(
            x,
            spec.stem_filters,
            7,
            strides=2,
            padding="valid",
            activation=activation,
            name="stem",
            **asdict(style),
        )
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    else:
        # No BN-ReLU here: the first dense layer's own BN-ReLU follows.
        x = layers.Conv2D(
            spec.stem_filters,
            3,
            padding="same",
            use_bias=style.use_bias,
            kernel_initializer=style.kernel_initializer,
            name="stem_conv",
        )(inputs)

    for i, num_layers in enumerate(spec.block_layers, start=1):
        for j in range(1, num_layers + 1):
            x = dense_layer(
                x,
                spec,
                style=style,
                activation=activation,
                dropout=dropout,
                name=f"block{i}_layer{j}",
            )
        if i < len(spec.block_layers):
            x = bn_act_conv(
                x,
                int(x.shape[-1] * spec.compression),
                1,
                style=style,
                activation=activation,
                dropout=dropout,
                name=f"transition{i}",
            )
            x = layers.AveragePooling2D(2, strides=2, name=f"transition{i}_pool")(x)

    x = BatchNorm(
        epsilon=style.bn_epsilon, momentum=style.bn_momentum, name="final_bn"
    )(x)
    x = layers.Activation(activation, name=f"final_{activation_name(activation)}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_head(x, num_classes, name="logits")
    return keras.Model(inputs, outputs, name=name)


for _depth, _spec in IMAGENET_SPECS.items():
    registry.register(
        f"densenet{_depth}",
        family=FAMILY,
        builder=build_densenet,
        spec=_spec,
        paper="Huang et al. 2017, Densely Connected Convolutional Networks, Table 1",
        input_shape=(224, 224, 3),
        num_classes=1000,
        description=f"DenseNet-{_depth} (BC, k=32), ImageNet",
        # Five halvings (stem conv, stem pool, three transitions) take 32 down to 1x1.
        small_input_shape=(32, 32, 3),
    )

for _name, _spec in CIFAR_SPECS.items():
    registry.register(
        _name,
        family=FAMILY,
        builder=build_densenet,
        spec=_spec,
        paper="Huang et al. 2017, Densely Connected Convolutional Networks, Sec. 4.2, Table 2",
        input_shape=(32, 32, 3),
        num_classes=10,
        description=(
            f"DenseNet{'-BC' if _spec.bottleneck else ''} L={_spec.depth}, "
            f"k={_spec.growth_rate}, CIFAR"
        ),
        # Two transitions (2x2 pooling, 'valid') take 4x4 down to 1x1.
        small_input_shape=(4, 4, 3),
    )
