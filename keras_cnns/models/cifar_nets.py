"""Small CIFAR nets of two classic experiments: dropout placement, and ReLU vs tanh.

``dropout_cifar``: Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A
Simple Way to Prevent Neural Networks from Overfitting", JMLR 2014, Appendix B.2 (the net,
reused for CIFAR in B.3) and Table 4 (no dropout / dropout in the fully connected layers /
dropout in all layers). Three 5x5 conv layers of 96, 128, 256 filters, each followed by 3x3
max pooling at stride 2; two dense layers of 2048 units; ReLU; max-norm c = 4 on all weights;
retention probabilities 0.9 (input), 0.75, 0.75, 0.5 (after the conv blocks), 0.5, 0.5
(after the dense layers).

Max-norm as the paper means it (Sec. 5.1, App. B.2): the paper trains with unscaled dropout
and multiplies the weights by the retention probability ``p`` at test time; Keras' ``Dropout``
divides the kept activations by ``p`` while training instead, so a Keras kernel is ``p`` times
the paper's, where ``p`` is the retention probability of the layer's INPUT (1 where no dropout
precedes it). The paper's bound ``||w|| <= c`` on each unit's incoming weights is therefore
``c * p`` here, per layer (``max_norm_bounds``): 3.6 on the first conv after input dropout
0.1, 2.0 after a 0.5 dropout, ``c`` itself where no dropout precedes the layer.

``cifar_4layer``: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012, Figure 1 (ReLU reaches 25% training error on
CIFAR-10 six times faster than tanh). The paper does not give the net; this is the classic
cuda-convnet CIFAR net: conv 5x5x32 (pad 2), max pool 3/2, conv 5x5x32, avg pool 3/2, conv
5x5x64, avg pool 3/2, dense 10, with no regularisation.

Deviation from paper (both): padding, pooling padding and initialisation are not given;
convolutions and pooling use 'same' padding (32 -> 16 -> 8 -> 4) and Keras' default
Glorot-uniform initialisation. ``cifar_4layer(init="cuda_convnet")`` draws the weights as
cuda-convnet's CIFAR configurations of the time did (``example-layers/layers-18pct.cfg``):
zero-mean Gaussians of std 1e-4 for the first convolution and 0.01 for the others and the
output layer, biases zero; those stds are meant for inputs in pixel units (0-255).
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_cnns import registry
from keras_cnns.errors import UserError
from keras_cnns.options import check_activation, check_choice

FAMILY = "cifar_nets"
DROPOUT_PLACEMENTS = ("none", "fc", "all")
# "glorot_uniform": Keras' default; "cuda_convnet": each layer's Gaussian std from the spec.
INITS = ("glorot_uniform", "cuda_convnet")


@dataclass(frozen=True)
class ConvLayer:
    """A conv layer, its activation, then pooling; ``dropout`` is the rate after the pooling."""

    filters: int
    kernel_size: int
    pool: str  # "max" or "avg"
    pool_size: int = 3
    pool_strides: int = 2
    dropout: float = 0.0
    init_std: float | None = None  # cuda-convnet's initW (init="cuda_convnet")


@dataclass(frozen=True)
class DenseLayer:
    """A hidden dense layer and its activation; ``dropout`` is the rate after it."""

    units: int
    dropout: float = 0.0


@dataclass(frozen=True)
class CifarNetSpec:
    """A conv-pool stack, hidden dense layers, and the logits.

    Attributes:
        convs: the conv layers, input to output.
        dense: the hidden dense layers.
        input_dropout: dropout rate on the input image.
        max_norm: the paper's max-norm bound ``c`` on every unit's incoming weight vector,
            in the paper's (unscaled-dropout) terms (``None``: the net has none).
        logits_init_std: the output layer's Gaussian std for ``init="cuda_convnet"`` (set
            together with every conv layer's ``init_std``; ``None``: not available).
    """

    convs: tuple[ConvLayer, ...]
    dense: tuple[DenseLayer, ...] = ()
    input_dropout: float = 0.0
    max_norm: float | None = None
    logits_init_std: float | None = None


SPECS: dict[str, CifarNetSpec] = {
    # Srivastava et al. 2014, App. B.2; dropout rates = 1 - retention probabilities (B.2/B.3).
    "dropout_cifar": CifarNetSpec(
        convs=(
            ConvLayer(96, 5, "max", dropout=0.25),
            ConvLayer(128, 5, "max", dropout=0.25),
            ConvLayer(256, 5, "max", dropout=0.5),
        ),
        dense=(DenseLayer(2048, dropout=0.5), DenseLayer(2048, dropout=0.5)),
        input_dropout=0.1,
        max_norm=4.0,
    ),
    # Krizhevsky et al. 2012, Fig. 1 (the paper gives no net: cuda-convnet's CIFAR net, layers-18pct);
    # init stds: cuda-convnet's layers-18pct.cfg (conv1 initW=0.0001, the rest 0.01).
    "cifar_4layer": CifarNetSpec(
        convs=(
            ConvLayer(32, 5, "max", init_std=1e-4),
            ConvLayer(32, 5, "avg", init_std=0.01),
            ConvLayer(64, 5, "avg", init_std=0.01),
        ),
        logits_init_std=0.01,
    ),
}


def applied_dropout(spec: CifarNetSpec, dropout: str) -> tuple[float, ...]:
    """The dropout rate in front of each weighted layer under a placement: the input's before
    the first conv, each conv block's before the next layer, each dense layer's before the
    next one (the last before the logits); 0 where the placement puts none.

    Args:
        spec: a ``SPECS`` entry.
        dropout: ``"none"``, ``"fc"`` or ``"all"`` (see ``build_cifar_net``).

    Returns:
        One rate per weighted layer, input to output (the convs, the hidden dense layers, the
        logits): the one table both the ``Dropout`` layers and the max-norm bounds come from.
    """
    check_choice("dropout", dropout, DROPOUT_PLACEMENTS)
    in_convs = dropout == "all"
    in_dense = dropout != "none"
    return (
        spec.input_dropout if in_convs else 0.0,
        *(c.dropout if in_convs else 0.0 for c in spec.convs),
        *(d.dropout if in_dense else 0.0 for d in spec.dense),
    )


def max_norm_bounds(spec: CifarNetSpec, dropout: str) -> tuple[float, ...]:
    """Each weighted layer's max-norm bound on its Keras kernel: ``c * p_in``.

    Keras' inverted dropout trains the kernel that the paper would multiply by ``p_in`` (the
    retention probability of the layer's input) at test time, so the paper's ``||w|| <= c``
    is ``||w_keras|| <= c * p_in``. With ``c = 4`` and dropout in all layers: 3.6 (conv1,
    after input dropout 0.1), 3.0, 3.0, 2.0, 2.0, 2.0.

    Raises:
        UserError: the spec has no max-norm bound.
    """
    if spec.max_norm is None:
        raise UserError("this net has no max-norm bound in its spec")
    return tuple(spec.max_norm * (1.0 - rate) for rate in applied_dropout(spec, dropout))


def build_cifar_net(
    spec: CifarNetSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    activation="relu",
    dropout: str = "none",
    init: str = "glorot_uniform",
    max_norm: bool = False,
):
    """Build a small CIFAR net that returns logits.

    Args:
        spec: a ``SPECS`` entry.
        input_shape: channels-last input shape, normally ``(32, 32, 3)``.
        num_classes: number of logits.
        name: model name (the registry name).
        activation: hidden-layer activation (``"relu"``, ``"tanh"``...).
        dropout: placement of the spec's dropout rates: ``"none"``, ``"fc"`` (after the
            hidden dense layers only: Table 4's "dropout in fully connected layers") or
            ``"all"`` (also on the input and after every conv block).
        init: ``"glorot_uniform"`` (Keras' default) or ``"cuda_convnet"`` (zero-mean
            Gaussians with the spec's per-layer stds, biases zero; nets whose spec has them).
        max_norm: bound every kernel's per-unit norms by the spec's ``c`` as the paper meant
            it, ``c`` times the retention probability of the layer's input
            (``max_norm_bounds``); nets whose spec has a bound (``dropout_cifar`` registers
            ``True``).

    Returns:
        A ``keras.Model`` mapping images to float32 logits.
    """
    rates = applied_dropout(spec, dropout)  # checks the placement
    check_activation(activation)
    check_choice("init", init, INITS)
    check_choice("max_norm", max_norm, (True, False))
    stds = [c.init_std for c in spec.convs] + [spec.logits_init_std]
    if init == "cuda_convnet" and (spec.dense or None in stds):
        raise UserError(f"model {name!r} has no cuda-convnet initialisation in its spec; use init='glorot_uniform'")
    if dropout != "none" and not any(rates):
        raise UserError(f"model {name!r} has no dropout rates in its spec; use dropout='none'")
    if max_norm and spec.max_norm is None:
        raise UserError(f"model {name!r} has no max-norm bound in its spec; use max_norm=False")
    import keras
    from keras import layers

    from keras_cnns.blocks import activation_name, classifier_head, model_input

    act = activation_name(activation)
    # rates[k] and bounds[k] belong to weighted layer k (conv1 is 0, the logits the last):
    # the dropout in front of it and its kernel's bound.
    bounds = max_norm_bounds(spec, dropout) if max_norm else (None,) * len(rates)
    n_convs = len(spec.convs)

    def drop(x, k, layer_name):
        return layers.Dropout(rates[k], name=layer_name)(x) if rates[k] else x

    def constraint(k, axis):
        # A conv kernel's weight vector is one output unit's (kh, kw, in) slice: axes 0, 1, 2.
        return keras.constraints.MaxNorm(bounds[k], axis=axis) if bounds[k] is not None else None

    def initializer(std):
        if init == "glorot_uniform":
            return "glorot_uniform"
        return keras.initializers.RandomNormal(stddev=std)

    inputs = model_input(input_shape)
    x = drop(inputs, 0, "input_drop")
    for i, conv in enumerate(spec.convs, start=1):
        x = layers.Conv2D(
            conv.filters,
            conv.kernel_size,
            padding="same",
            kernel_initializer=initializer(conv.init_std),
            kernel_constraint=constraint(i - 1, [0, 1, 2]),
            name=f"conv{i}_conv",
        )(x)
        x = layers.Activation(activation, name=f"conv{i}_{act}")(x)
        pool = layers.MaxPooling2D if conv.pool == "max" else layers.AveragePooling2D
        x = pool(conv.pool_size, strides=conv.pool_strides, padding="same", name=f"conv{i}_pool")(x)
        x = drop(x, i, f"conv{i}_drop")
    x = layers.Flatten(name="flatten")(x)
    for i, dense in enumerate(spec.dense, start=1):
        x = layers.Dense(dense.units, kernel_constraint=constraint(n_convs + i - 1, 0), name=f"fc{i}_dense")(x)
        x = layers.Activation(activation, name=f"fc{i}_{act}")(x)
        x = drop(x, n_convs + i, f"fc{i}_drop")
    outputs = classifier_head(
        x,
        num_classes,
        name="logits",
        kernel_initializer=initializer(spec.logits_init_std),
        kernel_constraint=constraint(len(rates) - 1, 0),
    )
    return keras.Model(inputs, outputs, name=name)


# Revision 2 changed what dropout_cifar computes (names and parameter counts are unchanged), so
# runs of revision 1 are kept apart from them.
DROPOUT_CIFAR_REVISION = 2
DROPOUT_CIFAR_REVISION_NOTE = (
    "max-norm bounds each layer's kernel by c times the retention probability of its input, "
    "the paper's bound under Keras' inverted dropout (revision 1 bounded every kernel by 4, "
    "8 in the paper's terms after a 0.5 dropout), and it is a builder option (max_norm)"
)


registry.register(
    "dropout_cifar",
    family=FAMILY,
    builder=build_cifar_net,
    spec=SPECS["dropout_cifar"],
    paper="Srivastava et al. 2014, Dropout, App. B.2, Table 4",
    input_shape=(32, 32, 3),
    num_classes=10,
    description="3 conv (96/128/256, 5x5) + 2x2048 dense, max-norm 4 (paper's terms); dropout none|fc|all",
    # Three halvings take 8x8 down to 1x1.
    small_input_shape=(8, 8, 3),
    revision=DROPOUT_CIFAR_REVISION,
    revision_note=DROPOUT_CIFAR_REVISION_NOTE,
    dropout="all",
    max_norm=True,
)
registry.register(
    "cifar_4layer",
    family=FAMILY,
    builder=build_cifar_net,
    spec=SPECS["cifar_4layer"],
    paper="Krizhevsky et al. 2012, ImageNet Classification, Fig. 1 (cuda-convnet CIFAR net)",
    input_shape=(32, 32, 3),
    num_classes=10,
    description="4-layer net (3 conv 5x5 + dense) of the ReLU vs tanh experiment",
    small_input_shape=(8, 8, 3),
)
