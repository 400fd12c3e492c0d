"""The loop: ``train(config, out_dir=...)`` runs one ``TrainConfig`` end to end.

What a run does, in order (the package docstring, ``keras_cnns.training``, has the whole
story): seed, load and preprocess the data, build and compile the model, train epoch by epoch
with a checkpoint after each, test the selected weights, append one ``RunRecord`` to
``out_dir/records.jsonl``. ``_Run`` holds the pieces of one call while the steps run; a
completed run is not trained again (``_completed_record``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_cnns import storage
from keras_cnns.errors import DivergedError, UserError
from keras_cnns.registry import model_revision
from keras_cnns.training import distribute
from keras_cnns.training.callbacks import BatchFault, EpochProgbar, StopOnNonFinite
from keras_cnns.training.checkpoints import (
    CHECKPOINTS_DIR,
    FINAL_MODEL_FILE,
    STATE_FILE,
    RunState,
    check_final_model,
    clear_run_dir,
    load_checkpoint,
    missing_dirs,
    remove_stale_temp_files,
    run_lock,
    save_model_atomic,
    save_weights_atomic,
)
from keras_cnns.training.config import TrainConfig
from keras_cnns.training.environment import (
    announce_cpu_slowdowns,
    deterministic_kernels,
    device_name,
    dtype_policy,
    git_revision,
    library_versions,
    tensorboard_available,
    utc_now,
)
from keras_cnns.training.feeds import fit_epoch, reset_seed_generators
from keras_cnns.training.optimizers import compile_for_training
from keras_cnns.training.record import RECORDS_FILE, DataInfo, EpochLog, RunRecord, TestScores
from keras_cnns.training.schedules import (
    early_stopping_step,
    learning_rate_at,
    monitored_value,
    plateau_step,
)

TENSORBOARD_DIR = "tensorboard"


def train(
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    tags: Mapping[str, Any] | None = None,
    resume: bool = True,
    verbose: int = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard: bool | str | os.PathLike = False,
    evaluate_test: bool = True,
) -> RunRecord:
    """Train, test and record one run of ``config``; resume it if it was interrupted.

    Args:
        config: the run.
        out_dir: where ``records.jsonl`` and ``checkpoints/<run_id>/`` live.
        data_dir: local data archives (default: ``$KERAS_CNNS_DATA_DIR``, else tfds).
        tags: JSON-safe labels stored in the record, e.g. ``{"experiment": ..., "variant": ...}``.
        resume: continue from the run's checkpoint if there is one (``False``: delete it and
            start again). A run that already completed is not trained again: its record is
            returned with ``tags`` (and appended only if ``records.jsonl`` lacks that record
            with those tags).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        callbacks: extra Keras callbacks. Training calls ``fit`` once per epoch, so they see
            one ``on_train_begin``/``on_train_end`` per epoch (epoch indices are the run's).
        tensorboard: ``True`` to log to ``out_dir/tensorboard/<run_id>``, or a directory.
            Needs the tensorflow and tensorboard packages (any backend).
        evaluate_test: test the selected weights at the end. ``False`` for runs that must not
            see the test set (a hyperparameter search's trials): the record's ``test`` is
            then ``None``.

    Returns:
        The ``RunRecord`` that was appended to ``out_dir/records.jsonl``.

    Raises:
        UserError: bad arguments, an unknown model or a model option it does not take.
        DataError: the dataset cannot be found or loaded.
        DivergedError: the loss became non-finite (after the "diverged" record is appended).
    """
    if not isinstance(config, TrainConfig):
        raise UserError(f"train() needs a TrainConfig, got {type(config).__name__}")
    if verbose not in (0, 1, 2):
        raise UserError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    try:
        tags = storage.json_safe(dict(tags or {}))
    except (TypeError, ValueError) as err:
        raise UserError(f"tags must be a JSON-safe mapping: {err}") from None

    if tensorboard and not tensorboard_available():
        raise UserError(
            "TensorBoard logs need the tensorflow and tensorboard packages (pip install tensorboard)"
        )
    from keras_cnns.registry import check_options

    # An unknown model or model option fails here, before any data is loaded.
    check_options(config.model, dict(config.model_kwargs))
    placement = distribute.placement(config.devices)
    placement.check_batch(config.batch_size)

    out_dir = Path(out_dir)
    if not placement.is_chief:
        # Only the chief writes into out_dir; the others write a private copy (distribute).
        out_dir = placement.private_out_dir(out_dir, config.run_id(), resume=resume)
        verbose, tensorboard = 0, bool(tensorboard)
    run_dir = out_dir / CHECKPOINTS_DIR / config.run_id()
    created = missing_dirs(run_dir)  # removed again if the run stops before writing anything
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir, created=created):
        if not resume:
            clear_run_dir(run_dir)
        remove_stale_temp_files(run_dir, verbose)
        state = RunState.load(run_dir / STATE_FILE)
        placement.agree(state.epochs_done if state else 0, "the epochs done")
        if state is not None and state.run_id != config.run_id():
            raise UserError(
                f"checkpoint {run_dir} belongs to another config; delete it or pass resume=False"
            )
        if state is not None and state.status == "completed":
            check_final_model(run_dir / FINAL_MODEL_FILE, state.checksums.get(FINAL_MODEL_FILE))
            return _completed_record(state, out_dir / RECORDS_FILE, tags, verbose)

        caller_policy = keras.config.dtype_policy()
        try:
            # A clean Keras state per run: layer names, graphs and memory of earlier runs in
            # this process (a sweep, a tuner) do not leak in. It resets the global policy,
            # which is restored below.
            keras.backend.clear_session()
            with deterministic_kernels(config.deterministic), dtype_policy(config.precision), placement.scope():
                return _Run(
                    config=config,
                    out_dir=out_dir,
                    run_dir=run_dir,
                    data_dir=data_dir,
                    tags=tags,
                    state=state,
                    verbose=verbose,
                    callbacks=list(callbacks),
                    tensorboard=tensorboard,
                    placement=placement,
                    evaluate_test=evaluate_test,
                ).run()
        finally:
            keras.config.set_dtype_policy(caller_policy)


class _Run:
    """One call of ``train``: holds the pieces while the steps run (see ``keras_cnns.training``)."""

    def __init__(
        self, *, config, out_dir, run_dir, data_dir, tags, state, verbose, callbacks, tensorboard, placement,
        evaluate_test=True,
    ):  # fmt: skip
        self.placement: distribute.Placement = placement
        self.config: TrainConfig = config
        self.out_dir: Path = out_dir
        self.run_dir: Path = run_dir
        self.data_dir = data_dir
        self.tags = tags
        self.verbose = verbose
        self.callbacks = callbacks
        self.tensorboard = tensorboard
        self.evaluate_test = evaluate_test
        self.segment_start = time.perf_counter()
        self.resumed = state is not None and state.epochs_done > 0
        self.state = state or RunState(
            run_id=config.run_id(), config=config.to_dict(), started=utc_now()
        )

    # --- setup --------------------------------------------------------------------------------

    def run(self) -> RunRecord:
        config = self.config
        keras.utils.set_random_seed(config.seed)
        self._load_data()
        self._build()
        if self.resumed:
            checkpoint = self.run_dir / self.state.checkpoint
            if not checkpoint.is_file():
                raise UserError(f"{checkpoint} is missing; delete {self.run_dir} to start the run again")
            load_checkpoint(self.wrapper, checkpoint, self.state.checksums.get(checkpoint.name))
            if self.state.lr is not None:
                self.wrapper.optimizer.learning_rate = self.state.lr
        self._say_hello()
        diverged = self._train_epochs()
        if diverged is not None:
            return self._diverge(*diverged)
        return self._finish()

    def _load_data(self) -> None:
        from keras_cnns import data

        config = self.config
        self.stream_feeds = None
        if data.DATASETS[config.dataset].streamed:
            return self._load_stream()
        splits = data.load_dataset(
            config.dataset,
            data_dir=self.data_dir,
            val_size=config.val_size,
            seed=config.seed,
            train_subset=config.train_subset,
            test_subset=config.test_subset,
            allow_sample=config.allow_sample,
        )
        preprocessor = data.fit_preprocessing(config.preprocess, splits.x_train)
        self.splits = splits
        self.preprocessing = preprocessor.info()
        self.x_train = preprocessor.apply(splits.x_train)
        self.x_val = preprocessor.apply(splits.x_val) if len(splits.x_val) else None
        self.x_test = preprocessor.apply(splits.x_test)
        self.y_train, self.y_val, self.y_test = (
            self._labels(splits.y_train),
            self._labels(splits.y_val) if len(splits.y_val) else None,
            self._labels(splits.y_test),
        )
        self.steps_per_epoch = self.placement.steps_per_epoch(len(self.x_train), config.batch_size)
        self.augmenter = data.make_augmenter(
            config.augment,
            seed=config.seed,
            image_shape=self.x_train.shape[1:],
            x_train_float=self.x_train,
            fill_value=preprocessor.fill_value,
        )

    def _labels(self, y: np.ndarray) -> np.ndarray:
        # Keras' sparse cross-entropy has no label smoothing: one-hot labels when it is on.
        if self.config.label_smoothing:
            return np.eye(self.splits.num_classes, dtype="float32")[y]
        return y

    def _load_stream(self) -> None:
        """A dataset too large for memory (ImageNet): ``tf.data`` feeds, preprocessed and
        augmented in the input pipeline (``keras_cnns.data.imagenet``); the splits hold sizes only."""
        from keras_cnns import data
        from keras_cnns.data import imagenet

        config = self.config
        source = imagenet.open_imagenet(config, self.data_dir)
        images = {k: imagenet.StreamedImages(n, source.image_shape) for k, n in source.sizes.items()}
        self.splits = data.Splits(
            name=config.dataset, source=source.source,
            x_train=images["train"], y_train=None, x_val=images["val"], y_val=None,
            x_test=images["test"], y_test=None, num_classes=data.DATASETS[config.dataset].num_classes,
        )  # fmt: skip
        self.preprocessing = source.preprocessing_info()
        self.x_train, self.x_test = images["train"], images["test"]
        self.x_val = images["val"] if len(images["val"]) else None
        self.y_train = self.y_val = self.y_test = None
        self.steps_per_epoch = self.placement.steps_per_epoch(len(self.x_train), config.batch_size)
        self.augmenter = None  # the pipeline crops and flips
        feeds = {
            k: source.feed(k, self.placement, seed=config.seed, one_hot=bool(config.label_smoothing))
            for k in ("train", "val", "test")
        }
        self.stream_feeds = (feeds["train"], feeds["val"] if self.x_val is not None else None, feeds["test"])

    def _build(self) -> None:
        from keras_cnns.registry import build_model

        config = self.config
        try:
            self.model = build_model(
                config.model,
                input_shape=self.x_train.shape[1:],
                num_classes=self.splits.num_classes,
                **dict(config.model_kwargs),
            )
        except UserError as err:
            raise UserError(f"{err}{self._preprocess_hint()}") from None
        self.wrapper = compile_for_training(
            self.model, config, augmenter=self.augmenter, steps_per_epoch=self.steps_per_epoch
        )
        self.placement.prepare(self.wrapper)
        if self.stream_feeds is not None:
            self.train_feed, self.val_feed, self.test_feed = self.stream_feeds
            return
        make = self.placement.make_feed
        self.train_feed = make(self.x_train, self.y_train)
        self.val_feed = make(self.x_val, self.y_val) if self.x_val is not None else None
        self.test_feed = make(self.x_test, self.y_test, evaluation=True)

    def _preprocess_hint(self) -> str:
        """Where the model does not build at the data's shape: the preprocessing that changes
        that shape to one it builds at (LeNet-5 on MNIST: ``lenet`` pads 28x28 to 32x32)."""
        from keras_cnns import data
        from keras_cnns.registry import build_model

        if self.stream_feeds is not None:
            return ""
        raw, current = tuple(self.splits.x_train.shape[1:]), tuple(self.x_train.shape[1:])
        for name in data.PREPROCESSING:
            shape = data.Preprocessor(name, raw, 0).output_shape
            if shape == current:
                continue
            try:
                build_model(self.config.model, input_shape=shape, num_classes=self.splits.num_classes,
                            **dict(self.config.model_kwargs))  # fmt: skip
            except (UserError, ValueError):
                continue
            finally:
                keras.backend.clear_session()
            size = "x".join(map(str, shape))
            return f": preprocess={name} makes them {size} (add --set preprocess={name})"
        return ""

    def _say_hello(self) -> None:
        announce_cpu_slowdowns(self.config.precision)
        if not self.verbose:
            return
        s, c = self.splits, self.config
        where = f"resuming after epoch {self.state.epochs_done}" if self.resumed else "starting"
        print(
            f"keras-cnns: {self.state.run_id}: {c.model} on {c.dataset} ({s.source}; "
            f"{len(s.x_train)} train, {len(s.x_val)} val, {len(s.x_test)} test), "
            f"{keras.backend.backend()} on {device_name()}, {c.precision}; {where}",
            flush=True,
        )

    # --- the epochs ---------------------------------------------------------------------------

    def _train_epochs(self) -> tuple[int, StopOnNonFinite, dict] | None:
        """Train the remaining epochs; ``(epoch, detector, logs)`` if the loss diverged."""
        config, state = self.config, self.state
        extra = list(self.callbacks)
        if self.tensorboard:
            extra.append(self._tensorboard_callback())
        if os.environ.get(storage.FAULT_ENV):
            extra.append(BatchFault())
        for epoch in range(state.epochs_done, config.epochs):
            if state.stopped_early:
                break
            reset_seed_generators(self.wrapper, config.seed, epoch)
            order = np.random.default_rng([config.seed, epoch]).permutation(len(self.x_train))
            detector = StopOnNonFinite()
            progress = [EpochProgbar(config.epochs)] if self.verbose else []
            lr = self._epoch_lr(epoch)
            start = time.perf_counter()
            fit = fit_epoch(
                self.wrapper,
                self.train_feed,
                batch_size=config.batch_size,
                epoch=epoch,
                order=order,
                validation=self.val_feed,
                verbose=self.verbose,
                callbacks=[detector, *progress, *extra],
            )
            seconds = time.perf_counter() - start
            logs = {k: float(v[-1]) for k, v in fit.history.items() if v}
            logs = self.placement.exact_validation(logs, self.wrapper, self.val_feed)
            entry = {
                "epoch": epoch + 1,
                "loss": logs.get("loss"),
                "accuracy": logs.get("accuracy"),
                "val_loss": logs.get("val_loss"),
                "val_accuracy": logs.get("val_accuracy"),
                "lr": lr,
                "time": seconds,
            }
            finite = [v for k, v in entry.items() if k in ("loss", "val_loss") and v is not None]
            if detector.batch is not None or not all(math.isfinite(v) for v in finite):
                return epoch, detector, entry
            state.history.append(entry)
            self._after_epoch(epoch, entry)
        return None

    def _epoch_lr(self, epoch: int) -> float:
        """The learning rate of the epoch's last step (the plateau rate for ``plateau``)."""
        if self.config.schedule == "plateau":
            # Read back from the optimizer: what this epoch really trains with.
            return float(ops.convert_to_numpy(self.wrapper.optimizer.learning_rate))
        last_step = (epoch + 1) * self.steps_per_epoch - 1
        return learning_rate_at(self.config, last_step, self.steps_per_epoch)

    def _after_epoch(self, epoch: int, entry: dict) -> None:
        """Plateau, early stopping (on ``config.monitor``, or at a training-error target) and
        best-epoch bookkeeping, then the checkpoint."""
        config, state = self.config, self.state
        val_accuracy = entry["val_accuracy"]
        monitored = monitored_value(entry, config.monitor)
        if config.schedule == "plateau" and monitored is not None:
            lr = state.lr if state.lr is not None else config.scaled_learning_rate
            state.plateau_best, state.plateau_wait, state.lr = plateau_step(
                monitored, best=state.plateau_best, wait=state.plateau_wait, lr=lr,
                patience=config.plateau_patience, factor=config.lr_factor,
            )  # fmt: skip
            self.wrapper.optimizer.learning_rate = state.lr
        if config.early_stopping_patience is not None and monitored is not None:
            state.stop_best, state.stop_wait, state.stopped_early = early_stopping_step(
                monitored, best=state.stop_best, wait=state.stop_wait,
                patience=config.early_stopping_patience,
            )  # fmt: skip
        accuracy = entry["accuracy"]
        if config.stop_at_train_error is not None and accuracy is not None:
            if 100.0 * (1.0 - accuracy) <= config.stop_at_train_error:
                state.stopped_early = True
        if config.select == "best_val" and val_accuracy is not None:
            if state.best_val_accuracy is None or val_accuracy > state.best_val_accuracy:
                state.best_epoch, state.best_val_accuracy = epoch + 1, val_accuracy
                state.best_checkpoint = f"best-epoch-{epoch + 1:04d}.weights.h5"
                state.checksums[state.best_checkpoint] = save_weights_atomic(
                    self.wrapper, self.run_dir / state.best_checkpoint
                )
        state.checkpoint = f"epoch-{epoch + 1:04d}.weights.h5"
        state.checksums[state.checkpoint] = save_weights_atomic(self.wrapper, self.run_dir / state.checkpoint)
        state.epochs_done = epoch + 1
        self._save_state()

    def _tick(self) -> None:
        """Add the time since the last tick to the run's wall time (kept across resumes)."""
        now = time.perf_counter()
        self.state.wall_time += now - self.segment_start
        self.segment_start = now

    def _save_state(self) -> None:
        state = self.state
        self._tick()
        keep = {STATE_FILE, FINAL_MODEL_FILE, ".lock", state.checkpoint, state.best_checkpoint}
        state.checksums = {k: v for k, v in state.checksums.items() if k in keep}
        state.save(self.run_dir / STATE_FILE)
        # Only now that the state names the new files may the old ones go.
        for path in self.run_dir.iterdir():
            if path.name not in keep and path.name.endswith(".weights.h5"):
                path.unlink(missing_ok=True)

    def _tensorboard_callback(self):
        if self.tensorboard is True:
            log_dir = self.out_dir / TENSORBOARD_DIR / self.state.run_id
        else:
            log_dir = Path(self.tensorboard)
        return keras.callbacks.TensorBoard(log_dir=str(log_dir))

    # --- the end ------------------------------------------------------------------------------

    def _finish(self) -> RunRecord:
        config, state = self.config, self.state
        if not state.history:
            raise UserError(f"run {state.run_id} has no completed epoch to test")  # cannot happen
        if config.select == "best_val" and state.best_checkpoint is not None:
            load_checkpoint(
                self.wrapper, self.run_dir / state.best_checkpoint, state.checksums.get(state.best_checkpoint)
            )
            selected = state.best_epoch
        else:
            selected = state.epochs_done
        test = None
        if self.evaluate_test:
            scores = self.placement.evaluate(self.wrapper, self.test_feed, config.batch_size)
            accuracy = float(scores["accuracy"])
            test = TestScores(loss=float(scores["loss"]), accuracy=accuracy, error=100.0 * (1.0 - accuracy))
        with self.placement.portable(self.model):
            state.checksums[FINAL_MODEL_FILE] = save_model_atomic(self.model, self.run_dir / FINAL_MODEL_FILE)
        self._tick()
        record = self._record("completed", test=test, selected_epoch=selected)
        state.status, state.record = "completed", record.to_json()
        self._save_state()
        storage.append_record(self.out_dir / RECORDS_FILE, record.to_json())
        if self.verbose:
            result = f"test error {test.error:.2f}%" if test else "trained (the test set is not used)"
            print(
                f"keras-cnns: {state.run_id}: {result} (epoch {selected}), "
                f"record appended to {self.out_dir / RECORDS_FILE}",
                flush=True,
            )
        return record

    def _diverge(self, epoch: int, detector: StopOnNonFinite, entry: dict) -> RunRecord:
        state = self.state
        self._tick()  # not saved: the state on disk stays the last good epoch's
        where = f"epoch {epoch + 1}" + (f", batch {detector.batch + 1}" if detector.batch is not None else "")
        record = self._record(
            "diverged",
            test=None,
            selected_epoch=None,
            history=[*state.history, entry],
            divergence={"epoch": epoch + 1, "batch": None if detector.batch is None else detector.batch + 1},
        )
        storage.append_record(self.out_dir / RECORDS_FILE, record.to_json())
        kept = f"epoch {state.epochs_done}" if state.epochs_done else "none: it diverged in epoch 1"
        raise DivergedError(
            f"run {state.run_id}: non-finite loss in {where} (learning rate {entry['lr']:g}); "
            f"last good checkpoint: {kept}; a 'diverged' record was appended"
        )

    def _record(self, status: str, *, test, selected_epoch, history=None, divergence=None) -> RunRecord:
        config, state, splits = self.config, self.state, self.splits
        # Through JSON and back: numpy scalars and non-finite floats (a diverged loss) become
        # what the line on disk holds, so the returned record equals the appended one.
        fields = storage.json_safe({
            "tags": self.tags,
            "history": list(state.history if history is None else history),
            "preprocessing": self.preprocessing,
            "distribution": self.placement.info(config, n_train=len(splits.x_train)),
            "divergence": divergence,
        })  # fmt: skip
        return RunRecord(
            run_id=state.run_id,
            status=status,
            tags=fields["tags"],
            config=config.to_dict(),
            model=config.model,
            model_revision=model_revision(config.model),
            params=int(self.model.count_params()),
            trainable_params=int(sum(math.prod(v.shape) for v in self.model.trainable_variables)),
            dataset=DataInfo(
                name=config.dataset, source=splits.source, n_train=len(splits.x_train),
                n_val=len(splits.x_val), n_test=len(splits.x_test),
            ),  # fmt: skip
            history=tuple(EpochLog(**entry) for entry in fields["history"]),
            test=test,
            selected_epoch=selected_epoch,
            wall_time=state.wall_time,
            started=state.started,
            finished=utc_now(),
            backend=keras.backend.backend(),
            versions=library_versions(),
            device=device_name(),
            git=git_revision(),
            seed=config.seed,
            precision=config.precision,
            preprocessing=fields["preprocessing"],
            jit_compile=bool(self.wrapper.jit_compile),
            data_on_device=getattr(self.train_feed, "on_device", None),
            stopped_early=state.stopped_early,
            distribution=fields["distribution"],
            divergence=fields["divergence"],
        )

def _completed_record(state: RunState, records_path: Path, tags: dict, verbose: int) -> RunRecord:
    """The stored record of a completed run, with ``tags``.

    Appended only if ``records.jsonl`` lacks this run's record under these tags
    (``RunRecord.same_run``): re-running a command adds nothing, while another experiment that
    reuses the same config (other tags) gets its own line without training again.
    """
    record = RunRecord.from_json(state.record or {}, where=str(records_path)).with_tags(tags)
    # Checked and appended under one lock: a run killed while appending its record (the
    # state already says completed) gets it appended exactly once by the next call.
    storage.append_record_once(
        records_path,
        record.to_json(),
        present=lambda line: RunRecord.from_json(line, where=str(records_path)).same_run(state.run_id, tags),
    )
    if verbose:
        print(f"keras-cnns: {state.run_id} already completed; its record is in {records_path}", flush=True)
    return record
