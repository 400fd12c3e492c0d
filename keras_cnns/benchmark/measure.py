"""Timing the engine's own training step on this process's Keras backend.

``EngineStep`` compiles the step once (``training.compile_for_training``) and times each
engine mode pass by pass with ``training.fit_epoch``; ``measure_keras`` trains its warm-up
passes, then its timed ones: the median pass in images per second, the spread, the first pass
(compilation), and the peak device memory where the backend reports it (``PeakMemory``).
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
    case_row,
)


def throughput_row(case: Case, times: list[float], first: float, steps: int, **fields) -> dict:
    median = statistics.median(times)
    images = steps * case.batch_size
    return case_row(
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


def measure_keras(cases: Sequence[Case], sizes: Sizes, *, isolated: bool) -> list[dict]:
    """Time the engine's training step for ``cases`` (one compile group: only their modes
    differ) on this process's Keras backend, alone: warm-up, then the timed passes."""
    step = EngineStep(cases, sizes, isolated=isolated)
    for _ in range(sizes.warmup + sizes.repeats):
        step.take_turn()
    return step.rows()


class EngineStep:
    """The engine's training step for one compile group (``cases``: only their modes differ),
    compiled once, its feeds made, ready to train pass by pass on this process's backend.

    Each ``take_turn`` trains one pass per mode, the modes one after the other, so a change
    of the machine's speed during the run (other work, clocks) reaches every mode alike and
    the ratios between modes stay fair. Several ``EngineStep``s (and ``reference.Reference``s)
    of one worker can take turns the same way (``measure_in_turns``); ``fresh_session=False``
    then keeps the Keras session of the steps built before.
    """

    def __init__(self, cases: Sequence[Case], sizes: Sizes, *, isolated: bool, fresh_session: bool = True):
        import keras
        import numpy as np

        from keras_cnns import data, training
        from keras_cnns.registry import build_model
        from keras_cnns.training.config import TrainConfig

        self.cases, self.sizes, self.training = list(cases), sizes, training
        case = cases[0]
        self.backend = keras.backend.backend()
        if self.backend != case.backend:
            raise RuntimeError(f"worker runs Keras on {self.backend}, the case wants {case.backend}")
        self.timed = [c for c in cases if self.backend == "jax" or not MODES[c.mode].on_device]
        self.seconds: dict[Case, list[float]] = {c: [] for c in self.timed}
        self.losses: list[float] = []
        self.epoch = 0
        if not self.timed:
            return
        self.steps = math.ceil(sizes.images / case.batch_size)
        config = TrainConfig(
            model=case.model,
            batch_size=case.batch_size,
            precision=case.precision,
            augment=AUGMENT if case.augment else (),
            learning_rate=LEARNING_RATE,
            weight_decay=L2,
            steps_per_execution=case.steps_per_execution,
        )
        if fresh_session:
            keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        self.memory = PeakMemory(self.backend, isolated)
        with training.dtype_policy(case.precision):
            self.model = build_model(case.model, input_shape=IMAGE_SHAPE, num_classes=NUM_CLASSES)
            augmenter = data.make_augmenter(config.augment, seed=0, image_shape=IMAGE_SHAPE)
            self.wrapper = training.compile_for_training(
                self.model, config, augmenter=augmenter, steps_per_epoch=self.steps
            )
        rng = np.random.default_rng(0)
        n = self.steps * case.batch_size
        x = rng.standard_normal((n, *IMAGE_SHAPE), dtype=np.float32)
        y = rng.integers(0, NUM_CLASSES, n)
        # One feed of each kind: "engine" shares the host or device feed it would choose.
        engine_choice = training.device_data_fits(x, y)
        self.feeds: dict[Case, Any] = {}
        made: dict[bool, Any] = {}
        for c in self.timed:
            on_device = MODES[c.mode].on_device
            on_device = engine_choice if on_device is None else on_device
            if on_device not in made:
                made[on_device] = training.make_feed(x, y, on_device=on_device)
            self.feeds[c] = made[on_device]

    def take_turn(self) -> None:
        """Train one pass over the images in each mode, timing each."""
        training = self.training
        with training.dtype_policy(self.cases[0].precision):
            for c in self.timed:
                mode = MODES[c.mode]
                detector = (
                    _sync_detector(training)() if mode.sync_check else training.StopOnNonFinite()
                )
                start = time.perf_counter()
                history = training.fit_epoch(
                    self.wrapper,
                    self.feeds[c],
                    batch_size=c.batch_size,
                    epoch=self.epoch,
                    callbacks=[detector],
                )
                self.seconds[c].append(time.perf_counter() - start)
                self.losses.append(history.history["loss"][-1])
                self.epoch += 1

    def rows(self) -> list[dict]:
        """One row per case: the timed passes after the warm-up (``n/a`` rows for device-data
        modes a backend does not have)."""
        rows = {c: case_row(c, status="n/a: data on the device is the JAX path") for c in self.cases}
        if not self.timed:
            return list(rows.values())
        peak, note = self.memory.peak()
        if len(self.timed) > 1 and peak != "n/a":
            note += f" (the peak of the {len(self.timed)} modes timed together)"
        diverged = not all(math.isfinite(v) for v in self.losses)
        params = int(sum(math.prod(v.shape) for v in self.model.trainable_variables))
        for c in self.timed:
            rows[c] = throughput_row(
                c,
                self.seconds[c][self.sizes.warmup :],
                self.seconds[c][0],
                self.steps,
                data="device" if self.feeds[c].on_device else "host",
                jit_compile=bool(self.wrapper.jit_compile),
                peak_memory_mib=peak,
                memory_note=note,
                trainable_params=params,
                device=device_label(self.backend),
            )
            if diverged:
                rows[c]["status"] = "diverged: the loss went non-finite, so training stopped early"
        return list(rows.values())


def _sync_detector(training):
    class SyncStopOnNonFinite(training.StopOnNonFinite):
        """The NaN check without the speed-ups (mode ``plain``): on the main thread, so every
        step syncs with the host."""

        async_safe = False

    return SyncStopOnNonFinite


class PeakMemory:
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


def device_label(backend: str) -> str:
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
