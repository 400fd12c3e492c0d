"""LeNet-5 on MNIST: 0.95% test error (LeCun, Bottou, Bengio, Haffner, Proc. IEEE 1998).

Paper: "Gradient-Based Learning Applied to Document Recognition", Sec. III-C and Fig. 2
(the net), Sec. III-C.1 (results): LeNet-5 reaches 0.95% test error on MNIST after about 10
of its 20 passes; trained with distorted copies of the training images (translation,
scaling, squeezing, shearing: 540,000 extra images) it reaches 0.8%.

Claim: a small convolutional net, trained end to end, classifies handwritten digits with
about 1% error.

Paper's numbers (test error %): LeNet-5 0.95; LeNet-5 with distortions 0.8. The textbook
variant ``lenet5_modern`` (full C3, average pooling, dense softmax output) is not in the
paper; it is run for comparison and has no paper number.

Measured: test error % of the final epoch's weights, mean ± std over seeds.

Runtimes: each preset's ``runtime``, measured on named hardware, shown in the report.

Command::

    keras-cnns reproduce lenet5-mnist --preset smoke       # offline: falls back to the sample
    keras-cnns reproduce lenet5-mnist --preset paper --seeds 3
"""

from __future__ import annotations

from dataclasses import replace

from keras_cnns.lab.experiments import (
    Deviation,
    Experiment,
    HyperParam,
    Ordering,
    Preset,
    learning_rate_range,
)
from keras_cnns.training.config import TrainConfig

_LENET5 = TrainConfig(
    model="lenet5",  # Table I C3, trainable subsampling, RBF output, 1.7159 tanh(2a/3)
    # Deviation from paper: the RBF prototypes are random +-1 codes, not Fig. 3's bitmaps.
    dataset="mnist",
    preprocess="lenet",  # 28x28 padded to 32x32, background -0.1, ink 1.175 (Sec. II-A)
    epochs=20,  # "20 iterations through the entire training data" (Sec. III-C)
    # Deviation from paper: Adam stands in for stochastic diagonal Levenberg-Marquardt.
    optimizer="adam",
    learning_rate=1e-3,
    # Deviation from paper: the paper updates after every image; we use batches of 32.
    batch_size=32,
    # Deviation from paper: the paper's global rate steps down after passes 2, 5, 8 and 12
    # (0.0005, 0.0002, 0.0001, 0.00005, 0.00001); we keep its boundaries and halve each time.
    schedule="step",
    lr_boundaries=(2, 5, 8, 12),
    lr_factor=0.5,
    val_size=0,  # the paper trains on all 60,000 images
    # The paper's MAP criterion on the RBF penalties (Sec. II-C, Eq. 9). Softmax cross-entropy
    # on them underfits (keras_cnns.losses says why and what we measured).
    # Deviation from paper: the paper leaves its constant j open; we use j = 5.
    loss="rbf_map",
)

VARIANTS = {
    "lenet5": _LENET5,
    # A dense softmax output: cross-entropy, the textbook loss.
    "lenet5_modern": replace(_LENET5, model="lenet5_modern", loss="cross_entropy"),
    # Deviation from paper: distortions drawn on the fly each batch, not 540,000 stored images.
    "lenet5_distort": replace(_LENET5, augment=("lenet_distort",)),
}

PAPER = Preset(
    configs=VARIANTS,
    datasets=("mnist",),
    purpose="The paper's recipe (20 passes over all 60,000 training images), with the stated substitutions.",
    runtime=(
        "7 to 14 minutes a run (wall; 100 minutes for 3 seeds x 3 variants) on 2 shared x86_64 "
        "CPU cores, TensorFlow 2.21 CPU, Keras 3.15.1, other jobs running (measured 2026-12-03); "
        "not yet measured on a GPU."
    ),
)

QUICK = Preset(
    configs={k: replace(c) for k, c in VARIANTS.items()},
    datasets=("mnist",),
    purpose="Identical to the paper preset: LeNet-5's full recipe already fits in about ten GPU minutes.",
    runtime="not yet measured on a GPU.",
)

