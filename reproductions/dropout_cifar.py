"""Dropout on CIFAR-10 and CIFAR-100 (Srivastava et al., JMLR 2014, Table 4).

Paper: Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple Way to
Prevent Neural Networks from Overfitting", JMLR 15, 2014, Sec. 6.1.2, Table 4; the net in
Appendix B.2 (reused for CIFAR in B.3).

Claim: dropout lowers test error, and dropout in all layers (inputs and conv blocks too)
lowers it more than dropout in the fully connected layers alone.

Paper's numbers (test error %, CIFAR-10 / CIFAR-100): conv net + max pooling 15.60 / 43.48;
+ dropout in the fully connected layers 14.32 / 41.26; + dropout in all layers 12.61 / 37.20.

Measured: test error % of the final epoch's weights for ``dropout_cifar`` with dropout
``none``, ``fc`` and ``all`` (rates 0.1 on the input, 0.25, 0.25, 0.5 after the conv blocks,
0.5, 0.5 after the dense layers), max-norm 4, momentum 0.95, per-image mean subtraction then
ZCA whitening, no augmentation; mean ± std over seeds.

Runtimes:
    paper: not yet measured on a GPU.
    quick: not yet measured on a GPU (planned: about 10 minutes on one GPU).
    cpu: 35 minutes a variant (50 s an epoch of 10,000 images) on 2 AMD EPYC cores, TensorFlow
        2.21 CPU, Keras 3.15.1, measured 2026-12-06.
    smoke: 36 s wall (46 s CPU time) for the whole command on 2 shared x86_64 CPU cores,
        TensorFlow 2.21 CPU, Keras 3.15.1, other jobs running, measured 2026-11-23 (in the
        test suite: 50 s), before the smoke preset used ZCA (its thin-SVD fit adds about 3 s).

Command::

    keras-cnns reproduce dropout-cifar --preset smoke
    keras-cnns reproduce dropout-cifar --preset cpu
    keras-cnns reproduce dropout-cifar --preset quick --seeds 2
"""

from __future__ import annotations

from dataclasses import replace

from keras_cnns.experiment import TrainConfig
from keras_cnns.experiments import Deviation, Experiment, Ordering, Preset, Regime

_NONE = TrainConfig(
    model="dropout_cifar",
    dataset="cifar10",
    model_kwargs=(("dropout", "none"),),
    preprocess="gcn_zca",  # App. B.3: per-image mean subtraction, then ZCA whitening
    optimizer="sgd",
    momentum=0.95,  # App. B.2
    weight_decay=0.0,  # max-norm (c = 4, in the builder) instead of weight decay
    # Deviation from paper: batch size, learning rate, epochs and schedule are not given.
    batch_size=128,
    learning_rate=0.01,
    epochs=200,
    schedule="step",
    lr_boundaries=(120, 170),
    lr_factor=0.1,
    augment=(),  # no augmentation besides input dropout
    # Deviation from paper: 5,000 training images are held out for the validation curve.
    val_size=5000,
)

VARIANTS = {
    "none": _NONE,
    "fc": replace(_NONE, model_kwargs=(("dropout", "fc"),)),
    "all": replace(_NONE, model_kwargs=(("dropout", "all"),)),
}

PAPER = Preset(
    configs=VARIANTS,
    datasets=("cifar10", "cifar100"),
    purpose="The paper's net and preprocessing; its unstated training schedule chosen as below.",
    runtime="not yet measured on a GPU.",
)

QUICK = Preset(
    configs={k: replace(c, epochs=30, lr_boundaries=(20, 26)) for k, c in VARIANTS.items()},
    datasets=("cifar10", "cifar100"),
    purpose="One GPU, about ten minutes: 30 epochs per run, both datasets.",
    runtime="not yet measured on a GPU.",
    deviations=("Quick: 30 epochs, learning rate divided by 10 at epochs 20 and 26.",),
)

CPU = Preset(
    configs={
        k: replace(c, epochs=40, lr_boundaries=(30, 36), train_subset=10_000) for k, c in VARIANTS.items()
    },
    datasets=("cifar10",),
    purpose=(
        "Two CPU cores, under 2 hours per seed: CIFAR-10, a 10,000-image training subset for 40 "
        "epochs (lr / 10 at 30 and 36), a regime where the net without dropout overfits."
    ),
    runtime=(
        "35 minutes a variant on an otherwise idle machine (50 s an epoch; 2 hours for the three "
        "variants of one seed, one of them beside a test suite) on 2 AMD EPYC cores with "
        "AVX-512, TensorFlow 2.21 CPU, Keras 3.15.1 (measured 2026-12-06)."
    ),
    deviations=(
        "CPU: CIFAR-10 only, 10,000 of the 45,000 training images (ZCA fitted on them), 40 epochs, "
        "lr / 10 at epochs 30 and 36.",
    ),
    cannot_show=(
        "the paper's error rates (its nets trained on all 50,000 images for far longer) nor "
        "CIFAR-100; it shows whether dropout helps, and where, once the net without it overfits"
    ),
    regime=(Regime("none", 5.0, "the net without dropout overfits"),),
)

SMOKE = Preset(
    configs={
        # The paper's ZCA whitening is kept: fitted on 256 images, it is a thin SVD (seconds).
        k: replace(
            c, epochs=1, lr_boundaries=(), schedule="constant",
            train_subset=256, test_subset=256, val_size=256,
        )
        for k, c in VARIANTS.items()
    },  # fmt: skip
    # CIFAR-10 only: the smoke test checks the pipeline, and CIFAR-100 would double its time.
    datasets=("cifar10",),
    purpose="CPU smoke test: 1 epoch on 256 CIFAR-10 training images (CIFAR-100 left out for time).",
    runtime="36 s wall (46 s CPU time) on 2 shared x86_64 CPU cores, TensorFlow 2.21 CPU, Keras 3.15.1, other jobs running (measured 2026-11-23 with standardisation in place of ZCA; the thin-SVD ZCA fit on 256 images adds about 3 s).",
    deviations=(
        "Smoke: CIFAR-10 only, 256 training images (ZCA fitted on them), 1 epoch, constant learning rate.",
    ),
)

EXPERIMENT = Experiment(
    name="dropout-cifar",
    title="Dropout on CIFAR (Srivastava et al. 2014, Table 4)",
    paper="Srivastava et al., JMLR 2014, Table 4",
    claim="Dropout in the fully connected layers lowers CIFAR test error, and dropout in all layers lowers it further.",
    metric="test_error",
    paper_numbers={
        "none": {"cifar10": 15.60, "cifar100": 43.48},
        "fc": {"cifar10": 14.32, "cifar100": 41.26},
        "all": {"cifar10": 12.61, "cifar100": 37.20},
    },
    presets={"paper": PAPER, "quick": QUICK, "cpu": CPU, "smoke": SMOKE},
    deviations=(
        "Batch size (128), learning rate (0.01), epochs (200) and schedule (divide by 10 at 120 and 170) "
        "are not in the paper: our choice.",
        "One learning rate for all layers (the paper used smaller rates for the input layer).",
        "'same' padding and Glorot-uniform initialisation (not given in the paper).",
        Deviation("Trained on 45,000 images (5,000 held out for validation).", when={"val_size": 5000, "train_subset": None}),
    ),
    orderings=(Ordering("fc", "none"), Ordering("all", "fc")),
)
