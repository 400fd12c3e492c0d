"""Plain vs residual nets on CIFAR-10 (He, Zhang, Ren, Sun, CVPR 2016, Sec. 4.2, Table 6, Fig. 6).

Paper: "Deep Residual Learning for Image Recognition", Sec. 4.2: plain nets get worse with
depth (plain-56 has higher training and test error than plain-20: the degradation problem),
while residual nets with the same layers and parameters get better (ResNet-56 below
ResNet-20).

Claim: plain-56 > plain-20 in (training) error, while ResNet-56 < ResNet-20; at each depth the
residual net trains to a lower error than its plain twin.

Paper's numbers (Table 6, CIFAR-10 test error %): ResNet-20 8.75, ResNet-56 6.97, ResNet-110
6.43 (best of 5; 6.61 ± 0.16 mean). Plain nets: curves only (Fig. 6), no numbers.

Measured: test error % of the final epoch's weights (no test-set selection), mean ± std over
seeds; final training error (Keras' running accuracy over the last epoch, augmentation on);
training and validation error per epoch, plotted like Fig. 6 (the validation split stands in
for the paper's test curve, so the test set is never looked at during training).

Runtimes: each preset's ``runtime``, measured on named hardware, shown in the report.

Command::

    keras-cnns reproduce plain-vs-residual --preset smoke
    keras-cnns reproduce plain-vs-residual --preset cpu
    keras-cnns reproduce plain-vs-residual --preset quick --seeds 2
"""

from __future__ import annotations

from dataclasses import replace

from keras_cnns.lab.experiments import (
    Deviation,
    Experiment,
    HyperParam,
    Ordering,
    Preset,
    Reference,
    learning_rate_range,
)
from keras_cnns.training.config import TrainConfig

_RECIPE = TrainConfig(
    model="plain20_cifar",
    dataset="cifar10",
    optimizer="sgd",
    momentum=0.9,
    learning_rate=0.1,
    weight_decay=5e-5,  # the paper's weight decay 1e-4 (gradient) is Keras L2 5e-5
    weight_decay_mode="l2",
    # Every parameter is decayed, batch norm's gamma and beta included, as Torch's and PyTorch's
    # SGD decays every parameter it is given (fb.resnet.torch; the paper does not say).
    weight_decay_scope="all",
    batch_size=128,
    # lr / 10 at 32k and 48k iterations, stop at 64k: at 352 steps an epoch (45,000 images) the
    # drops come after epochs 91 and 136 (32,032 and 47,872 iterations) and training stops after
    # epoch 182 (64,064 iterations).
    epochs=182,
    schedule="step",
    lr_boundaries=(91, 136),
    lr_factor=0.1,
    preprocess="pixel_mean",  # "the per-pixel mean subtracted"
    augment=("pad_crop", "flip"),  # pad 4, random 32x32 crop, horizontal flip
    # Deviation from paper: 5,000 training images are held out for the validation curve (the
    # paper used the 45k/5k split to set its schedule, then trained on all 50k); the iterations
    # are the paper's, so each image is seen 182 times instead of 164.
    val_size=5000,
    select="final",
)

# ResNet-110 (and its plain twin): lr 0.01 until training error is below 80% (about 400
# iterations, about one epoch), then 0.1.
_WARMUP = {"warmup_epochs": 1.0, "warmup_lr": 0.01}

VARIANTS = {
    "plain20": replace(_RECIPE, model="plain20_cifar"),
    "plain56": replace(_RECIPE, model="plain56_cifar"),
    "resnet20": replace(_RECIPE, model="resnet20_cifar"),
    "resnet56": replace(_RECIPE, model="resnet56_cifar"),
    "plain110": replace(_RECIPE, model="plain110_cifar", **_WARMUP),
    "resnet110": replace(_RECIPE, model="resnet110_cifar", **_WARMUP),
}
_FOUR = ("plain20", "plain56", "resnet20", "resnet56")

