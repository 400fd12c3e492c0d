"""CIFAR ResNets and plain nets (He et al. 2016, Sec. 4.2, Table 6, Fig. 6), with stochastic depth.

Paper: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
Sec. 4.2: a 3x3 conv with 16 filters, three stages of ``n`` basic blocks on 32/16/8 maps
with 16/32/64 filters (a stride-2 conv downsamples), global average pooling and a 10-way
dense layer; depth ``6n + 2``. Shortcuts are identities, with stride-2 subsampling and
zero-padded extra channels where the shape changes ("option A"), so plain and residual
nets have identical parameter counts (Table 6: 0.27M ... 19.4M).

Stochastic depth (Huang, Sun, Liu, Sedra, Weinberger, ECCV 2016, Sec. 3, Table 1) is the
builder argument ``drop_path``, and its transition shortcut (2x2 average pooling + zero
padding) is ``shortcut="A_avgpool"``.

Initialisation, layer by layer (the paper: "We initialize the weights as in [He et al. 2015]";
the classifier's is not given):

* convolutions: He et al. 2015's rule, variance ``2 / fan_in`` (Keras' ``he_normal``, a normal
  truncated at two standard deviations and rescaled to that variance). fb.resnet.torch draws
  with ``2 / fan_out``; the two differ only in the stem and the first convolution of the two
  downsampling stages, where the channels double.
* batch norm: gamma 1, beta 0; Torch's momentum 0.1 (Keras' 0.9) and epsilon 1e-5.
* the 10-way classifier: Torch's and PyTorch's default for a linear layer, uniform in
  ``±1 / sqrt(fan_in)`` (bias 0, as fb.resnet.torch sets it), the frameworks the paper's CIFAR
  numbers were reproduced in. Keras' default, Glorot uniform, draws 2.3 times wider for 64
  inputs and 10 outputs: the first steps' loss starts far above a uniform guess's, and at lr
  0.1 the convolutions' weights grow several times more in the first 50 steps, which batch
  norm turns into a smaller effective learning rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from keras_cnns import registry
from keras_cnns.blocks import CIFAR_STYLE
from keras_cnns.models.resnet import SHORTCUTS, Stage, residual_stages
from keras_cnns.options import check_activation, check_choice, check_drop_path

FAMILY = "resnet_cifar"
PAPER = "He et al. 2016, Deep Residual Learning, Sec. 4.2, Table 6"


@dataclass(frozen=True)
class CifarResNetSpec:
    """A CIFAR ResNet of depth ``6n + 2``: a 16-filter stem and three stages of ``n`` blocks."""

    depth: int
    stages: tuple[Stage, ...]

    @classmethod
    def of_depth(cls, depth: int) -> CifarResNetSpec:
        n, rest = divmod(depth - 2, 6)
        if rest or n < 1:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2, got {depth}")
        return cls(depth, (Stage(16, n, 1), Stage(32, n, 2), Stage(64, n, 2)))


# He et al. 2016, Table 6: n = 3, 5, 7, 9, 18, 200.
SPECS: dict[int, CifarResNetSpec] = {
    d: CifarResNetSpec.of_depth(d) for d in (20, 32, 44, 56, 110, 1202)
}

_DEEP_BLOCKS = 100

# Torch's (and PyTorch's) default linear layer, uniform in +-1/sqrt(fan_in): VarianceScaling's
# uniform limit is sqrt(3 * scale / fan_in).
TORCH_LINEAR_INIT = {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"}

# Revision 2 changed what the nets compute (names and parameter counts are unchanged), so runs
# of revision 1 are kept apart from them.
REVISION = 2
REVISION_NOTE = (
    "the stride-2 3x3 convolutions pad symmetrically (revision 1 padded bottom and right only, "
    "one pixel off the shortcut), and the classifier starts as Torch's linear layer (revision 1: "
    "Glorot uniform)"
)


def build_resnet_cifar(
    spec: CifarResNetSpec,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    name: str,
    shortcut: str = "A",
    activation="relu",
    drop_path: float = 0.0,
    drop_path_mode: str = "batch",
):
    """Build a CIFAR ResNet (or plain net) that returns logits.

    Args:
        spec: a ``SPECS`` entry.
        input_shape: channels-last input shape, normally ``(32, 32, 3)``.
        num_classes: number of logits.
        name: model name (the registry name).
        shortcut: ``"A"`` (identity, zero-padded subsampling on a shape change; the
            paper's), ``"A_avgpool"`` (2x2 average pooling instead of subsampling; Huang et
            al.), ``"B"`` (1x1 projection + BN on a shape change), ``"C"`` (projection
            everywhere) or ``"none"`` (the plain net).
        activation: activation after each inner BN and each addition.
        drop_path: stochastic depth, the LAST block's drop probability ``1 - p_L``
            (0 = off; Huang et al. use 0.5); block ``l`` of ``L`` survives with
            ``1 - (l / L) * drop_path``.
        drop_path_mode: ``"batch"`` (one Bernoulli draw per block per mini-batch, the
            paper) or ``"sample"`` (one per example, DropPath).

    Returns:
        A ``keras.Model`` mapping images to float32 logits.
    """
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_activation(activation)
    check_drop_path(drop_path, drop_path_mode, shortcut)
    import keras
    from keras import layers

    from keras_cnns.blocks import classifier_head, conv_bn_act, model_input
    from keras_cnns.layers import DeepFunctional, RecursionLimit

    # About 7 layers a block: past ~100 blocks (ResNet-1202 has 600) Keras' recursive graph
    # walk needs more than Python's default 1,000 frames, to build and again to reload.
    deep = sum(s.blocks for s in spec.stages) > _DEEP_BLOCKS
    model_class = DeepFunctional if deep else keras.Model
    with RecursionLimit():
        inputs = model_input(input_shape)
        x = conv_bn_act(inputs, 16, 3, name="stem", activation=activation, **asdict(CIFAR_STYLE))
        x = residual_stages(
            x,
            spec.stages,
            block="basic",
            shortcut=shortcut,
            style=CIFAR_STYLE,
            activation=activation,
            drop_path=drop_path,
            drop_path_mode=drop_path_mode,
        )
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        outputs = classifier_head(
            x, num_classes, name="logits", kernel_initializer=keras.initializers.VarianceScaling(**TORCH_LINEAR_INIT)
        )
        return model_class(inputs, outputs, name=name)


for _depth, _spec in SPECS.items():
    for _prefix, _shortcut in (("resnet", "A"), ("plain", "none")):
        registry.register(
            f"{_prefix}{_depth}_cifar",
            family=FAMILY,
            builder=build_resnet_cifar,
            spec=_spec,
            paper=PAPER,
            input_shape=(32, 32, 3),
            num_classes=10,
            description=(
                f"{'ResNet' if _prefix == 'resnet' else 'plain'}-{_depth} for CIFAR, "
                + ("option-A shortcuts" if _shortcut == "A" else "no shortcuts")
            ),
            # Two halvings take 4x4 down to 1x1; every layer still sees a real map.
            small_input_shape=(4, 4, 3),
            revision=REVISION,
            revision_note=REVISION_NOTE,
            shortcut=_shortcut,
        )
