"""LeNet-5 (LeCun, Bottou, Bengio, Haffner, Proc. IEEE 1998).

Paper: "Gradient-Based Learning Applied to Document Recognition", Sec. II-B and Fig. 2 (the
architecture), Table I (which S2 maps each C3 map sees), Sec. II-B Eq. 7 (the Euclidean RBF
output), Appendix A (the squashing function 1.7159 tanh(2a/3)).

Two variants, one builder:

* ``lenet5``, the paper's net on 32x32x1: C1 6@5x5, S2 trainable subsampling, C3 16@5x5
  partially connected per Table I, S4 trainable subsampling, C5 120@5x5, F6 84, output of
  fixed Euclidean RBF units. Trainable parameters, exactly the paper's 60,000:
  C1 156 (6*25 + 6), S2 12 (coefficient + bias per map), C3 1,516 (60 connected 5x5 kernels
  + 16 biases), S4 32, C5 48,120 (120*400 + 120), F6 10,164 (84*120 + 84). Not trainable:
  the RBF prototypes, 84 per class (840 for 10 classes); ``count_params()`` is 60,840.
* ``lenet5_modern``, the common textbook reading: full C3, plain 2x2 average pooling, and a
  Dense output: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 parameters at 32x32x1, 10
  classes. It keeps the scaled tanh (``activation`` changes it), so the two variants differ
  only in C3, S2/S4 and the output layer.

Deviation from paper: the RBF prototypes are random +1/-1 codes of 84 = 7x12 bits, fixed
(not trained) and drawn from a fixed seed, not the paper's stylised 7x12 bitmaps of the
characters (Fig. 3), which are deliberately not orthogonal (see ``layers.EuclideanRBF``);
initialisation is Keras's Glorot uniform, not the paper's uniform(+-2.4 / fan-in).
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_cnns import registry
from keras_cnns.errors import UserError
from keras_cnns.options import check_activation, check_rate

FAMILY = "lenet"
PAPER = "LeCun et al. 1998, Sec. II-B, Fig. 2, Table I"

# LeCun et al. 1998, Table I, as printed: rows are S2 feature maps, columns are C3 feature
# maps, an X marks a connection. A column's X sits under the last digit of its number.
TABLE_I = """
     0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
  0  X           X  X  X        X  X  X  X     X  X
  1  X  X           X  X  X        X  X  X  X     X
  2  X  X  X           X  X  X        X     X  X  X
  3     X  X  X        X  X  X  X        X     X  X
  4        X  X  X        X  X  X  X     X  X     X
  5           X  X  X        X  X  X  X     X  X  X