PAPER = Preset(
    configs=VARIANTS,
    datasets=("cifar10",),
    purpose=(
        "The paper's recipe: 64k iterations (182 epochs of 352 steps on 45,000 images), lr 0.1 "
        "divided by 10 after epochs 91 and 136 (32.0k and 47.9k iterations), depths 20, 56 and 110."
    ),
    runtime=(
        "ResNet-20: 5.6 hours of training (182 epochs at a median 95 s, the fastest 80 s, "
        "validation included, beside other jobs) on 2 AMD EPYC cores with AVX-512, TensorFlow "
        "2.21 CPU, Keras 3.15.1, float32 (measured 2026-12-07); ResNet-56 about three times as "
        "long (the cpu preset's fastest epochs: 225 s against 75 s); not yet measured on a GPU."
    ),
    deviations=(
        Deviation(
            "Warm-up for the 110-layer nets: a fixed epoch at lr 0.01, not 'until training error is below 80%'.",
            variants=("plain110", "resnet110"),
        ),
    ),
)

QUICK = Preset(
    configs={k: replace(VARIANTS[k], epochs=20, lr_boundaries=(10, 15)) for k in _FOUR},
    datasets=("cifar10",),
    purpose="One GPU, about ten minutes: depths 20 and 56 only, 20 epochs (lr / 10 at 10 and 15).",
    runtime="not yet measured on a GPU.",
    deviations=("Quick: 20 epochs, boundaries at 10 and 15; no 110-layer nets.",),
)

CPU = Preset(
    # No warm-up, as the paper trains depths 20 and 56 (its 0.01 start is for the 110-layer nets
    # only): a warm-up for all four would change the first epochs' curves this preset exists to
    # show, and how a deeper net's slower start plays out over the whole schedule is what the
    # paper preset's full-length runs settle.
    configs={k: replace(VARIANTS[k], epochs=10, lr_boundaries=(5, 8)) for k in _FOUR},
    datasets=("cifar10",),
    purpose=(
        "Two CPU cores, about 2.5 hours per seed: depths 20 and 56, plain and residual, 10 epochs on "
        "45,000 images (lr / 10 at epochs 5 and 8): long enough to see the degradation problem "
        "in the training curves (Fig. 1 and 6 show it from the first thousand iterations). No "
        "warm-up: the paper starts at lr 0.01 only for its 110-layer nets, and one here would "
        "change the first epochs' curves that this preset compares."
    ),
    runtime=(
        "137 minutes of training a seed at the median epoch's pace (the fastest epoch, validation "
        "included: plain-20 70 s, plain-56 313 s (never run alone), ResNet-20 75 s, ResNet-56 "
        "225 s) on 2 AMD EPYC cores with AVX-512, TensorFlow 2.21 CPU, Keras 3.15.1 (measured "
        "2026-12-06; 2.8 hours of wall time beside other jobs, pauses included)."
    ),
    deviations=(
        "CPU: 10 epochs, lr / 10 at epochs 5 and 8; no 110-layer nets.",
    ),
    cannot_show=(
        "the paper's final errors (Table 6) or whether ResNet-56 ends below ResNet-20 after "
        "64k iterations; in 3,520 iterations a deeper net's slower start can outweigh what depth "
        "gives, so plain-56 against plain-20 alone does not separate the degradation problem from "
        "a slower start: the same-depth comparisons (each residual net against its plain twin) "
        "are what tell them apart at this scale"
    ),
)

SMOKE = Preset(
    configs={
        k: replace(VARIANTS[k], epochs=1, lr_boundaries=(), schedule="constant", train_subset=128, test_subset=256, val_size=128)
        for k in _FOUR
    },
    datasets=("cifar10",),
    purpose="CPU smoke test: depths 20 and 56, 1 epoch on 128 training images.",
    runtime="1.7 min wall (99 s CPU time) on 2 shared x86_64 CPU cores, TensorFlow 2.21 CPU, Keras 3.15.1, other jobs running (measured 2026-11-23).",
    deviations=("Smoke: 128 training images, 1 epoch at a constant lr 0.1; no 110-layer nets.",),
)

