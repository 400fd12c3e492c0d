"""Run records and crash-safe files.

Every training run appends one JSON line to a ``records.jsonl`` file; tables and plots are
generated from those lines. Several processes (a sweep, a tuner, two terminals) may append to
the same file at once, and any of them may be killed at any moment, so:

* ``append_record`` takes an exclusive ``fcntl.flock`` on the file, writes the whole line with
  one ``os.write`` on an ``O_APPEND`` descriptor, and ``fsync``\\ s before unlocking: lines
  never interleave, and readers (who take a shared lock) never see a line being written.
* ``atomic_write_text`` / ``atomic_write_bytes`` write a temporary file in the destination's
  directory and ``os.replace`` it over the destination: a reader sees the old file or the new
  one, never half of one. Every generated table, plot and checkpoint-state file goes through
  them.
* A line left incomplete by a writer that was killed mid-append (a large ``os.write`` can be
  cut short by SIGKILL, or by a full disk) is set aside, never silently dropped: the next
  ``append_record`` (or ``set_aside_torn_tail``, which the commands that read records before
  writing call first) moves it to ``<file>.torn`` and says so on stderr; until then
  ``read_records`` reports it as ``file:line``. A write that fails (``ENOSPC``) truncates the
  file back to where it was.
* ``exclusive(path)`` serialises whole read-regenerate-write cycles (table regeneration) on a
  directory, so the last tables written are computed from the last records appended.

Fault injection (for ``scripts/kill_resume.py`` and the tests): ``KERAS_CNNS_FAULT`` holds
``KIND:N[:ACTION]`` items, comma-separated. ``KIND`` is one of ``FAULT_KINDS``: a training
batch ending, a checkpoint file write (weights, ``.keras``), another atomic file write
(``state.json``, tables) or a record append. At the ``N``-th such event of the process (1-based)
``ACTION`` happens: ``kill`` (the default) SIGKILLs the process (halfway through the write, for
the writes); ``enospc`` writes half and raises ``OSError(ENOSPC)`` at that write and every later
one, as a full disk would. Unset (always, outside tests), each hook costs one environment
lookup.

Nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from keras_cnns.errors import DataError, UserError

__all__ = [
    "DEFAULT_OUT_DIR",
    "FAULT_ENV",
    "FAULT_KINDS",
    "append_record",
    "append_record_once",
    "atomic_write_bytes",
    "atomic_write_text",
    "exclusive",
    "fault_point",
    "fault_strike",
    "is_temp_file",
    "json_safe",
    "read_records",
    "set_aside_torn_tail",
]

# Where every command writes (records, checkpoints, tables) unless told otherwise: a git-ignored
# folder, so the committed results/ change only when a command is given --out results.
DEFAULT_OUT_DIR = "runs"
FAULT_ENV = "KERAS_CNNS_FAULT"
FAULT_KINDS = ("train-batch", "checkpoint-write", "file-write", "record-write")
FAULT_ACTIONS = ("kill", "enospc")
TORN_SUFFIX = ".torn"


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

    The parent directory is created if needed. Values are converted with ``json_safe``. An
    incomplete last line left by a killed writer is first set aside (see the module docstring).

    Args:
        path: the ``.jsonl`` file.
        record: a mapping of JSON-convertible values.

    Raises:
        OSError: the line could not be written (the file is left as it was), naming ``path``.
    """
    append_record_once(path, record)


