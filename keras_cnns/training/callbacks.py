"""The Keras callbacks the engine adds to every epoch.

``StopOnNonFinite`` stops a run whose loss becomes NaN or infinite (in Keras' callback threads
where the backend allows, so no step waits on the host); ``EpochProgbar`` is Keras' progress
bar titled with the run's epochs; ``BatchFault`` is the ``train-batch`` fault hook of
``keras_cnns.storage`` (the kill-and-resume tests).
"""

from __future__ import annotations

import math
import threading

import keras

from keras_cnns import storage


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training once the (running mean) loss is NaN or infinite; ``batch`` is the first such.

    ``async_safe``: where the backend allows it (JAX, PyTorch), Keras runs the batch-end hooks
    in worker threads, so the training loop never waits on the host for a step's loss: reading
    it on the main thread would synchronise every step and leave the accelerator idle while
    Python prepares the next one. The hooks may then run out of order and a few steps late, so
    training stops a few steps after the first non-finite batch rather than at it. Nothing
    else changes: the running mean of the loss stays non-finite for the rest of the epoch once
    it is (so no divergence is missed), every pending hook runs before the epoch ends (so
    ``batch`` is the earliest non-finite one, as a synchronous check would find), and no
    weights of a diverged epoch are ever saved.
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self.batch: int | None = None
        self.loss: float | None = None
        self._lock = threading.Lock()
        self._fitted = None

    def set_model(self, model):
        super().set_model(model)
        # Kept apart from `self.model`, which on JAX copies the training state back into the
        # variables: not a thing to do from a callback thread while the loop runs on.
        self._fitted = model

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            with self._lock:
                if self.batch is None or batch < self.batch:
                    self.batch, self.loss = batch, float(loss)
            self._fitted.stop_training = True


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, titled ``Epoch k/N`` of the whole run (fit runs one epoch at a time).

    ``async_safe`` as Keras' own default progress bar is, so showing it does not synchronise
    every step (see ``StopOnNonFinite``).
    """

    async_safe = True

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs

class BatchFault(keras.callbacks.Callback):
    """The ``train-batch`` fault hook (``keras_cnns.storage``): SIGKILL after the N-th batch."""

    def on_train_batch_end(self, batch, logs=None):
        action = storage.fault_point("train-batch")
        if action is not None:
            storage.fault_strike(action)
