"""Feeding the compiled step: batches, their order, and the random draws of each epoch.

``HostFeed`` keeps the images in host memory (``fit`` copies each batch, the plain path);
``DeviceFeed`` keeps them on the accelerator (JAX) and gathers each batch there, chosen by
``make_feed`` where ``device_data_fits``. ``fit_epoch`` trains one epoch in an order drawn from
``(seed, epoch)``; ``reset_seed_generators`` resets every ``SeedGenerator`` (dropout,
augmentation, stochastic depth) from ``(seed, epoch)`` before it, so a resumed run sees exactly
the randomness of an uninterrupted one. Every path feeds the same batches in the same order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import keras
import numpy as np

_SEED_STATE_NAME = "seed_generator_state"  # the variable every keras.random.SeedGenerator owns

# A split stays on the accelerator when it takes at most this fraction of the device's memory.
DEVICE_DATA_FRACTION = 0.25


class HostFeed:
    """Images and labels in host memory: ``fit`` copies each batch to the device (the plain path).

    On TensorFlow the batches come from a ``tf.data`` pipeline of our own (``_tf_batches``)
    rather than from Keras' array adapter: the same batches in the same order, but with
    ``tf.data``'s autotuner off. On a 2-core CPU the autotuner's threads compete with the
    training step: measured, ResNet-20 trained at about 150 img/s in half of the epochs and
    about 240 in the others, where the fixed pipeline gives the higher figure every epoch.
    """

    on_device = False

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self._tf = keras.backend.backend() == "tensorflow"  # our tf.data pipeline, or Keras'
        self._tensors = None  # the arrays as TensorFlow tensors, converted once

    def fit_data(self, batch_size: int, order: np.ndarray | None = None) -> dict:
        """``fit`` arguments for one pass in ``order`` (``None``: as stored)."""
        if self._tf:
            return {"x": self._tf_batches(batch_size, order)}
        if order is None:
            return {"x": self.x, "y": self.y, "batch_size": batch_size}
        return {"x": self.x[order], "y": self.y[order], "batch_size": batch_size}

    def validation_data(self, batch_size: int):
        if self._tf:
            return self._tf_batches(batch_size, None)
        return (self.x, self.y)

    def _tf_batches(self, batch_size: int, order: np.ndarray | None):
        """One pass as a ``tf.data.Dataset``: batches of ``order``'s indices, gathered from the
        arrays (converted to tensors once, not copied per epoch), one batch read ahead, the
        autotuner off."""
        import tensorflow as tf  # only here: the engine must run where TF is not installed

        if self._tensors is None:
            with tf.device("CPU:0"):  # host memory, where tf.data runs (not a GPU's)
                self._tensors = (tf.convert_to_tensor(self.x), tf.convert_to_tensor(self.y))
        x, y = self._tensors
        indices = np.arange(len(self.x)) if order is None else np.asarray(order)
        dataset = tf.data.Dataset.from_tensor_slices(indices.astype(np.int64)).batch(batch_size)
        dataset = dataset.map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
        options = tf.data.Options()
        options.autotune.enabled = False
        # As Keras' own adapter: no graph rewrites (they serialise the pipeline, arrays included).
        options.experimental_optimization.apply_default_optimizations = False
        return dataset.with_options(options).prefetch(1)


class DeviceFeed:
    """Images and labels held on the accelerator (JAX): no per-step copy from the host.

    The arrays are copied to the device once; each batch is gathered there, in the epoch's
    order, by one compiled call. The batches are exactly ``HostFeed``'s (same order, same
    values, the same last partial batch), so training gives the same numbers.
    """

    on_device = True

    def __init__(self, x: np.ndarray, y: np.ndarray):
        import jax

        self.x, self.y = jax.device_put(x), jax.device_put(y)
        self.size = len(x)

    def fit_data(self, batch_size: int, order: np.ndarray | None = None) -> dict:
        return {"x": _DeviceBatches(self, batch_size, order)}

    def validation_data(self, batch_size: int):
        return _DeviceBatches(self, batch_size, None)


class _DeviceBatches(keras.utils.PyDataset):
    """One pass over a ``DeviceFeed`` in batches, as ``fit`` and ``evaluate`` read it."""

    def __init__(self, feed: DeviceFeed, batch_size: int, order: np.ndarray | None):
        super().__init__()  # one worker, no thread or process: batches in order
        import jax

        self.feed, self.batch_size = feed, batch_size
        # The order travels once per pass (4 bytes an image), then stays on the device.
        indices = np.arange(feed.size) if order is None else np.asarray(order)
        self.order = jax.device_put(indices.astype(np.int32))
        self._next, self._start = None, None

    def __len__(self) -> int:
        return math.ceil(self.feed.size / self.batch_size)

    def __getitem__(self, index: int):
        start = index * self.batch_size
        size = min(self.batch_size, self.feed.size - start)
        if index != self._next:  # not the batch after the last one: say where to start
            import jax

            self._start = jax.device_put(np.int32(start))
        # The next start is computed on the device too: read in order, a pass sends nothing
        # from the host after its first batch.
        gather = _batch_gatherer()
        x, y, self._start = gather(self.feed.x, self.feed.y, self.order, self._start, size)
        self._next = index + 1
        return x, y


@functools.cache
def _batch_gatherer():
    """A compiled ``(x, y, order, start, size) -> (x[order[start:start + size]], y[...],
    start + size)``; ``start`` is traced (one compilation per batch size, not per batch)."""
    import jax

    def gather(x, y, order, start, size):
        indices = jax.lax.dynamic_slice_in_dim(order, start, size)
        batch = jax.numpy.take(x, indices, axis=0), jax.numpy.take(y, indices, axis=0)
        return (*batch, start + size)

    return jax.jit(gather, static_argnums=4)


def device_data_fits(*arrays: np.ndarray) -> bool:
    """Whether ``train`` keeps the data on the accelerator: JAX on an accelerator, no
    ``keras.distribution`` in force (its data layout is the distribution's business), and the
    arrays take at most ``DEVICE_DATA_FRACTION`` of the device's memory."""
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is not None:
        return False
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return False  # host and device memory are one: nothing to save
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    needed = sum(a.nbytes for a in arrays if a is not None)
    return bool(limit) and needed <= DEVICE_DATA_FRACTION * limit


def make_feed(x: np.ndarray, y: np.ndarray, *, on_device: bool | None = None):
    """A ``DeviceFeed`` where ``on_device`` (``None``: ``device_data_fits``), else a ``HostFeed``."""
    if on_device is None:
        on_device = device_data_fits(x, y)
    return DeviceFeed(x, y) if on_device else HostFeed(x, y)


def fit_epoch(
    wrapper,
    feed,
    *,
    batch_size: int,
    epoch: int,
    order: np.ndarray | None = None,
    validation=None,
    verbose: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
):
    """One epoch of ``wrapper.fit`` over ``feed`` in ``order``, validated on ``validation``.

    Args:
        wrapper: the compiled model (``compile_for_training``).
        feed: a ``HostFeed`` or ``DeviceFeed`` of the training split.
        batch_size: images per step.
        epoch: the run's 0-based epoch (Keras counts epochs across calls).
        order: the epoch's permutation of the training images (``None``: as stored).
        validation: a feed of the validation split, or ``None``.
        verbose: Keras' ``verbose``.
        callbacks: Keras callbacks.

    Returns:
        Keras' ``History`` of the epoch.
    """
    return wrapper.fit(
        **feed.fit_data(batch_size, order),
        epochs=epoch + 1,
        initial_epoch=epoch,
        shuffle=False,  # `order` is the shuffle: the engine draws it from (seed, epoch)
        validation_data=None if validation is None else validation.validation_data(batch_size),
        verbose=verbose,
        callbacks=list(callbacks),
    )


def reset_seed_generators(model, seed: int, epoch: int) -> int:
    """Set every ``SeedGenerator`` state of ``model`` from ``(seed, epoch)``.

    Called before each epoch, so dropout, augmentation and stochastic-depth draws depend on
    the seed and the epoch only, not on how many epochs this process has run.

    Returns:
        The number of generators reset.
    """
    states = [v for v in model.non_trainable_variables if v.name == _SEED_STATE_NAME]
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    draws = rng.integers(1, 2**31 - 1, size=len(states))
    for v, draw in zip(states, draws, strict=True):
        v.assign(np.array([draw, 0], dtype=v.dtype))
    return len(states)