"""


def connection_table(text: str = TABLE_I) -> list[list[bool]]:
    """Parse a printed connection table (header row of column numbers, then rows of X's).

    Args:
        text: the table; a cell is connected when the character under the last digit of its
            column number is ``X``.

    Returns:
        ``rows x columns`` booleans: ``table[i][j]`` is true when input map ``i`` feeds
        output map ``j``.
    """
    import re

    header, *rows = [line for line in text.splitlines() if line.strip()]
    positions = [m.end() - 1 for m in re.finditer(r"\d+", header)]
    return [[p < len(row) and row[p] == "X" for p in positions] for row in rows]


@dataclass(frozen=True)
class LeNetSpec:
    """One LeNet-5 variant (Fig. 2's layer sizes and the three choices that make it faithful).

    Attributes:
        c1_filters: C1 feature maps.
        c3_filters: C3 feature maps (16, the columns of Table I when ``partial_c3``).
        c5_filters: C5 feature maps.
        f6_units: F6 units (84: one per pixel of the paper's 7x12 prototype bitmaps; here
            the length of the random prototype codes).
        kernel_size: side of every convolution kernel.
        pool_size: side and stride of S2 and S4.
        partial_c3: C3 connected per Table I (else every S2 map feeds every C3 map).
        trainable_subsampling: S2/S4 are sum * coefficient + bias, then squashing (else plain
            average pooling).
        rbf_output: fixed Euclidean RBF output (else a Dense layer).
        description: one line for ``keras-cnns models``.
    """

    c1_filters: int
    c3_filters: int
    c5_filters: int
    f6_units: int
    kernel_size: int
    pool_size: int
    partial_c3: bool
    trainable_subsampling: bool
    rbf_output: bool
    description: str


# LeCun et al. 1998, Fig. 2 (layer sizes) and Sec. II-B (connections, subsampling, output).
SPECS: dict[str, LeNetSpec] = {
    "lenet5": LeNetSpec(
        6, 16, 120, 84, 5, 2, partial_c3=True, trainable_subsampling=True, rbf_output=True,
        description="LeNet-5 as published: Table I C3, trainable subsampling, RBF output",
    ),
    "lenet5_modern": LeNetSpec(
        6, 16, 120, 84, 5, 2, partial_c3=False, trainable_subsampling=False, rbf_output=False,
        description="LeNet-5, textbook variant: full C3, average pooling, dense output",
    ),
}  # fmt: skip


def smallest_input_size(spec: LeNetSpec) -> int:
    """The smallest square input C5 fits on: 32 for LeNet-5 (the paper's input size)."""
    size = spec.kernel_size  # C5 needs one full kernel
    size = size * spec.pool_size + spec.kernel_size - 1  # S4, then C3
    return size * spec.pool_size + spec.kernel_size - 1  # S2, then C1


def _squash(x, activation, *, name: str):
    """The activation layer: ``"scaled_tanh"`` is the paper's 1.7159 tanh(2a/3)."""
    from keras import layers

    from keras_cnns.blocks import activation_name
    from keras_cnns.layers import ScaledTanh

    if activation == "scaled_tanh":
        return ScaledTanh(name=f"{name}_scaled_tanh")(x)
    return layers.Activation(activation, name=f"{name}_{activation_name(activation)}")(x)


def _check_options(spec: LeNetSpec, input_shape, activation, dropout: float, name: str) -> None:
    check_activation(activation, extra=("scaled_tanh",))  # the paper's squashing function
    check_rate("dropout", dropout)
    minimum = smallest_input_size(spec)
    if len(input_shape) != 3 or min(input_shape[:2]) < minimum:
        raise UserError(
            f"{name} needs a (height, width, channels) input of at least {minimum}x{minimum}, "
            f"got {'x'.join(map(str, input_shape))}; pad 28x28 MNIST digits by 2 pixels "
            "as the paper does"
        )


def build_lenet(
    spec: LeNetSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    activation="scaled_tanh",
    dropout: float = 0.0,
    rbf_seed: int = 1998,
):
    """Build LeNet-5 (either variant) returning float32 logits.

    Args:
        spec: a ``SPECS`` entry.
        input_shape: channels-last input, at least 32x32 (larger inputs give C5 a spatial
            map, which is flattened into F6).
        num_classes: number of logits (RBF units or Dense units).
        name: model name (the registry name).
        activation: ``"scaled_tanh"`` (the paper's 1.7159 tanh(2a/3)) or a Keras activation.
        dropout: dropout rate after F6 (not in the paper; 0 adds no layer).
        rbf_seed: seed of the random, fixed RBF prototype codes (``rbf_output`` variants only).

    Returns:
        A ``keras.Model``; for ``rbf_output`` the logits are minus the squared Euclidean
        distances from F6's output to each class prototype.
    """
    import keras
    from keras import layers

    from keras_cnns.blocks import classifier_head, model_input
    from keras_cnns.layers import EuclideanRBF, PartialConv2D, TrainableSubsampling

    _check_options(spec, input_shape, activation, dropout, name)
    k, p = spec.kernel_size, spec.pool_size

    def subsample(x, *, name: str):
        if spec.trainable_subsampling:  # S2/S4: sum * coefficient + bias, then squashing
            x = TrainableSubsampling(p, name=f"{name}_subsample")(x)
            return _squash(x, activation, name=name)
        return layers.AveragePooling2D(p, name=f"{name}_pool")(x)

    inputs = model_input(input_shape)
    x = layers.Conv2D(spec.c1_filters, k, name="c1_conv")(inputs)
    x = _squash(x, activation, name="c1")
    x = subsample(x, name="s2")
    if spec.partial_c3:
        table = connection_table()
        if len(table) != spec.c1_filters or len(table[0]) != spec.c3_filters:
            raise ValueError("Table I is 6x16: it needs c1_filters=6 and c3_filters=16")
        x = PartialConv2D(table, k, name="c3_conv")(x)
    else:
        x = layers.Conv2D(spec.c3_filters, k, name="c3_conv")(x)
    x = _squash(x, activation, name="c3")
    x = subsample(x, name="s4")
    x = layers.Conv2D(spec.c5_filters, k, name="c5_conv")(x)  # 1x1 maps on a 32x32 input
    x = _squash(x, activation, name="c5")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(spec.f6_units, name="f6_dense")(x)
    x = _squash(x, activation, name="f6")
    if dropout:
        x = layers.Dropout(dropout, name="f6_dropout")(x)
    if spec.rbf_output:
        # float32 like classifier_head, so the logits stay full precision under mixed precision.
        outputs = EuclideanRBF(num_classes, seed=rbf_seed, dtype="float32", name="logits")(x)
    else:
        outputs = classifier_head(x, num_classes, name="logits")
    return keras.Model(inputs, outputs, name=name)


for _name, _spec in SPECS.items():
    _size = smallest_input_size(_spec)
    registry.register(
        _name,
        family=FAMILY,
        builder=build_lenet,
        spec=_spec,
        paper=PAPER,
        input_shape=(_size, _size, 1),
        num_classes=10,
        description=_spec.description,
        small_input_shape=(_size, _size, 1),
    )
