"""Stochastic depth on ResNet-110 (Huang, Sun, Liu, Sedra, Weinberger, ECCV 2016, Table 1).

Paper: "Deep Networks with Stochastic Depth", Sec. 4, Table 1: ResNet-110 trained with
stochastic depth (each residual block skipped with a probability rising linearly to 0.5 at
the last block, one draw per block per mini-batch) has lower test error than the same net
with constant depth, and trains about 25% faster.

Claim: stochastic depth lowers ResNet-110's CIFAR test error (6.41 -> 5.25 on CIFAR-10+) and
cuts training time by about a quarter.

Paper's numbers (test error %, with augmentation): CIFAR-10+ 6.41 constant depth, 5.25
stochastic depth; CIFAR-100+ 27.76 (the text says 27.22) and 24.98.

Measured: test error % at the epoch of lowest validation error (``select="best_val"``, as
the paper reports it: the validation split is 5,000 training images), mean ± std over seeds;
seconds per epoch of both variants, their ratio beside the paper's ~0.75.

Runtimes: each preset's ``runtime``, measured on named hardware, shown in the report.

Command::

    keras-cnns reproduce stochastic-depth --preset smoke
    keras-cnns reproduce stochastic-depth --preset quick --seeds 2
    keras-cnns reproduce stochastic-depth --preset cpu
"""

from __future__ import annotations

from dataclasses import replace

from keras_cnns.lab.experiments import Deviation, Experiment, Ordering, Preset, Ratio, Regime
from keras_cnns.training.config import TrainConfig
from reproductions.plain_vs_residual import SEARCH_SPACE as RESNET_SEARCH_SPACE

_CONSTANT = TrainConfig(
    model="resnet110_cifar",
    dataset="cifar10",
    # Transition shortcuts: 2x2 average pooling plus zero channel padding, for both variants
    # ("the baseline uses the same settings").
    model_kwargs=(("drop_path", 0.0), ("drop_path_mode", "batch"), ("shortcut", "A_avgpool")),
    optimizer="sgd",
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-5,  # the paper's weight decay 1e-4 (gradient) is Keras L2 5e-5
    weight_decay_mode="l2",
    # The authors' Torch code runs optim.sgd on the flattened vector of all the net's
    # parameters: batch norm's gamma and beta and the biases are decayed with the kernels.
    weight_decay_scope="all",
    batch_size=128,
    learning_rate=0.1,
    epochs=500,
    schedule="step",
    lr_boundaries=(250, 375),
    lr_factor=0.1,
    preprocess="standardize",  # per-channel mean / std
    augment=("pad_crop", "flip"),
    val_size=5000,  # the 45k / 5k split
    select="best_val",  # test error at the epoch of lowest validation error
)

VARIANTS = {
    "constant_depth": _CONSTANT,
    # p_L = 0.5, linear decay over the 54 blocks; one Bernoulli draw per block per mini-batch.
    "stochastic_depth": replace(
        _CONSTANT, model_kwargs=(("drop_path", 0.5), ("drop_path_mode", "batch"), ("shortcut", "A_avgpool"))
    ),
}

PAPER = Preset(
    configs=VARIANTS,
    datasets=("cifar10", "cifar100"),
    purpose="The paper's recipe: 500 epochs, Nesterov SGD, lr 0.1 / 0.01 at 250 / 0.001 at 375, both datasets.",
    runtime="not yet measured on a GPU.",
)

QUICK = Preset(
    configs={k: replace(c, epochs=20, lr_boundaries=(10, 15)) for k, c in VARIANTS.items()},
    datasets=("cifar10",),
    purpose="One GPU, about ten minutes: CIFAR-10, 20 epochs (lr / 10 at 10 and 15).",
    runtime="not yet measured on a GPU.",
    deviations=("Quick: CIFAR-10 only, 20 epochs, boundaries at 10 and 15.",),
)

