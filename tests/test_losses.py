"""LeNet-5's MAP criterion (LeCun et al. 1998, Eq. 9) against numbers computed by hand."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_cnns.errors import UserError
from keras_cnns.losses import RBFMAPLoss, make_loss
from keras_cnns.training.config import TrainConfig

pytestmark = pytest.mark.smoke


def test_rbf_map_matches_eq9_by_hand():
    # Penalties y = (1, 3) and (4, 0.5); labels 0 and 1; j = 5.
    logits = np.array([[-1.0, -3.0], [-4.0, -0.5]], dtype="float32")
    labels = np.array([0, 1])
    first = 1.0 + math.log(math.exp(-5) + math.exp(-1) + math.exp(-3))
    second = 0.5 + math.log(math.exp(-5) + math.exp(-4) + math.exp(-0.5))
    loss = float(RBFMAPLoss(j=5.0)(labels, logits))
    assert loss == pytest.approx((first + second) / 2, rel=1e-6)


def test_rbf_map_tends_to_cross_entropy_as_j_grows():
    logits = np.array([[-1.0, -3.0, -2.0]], dtype="float32")
    labels = np.array([2])
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits))
    assert float(RBFMAPLoss(j=60.0)(labels, logits)) == pytest.approx(ce, rel=1e-6)
    # A small j adds a competitor: the loss is strictly larger than cross-entropy.
    assert float(RBFMAPLoss(j=0.0)(labels, logits)) > ce + 0.1


def test_rbf_map_pulls_a_correct_image_towards_its_prototype():
    """Cross-entropy gives a correctly classified image (penalty gap of hundreds) no gradient;
    Eq. 9 still pulls its penalty down: the reason LeNet-5 trains with it."""
    logits = np.array([[-3.0, -200.0]], dtype="float32")
    labels = np.array([0])
    grads = {}
    for name, loss in (("ce", make_loss("cross_entropy")), ("map", make_loss("rbf_map"))):
        grads[name] = _grad(loss, labels, logits)
    assert abs(grads["ce"][0, 0]) < 1e-6
    assert grads["map"][0, 0] < -0.1  # d loss / d logit_0 < 0: the penalty y_0 goes down


def _grad(loss, labels, logits: np.ndarray) -> np.ndarray:
    """d loss / d logits, with the backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(labels, x)
        return tape.gradient(value, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: loss(labels, v))(logits))
    import torch

    x = torch.tensor(logits, requires_grad=True)
    loss(labels, x).backward()
    return x.grad.numpy()


def test_rbf_map_serializes():
    loss = RBFMAPLoss(j=2.5)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, RBFMAPLoss) and again.j == 2.5


def test_config_checks_the_loss():
    assert TrainConfig(model="lenet5", loss="rbf_map").loss == "rbf_map"
    with pytest.raises(UserError, match="loss"):
        TrainConfig(model="lenet5", loss="hinge")
    with pytest.raises(UserError, match="label_smoothing applies to loss=cross_entropy only"):
        TrainConfig(model="lenet5", loss="rbf_map", label_smoothing=0.1)


def test_default_loss_keeps_run_ids():
    """A field added with its default leaves every existing run id as it was."""
    assert TrainConfig(model="lenet5").run_id() == TrainConfig(model="lenet5", loss="cross_entropy").run_id()
    assert TrainConfig(model="lenet5").run_id() != TrainConfig(model="lenet5", loss="rbf_map").run_id()
