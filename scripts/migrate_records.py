"""Rewrite machine paths out of committed run records: ``archive:/abs/path/x.npz`` -> ``archive:x.npz``.

Records written before ``keras_cnns.data.archive_source`` named a dataset archive by its
absolute path on the machine that ran them (``"source": "archive:/home/me/.data/cifar10.npz"``).
That path says nothing to a reader and everything about someone's disk. This script replaces,
in every ``RESULTS/*/records.jsonl``, only that field's value by the archive's file name, and
in ``RESULTS/reliability/summary.json`` only ``source.package`` by the package's folder name;
every other byte of every line stays as it was (the script checks that the decoded record
differs in that one field only). Run it as often as you like: a migrated file is left alone.
Regenerate the tables afterwards with ``keras-cnns report``.

No checksum is added to old records: the archive they read is not here to hash. (New records
carry ``archive:NAME sha256:HEX``, computed from the file the run read.)

    python scripts/migrate_records.py                  # results/
    python scripts/migrate_records.py --results DIR --check   # exit 1 if anything would change
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keras_cnns.storage import atomic_write_text  # noqa: E402

ARCHIVE_PREFIX = "archive:"


def _is_absolute(path: str) -> bool:
    return PurePosixPath(path).is_absolute()


def migrate_source(source: str) -> str:
    """``archive:/abs/dir/name.npz`` -> ``archive:name.npz``; any other source unchanged."""
    if not source.startswith(ARCHIVE_PREFIX):
        return source
    path = source[len(ARCHIVE_PREFIX) :]
    if not _is_absolute(path):
        return source
    return ARCHIVE_PREFIX + PurePosixPath(path).name


def _replace_value(line: str, old: str, new: str) -> str:
    """``line`` with the JSON string ``old`` replaced by ``new`` exactly once."""
    old_json, new_json = json.dumps(old), json.dumps(new)
    if line.count(old_json) != 1:
        raise ValueError(f"expected {old_json} exactly once in the line, found {line.count(old_json)}")
    return line.replace(old_json, new_json)


def migrate_records_text(text: str) -> tuple[str, int]:
    """(the records file with every archive source migrated, the number of lines changed)."""
    out, changed = [], 0
    for line in text.splitlines(keepends=True):
        if not line.strip():
            out.append(line)
            continue
        record = json.loads(line)
        source = (record.get("dataset") or {}).get("source")
        if not isinstance(source, str) or migrate_source(source) == source:
            out.append(line)
            continue
        new_line = _replace_value(line, source, migrate_source(source))
        expected = copy.deepcopy(record)
        expected["dataset"]["source"] = migrate_source(source)
        if json.loads(new_line) != expected:
            raise ValueError(f"rewriting the source of run {record.get('run_id')} changed more than it")
        out.append(new_line)
        changed += 1
    return "".join(out), changed


def migrate_summary_text(text: str) -> tuple[str, int]:
    """(a kill-resume summary with ``source.package`` as a folder name, 1 if it changed)."""
    summary = json.loads(text)
    package = (summary.get("source") or {}).get("package")
    if not isinstance(package, str) or not _is_absolute(package):
        return text, 0
    new_text = _replace_value(text, package, PurePosixPath(package).name)
    expected = copy.deepcopy(summary)
    expected["source"]["package"] = PurePosixPath(package).name
    if json.loads(new_text) != expected:
        raise ValueError("rewriting source.package changed more than it")
    return new_text, 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="the results root")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    files = [(p, migrate_records_text) for p in sorted(args.results.glob("*/records.jsonl"))]
    summary = args.results / "reliability" / "summary.json"
    if summary.is_file():
        files.append((summary, migrate_summary_text))
    pending = 0
    for path, migrate in files:
        text = path.read_text(encoding="utf-8")
        new_text, changed = migrate(text)
        if not changed:
            continue
        pending += 1
        name = path.relative_to(args.results)
        if args.check:
            print(f"migrate_records: {name}: {changed} field(s) to rewrite")
        else:
            atomic_write_text(path, new_text)
            print(f"migrate_records: {name}: {changed} field(s) rewritten")
    if not pending:
        print("migrate_records: nothing to rewrite")
    return 1 if args.check and pending else 0


if __name__ == "__main__":
    sys.exit(main())