CPU = Preset(
    configs={
        # Deviation from paper (cpu): ResNet-56 on 5,000 images; ResNet-110 takes 13 minutes an
        # epoch of 45,000 images on two cores. Same builder, shortcuts and linear decay rule.
        # Fit first: ResNet-56 must fit its training images for a regulariser to matter. On
        # 10,000 images for 40 epochs (3,160 steps, lr / 10 at 20 and 30) it did not: 33%
        # training error at epoch 27 with augmentation, 29% at epoch 24 without. So: no
        # augmentation, 5,000 images seen 80 times (the same 3,200 steps), lr / 10 at 40, 60.
        k: replace(
            c, model="resnet56_cifar", epochs=80, lr_boundaries=(40, 60), train_subset=5_000,
            augment=(),
        )
        for k, c in VARIANTS.items()
    },
    datasets=("cifar10",),
    purpose=(
        "Two CPU cores, about 1.5 hours per seed: ResNet-56 with and without stochastic depth "
        "(p_L = 0.5), 80 epochs on a 5,000-image subset without augmentation, where the net "
        "without stochastic depth should fit its training images, so regularisation matters."
    ),
    runtime=(
        "About 1.4 hours a seed alone (the fastest epoch, validation included: constant depth "
        "34 s, stochastic depth 28 s) on 2 AMD EPYC cores with AVX-512, TensorFlow 2.21 CPU, "
        "Keras 3.15.1 (measured 2026-12-06; 2.5 hours of wall time beside other jobs)."
    ),
    deviations=(
        "CPU: ResNet-56 instead of ResNet-110, 5,000 of the 45,000 training images, 80 epochs, "
        "lr / 10 at epochs 40 and 60; CIFAR-10 only.",
        "CPU: no augmentation, the paper's other CIFAR-10 setting (13.63 -> 11.66 test error "
        "without augmentation, 6.41 -> 5.25 with). Two first runs on 10,000 images for 40 "
        "epochs (not recorded) left constant depth far from fitting them, a regime where no "
        "regulariser can help: 33% training error at epoch 27 with augmentation, 29% at epoch "
        "24 without.",
        "CPU: an epoch's seconds include its validation pass (5,000 images, forward only, every "
        "block running as at inference), the same for both nets, so the ratio of epochs is "
        "nearer 1 than that of the training steps alone (measured taking turns in "
        "results/benchmarks/stochastic_depth.md).",
    ),
    cannot_show=(
        "the paper's ResNet-110 errors after 500 epochs on all images with augmentation, nor "
        "CIFAR-100; it shows the direction of the effect on a smaller net and set, and the "
        "time per epoch"
    ),
    # Regularisation can only matter where the net without it fits its training images.
    regime=(Regime("constant_depth", 5.0, "constant depth fits its 5,000 training images"),),
)

SMOKE = Preset(
    configs={
        # Deviation from paper (smoke only): ResNet-20, not ResNet-110: one epoch of
        # ResNet-110 does not fit the CPU budget. Same builder, shortcuts and drop rule.
        k: replace(
            c, model="resnet20_cifar", epochs=2, lr_boundaries=(), schedule="constant",
            train_subset=128, test_subset=256, val_size=128,
        )
        for k, c in VARIANTS.items()
    },  # fmt: skip
    datasets=("cifar10",),
    purpose="CPU smoke test: ResNet-20 with and without stochastic depth, 2 epochs on 128 images.",
    runtime="54 s wall (41 s CPU time) on 2 shared x86_64 CPU cores, TensorFlow 2.21 CPU, Keras 3.15.1, other jobs running (measured 2026-11-23).",
    deviations=(
        "Smoke: ResNet-20 instead of ResNet-110 (CPU budget), 128 training images, 2 epochs, constant lr.",
    ),
)

EXPERIMENT = Experiment(
    name="stochastic-depth",
    title="Stochastic depth on ResNet-110 (Huang et al. 2016, Table 1)",
    paper="Huang, Sun, Liu, Sedra, Weinberger, ECCV 2016, Table 1",
    claim="Stochastic depth (p_L = 0.5) lowers ResNet-110's test error on CIFAR-10+ and CIFAR-100+ and trains ~25% faster.",
    metric="test_error",
    paper_numbers={
        "constant_depth": {"cifar10": 6.41, "cifar100": 27.76},
        "stochastic_depth": {"cifar10": 5.25, "cifar100": 24.98},
    },
    presets={"paper": PAPER, "quick": QUICK, "cpu": CPU, "smoke": SMOKE},
    deviations=(
        "CIFAR-100 constant depth: Table 1 says 27.76, the text 27.22; the table's value is shown.",
        Deviation(
            "Weight decay on the convolution and dense kernels only; the authors' Torch code "
            "decays every parameter, batch norm's gamma and beta included.",
            when={"weight_decay_scope": "kernels"},
        ),
        "Training time is compared per epoch (the fastest epoch, the first left out), on our hardware.",
        "Training error is Keras's running accuracy over each epoch's batches, so stochastic "
        "depth's is that of the net with its blocks dropped as it trains (test and validation "
        "errors use every block, scaled by its survival probability).",
    ),
    orderings=(Ordering("stochastic_depth", "constant_depth"),),
    ratios=(
        Ratio(
            "stochastic_depth", "constant_depth", "epoch_time", "Seconds per epoch, stochastic / constant depth",
            paper=0.75, benchmark="benchmarks/stochastic_depth.md",
        ),
    ),
    # Huang et al. 2016 train with the ResNet baseline's recipe: the same search space.
    search_space=RESNET_SEARCH_SPACE,
    notes=(
        "What the paper leaves to its framework follows the authors' Torch code "
        "(yueatsprograms/Stochastic_Depth): weight decay on every parameter, batch norm's gamma "
        "and beta included (in runs whose deviations do not say otherwise); Nesterov momentum "
        "without dampening; batch norm with Torch's momentum and epsilon and the classifier "
        "initialised as Torch's linear layer, as in the ResNets of plain-vs-residual (the same "
        "builder).",
    ),
)
