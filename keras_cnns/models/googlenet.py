"""GoogLeNet / Inception v1 (Szegedy et al., CVPR 2015).

Paper: "Going Deeper with Convolutions", Sec. 4 and Fig. 2(b) (the inception module with
1x1 reductions), Sec. 5, Table 1 (the network, one row per layer) and Fig. 3 (the stem's
local response normalisation and the auxiliary classifiers).

Table 1 at 224x224x3: conv 7x7/2 (64), max pool 3x3/2, LRN, conv 1x1 (64) and 3x3 (192),
LRN, max pool 3x3/2, inception 3a-3b, max pool 3x3/2, inception 4a-4e, max pool 3x3/2,
inception 5a-5b, average pool 7x7, dropout 40%, linear, softmax (in the loss here). Every
convolution, including those inside the modules, is followed by ReLU. Poolings use 'same'
padding, which gives Table 1's sizes (112, 56, 28, 14, 7).

Parameters at 224x224x3 and 1000 classes without auxiliary heads: 6,998,552 with biases
(Table 1 counts about 6.8M, weights only). ``aux_classifiers=True`` adds the two training-time
heads of Sec. 5 on 4a and 4d (average pool 5x5/3, conv 1x1 128, dense 1024, dropout 70%,
linear): the model then returns ``[logits, aux1_logits, aux2_logits]``; the paper weights
their losses by 0.3 and discards them at inference.

Choices where the paper is silent: LRN uses AlexNet's constants (k=2, n=5, alpha=1e-4,
beta=0.75); the final 7x7 average pooling is a global average pooling, so other input sizes
work (any size without auxiliary heads; at least 65x65 with them, for their 5x5 pooling).
Deviation from paper: Keras's Glorot-uniform initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_cnns import registry
from keras_cnns.errors import UserError
from keras_cnns.options import check_activation, check_rate

FAMILY = "googlenet"
PAPER = "Szegedy et al. 2015, Sec. 5, Table 1"


@dataclass(frozen=True)
class Inception:
    """One inception module: a row of Table 1.

    Attributes:
        name: the row's label, for example ``"3a"``.
        b1x1: "#1x1", the 1x1 branch.
        b3x3_reduce: "#3x3 reduce", the 1x1 before the 3x3.
        b3x3: "#3x3".
        b5x5_reduce: "#5x5 reduce", the 1x1 before the 5x5.
        b5x5: "#5x5".
        pool_proj: "pool proj", the 1x1 after the 3x3 max pooling.
        pool_before: Table 1 has a "max pool 3x3/2" row right before this module.
        aux_head: an auxiliary classifier reads this module's output (Sec. 5: 4a and 4d).
    """

    name: str
    b1x1: int
    b3x3_reduce: int
    b3x3: int
    b5x5_reduce: int
    b5x5: int
    pool_proj: int
    pool_before: bool = False
    aux_head: bool = False


@dataclass(frozen=True)
class GoogLeNetSpec:
    """The whole of Table 1.

    Attributes:
        stem: widths of conv1 (7x7/2), the 1x1 reduction before conv2, and conv2 (3x3).
        modules: the inception rows, in order.
        aux_filters: the auxiliary heads' 1x1 convolution.
        aux_units: the auxiliary heads' dense layer.
    """

    stem: tuple[int, int, int]
    modules: tuple[Inception, ...]
    aux_filters: int = 128
    aux_units: int = 1024


# Szegedy et al. 2015, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
SPECS: dict[str, GoogLeNetSpec] = {
    "googlenet": GoogLeNetSpec(
        stem=(64, 64, 192),
        modules=(
            Inception("3a", 64, 96, 128, 16, 32, 32),
            Inception("3b", 128, 128, 192, 32, 96, 64),
            Inception("4a", 192, 96, 208, 16, 48, 64, pool_before=True, aux_head=True),
            Inception("4b", 160, 112, 224, 24, 64, 64),
            Inception("4c", 128, 128, 256, 24, 64, 64),
            Inception("4d", 112, 144, 288, 32, 64, 64, aux_head=True),
            Inception("4e", 256, 160, 320, 32, 128, 128),
            Inception("5a", 256, 160, 320, 32, 128, 128, pool_before=True),
            Inception("5b", 384, 192, 384, 48, 128, 128),
        ),
    ),
}

AUX_POOL, AUX_POOL_STRIDES = 5, 3  # Sec. 5: "average pooling layer with 5x5 filter size and stride 3"


def _conv(x, filters: int, kernel_size: int, activation, *, name: str, strides: int = 1):
    """Convolution with bias, then the activation: every convolution of the paper."""
    from keras_cnns.blocks import conv_bn_act

    return conv_bn_act(
        x,
        filters,
        kernel_size,
        strides=strides,
        activation=activation,
        use_bias=True,
        batch_norm=False,
        kernel_initializer="glorot_uniform",
        name=name,
    )


def inception_module(x, module: Inception, activation, *, name: str):
    """Fig. 2(b): 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated."""
    from keras import layers

    b1 = _conv(x, module.b1x1, 1, activation, name=f"{name}_1x1")
    b3 = _conv(x, module.b3x3_reduce, 1, activation, name=f"{name}_3x3_reduce")
    b3 = _conv(b3, module.b3x3, 3, activation, name=f"{name}_3x3")
    b5 = _conv(x, module.b5x5_reduce, 1, activation, name=f"{name}_5x5_reduce")
    b5 = _conv(b5, module.b5x5, 5, activation, name=f"{name}_5x5")
    bp = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv(bp, module.pool_proj, 1, activation, name=f"{name}_pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b3, b5, bp])


def auxiliary_head(x, spec: GoogLeNetSpec, num_classes: int, activation, *, name: str, dropout: float):
    """Sec. 5's auxiliary classifier, returning float32 logits."""
    from keras import layers

    from keras_cnns.blocks import activation_name, classifier_head

    x = layers.AveragePooling2D(AUX_POOL, strides=AUX_POOL_STRIDES, name=f"{name}_pool")(x)
    x = _conv(x, spec.aux_filters, 1, activation, name=name)
    x = layers.Flatten(name=f"{name}_flatten")(x)  # 4x4x128 = 2048 at 224x224
    x = layers.Dense(spec.aux_units, name=f"{name}_fc")(x)
    x = layers.Activation(activation, name=f"{name}_fc_{activation_name(activation)}")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return classifier_head(x, num_classes, name=f"{name}_logits")


