"""Data-parallel training on several devices and hosts, with each backend's own API.

``TrainConfig.devices`` (``keras-cnns train --devices N|all``) says how many replicas train a
run; ``placement(devices)`` turns it into a ``Placement``, which the engine asks everything
that depends on where the run executes:

* JAX: ``keras.distribution.DataParallel`` over the first N devices of
  ``keras.distribution.list_devices()``, current for the run (``Placement.scope``). The jitted
  step sees the global batch as one array sharded over the devices; the weights are replicated.
* TensorFlow: ``tf.distribute.MirroredStrategy`` over the first N logical devices (the GPUs,
  else the CPUs), on one host (see "Several hosts" below).
* PyTorch: one device; more is a ``UserError``.

A TensorFlow process trains on one set of devices: a second ``MirroredStrategy`` of another
size would share the first one's collective keys, so asking for it is a ``UserError``.

One device (the default) is the plain path, untouched: no distribution, no strategy.

The choices, each written into the run record's ``"distribution"`` entry (``Placement.info``):

* Batch: ``batch_size`` is the GLOBAL batch; each replica gets ``batch_size / N`` images, so
  ``N`` must divide it (a ``UserError`` otherwise).
* Learning rate: the number of devices does not change it. ``TrainConfig.lr_scaling="linear"``
  scales it with the global batch (Goyal et al. 2017), whatever N is.
* Batch norm: statistics over the GLOBAL batch on both backends, so N devices compute what one
  does. JAX: the compiled step reduces over the sharded global array (measured: the loss curve
  of 4 devices equals one device's to about 1e-6). TensorFlow: a replica normalises only its
  own ``batch/N`` images unless the layer is ``synchronized`` (measured: 3e-3 apart after one
  epoch of a small net on 4 replicas); ``Placement.prepare`` sets ``synchronized=True`` on every
  ``BatchNormalization`` for training, and ``Placement.portable`` clears it while the ``.keras``
  model is saved (JAX and PyTorch refuse to load ``synchronized=True``).
* Random draws (dropout, augmentation, stochastic depth): JAX draws over the global array,
  exactly as one device does. TensorFlow runs the step once per replica from the same seed
  state, so every replica draws the SAME masks (measured); recorded as ``random_draws``.
* Last training batch: a last batch that does not split evenly over N replicas loses its last
  ``(n mod batch) mod N`` images (fewer than N per epoch, other images each epoch; none for
  CIFAR's 45,000 / 128 on 2, 4 or 8 devices); the steps per epoch are counted after that.
* Evaluation: every image counts. The validation and test sets are padded to a multiple of N
  with weight-0 copies of their first image: accuracy is then exact, and so is the loss after
  one correction (Keras averages the loss over the padded batch, so
  ``loss = reg + (keras_loss - reg) * padded / n``, ``reg`` being the weight penalty).

Several hosts (``init_cluster``; ``keras-cnns train --cluster A,B --process-id I``): every host
runs the same command with its own process id. JAX: ``keras.distribution.initialize`` (the
first address is the coordinator) before anything else touches JAX; each process feeds its
share of every global batch (tested: two processes of two CPU devices on one machine, over
gloo, give one device's loss curve). TensorFlow: the same flags write ``TF_CONFIG`` (unless it
is set), but ``tf.distribute.MultiWorkerMirroredStrategy`` is refused with a one-line error:
Keras 3's ``fit`` fails under it (measured here: its batches arrive as ``PerReplica`` values;
keras-team/keras#20585). Only process 0 (the chief) writes records, checkpoints, the model and
TensorBoard logs into ``--out``; the others write the same files into a private temporary
directory, deleted at exit. Resuming needs ``--out`` on a filesystem every host sees (the others
copy the chief's checkpoint); the JAX processes check that they resume from the same epoch.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.errors import UserError

# Keras' own names for the cluster settings (keras.distribution.initialize reads them too).
JOB_ADDRESSES_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
PROCESS_ID_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"
TF_CONFIG_ENV = "TF_CONFIG"

API_JAX = "keras.distribution.DataParallel"
API_MIRRORED = "tf.distribute.MirroredStrategy"

_STRATEGIES: dict[tuple, Any] = {}  # TensorFlow: the process's one MirroredStrategy
_JOINED: list[tuple[str, ...]] = []  # the cluster this process joined, if any
_PRIVATE_ROOT: list[Path] = []  # a non-chief process's scratch output directory


# --- several hosts -------------------------------------------------------------------------------


def parse_addresses(addresses: str | None) -> tuple[str, ...]:
    """``"10.0.0.1:1234,10.0.0.2:1234"`` -> the addresses, each ``HOST:PORT``."""
    parts = tuple(a.strip() for a in (addresses or "").split(",") if a.strip())
    for address in parts:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UserError(
                f"cluster address {address!r} must look like HOST:PORT, e.g. 10.0.0.1:1234"
            )
    if len(set(parts)) != len(parts):
        raise UserError(f"the cluster lists an address twice: {','.join(parts)}")
    return parts


def init_cluster(addresses: str | None = None, process_id: int | str | None = None) -> int:
    """Join a cluster of several processes (hosts); a no-op without one.

    Every process runs the same command with the same ``addresses`` and its own
    ``process_id``; process 0 is the coordinator and the chief.

    Args:
        addresses: comma-separated ``HOST:PORT`` of every process, process 0 first (default:
            ``$KERAS_DISTRIBUTION_JOB_ADDRESSES``). One address or none: no cluster.
        process_id: this process's index (default: ``$KERAS_DISTRIBUTION_PROCESS_ID``).

    Returns:
        The number of processes (1 without a cluster).

    Raises:
        UserError: a malformed address, a missing or out-of-range process id, PyTorch.
    """
    if addresses is None:
        addresses = os.environ.get(JOB_ADDRESSES_ENV)
    if process_id is None:
        process_id = os.environ.get(PROCESS_ID_ENV)
    hosts = parse_addresses(addresses)
    if len(hosts) <= 1:
        if process_id not in (None, "", 0, "0"):
            raise UserError("a process id needs a cluster of several addresses (--cluster A,B)")
        return 1
    try:
        index = int(process_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(
            f"a cluster of {len(hosts)} processes needs this process's id (--process-id 0..{len(hosts) - 1})"
        ) from None
    if not 0 <= index < len(hosts):
        raise UserError(
            f"process id {index} is outside 0..{len(hosts) - 1} for a cluster of {len(hosts)}"
        )
    if _JOINED:
        if _JOINED[0] != (*hosts, str(index)):
            raise UserError("this process already joined another cluster; start a new process")
        return len(hosts)

    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        # The coordinator is the first address; JAX wants this before it computes anything.
        keras.distribution.initialize(
            job_addresses=",".join(hosts), num_processes=len(hosts), process_id=index
        )
    elif backend == "tensorflow":
        if not os.environ.get(TF_CONFIG_ENV):
            os.environ[TF_CONFIG_ENV] = json.dumps(
                {"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}}
            )
    else:
        raise UserError(f"several hosts need the JAX or TensorFlow backend, not {backend}")
    _JOINED.append((*hosts, str(index)))
    return len(hosts)


def _tf_cluster() -> tuple[int, int]:
    """``(processes, this process's index)`` from ``TF_CONFIG`` (``(1, 0)`` without one)."""
    text = os.environ.get(TF_CONFIG_ENV)
    if not text:
        return 1, 0
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster", {}), spec.get("task", {})
        chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
        index = int(task.get("index", 0)) + (chiefs if task.get("type") == "worker" else 0)
    except (ValueError, TypeError, AttributeError) as err:
        raise UserError(f"TF_CONFIG is not a cluster spec ({err})") from None
    return max(1, chiefs + workers), index


# --- the placement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where one run executes, and how its data and evaluation are split.

    Attributes:
        backend: the Keras backend.
        replicas: devices that train in sync, over every host.
        processes: processes (hosts) in the cluster.
        process_index: this process's index; 0 is the chief.
        api: the distribution API in use, or ``None`` for the plain one-device path.
        device_names: the replicas' devices as the backend names them.
        handle: the ``keras.distribution`` or ``tf.distribute`` object.
    """

    backend: str
    replicas: int = 1
    processes: int = 1
    process_index: int = 0
    api: str | None = None
    device_names: tuple[str, ...] = ()
    handle: Any = field(default=None, compare=False, repr=False)

    @property
    def distributed(self) -> bool:
        """Whether a distribution API is in use (``False``: the plain path)."""
        return self.api is not None

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run's files."""
        return self.process_index == 0

    @property
    def feeds_share(self) -> bool:
        """Whether each process feeds only its share of a global batch (JAX on several hosts)."""
        return self.backend == "jax" and self.processes > 1

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Make the distribution current: build, compile, fit and evaluate inside."""
        if self.handle is None:
            yield
            return
        with self.handle.scope():
            yield

    # --- batches --------------------------------------------------------------------------------

    def check_batch(self, batch_size: int) -> None:
        """``batch_size`` (global) must split evenly over the replicas."""
        if batch_size % self.replicas:
            raise UserError(
                f"batch_size is the global batch, split evenly over the devices: {batch_size} "
                f"does not split over {self.replicas}; choose a multiple of {self.replicas}"
            )

    def local_batch(self, batch_size: int) -> int:
        """The images per step this process feeds."""
        return batch_size // self.processes if self.feeds_share else batch_size

    def kept(self, n: int, batch_size: int) -> int:
        """Training images used per epoch: all but ``(n mod batch) mod replicas``."""
        return n - (n % batch_size) % self.replicas

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        """Optimizer steps per epoch over ``n`` training images."""
        return math.ceil(self.kept(n, batch_size) / batch_size)

    def train_rows(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        """The rows of ``order`` this process feeds in one epoch, in feeding order."""
        order = np.asarray(order)[: self.kept(len(order), batch_size)]
        return self._share(order, batch_size) if self.feeds_share else order

    def eval_rows(self, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, weights)`` that evaluate ``n`` images: padded with weight-0 copies of row 0
        to a multiple of the replicas (this process's share on JAX with several hosts)."""
        padded = padded_size(n, self.replicas)
        rows = np.concatenate([np.arange(n), np.zeros(padded - n, dtype=int)])
        weights = (np.arange(padded) < n).astype("float32")
        if self.feeds_share:
            keep = self._share(np.arange(padded), batch_size)
            rows, weights = rows[keep], weights[keep]
        return rows, weights

    def _share(self, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """This process's contiguous slice of each global batch of ``rows``."""
        parts = []
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            size = len(batch) // self.processes
            parts.append(batch[self.process_index * size : (self.process_index + 1) * size])
        return np.concatenate(parts) if parts else rows[:0]

    def make_feed(self, x: np.ndarray, y: np.ndarray, *, evaluation: bool = False):
        """A feed of in-memory arrays for this placement: on one device the engine's own
        (``feeds.make_feed`` for training and validation, a ``HostFeed`` for the test set,
        whose batches the step never gathers on the device); on several, a ``ShardedFeed``."""
        if self.distributed:
            return ShardedFeed(self, x, y)
        from keras_cnns.training.feeds import HostFeed, make_feed

        return HostFeed(x, y) if evaluation else make_feed(x, y)

    # --- the model ------------------------------------------------------------------------------

    def prepare(self, model) -> int:
        """TensorFlow with several replicas: batch norm over the global batch (``synchronized``).

        Returns:
            The number of batch-norm layers synchronised.
        """
        if not self.distributed or self.backend != "tensorflow":
            return 0
        layers = _batch_norms(model)
        for layer in layers:
            layer.synchronized = True
        return len(layers)

    @contextlib.contextmanager
    def portable(self, model) -> Iterator[None]:
        """Inside the block the model saves as one any backend loads (no ``synchronized``)."""
        layers = [layer for layer in _batch_norms(model) if layer.synchronized]
        for layer in layers:
            layer.synchronized = False
        try:
            yield
        finally:
            for layer in layers:
                layer.synchronized = True

    # --- evaluation -----------------------------------------------------------------------------

    def evaluate(self, model, feed, batch_size: int) -> dict[str, float]:
        """``model.evaluate`` over every image of ``feed``, exact on any placement.

        Returns:
            Keras' ``return_dict`` scores (``loss``, ``accuracy``...), the loss corrected for
            padding (see ``exact_loss``).
        """
        data = feed.validation_data(batch_size)
        if isinstance(data, tuple):
            x, y, *weights = data
            scores = model.evaluate(
                x,
                y,
                sample_weight=weights[0] if weights else None,
                batch_size=self.local_batch(batch_size),
                verbose=0,
                return_dict=True,
            )
        else:
            scores = model.evaluate(data, verbose=0, return_dict=True)
        scores = {k: float(v) for k, v in scores.items()}
        padding = getattr(feed, "padding", 0)
        if padding and "loss" in scores:
            scores["loss"] = exact_loss(
                scores["loss"], regularisation(model), feed.size, feed.size + padding
            )
        return scores

    def exact_validation(self, logs: dict, model, feed) -> dict:
        """``logs`` of an epoch with ``val_loss`` corrected for the validation padding."""
        padding = getattr(feed, "padding", 0) if feed is not None else 0
        if not padding or logs.get("val_loss") is None:
            return logs
        fixed = exact_loss(logs["val_loss"], regularisation(model), feed.size, feed.size + padding)
        return {**logs, "val_loss": fixed}

    # --- several processes ----------------------------------------------------------------------

    def agree(self, value: int, what: str) -> None:
        """Every process must hold the same ``value`` (JAX clusters check; one process: no-op)."""
        if self.processes == 1 or self.backend != "jax":
            return
        from jax.experimental import multihost_utils

        try:
            multihost_utils.assert_equal(np.asarray(value), f"{what} differs between processes")
        except AssertionError:
            raise UserError(
                f"the processes disagree on {what}: every host must see the same --out "
                "(a shared filesystem), where the chief keeps the checkpoints"
            ) from None

    def private_out_dir(self, out_dir: str | os.PathLike, run_id: str, *, resume: bool) -> Path:
        """Where a non-chief process writes: a private copy of the chief's checkpoint.

        The copy (``state.json`` and the weights it names) lets this process resume exactly as
        the chief does; what it writes afterwards is its own and is deleted at exit (and when
        the next run of this process starts).
        """
        if not _PRIVATE_ROOT:
            root = Path(tempfile.mkdtemp(prefix=f"keras-cnns-process{self.process_index}-"))
            atexit.register(shutil.rmtree, root, True)
            _PRIVATE_ROOT.append(root)
        private = _PRIVATE_ROOT[0] / "out"
        shutil.rmtree(private, ignore_errors=True)
        source = Path(out_dir) / "checkpoints" / run_id
        target = private / "checkpoints" / run_id
        if resume and (source / "state.json").is_file():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock", ".*"))
        target.mkdir(parents=True, exist_ok=True)
        return private

    # --- the record -----------------------------------------------------------------------------

    def info(self, config, *, n_train: int | None = None) -> dict[str, Any]:
        """The run record's ``"distribution"`` entry: every choice above, as it happened."""
        batch = config.batch_size
        out: dict[str, Any] = {
            "api": self.api,
            "devices": self.replicas,
            "device_names": list(self.device_names),
            "processes": self.processes,
            "global_batch": batch,
            "per_device_batch": batch // self.replicas,
            "lr_scaling": config.lr_scaling,
            "learning_rate": config.scaled_learning_rate,
        }
        if not self.distributed:
            out.update(batchnorm="one device: statistics over the batch", random_draws="one device")
            return out
        if self.backend == "jax":
            out["batchnorm"] = (
                "global batch: one compiled step over the batch sharded across devices"
            )
            out["random_draws"] = "global batch: the same draws as on one device"
        else:
            out["batchnorm"] = "global batch: BatchNormalization(synchronized=True) across replicas"
            out["random_draws"] = (
                "per replica from one seed state: every replica draws the same masks"
            )
        if n_train is not None:
            out["train_images_dropped_per_epoch"] = n_train - self.kept(n_train, batch)
        out["evaluation"] = (
            "all images: padded to a multiple of the devices with weight 0, loss corrected"
        )
        return out


class ShardedFeed:
    """In-memory arrays fed to a distributed run (the engine's ``HostFeed`` interface).

    Training passes keep ``Placement.kept`` images and, on JAX with several hosts, feed this
    process's share of each global batch; evaluation pads to a multiple of the replicas with
    weight-0 rows (``padding`` of them).
    """

    on_device = False

    def __init__(self, placement: Placement, x: np.ndarray, y: np.ndarray):
        self.placement, self.x, self.y = placement, x, y
        self.size = len(x)
        self.padding = padded_size(self.size, placement.replicas) - self.size

    def fit_data(self, batch_size: int, order: np.ndarray | None = None) -> dict:
        """``fit`` arguments for one pass in ``order`` (``None``: as stored)."""
        order = np.arange(self.size) if order is None else order
        rows = self.placement.train_rows(order, batch_size)
        return {
            "x": self.x[rows],
            "y": self.y[rows],
            "batch_size": self.placement.local_batch(batch_size),
        }

    def validation_data(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, sample_weight)``: every image once, and the weight-0 padding."""
        rows, weights = self.placement.eval_rows(self.size, batch_size)
        return self.x[rows], self.y[rows], weights


def padded_size(n: int, replicas: int) -> int:
    """``n`` rounded up to a multiple of ``replicas``."""
    return -(-n // replicas) * replicas


def exact_loss(keras_loss: float, reg: float, n: int, padded: int) -> float:
    """The mean loss over ``n`` real images from Keras' mean over ``padded`` rows.

    With weight-0 padding, Keras' per-batch loss is ``sum(w * l) / batch + reg`` and its epoch
    mean weights batches by their size, so it equals ``sum(l) / padded + reg``.
    """
    return reg + (keras_loss - reg) * padded / n


def regularisation(model) -> float:
    """The weight penalty Keras adds to every batch's loss (``sum(model.losses)``)."""
    from keras import ops

    return float(sum(float(ops.convert_to_numpy(loss)) for loss in model.losses))


def _batch_norms(model) -> list:
    import keras

    return [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


# --- choosing the placement ---------------------------------------------------------------------


def placement(devices: int | str = 1, *, force: bool = False) -> Placement:
    """The placement of a run on ``devices`` replicas of this backend.

    Args:
        devices: a positive number, or ``"all"`` (every device of the default kind, on every
            host of the cluster).
        force: use the distribution API even for one device (to measure what it costs).

    Raises:
        UserError: more devices than there are (the message says how many there are);
            several devices on PyTorch; on several hosts, fewer than all devices.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_placement(devices, force)
    if backend == "tensorflow":
        return _tf_placement(devices, force)
    if devices != 1 or force:
        raise UserError(
            f"devices={devices}: data-parallel training needs the JAX or TensorFlow backend "
            f"(keras.distribution, tf.distribute); {backend} trains on one device here"
        )
    return Placement(backend)


def _count(devices: int | str, available: int, kind: str, processes: int) -> int:
    n = available if devices == "all" else int(devices)
    if n > available:
        raise UserError(
            f"devices={n}, but there {'is' if available == 1 else 'are'} only {available} {kind} "
            f"device{'' if available == 1 else 's'} here; pass at most {available} (or 'all')"
        )
    if processes > 1 and n != available:
        raise UserError(
            f"on {processes} hosts every device trains: pass devices=all (or {available}), not {n}"
        )
    return n


def _jax_placement(devices: int | str, force: bool) -> Placement:
    import jax
    import keras

    names = keras.distribution.list_devices()  # every host's, GPUs (or TPUs) before CPUs
    processes = jax.process_count()
    n = _count(devices, len(names), names[0].split(":")[0], processes)
    if n == 1 and processes == 1 and not force:
        return Placement("jax", device_names=(names[0],))
    # Each feed hands every process its own share already: Keras must not shard again.
    distribution = keras.distribution.DataParallel(devices=names[:n], auto_shard_dataset=False)
    return Placement(
        "jax", n, processes, jax.process_index(), API_JAX, tuple(names[:n]), distribution
    )


def _tf_placement(devices: int | str, force: bool) -> Placement:
    import tensorflow as tf  # only here: the engine runs on JAX/PyTorch machines without TF

    processes, _ = _tf_cluster()
    if processes > 1:
        # Keras 3's fit does not run under tf.distribute.MultiWorkerMirroredStrategy: the
        # batches reach its step as PerReplica values it cannot convert (measured here with
        # TensorFlow 2.21 and Keras 3.15.1 on two CPU workers; keras-team/keras#20585 is open).
        raise UserError(
            "several hosts need the JAX backend (--backend jax): Keras 3 cannot fit under "
            "TensorFlow's MultiWorkerMirroredStrategy (keras-team/keras#20585); on one host, "
            "--devices N works on TensorFlow too"
        )
    logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    kind = logical[0].device_type.lower()
    n = _count(devices, len(logical), kind, 1)
    if n == 1 and not force:
        return Placement("tensorflow", device_names=(logical[0].name,))
    names = tuple(d.name for d in logical[:n])
    if names not in _STRATEGIES:
        other = list(_STRATEGIES)
        if other:
            # Two MirroredStrategy objects of different sizes share TF's collective group keys.
            raise UserError(
                f"TensorFlow keeps one set of devices per process: this one trains on "
                f"{len(other[0])} devices already; start a new process for {n}"
            )
        _STRATEGIES[names] = tf.distribute.MirroredStrategy(devices=list(names))
    return Placement("tensorflow", n, 1, 0, API_MIRRORED, names, _STRATEGIES[names])
