"""ImageNet ResNets and their plain twins (He, Zhang, Ren, Sun, CVPR 2016).

Paper: "Deep Residual Learning for Image Recognition", Sec. 3.3-3.4 and Table 1 (layer
configurations of the 18/34/50/101/152-layer nets), Sec. 4.1 and Table 2 (plain-18/34 vs
ResNet-18/34), Fig. 5 (basic and bottleneck blocks).

Structure and parameter counts follow ``keras.applications`` (ResNet v1): convolutions
carry biases, batch norm uses epsilon 1.001e-5, the stride of a bottleneck block sits on its
first 1x1 convolution, and a projection shortcut (1x1 conv + BN, the paper's "option B")
is used wherever the shape changes, which for bottleneck nets is the first block of every
stage. ResNet-50/101/152 then match ``keras.applications`` exactly (25,636,712 /
44,707,176 / 60,419,944 parameters at 224x224x3, 1000 classes).

A plain twin is the same net built with ``shortcut="none"``: no addition, no projection.
The residual-block helpers here are shared with ``resnet_cifar``; stochastic depth
(Huang et al. 2016) is a builder argument of both families.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from keras_cnns import registry
from keras_cnns.blocks import ConvStyle
from keras_cnns.options import check_activation, check_choice, check_drop_path

FAMILY = "resnet"
PAPER = "He et al. 2016, Deep Residual Learning, Table 1"

# "A": zero-padded identity, "A_avgpool": the same with 2x2 average pooling (Huang et al.
# 2016), "B": projection where the shape changes, "C": projection on every block,
# "none": no shortcut at all (the plain net).
SHORTCUTS = ("A", "A_avgpool", "B", "C", "none")


@dataclass(frozen=True)
class Stage:
    """One stage of residual blocks.

    Attributes:
        filters: width of the 3x3 convolutions (a bottleneck block outputs 4x this).
        blocks: number of residual blocks.
        strides: stride of the stage's first block (2 halves the feature map).
    """

    filters: int
    blocks: int
    strides: int


@dataclass(frozen=True)
class ResNetSpec:
    """An ImageNet ResNet: a block type and four stages (Table 1's conv2_x ... conv5_x)."""

    depth: int
    block: str  # "basic" (two 3x3) or "bottleneck" (1x1, 3x3, 1x1 with 4x expansion)
    stages: tuple[Stage, ...]


def _imagenet_stages(*blocks: int) -> tuple[Stage, ...]:
    return tuple(
        Stage(filters=64 * 2**i, blocks=b, strides=1 if i == 0 else 2) for i, b in enumerate(blocks)
    )


# He et al. 2016, Table 1: blocks per stage conv2_x, conv3_x, conv4_x, conv5_x.
SPECS: dict[int, ResNetSpec] = {
    18: ResNetSpec(18, "basic", _imagenet_stages(2, 2, 2, 2)),
    34: ResNetSpec(34, "basic", _imagenet_stages(3, 4, 6, 3)),
    50: ResNetSpec(50, "bottleneck", _imagenet_stages(3, 4, 6, 3)),
    101: ResNetSpec(101, "bottleneck", _imagenet_stages(3, 4, 23, 3)),
    152: ResNetSpec(152, "bottleneck", _imagenet_stages(3, 8, 36, 3)),
}


def survival_probabilities(num_blocks: int, drop_path: float) -> list[float]:
    """Linear decay of Huang et al. 2016, Eq. 4: block l of L survives with 1 - (l/L) * p_drop.

    Args:
        num_blocks: L, the number of residual blocks.
        drop_path: ``1 - p_L``, the drop probability of the last block.

    Returns:
        ``[p_1, ..., p_L]``; all 1.0 when ``drop_path`` is 0.
    """
    return [1.0 - (l / num_blocks) * drop_path for l in range(1, num_blocks + 1)]  # noqa: E741


# --- blocks -------------------------------------------------------------------------------------


def residual_block(
    x,
    filters: int,
    *,
    block: str,
    strides: int,
    shortcut: str,
    style: ConvStyle,
    activation="relu",
    survival_probability: float = 1.0,
    drop_path_mode: str = "batch",
    name: str,
):
    """A basic (two 3x3) or bottleneck (1x1-3x3-1x1) residual block, post-activation.

    BN follows every convolution; the activation follows the addition (He et al. 2016,
    Fig. 5). With ``shortcut="none"`` the block is the plain net's: no addition.

    Args:
        x: input tensor (NHWC).
        filters: width of the 3x3 convolutions.
        block: ``"basic"`` or ``"bottleneck"``.
        strides: stride of the block's first convolution.
        shortcut: one of ``SHORTCUTS``.
        style: conv + BN settings.
        activation: activation after every inner BN and after the addition.
        survival_probability: stochastic-depth ``p_l``; 1.0 is a plain addition.
        drop_path_mode: ``"batch"`` (the paper: the convolutions and batch norms of the
            branch move into a sub-model ``{name}_branch`` that a dropped block skips) or
            ``"sample"`` (DropPath: every branch is computed).
        name: block prefix, e.g. ``"stage2_block3"``.

    Returns:
        The block's output tensor.
    """
    import keras
    from keras import layers

    from keras_cnns.blocks import conv_bn_act
    from keras_cnns.layers import StochasticDepth, ZeroPadShortcut

    conv = {**asdict(style), "activation": activation}
    out_channels = filters * (4 if block == "bottleneck" else 1)
    # The paper's stochastic depth skips a dropped block's branch: the branch becomes a
    # sub-model that StochasticDepth calls only when the block is kept. Its layers keep their
    # names (``stage2_block3_conv1_conv``), one level down, in the model ``{name}_branch``.
    skippable = survival_probability < 1.0 and drop_path_mode == "batch" and shortcut != "none"
    branch_input = keras.Input(x.shape[1:], name=f"{name}_branch_input") if skippable else x
    y = branch_input
    if block == "basic":
        # Symmetric padding: the strided 3x3 convolution's output pixel i is centred on input
        # pixel 2i, the pixel the shortcut takes (Caffe, Torch and PyTorch pad this way).
        y = conv_bn_act(y, filters, 3, strides=strides, padding="symmetric", name=f"{name}_conv1", **conv)
        y = conv_bn_act(y, filters, 3, name=f"{name}_conv2", **{**conv, "activation": None})
    else:
        # The stride sits on the first 1x1, as in the paper and keras.applications (v1).
        y = conv_bn_act(y, filters, 1, strides=strides, name=f"{name}_conv1", **conv)
        y = conv_bn_act(y, filters, 3, name=f"{name}_conv2", **conv)
        y = conv_bn_act(y, out_channels, 1, name=f"{name}_conv3", **{**conv, "activation": None})
    out_act = f"{name}_out"
    if shortcut == "none":
        return layers.Activation(activation, name=out_act)(y)

    reshape = strides != 1 or x.shape[-1] != out_channels
    if shortcut == "C" or (shortcut == "B" and reshape):
        s = conv_bn_act(
            x,
            out_channels,
            1,
            strides=strides,
            name=f"{name}_shortcut",
            **{**conv, "activation": None},
        )
    elif reshape:  # option A: parameter-free
        downsample = "avgpool" if shortcut == "A_avgpool" else "subsample"
        s = ZeroPadShortcut(out_channels, strides, downsample, name=f"{name}_shortcut")(x)
    else:
        s = x
    if skippable:
        branch = keras.Model(branch_input, y, name=f"{name}_branch")
        y = StochasticDepth(
            survival_probability, drop_path_mode, branch=branch, name=f"{name}_add"
        )([s, x])
    elif survival_probability < 1.0:
        y = StochasticDepth(survival_probability, drop_path_mode, name=f"{name}_add")([s, y])
    else:
        y = layers.Add(name=f"{name}_add")([s, y])
    return layers.Activation(activation, name=out_act)(y)


def residual_stages(
    x,
    stages: tuple[Stage, ...],
    *,
    block: str,
    shortcut: str,
    style: ConvStyle,
    activation,
    drop_path: float,
    drop_path_mode: str,
):
    """All stages, named ``stage{i}_block{j}``, with stochastic depth decaying over blocks."""
    survival = iter(survival_probabilities(sum(s.blocks for s in stages), drop_path))
    for i, stage in enumerate(stages, start=1):
        for j in range(1, stage.blocks + 1):
            x = residual_block(
                x,
                stage.filters,
                block=block,
                strides=stage.strides if j == 1 else 1,
                shortcut=shortcut,
                style=style,
                activation=activation,
                survival_probability=next(survival),
                drop_path_mode=drop_path_mode,
                name=f"stage{i}_block{j}",
            )
    return x


# --- builder ------------------------------------------------------------------------------------

# keras.applications' ResNet v1 conventions, so the counts match it exactly.
IMAGENET_STYLE = ConvStyle(use_bias=True, bn_epsilon=1.001e-5)


def build_resnet(
    spec: ResNetSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    shortcut: str = "B",
    activation="relu",
    drop_path: float = 0.0,
    drop_path_mode: str = "batch",
    conv_bias: bool = True,
):
    """Build an ImageNet ResNet (or its plain twin) that returns logits.

    Args:
        spec: a ``SPECS`` entry.
        input_shape: channels-last input shape, e.g. ``(224, 224, 3)``.
        num_classes: number of logits.
        name: model name (the registry name).
        shortcut: ``"B"`` (projection where the shape changes; the paper's and
            keras.applications' choice), ``"C"`` (projection everywhere), ``"A"`` /
            ``"A_avgpool"`` (parameter-free zero padding) or ``"none"`` (plain net).
        activation: activation after each inner BN and each addition.
        drop_path: stochastic depth, the LAST block's drop probability ``1 - p_L``
            (0 = off; Huang et al. use 0.5), decaying linearly from the first block.
        drop_path_mode: ``"batch"`` (one draw per block per mini-batch, the paper) or
            ``"sample"`` (one draw per example, DropPath).
        conv_bias: biases in the convolutions (keras.applications has them; with
            ``False`` the trainable count equals torchvision's).

    Returns:
        A ``keras.Model`` mapping images to float32 logits.
    """
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_activation(activation)
    check_drop_path(drop_path, drop_path_mode, shortcut)
    import keras
    from keras import layers

    from keras_cnns.blocks import classifier_head, conv_bn_act, model_input

    style = replace(IMAGENET_STYLE, use_bias=bool(conv_bias))
    inputs = model_input(input_shape)
    # Symmetric padding + 'valid' (as Caffe and keras.applications) instead of TF's 'same'.
    x = layers.ZeroPadding2D(3, name="stem_pad")(inputs)
    x = conv_bn_act(
        x, 64, 7, strides=2, padding="valid", name="stem", activation=activation, **asdict(style)
    )
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    x = residual_stages(
        x,
        spec.stages,
        block=spec.block,
        shortcut=shortcut,
        style=style,
        activation=activation,
        drop_path=drop_path,
        drop_path_mode=drop_path_mode,
    )
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_head(x, num_classes, name="logits")
    return keras.Model(inputs, outputs, name=name)


# Revision 2 of the basic-block nets (18, 34): the stride-2 3x3 convolutions pad symmetrically.
# A bottleneck net strides on a 1x1 convolution, which no padding touches: still revision 1.
BASIC_REVISION = 2
BASIC_REVISION_NOTE = (
    "the stride-2 3x3 convolutions pad symmetrically (revision 1 padded bottom and right only, "
    "one pixel off the shortcut)"
)

for _depth, _spec in SPECS.items():
    _basic = _spec.block == "basic"
    for _prefix, _shortcut in (("resnet", "B"), ("plain", "none")):
        registry.register(
            f"{_prefix}{_depth}",
            family=FAMILY,
            builder=build_resnet,
            spec=_spec,
            paper=PAPER,
            input_shape=(224, 224, 3),
            num_classes=1000,
            description=(
                f"{'ResNet' if _prefix == 'resnet' else 'plain'}-{_depth}, ImageNet, "
                f"{_spec.block} blocks" + (", no shortcuts" if _shortcut == "none" else "")
            ),
            # Five halvings (stem conv, stem pool, three stages) take 32 down to 1x1.
            small_input_shape=(32, 32, 3),
            revision=BASIC_REVISION if _basic else 1,
            revision_note=BASIC_REVISION_NOTE if _basic else "",
            shortcut=_shortcut,
        )
