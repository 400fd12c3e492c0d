"""Checkpoint files: what a run keeps on disk to resume, written so that a kill never leaves a part.

A run's directory ``out_dir/checkpoints/<run_id>/`` holds the weights and optimizer state of
its last completed epoch, ``state.json`` (``RunState``: the epochs done, the history, the
schedule's state, and the sha256 of every file it names) and, once completed, ``model.keras``.
Every file is written to a temporary name, fsynced and renamed into place
(``save_weights_atomic``, ``save_model_atomic``, ``RunState.save``); a file that does not
match its recorded sha256 is an error naming it. ``run_lock`` refuses a second process
training the same run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from keras_cnns import storage
from keras_cnns.errors import UserError

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
FINAL_MODEL_FILE = "model.keras"

_STATE_VERSION = 1

@dataclass
class RunState:
    """What ``state.json`` holds next to the weights: enough to resume mid-run exactly."""

    run_id: str
    config: dict
    status: str = "running"  # "running" | "completed"
    epochs_done: int = 0
    checkpoint: str | None = None  # weights + optimizer of the last completed epoch
    history: list = field(default_factory=list)
    wall_time: float = 0.0
    started: str = ""
    lr: float | None = None  # plateau: the current (reduced) learning rate
    plateau_best: float | None = None  # plateau and early stopping: the best of config.monitor
    plateau_wait: int = 0
    stop_best: float | None = None
    stop_wait: int = 0
    stopped_early: bool = False
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    best_checkpoint: str | None = None
    record: dict | None = None
    # sha256 of each file the state names, as written: a checkpoint damaged since (a bad disk,
    # a copy cut short) is refused, not silently resumed from.
    checksums: dict = field(default_factory=dict)
    version: int = _STATE_VERSION

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("version") != _STATE_VERSION:
                raise ValueError(f"state version {data.get('version')}")
            state = cls(**data)
            state._check()
            return state
        except (ValueError, TypeError) as err:
            raise UserError(
                f"damaged checkpoint state {path} ({err}); delete its directory to start the run again"
            ) from None

    def _check(self) -> None:
        """A ``ValueError`` if the fields do not fit together (a hand-edited or foreign file)."""
        if not isinstance(self.config, dict) or self.status not in ("running", "completed"):
            raise ValueError(f"status {self.status!r} or config of the wrong type")
        count = self.epochs_done
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"epochs_done {count!r}")
        if not isinstance(self.history, list) or len(self.history) != count:
            raise ValueError(f"{count} epochs done but a history of {len(self.history)}")
        for name in (self.checkpoint, self.best_checkpoint):
            if name is not None and (not isinstance(name, str) or Path(name).name != name):
                raise ValueError(f"checkpoint name {name!r}")
        if count and self.checkpoint is None:
            raise ValueError(f"{count} epochs done but no checkpoint named")
        if self.status == "completed" and not isinstance(self.record, dict):
            raise ValueError("completed without its record")
        if not isinstance(self.checksums, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.checksums.items()
        ):
            raise ValueError("checksums must map file names to sha256 digests")

    def save(self, path: Path) -> None:
        storage.atomic_write_text(path, json.dumps(storage.json_safe(asdict(self)), indent=1))

def remove_stale_temp_files(run_dir: Path, verbose: int) -> None:
    """Delete the temporary files of a killed writer (the run's lock is held: none is live)."""
    stale = [p for p in run_dir.iterdir() if storage.is_temp_file(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale and verbose:
        names = ", ".join(sorted(p.name for p in stale))
        print(f"keras-cnns: removed {len(stale)} partly written file(s) of an interrupted run: {names}", flush=True)


def load_checkpoint(model, path: Path, sha256: str | None) -> None:
    """``model.load_weights(path)``; a damaged or foreign file is one ``UserError`` naming it.

    ``sha256`` (from ``state.json``; ``None`` for a state written before checksums were kept)
    is checked first: HDF5 itself notices a cut file but not changed bytes.
    """
    if sha256 is not None and _sha256(path) != sha256:
        raise UserError(
            f"damaged checkpoint {path} (its sha256 differs from the one recorded when it was "
            f"written); delete {path.parent} (or pass --no-resume) to start the run again"
        )
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise UserError(
            f"damaged checkpoint {path} ({reason}); delete {path.parent} (or pass --no-resume) "
            "to start the run again"
        ) from None


def check_final_model(path: Path, sha256: str | None) -> None:
    """A completed run's ``model.keras`` must be whole: its recorded sha256, else the zip CRCs."""
    import zipfile

    if not path.is_file():
        raise UserError(f"{path} is missing; delete {path.parent} (or pass --no-resume) to train again")
    if sha256 is not None:
        if _sha256(path) != sha256:
            raise UserError(
                f"damaged final model {path} (its sha256 differs from the one recorded when it was "
                f"written); delete {path.parent} (or pass --no-resume) to train again"
            )
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        bad = f"{type(err).__name__}: {err}"
    if bad is not None:
        raise UserError(
            f"damaged final model {path} ({bad}); delete {path.parent} (or pass --no-resume) to train again"
        )

def missing_dirs(path: Path) -> list[Path]:
    """The directories ``path.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


@contextlib.contextmanager
def run_lock(run_dir: Path, *, created: Sequence[Path] = ()) -> Iterator[None]:
    """Refuse a second process training the same run at the same time.

    A run that stops before it has written anything (a bad option, data that cannot be read,
    Ctrl-C while loading) leaves nothing behind: its lock file goes, and so does each of the
    directories in ``created`` (made for this run, deepest first) that is then empty. The lock
    file is removed while it is still held, so no other process can hold it meanwhile.
    """
    lock = run_dir / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"run {run_dir.name} is being trained by another process") from None
        try:
            yield
        except BaseException:
            if [p.name for p in run_dir.iterdir()] == [lock.name]:
                lock.unlink(missing_ok=True)
                for directory in created:
                    try:
                        directory.rmdir()
                    except OSError:
                        break  # not empty (or not ours to remove): keep it and its parents
            raise
    finally:
        os.close(fd)


def clear_run_dir(run_dir: Path) -> None:
    for path in run_dir.iterdir():
        if path.name == ".lock":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_atomic(save, path: Path, tmp: Path) -> str:
    """``save(tmp)``, fsync, then ``os.replace(tmp, path)``: a reader sees the old file or the new.

    Returns the sha256 of the file written (``RunState.checksums``).

    A failure (a full disk) removes ``tmp`` and leaves ``path`` as it was; an ``OSError`` names
    ``path``. The ``checkpoint-write`` fault hook (``keras_cnns.storage``) strikes here, with
    ``tmp`` cut to half its size.
    """
    try:
        save(tmp)
        action = storage.fault_point("checkpoint-write")
        if action is not None:
            os.truncate(tmp, tmp.stat().st_size // 2)
            storage.fault_strike(action, path)
        _fsync_file(tmp)
        digest = _sha256(tmp)
        os.replace(tmp, path)
        return digest
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            raise OSError(err.errno, err.strerror, os.fspath(path)) from None
        raise


def save_weights_atomic(model, path: Path) -> str:
    """``model.save_weights`` (weights and optimizer state), atomically; returns its sha256."""
    stem = path.name.removesuffix(".weights.h5")
    return _save_atomic(model.save_weights, path, path.with_name(f".{stem}.{os.getpid()}.tmp.weights.h5"))


def save_model_atomic(model, path: Path) -> str:
    """``model.save`` (a ``.keras`` archive), atomically; returns its sha256."""
    return _save_atomic(model.save, path, path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras"))