STEM_HALVINGS = 3  # conv1 7x7/2, conv1_pool 3x3/2, conv2_pool 3x3/2: 224 -> 28


def smallest_aux_input_size(spec: GoogLeNetSpec) -> int:
    """The smallest square input whose auxiliary heads' 5x5 pooling fits (65 for Table 1).

    Every stride-2 'same' stage maps a side ``s`` to ``ceil(s / 2)``, so after ``h`` of them
    the side is ``ceil(s / 2**h)``, which is at least 5 from ``s = 4 * 2**h + 1`` on.
    """
    halvings, needed = STEM_HALVINGS, 1
    for module in spec.modules:
        halvings += module.pool_before
        if module.aux_head:
            needed = max(needed, (AUX_POOL - 1) * 2**halvings + 1)
    return needed


def _check_options(
    spec: GoogLeNetSpec, input_shape, activation, dropout: float, aux_classifiers: bool,
    aux_dropout: float,
) -> None:
    check_activation(activation)
    check_rate("dropout", dropout)
    check_rate("aux_dropout", aux_dropout)
    if len(input_shape) != 3:
        raise UserError(f"expected a (height, width, channels) input, got {input_shape}")
    minimum = smallest_aux_input_size(spec)
    if aux_classifiers and min(input_shape[:2]) < minimum:
        raise UserError(
            f"aux_classifiers need an input of at least {minimum}x{minimum} (for their "
            f"{AUX_POOL}x{AUX_POOL} pooling), got {'x'.join(map(str, input_shape))}; use a "
            "larger input or aux_classifiers=False"
        )


def build_googlenet(
    spec: GoogLeNetSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    activation="relu",
    dropout: float = 0.4,
    aux_classifiers: bool = False,
    aux_dropout: float = 0.7,
    lrn: bool = True,
):
    """Build GoogLeNet returning float32 logits (and auxiliary logits when asked).

    Args:
        spec: a ``SPECS`` entry.
        input_shape: channels-last input (default 224x224x3; at least 65x65 with
            auxiliary heads).
        num_classes: number of logits of every head.
        name: model name (the registry name).
        activation: activation after every convolution and the auxiliary dense layers.
        dropout: dropout rate before the main classifier (the paper's 0.4).
        aux_classifiers: add the two auxiliary heads; the model then has three outputs,
            ``[logits, aux1_logits, aux2_logits]``.
        aux_dropout: dropout rate in the auxiliary heads (the paper's 0.7).
        lrn: the stem's two local response normalisations.

    Returns:
        A ``keras.Model`` mapping images to float32 logits (a list of three with
        ``aux_classifiers``).
    """
    import keras
    from keras import layers

    from keras_cnns.blocks import classifier_head, model_input
    from keras_cnns.layers import LocalResponseNormalization

    _check_options(spec, input_shape, activation, dropout, aux_classifiers, aux_dropout)

    def pool(x, *, name: str):  # 'same': Table 1's sizes, and STEM_HALVINGS' arithmetic
        return layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)

    def norm(x, *, name: str):
        if not lrn:
            return x
        return LocalResponseNormalization(size=5, k=2.0, alpha=1e-4, beta=0.75, name=name)(x)

    inputs = model_input(input_shape)
    x = _conv(inputs, spec.stem[0], 7, activation, strides=2, name="conv1")  # 112x112
    x = norm(pool(x, name="conv1_pool"), name="conv1_lrn")  # 56x56
    x = _conv(x, spec.stem[1], 1, activation, name="conv2_reduce")
    x = _conv(x, spec.stem[2], 3, activation, name="conv2")
    x = pool(norm(x, name="conv2_lrn"), name="conv2_pool")  # 28x28

    aux_outputs = []
    for module in spec.modules:
        if module.pool_before:
            x = pool(x, name=f"inception{module.name}_pool_before")  # 14x14, then 7x7
        x = inception_module(x, module, activation, name=f"inception{module.name}")
        if aux_classifiers and module.aux_head:
            aux = f"aux{len(aux_outputs) + 1}"
            aux_outputs.append(
                auxiliary_head(x, spec, num_classes, activation, name=aux, dropout=aux_dropout)
            )

    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # Table 1's 7x7 average pool at 224
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = classifier_head(x, num_classes, name="logits")
    outputs = [logits, *aux_outputs] if aux_classifiers else logits
    return keras.Model(inputs, outputs, name=name)


for _name, _spec in SPECS.items():
    registry.register(
        _name,
        family=FAMILY,
        builder=build_googlenet,
        spec=_spec,
        paper=PAPER,
        input_shape=(224, 224, 3),
        num_classes=1000,
        description="GoogLeNet (Inception v1), Table 1 with 1x1 reductions",
        # Five 'same' stride-2 stages take 32 to 1x1; global pooling handles the rest.
        small_input_shape=(32, 32, 3),
    )
