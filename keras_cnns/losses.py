"""The training losses a run can ask for (``TrainConfig.loss``), and ``make_loss`` to build one.

* ``cross_entropy``: softmax cross-entropy on the logits (every model's default).
* ``rbf_map``: LeNet-5's discriminative criterion on its Euclidean RBF penalties (LeCun et al.
  1998, Sec. II-C, Eq. 9), for the models whose logits are minus those penalties
  (``layers.EuclideanRBF``).

Why LeNet-5 needs its own criterion: its RBF penalties are squared distances over 84 units of
about +-1.7, so two classes' logits differ by hundreds. Softmax cross-entropy on them is a hinge
with no margin: an image whose closest prototype is the right one contributes no gradient at all,
however close to the decision boundary it lies. Measured on MNIST (TensorFlow, Adam 1e-3, batch
32, seed 0): after 2 passes the faithful LeNet-5 has 8.3% training error with cross-entropy and
1.5% with Eq. 9 (j = 5); the paper's plain penalty (Eq. 8) gives 1.7%.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_cnns.layers import PACKAGE
from keras_cnns.training.config import LOSSES

__all__ = ["LOSSES", "RBFMAPLoss", "make_loss"]

# LeCun et al. 1998, Eq. 9's "positive constant j". Deviation from paper: the paper gives no
# value. A class whose penalty is well above j gets (almost) no push from the competitive term;
# a wrong class's penalty is about 170 for a net that fits (84 units, +-1 codes that differ in
# about half their places), so any j of a few units keeps the competition to nearby classes.
# 0 and 5 trained alike over 2 passes (1.7% vs 1.5% training error).
RBF_MAP_J = 5.0


@keras.saving.register_keras_serializable(package=PACKAGE)
class RBFMAPLoss(keras.losses.Loss):
    """LeNet-5's MAP criterion (LeCun et al. 1998, Eq. 9) on logits ``-y_i`` (RBF penalties).

    Per image, ``y_D + log(exp(-j) + sum_i exp(-y_i))``: the correct class's penalty ``y_D``
    pulled down (Eq. 8, the maximum-likelihood criterion) and, through the log-sum, the
    penalties of the other classes pushed up, as if a "rubbish" class with penalty ``j``
    competed with them. As ``j`` grows it becomes softmax cross-entropy on ``-y``.

    Args:
        j: the constant ``j`` (> 0).
        **kwargs: base ``Loss`` arguments (``name``, ``reduction``).
    """

    def __init__(self, j: float = RBF_MAP_J, name: str = "rbf_map", **kwargs):
        super().__init__(name=name, **kwargs)
        self.j = float(j)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        correct_penalty = -ops.take_along_axis(logits, ops.expand_dims(labels, -1), axis=-1)[:, 0]
        rubbish = ops.full((ops.shape(logits)[0], 1), -self.j, dtype=logits.dtype)
        return correct_penalty + ops.logsumexp(ops.concatenate([logits, rubbish], axis=-1), axis=-1)

    def get_config(self):
        return {**super().get_config(), "j": self.j}


def make_loss(name: str = "cross_entropy", *, label_smoothing: float = 0.0) -> keras.losses.Loss:
    """The loss ``name`` (one of ``LOSSES``) on integer labels and logits.

    Args:
        name: ``"cross_entropy"`` or ``"rbf_map"``.
        label_smoothing: cross-entropy only (then the labels are one-hot).
    """
    if name == "rbf_map":
        return RBFMAPLoss()
    if label_smoothing:
        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
