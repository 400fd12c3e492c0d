"""Run records and crash-safe files.

Every training run appends one JSON line to a ``records.jsonl`` file; tables and plots are
generated from those lines. Several processes (a sweep, a tuner, two terminals) may append to
the same file at once, and any of them may be killed at any moment, so:

* ``append_record`` takes an exclusive ``fcntl.flock`` on the file, writes the whole line with
  one ``os.write`` on an ``O_APPEND`` descriptor, and ``fsync``\\ s before unlocking: a line is
  either all there or not there, and lines never interleave.
* ``atomic_write_text`` / ``atomic_write_bytes`` write a temporary file in the destination's
  directory and ``os.replace`` it over the destination: a reader sees the old file or the new
  one, never half of one. Every generated table, plot and checkpoint-state file goes through
  them.

Nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keras_cnns.errors import DataError

__all__ = [
    "append_record",
    "atomic_write_bytes",
    "atomic_write_text",
    "json_safe",
    "read_records",
]


def json_safe(value: Any) -> Any:
    """``value`` with only JSON types: numpy scalars and arrays, tuples and paths converted.

    Non-finite floats (a diverged loss) become ``None``: strict JSON has no NaN, and a reader
    in another language must not choke on the record of a diverged run.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v) for v in items]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # numpy scalars and arrays (and anything else with .item() / .tolist()), without
    # importing numpy here.
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if hasattr(value, "item"):
        return json_safe(value.item())
    raise TypeError(f"cannot store a {type(value).__name__} in a record: {value!r}")


def _encode_line(record: Mapping[str, Any]) -> bytes:
    text = json.dumps(json_safe(record), allow_nan=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def append_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path``, atomically and safely under concurrency.

    The parent directory is created if needed. Values are converted with ``json_safe``.

    Args:
        path: the ``.jsonl`` file.
        record: a mapping of JSON-convertible values.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _encode_line(record)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(line)
            # One os.write writes a regular file's line whole; the loop only guards the
            # theoretical short write (the lock keeps other appenders out meanwhile).
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike, **tag_filters: Any) -> list[dict]:
    """The records in ``path``, in the order they were appended.

    Args:
        path: the ``.jsonl`` file written by ``append_record``.
        **tag_filters: keep only records whose ``tags`` hold these values, for example
            ``read_records(path, experiment="plain-vs-residual", preset="smoke")``.

    Returns:
        A list of record dicts.

    Raises:
        DataError: the file does not exist, or a line is not a JSON object (the message names
            ``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no records file at {path}: train a run first ('keras-cnns train ...')")
    records = []
    with path.open("r", encoding="utf-8") as f:
        # A shared lock so a reader never sees a line that is being written.
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        try:
            lines = f.read().splitlines()
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path}:{number}: damaged record ({err.msg}); delete or repair that line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: a record must be a JSON object; delete that line")
        tags = record.get("tags") or {}
        if all(tags.get(key) == value for key, value in tag_filters.items()):
            records.append(record)
    return records


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    A temporary file in the same directory (so ``os.replace`` is a rename on one file system)
    is written, flushed, fsynced and renamed over ``path``; parents are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results and records are for everyone to read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """``atomic_write_bytes`` for text."""
    atomic_write_bytes(path, text.encode(encoding))
