"""Records: atomic, concurrency-safe appends, strict JSON, damaged lines named; atomic files."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest

from keras_cnns import storage
from keras_cnns.errors import DataError

pytestmark = pytest.mark.smoke

WRITERS = 4
RECORDS_PER_WRITER = 50


def test_append_and_read_back_with_tag_filters(tmp_path):
    path = tmp_path / "sub" / "records.jsonl"  # parents are created
    storage.append_record(path, {"run_id": "a", "tags": {"experiment": "x", "preset": "smoke"}})
    storage.append_record(path, {"run_id": "b", "tags": {"experiment": "x", "preset": "paper"}})
    storage.append_record(path, {"run_id": "c", "tags": {}})
    assert [r["run_id"] for r in storage.read_records(path)] == ["a", "b", "c"]
    assert [r["run_id"] for r in storage.read_records(path, experiment="x")] == ["a", "b"]
    assert [r["run_id"] for r in storage.read_records(path, experiment="x", preset="paper")] == ["b"]
    assert storage.read_records(path, experiment="y") == []


def test_values_become_strict_json(tmp_path):
    path = tmp_path / "records.jsonl"
    record = {
        "loss": float("nan"),
        "inf": float("inf"),
        "np_float": np.float32(0.25),
        "np_int": np.int64(7),
        "array": np.arange(3),
        "tuple": (1, 2),
        "path": tmp_path,
    }
    storage.append_record(path, record)
    line = path.read_text()
    assert "NaN" not in line and "Infinity" not in line and line.count("\n") == 1
    back = json.loads(line)  # strict JSON
    assert back == {
        "loss": None,
        "inf": None,
        "np_float": 0.25,
        "np_int": 7,
        "array": [0, 1, 2],
        "tuple": [1, 2],
        "path": str(tmp_path),
    }
    with pytest.raises(TypeError, match="object"):
        storage.append_record(path, {"x": object()})
    assert path.read_text() == line  # a refused record writes nothing


def test_a_damaged_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    storage.append_record(path, {"run_id": "a"})
    with path.open("a") as f:
        f.write('{"run_id": "b", "tru\n')
    storage.append_record(path, {"run_id": "c"})
    with pytest.raises(DataError, match=rf"{path}:2: damaged record"):
        storage.read_records(path)
    with pytest.raises(DataError, match="no records file"):
        storage.read_records(tmp_path / "missing.jsonl")


def _append_many(path: str, writer: int) -> None:
    # Long records, so that a torn or interleaved write would show.
    for i in range(RECORDS_PER_WRITER):
        storage.append_record(path, {"writer": writer, "i": i, "pad": "x" * (20000 + 37 * writer)})


def test_concurrent_appends_keep_every_line_whole(tmp_path):
    path = tmp_path / "records.jsonl"
    # fork keeps it fast; the function is at module level so spawn would work too.
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(WRITERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == WRITERS * RECORDS_PER_WRITER
    got = [json.loads(line) for line in lines]  # every line intact
    for writer in range(WRITERS):
        mine = [r["i"] for r in got if r["writer"] == writer]
        assert mine == list(range(RECORDS_PER_WRITER))  # each writer's lines in its order
        assert all(len(r["pad"]) == 20000 + 37 * r["writer"] for r in got)


def test_atomic_write_replaces_whole_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "out" / "table.md"
    storage.atomic_write_text(path, "old\n")
    storage.atomic_write_bytes(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        storage.atomic_write_text(path, "half-written\n")
    assert path.read_text() == "new\n"  # the old file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.md"]  # the temp file is gone
