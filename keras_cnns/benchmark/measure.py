"""Timing the engine's own training step on this process's Keras backend.

``measure_keras`` compiles the step once (``training.compile_for_training``), trains the
warm-up passes, then times each engine mode pass by pass with ``training.fit_epoch``: the
median pass in images per second, the spread, the first pass (compilation), and the peak
device memory where the backend reports it (``_Memory``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from keras_cnns.benchmark.cases import (
    AUGMENT,
    IMAGE_SHAPE,
    L2,
    LEARNING_RATE,
    MODES,
    NUM_CLASSES,
    REFERENCE,
    Case,
    Sizes,
    _row,
)


def _throughput(case: Case, times: list[float], first: float, steps: int, **fields) -> dict:
    median = statistics.median(times)
    images = steps * case.batch_size
    return _row(
        case,
        images_per_s=round(images / median, 1),
        step_ms=round(1000 * median / steps, 3),
        spread_pct=round(100 * (max(times) - min(times)) / median, 1),
        first_pass_s=round(first, 2),
        passes=len(times),
        steps_per_pass=steps,
        status="ok",
        **fields,
    )


def measure_keras(
    cases: Sequence[Case], sizes: Sizes, *, isolated: bool, partner: Any = None
) -> list[dict]:
    """Time the engine's training step for ``cases`` (one compile group: only their modes
    differ) on this process's Keras backend.

    The step is compiled once; after the warm-up the modes take turns, pass by pass, so a
    change of the machine's speed during the run (other work, clocks) reaches every mode
    alike and the ratios between modes stay fair. A ``partner`` (``reference.Reference``: the
    plain-PyTorch twin of the same model, precision, batch and augmentation, built by the
    worker) takes its turn after them, for the same reason: its row is returned last.
    """
    import keras
    import numpy as np

    from keras_cnns import data, training
    from keras_cnns.experiment import TrainConfig
    from keras_cnns.registry import build_model

    case = cases[0]
    backend = keras.backend.backend()
    if backend != case.backend:
        raise RuntimeError(f"worker runs Keras on {backend}, the case wants {case.backend}")
    rows = {c: _row(c, status="n/a: data on the device is the JAX path") for c in cases}
    timed = [c for c in cases if backend == "jax" or not MODES[c.mode].on_device]
    if not timed:
        return list(rows.values())
    steps = math.ceil(sizes.images / case.batch_size)
    config = TrainConfig(
        model=case.model,
        batch_size=case.batch_size,
        precision=case.precision,
        augment=AUGMENT if case.augment else (),
        learning_rate=LEARNING_RATE,
        weight_decay=L2,
        steps_per_execution=case.steps_per_execution,
    )
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    memory = _Memory(backend, isolated)
    with training.dtype_policy(case.precision):
        model = build_model(case.model, input_shape=IMAGE_SHAPE, num_classes=NUM_CLASSES)
        augmenter = data.make_augmenter(config.augment, seed=0, image_shape=IMAGE_SHAPE)
        wrapper = training.compile_for_training(
            model, config, augmenter=augmenter, steps_per_epoch=steps
        )
        rng = np.random.default_rng(0)
        n = steps * case.batch_size
        x = rng.standard_normal((n, *IMAGE_SHAPE), dtype=np.float32)
        y = rng.integers(0, NUM_CLASSES, n)
        # One feed of each kind: "engine" shares the host or device feed it would choose.
        engine_choice = training.device_data_fits(x, y)
        feeds: dict[Case, Any] = {}
        made: dict[bool, Any] = {}
        for c in timed:
            on_device = MODES[c.mode].on_device
            on_device = engine_choice if on_device is None else on_device
            if on_device not in made:
                made[on_device] = training.make_feed(x, y, on_device=on_device)
            feeds[c] = made[on_device]
        partner_seconds: list[float] = []
        epoch = 0
        seconds: dict[Case, list[float]] = {c: [] for c in timed}
        losses: list[float] = []
        for _ in range(sizes.warmup + sizes.repeats):
            for c in timed:
                mode = MODES[c.mode]
                detector = (
                    _sync_detector(training)() if mode.sync_check else training.StopOnNonFinite()
                )
                start = time.perf_counter()
                history = training.fit_epoch(
                    wrapper,
                    feeds[c],
                    batch_size=c.batch_size,
                    epoch=epoch,
                    callbacks=[detector],
                )
                seconds[c].append(time.perf_counter() - start)
                losses.append(history.history["loss"][-1])
                epoch += 1
            if partner is not None:
                partner_seconds.append(partner.timed_pass())
    peak, note = memory.peak()
    if len(timed) > 1 and peak != "n/a":
        note += f" (the peak of the {len(timed)} modes timed together)"
    diverged = not all(math.isfinite(v) for v in losses)
    for c in timed:
        rows[c] = _throughput(
            c,
            seconds[c][sizes.warmup :],
            seconds[c][0],
            steps,
            data="device" if feeds[c].on_device else "host",
            jit_compile=bool(wrapper.jit_compile),
            peak_memory_mib=peak,
            memory_note=note,
            trainable_params=int(sum(math.prod(v.shape) for v in model.trainable_variables)),
            device=_device(backend),
        )
        if diverged:
            rows[c]["status"] = "diverged: the loss went non-finite, so training stopped early"
    if partner is not None:
        rows[partner.case] = partner.row(partner_seconds)
    return list(rows.values())


def _sync_detector(training):
    class SyncStopOnNonFinite(training.StopOnNonFinite):
        """The NaN check without the speed-ups (mode ``plain``): on the main thread, so every
        step syncs with the host."""

        async_safe = False

    return SyncStopOnNonFinite


class _Memory:
    """Peak device memory of one case, where the backend reports it."""

    def __init__(self, backend: str, isolated: bool):
        self.backend, self.isolated = backend, isolated
        if backend in ("torch", REFERENCE):
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                tf.config.experimental.reset_memory_stats("GPU:0")

    def peak(self) -> tuple[float | str, str]:
        """(MiB, note) or ("n/a", why)."""
        mib = 1024 * 1024
        if self.backend in ("torch", REFERENCE):
            import torch

            if not torch.cuda.is_available():
                return "n/a", "torch reports device memory on CUDA only"
            return round(
                torch.cuda.max_memory_allocated() / mib, 1
            ), "torch.cuda.max_memory_allocated"
        if self.backend == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_physical_devices("GPU"):
                return "n/a", "tensorflow reports device memory on a GPU only"
            return round(
                tf.config.experimental.get_memory_info("GPU:0")["peak"] / mib, 1
            ), "tf get_memory_info peak"
        import jax

        stats = jax.devices()[0].memory_stats()
        if not stats or "peak_bytes_in_use" not in stats:
            return "n/a", f"jax reports no memory stats on {jax.devices()[0].platform}"
        if not self.isolated:
            return "n/a", "jax cannot reset its peak between cases: run with --isolate case"
        return round(stats["peak_bytes_in_use"] / mib, 1), "jax peak_bytes_in_use"


def _device(backend: str) -> str:
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else str(device.device_kind)
    if backend in ("torch", REFERENCE):
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return str(
            tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        )
    return "cpu"