# What keras-cnns tune may search around the recipe: He et al. 2016's lr 0.1 and weight decay
# 1e-4 (l2 5e-5 in TrainConfig's convention), each bracketed by about an order of magnitude.
SEARCH_SPACE = (
    learning_rate_range(0.01, 0.5),
    HyperParam("weight_decay", "float", 1e-5, 1e-3, log=True),
)

EXPERIMENT = Experiment(
    name="plain-vs-residual",
    title="Plain vs residual depth on CIFAR-10 (He et al. 2016, Table 6, Fig. 6)",
    paper="He, Zhang, Ren, Sun, CVPR 2016, Sec. 4.2, Table 6, Fig. 6",
    claim=(
        "Plain-56 has higher error than plain-20, while ResNet-56 has lower error than ResNet-20; "
        "at each depth the residual net trains to a lower error than its plain twin."
    ),
    metric="test_error",
    paper_numbers={"resnet20": {"cifar10": 8.75}, "resnet56": {"cifar10": 6.97}, "resnet110": {"cifar10": 6.43}},
    references=(
        Reference(
            "akamaster (PyTorch)",
            "akamaster/pytorch_resnet_cifar10, the best-known PyTorch reproduction: all 50,000 "
            "training images, 200 epochs, lr / 10 after epochs 100 and 150, the best test epoch "
            "reported (selected on the test set).",
            {"resnet20": {"cifar10": 8.27}, "resnet56": {"cifar10": 6.61}, "resnet110": {"cifar10": 6.32}},
        ),
    ),
    presets={"paper": PAPER, "quick": QUICK, "cpu": CPU, "smoke": SMOKE},
    deviations=(
        Deviation(
            "Trained on 45,000 images (5,000 held out for validation), not 50,000.",
            when={"val_size": 5000, "train_subset": None},
        ),
        "Test error of the final epoch, one run per seed (the paper's 6.43 for ResNet-110 is its best of 5 runs).",
        "Fig. 6's test curves: the validation split's error per epoch stands in for them.",
    ),
    orderings=(
        # Fig. 1 and 6: plain-56's training error above plain-20's from the first thousand
        # iterations on; ResNet-56's below ResNet-20's.
        Ordering("plain20", "plain56", "train_curve"),
        Ordering("resnet56", "resnet20", "train_curve"),
        # Each residual net below its plain twin (Fig. 6; Sec. 4.1: the residual net converges
        # faster at the early stage even where depth does not degrade the plain one).
        Ordering("resnet20", "plain20", "train_curve"),
        Ordering("resnet56", "plain56", "train_curve"),
        Ordering("plain20", "plain56", "final_train_error"),
        Ordering("resnet56", "resnet20", "final_train_error"),
        Ordering("plain20", "plain56"),
        Ordering("resnet56", "resnet20"),
    ),
    panels={"plain": ("plain20", "plain56", "plain110"), "ResNet": ("resnet20", "resnet56", "resnet110")},
    search_space=SEARCH_SPACE,
    notes=(
        "Plots: training error dashed, validation error solid (Fig. 6 draws test error bold).",
        "What the paper leaves to its framework follows Torch and PyTorch (fb.resnet.torch, "
        "akamaster/pytorch_resnet_cifar10): weight decay on every parameter, batch norm's gamma "
        "and beta included; batch-norm momentum 0.1 in Torch's convention (Keras 0.9) and epsilon "
        "1e-5; convolutions initialised by He et al. 2015's rule (variance 2 / fan_in), the "
        "classifier as Torch's linear layer (uniform in ±1/sqrt(fan_in), bias 0); the stride-2 "
        "3x3 convolutions padded symmetrically, so their output pixel i is centred on the input "
        "pixel 2i that the option-A shortcut takes.",
    ),
)
