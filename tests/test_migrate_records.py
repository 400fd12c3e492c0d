"""scripts/migrate_records.py: only the archive path of a record changes, and nothing is left to do."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("migrate_records", ROOT / "scripts" / "migrate_records.py")
migrate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(migrate)


def _line(source: str, **extra) -> str:
    record = {"run_id": "r1", "dataset": {"name": "cifar10", "source": source, "n_train": 3}, "wall_time": 0.1}
    record.update(extra)
    return json.dumps(record, separators=(",", ":")) + "\n"


def test_only_the_absolute_archive_path_changes():
    text = _line("archive:/home/someone/.data/cifar10.npz", note="archive:/home/someone/.data/cifar10.npz!")
    text += _line("tfds") + _line("sample") + _line("archive:cifar10.npz sha256:ab")
    new, changed = migrate.migrate_records_text(text)
    assert changed == 1
    first, *rest = new.splitlines(keepends=True)
    assert json.loads(first)["dataset"]["source"] == "archive:cifar10.npz"
    assert json.loads(first)["note"] == "archive:/home/someone/.data/cifar10.npz!"  # not the field
    assert rest == text.splitlines(keepends=True)[1:]  # other lines byte for byte
    assert migrate.migrate_records_text(new) == (new, 0)  # re-runnable


def test_summary_package_becomes_the_folder_name():
    text = json.dumps({"source": {"package": "/srv/x/keras_cnns", "sha256": "ab"}}, indent=2)
    new, changed = migrate.migrate_summary_text(text)
    assert changed == 1 and json.loads(new)["source"] == {"package": "keras_cnns", "sha256": "ab"}
    assert migrate.migrate_summary_text(new) == (new, 0)


def test_committed_records_hold_no_machine_paths(capsys):
    assert migrate.main(["--results", str(ROOT / "results"), "--check"]) == 0