SMOKE = Preset(
    configs={
        k: replace(c, epochs=2, lr_boundaries=(), schedule="constant", train_subset=1024, test_subset=1000, allow_sample=True)
        for k, c in VARIANTS.items()
    },
    datasets=("mnist",),
    purpose=(
        "CPU smoke test: 1,024 training and 1,000 test images, 2 epochs; works offline from the "
        "packaged MNIST sample when no dataset is available."
    ),
    runtime="19 s wall (17 s CPU time) on 2 shared x86_64 CPU cores, TensorFlow 2.21 CPU, Keras 3.15.1 (measured 2026-11-23).",
    deviations=("Smoke: 2 epochs on a 1,024-image subset, constant learning rate.",),
)

EXPERIMENT = Experiment(
    name="lenet5-mnist",
    title="LeNet-5 on MNIST (LeCun et al. 1998)",
    paper="LeCun, Bottou, Bengio, Haffner, Proc. IEEE 1998, Sec. III-C",
    claim="LeNet-5 reaches 0.95% test error on MNIST, and 0.8% when trained with distorted images.",
    metric="test_error",
    paper_numbers={"lenet5": {"mnist": 0.95}, "lenet5_distort": {"mnist": 0.8}},
    presets={"paper": PAPER, "quick": QUICK, "smoke": SMOKE},
    deviations=(
        Deviation(
            "Adam (lr 1e-3, batches of 32) instead of per-image stochastic diagonal Levenberg-Marquardt.",
            when={"optimizer": "adam"},
        ),
        Deviation(
            "Plain SGD instead of per-image stochastic diagonal Levenberg-Marquardt.", when={"optimizer": "sgd"}
        ),
        "Learning rate halved after passes 2, 5, 8 and 12 (the paper's boundaries; its factors differ).",
        Deviation(
            "The paper's MAP criterion (Eq. 9) with j = 5 (the paper gives no value).",
            variants=("lenet5", "lenet5_distort"),
        ),
        Deviation(
            "lenet5_modern is a textbook variant, not in the paper (no paper number): a dense softmax "
            "output trained with cross-entropy.",
            variants=("lenet5_modern",),
        ),
        Deviation(
            "lenet5_distort: random distortions each batch instead of 540,000 stored distorted images.",
            variants=("lenet5_distort",),
        ),
        Deviation(
            "The RBF output's prototypes are random +-1 codes of 84 = 7x12 bits, fixed (not trained) "
            "and drawn from a fixed seed (any two of the ten differ in 34 to 52 bits), not the paper's "
            "stylised 7x12 bitmaps of the characters (Fig. 3), which are deliberately not orthogonal "
            "(confusable characters get similar codes) and which we do not have exactly.",
            variants=("lenet5", "lenet5_distort"),
        ),
    ),
    orderings=(Ordering("lenet5_distort", "lenet5"),),
    curves=("train",),
    notes=(
        "No validation split (the paper trains on all 60,000 images): the plots show training error.",
        "What was checked against the paper, after a first paper-preset run underfit (test error "
        "1.84%, training error stuck at 1.70% from pass 17 to 20): the RBF output layer (Eq. 7; "
        "its prototypes are random, fixed +-1 codes of 84 bits, see the deviations), the scaled tanh 1.7159 tanh(2a/3) (Appendix A), the trainable "
        "subsampling (one coefficient and bias per map, then the squashing function), C3's "
        "connection table (Table I), the learning-rate schedule (Sec. III-C) and the weight "
        "initialisation (Appendix C). The cause was the loss: softmax cross-entropy on minus the "
        "RBF penalties gives a correctly classified image no gradient (a hinge without a "
        "margin). With the paper's MAP criterion (Eq. 9, keras_cnns.losses) the training error "
        "after 2 passes fell from 8.3% to 1.5% (seed 0); the paper's initialisation with "
        "cross-entropy did not help (8.95% against 8.29%). That loss is the one change.",
    ),
    # LeCun et al. 1998 trained with SDLM; plain SGD or Adam stand in for it.
    search_space=(learning_rate_range(1e-4, 0.1), HyperParam("optimizer", "choice", choices=("sgd", "adam"))),
)