def append_record_once(
    path: str | os.PathLike,
    record: Mapping[str, Any],
    *,
    present: Callable[[dict], bool] | None = None,
) -> bool:
    """``append_record``, unless a record for which ``present(record)`` holds is in the file.

    The check and the append happen under one exclusive lock, so two processes finishing the
    same run at once append it once.

    Returns:
        Whether the record was appended.

    Raises:
        DataError: with ``present``: a damaged line (``file:line``).
        OSError: the line could not be written (the file is left as it was), naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _encode_line(record)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _set_aside_torn_tail(fd, path)
            if present is not None:
                size = os.fstat(fd).st_size
                if any(present(r) for r in _parse_lines(path, os.pread(fd, size, 0))):
                    return False
            _append_line(fd, path, line)
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _append_line(fd: int, path: Path, line: bytes) -> None:
    start = os.fstat(fd).st_size
    try:
        view = memoryview(line)
        action = fault_point("record-write")
        if action is not None:
            os.write(fd, view[: len(view) // 2])
            fault_strike(action, path)
        # One os.write writes a regular file's line whole; the loop guards a short write
        # (the lock keeps other appenders out meanwhile).
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException as err:
        # A full disk (or any failure) must not leave half a line: cut back to where we began.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise _named(err, path) from None


def set_aside_torn_tail(path: str | os.PathLike) -> None:
    """Move an incomplete last line of ``path`` to ``<path>.torn`` (saying so on stderr), as the
    next ``append_record`` would; nothing happens if the file is whole or does not exist.

    Commands that read a records file and then write beside it (``reproduce`` before it plans,
    ``report`` before it regenerates) call this first, so re-running the command that was
    killed goes on instead of failing on the line its writer left.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _set_aside_torn_tail(fd, path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _set_aside_torn_tail(fd: int, path: Path) -> None:
    """Move an incomplete last line (no newline: its writer died) to ``<path>.torn``.

    Called with the exclusive lock held, so no live writer is behind that line. A last line
    that is a whole JSON object (a hand-edited file without the final newline) is kept and
    only completed with the newline.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = size
    while start > 0:
        chunk = max(0, start - 65536)
        data = os.pread(fd, start - chunk, chunk)
        newline = data.rfind(b"\n")
        if newline >= 0:
            start = chunk + newline + 1
            break
        start = chunk
    tail = os.pread(fd, size - start, start)
    try:
        whole = isinstance(json.loads(tail), dict)
    except ValueError:
        whole = False
    if whole:
        os.write(fd, b"\n")
        os.fsync(fd)
        return
    torn = path.with_name(path.name + TORN_SUFFIX)
    with open(torn, "ab") as f:
        f.write(tail + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.ftruncate(fd, start)
    os.fsync(fd)
    print(
        f"keras-cnns: {path}:{_count_lines(fd, start) + 1}: an incomplete record ({len(tail)} bytes, its "
        f"writer was killed mid-write) was moved to {torn}",
        file=sys.stderr,
        flush=True,
    )


def _count_lines(fd: int, size: int) -> int:
    return os.pread(fd, size, 0).count(b"\n")


def _parse_lines(path: Path, data: bytes) -> list[dict]:
    """The records in ``data`` (the content of ``path``); a damaged line is a ``DataError``."""
    lines = data.split(b"\n")
    complete = data.endswith(b"\n") or not data
    if complete:
        lines = lines[:-1]
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as err:
            if number == len(lines) and not complete:
                raise DataError(
                    f"{path}:{number}: incomplete last record (its writer was killed mid-write); "
                    f"re-run the command that wrote it (keras-cnns train, reproduce, tune and report "
                    f"move the line to {path.name}{TORN_SUFFIX} and go on) or delete that line"
                ) from None
            reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8 text"
            raise DataError(
                f"{path}:{number}: damaged record ({reason}); delete or repair that line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: a record must be a JSON object; delete that line")
        records.append(record)
    return records


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
    with path.open("rb") as f:
        # A shared lock so a reader never sees a line that is being written.
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        try:
            data = f.read()
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return [
        r for r in _parse_lines(path, data)
        if all((r.get("tags") or {}).get(key) == value for key, value in tag_filters.items())
    ]  # fmt: skip


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
            action = fault_point("file-write")
            if action is not None:
                f.write(data[: len(data) // 2])
                f.flush()
                fault_strike(action, path)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _named(err, path) from None


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """``atomic_write_bytes`` for text."""
    atomic_write_bytes(path, text.encode(encoding))


def is_temp_file(name: str) -> bool:
    """Is ``name`` one of the temporary files an atomic write renames into place?

    ``atomic_write_bytes`` makes ``.<name>.XXXX.part``; the engine's checkpoint writes make
    ``.<stem>.<pid>.tmp.<suffix>``. Such a file outlives its writer only if the writer was
    killed (or the machine stopped) mid-write.
    """
    return name.startswith(".") and (name.endswith(".part") or ".tmp." in name)


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (created if needed) inside the block.

    Table regeneration takes it on the directory it writes, so two reports of one experiment
    never interleave: whichever writes last read the records last. No lock file is left.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --- fault injection (see the module docstring) ---------------------------------------------------

_fault_counts: dict[str, int] = {}


def _fault_plan() -> dict[str, tuple[int, str]]:
    spec = os.environ.get(FAULT_ENV, "").strip()
    plan = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, rest = item.partition(":")
        count, _, action = rest.partition(":")
        action = action or "kill"
        if (
            kind not in FAULT_KINDS
            or not count.isdigit()
            or int(count) < 1
            or action not in FAULT_ACTIONS
        ):
            raise UserError(
                f"{FAULT_ENV}={spec!r}: expected KIND:N[:ACTION] items with KIND one of "
                f"{', '.join(FAULT_KINDS)}, N >= 1 and ACTION one of {', '.join(FAULT_ACTIONS)}"
            )
        plan[kind] = (int(count), action)
    return plan


def fault_point(kind: str) -> str | None:
    """Count one ``kind`` event of this process; the fault action due now, or ``None``.

    ``kill`` is due at the N-th event only; ``enospc`` at the N-th and every later one (a full
    disk stays full).
    """
    if not os.environ.get(FAULT_ENV):
        return None
    due = _fault_plan().get(kind)
    count = _fault_counts[kind] = _fault_counts.get(kind, 0) + 1
    if due is None:
        return None
    n, action = due
    if count == n or (action == "enospc" and count > n):
        return action
    return None


def fault_strike(action: str, path: str | os.PathLike | None = None) -> NoReturn:
    """Carry out a due fault: SIGKILL this process, or raise ``OSError(ENOSPC)`` for ``path``."""
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # not reached: SIGKILL cannot be caught
    raise OSError(
        errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else os.fspath(path)
    )


def _named(err: BaseException, path: Path) -> BaseException:
    """``err``, or for an ``OSError`` without a file name the same error naming ``path``."""
    if isinstance(err, OSError) and err.filename is None and err.errno is not None:
        return OSError(err.errno, err.strerror, os.fspath(path))
    return err


def read_json(path: str | os.PathLike, *, fix: str = "delete it") -> Any:
    """The JSON value in ``path``, or ``None`` if there is no such file.

    Raises:
        DataError: the file is not valid JSON (``fix`` says what to do about it).
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is damaged ({err}): {fix}") from None
