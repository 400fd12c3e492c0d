"""Every command, every kind of bad input: one line on stderr, a non-zero exit, no traceback, and
no work started (nothing written, Keras not even imported).

The table runs in one fresh interpreter, so "Keras was never imported" is checked for all of
it at once. Cases that need a trained run or Keras (a full disk mid-run) run in this process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keras_cnns import storage
from keras_cnns.cli import main

# (command line, exit code, a word the one line must hold). Placeholders: {out} a directory
# that does not exist (and must not exist afterwards), {file} a plain file, {nodata} a data
# directory without archives, {damaged} a results root whose relu-vs-tanh records hold a
# damaged line.
TRAIN = ["train", "lenet5", "--dataset", "mnist", "--out", "{out}"]
# A folder nobody can create anything in, root included (permissions would not stop root).
UNCREATABLE = "/proc/keras-cnns-out"
CASES = [
    # models
    (["models", "--family", "transformers"], 2, "no model family 'transformers'"),
    (["models", "--bogus"], 2, "unrecognized arguments: --bogus"),
    # summary
    (["summary", "vgg61"], 2, "unknown model 'vgg61'"),
    (["summary", "resnet20"], 2, "did you mean resnet20_cifar"),
    (["summary", "lenet5", "--classes", "ten"], 2, "--classes"),
    (["summary", "lenet5", "--batch-size", "0"], 2, "expected a positive integer, got 0"),
    (["summary", "lenet5", "--input-shape", "32by32"], 2, "expected a shape such as 32x32x3"),
    # shape
    (["shape", "--kernel", "3"], 2, "--input"),
    (["shape", "--input", "big", "--kernel", "3"], 2, "--input"),
    (["shape", "--input", "32", "--kernel", "3", "--stride", "0"], 2, "stride must be a positive integer"),
    (["shape", "--input", "5", "--kernel", "9"], 2, "spans 9 pixels"),
    # train
    (["train", "resnet21_cifar", "--dataset", "cifar10", "--out", "{out}"], 2, "resnet20_cifar"),
    (["train", "lenet5", "--dataset", "imagenet9", "--out", "{out}"], 2, "unknown dataset 'imagenet9'"),
    ([*TRAIN, "--epochs", "0"], 2, "epochs must be a positive integer"),
    ([*TRAIN, "--epochs", "2.5"], 2, "epochs"),
    ([*TRAIN, "--batch-size", "-8"], 2, "batch_size"),
    ([*TRAIN, "--seed", "4294967296"], 2, "seed must be in 0..4294967295"),
    ([*TRAIN, "--precision", "fp8"], 2, "unknown precision 'fp8'"),
    ([*TRAIN, "--augment", "flip,mixup"], 2, "unknown augment 'mixup'"),
    ([*TRAIN, "--set", "learning_rate=fast"], 2, "learning_rate"),
    ([*TRAIN, "--set", "learning_rate=-1"], 2, "learning_rate must be positive"),
    ([*TRAIN, "--set", "momentum=1.5"], 2, "momentum must be in [0, 1)"),
    ([*TRAIN, "--set", "nesterov=maybe"], 2, "nesterov"),
    ([*TRAIN, "--set", "colour=blue"], 2, "unknown config key 'colour'"),
    ([*TRAIN, "--set", "learning_rate"], 2, "key=value"),
    ([*TRAIN, "--set", "model_kwargs.=3"], 2, "name the builder option"),
    (["train", "lenet5", "--dataset", "mnist", "--out", "{file}"], 2, "is not a directory"),
    (["train", "lenet5", "--dataset", "mnist", "--out", "{file}/sub"], 2, "is a file"),
    ([*TRAIN, "--data-dir", "{nodata}"], 3, "no archive"),
    ([*TRAIN, "--data-dir", "{file}"], 2, "is not a directory"),
    (["train", "lenet5", "--out", "{out}"], 2, "--dataset"),
    (["train", "lenet5", "--dataset", "mnist", "--out", UNCREATABLE], 2, "is not writable"),
    ([*TRAIN, "--set", "model_kwargs.colour=blue", "--data-dir", "{nodata}"], 2, "takes no option 'colour'"),
    # reproduce
    (["reproduce", "relu-vs-sigmoid", "--out", "{out}"], 2, "unknown experiment 'relu-vs-sigmoid'"),
    (["reproduce", "relu-vs-tanh", "--preset", "huge", "--out", "{out}"], 2, "huge"),
    (["reproduce", "relu-vs-tanh", "--seeds", "0", "--out", "{out}"], 2, "expected a positive integer"),
    (["reproduce", "relu-vs-tanh", "--set", "colour=blue", "--out", "{out}"], 2, "colour"),
    (["reproduce", "relu-vs-tanh", "--set", "epochs=-1", "--out", "{out}"], 2, "epochs"),
    (["reproduce", "relu-vs-tanh", "--variants", "sigmoid", "--out", "{out}"], 2, "sigmoid"),
    (["reproduce", "relu-vs-tanh", "--out", "{file}"], 2, "is not a directory"),
    (["reproduce", "relu-vs-tanh", "--data-dir", "{nodata}", "--out", "{out}"], 3, "no archive"),
    (["reproduce", "relu-vs-tanh", "--out", UNCREATABLE], 2, "is not writable"),
    # report
    (["report", "relu-vs-sigmoid", "--out", "{out}"], 2, "unknown experiment"),
    (["report", "--out", "{file}"], 2, "is not a directory"),
    (["report", "relu-vs-tanh", "--out", "{damaged}"], 3, "records.jsonl:2: damaged record"),
    (["report", "--out", UNCREATABLE], 2, "is not writable"),
    # a folder without records (a mistyped --out): nothing to report, nothing written
    (["report", "--out", "{out}"], 2, "no run records in"),
    (["report", "lenet5-mnist", "--out", "{out}"], 2, "no run records in"),
    # tune
    (["tune", "relu-vs-sigmoid", "--out", "{out}"], 2, "relu-vs-sigmoid"),
    (["tune", "relu-vs-tanh", "--trials", "0", "--out", "{out}"], 2, "expected a positive integer"),
    (["tune", "relu-vs-tanh", "--tuner", "grid", "--out", "{out}"], 2, "invalid choice: 'grid'"),
    (["tune", "relu-vs-tanh", "--variant", "sigmoid", "--out", "{out}"], 2, "unknown variant 'sigmoid'"),
    (["tune", "relu-vs-tanh", "--preset", "huge", "--out", "{out}"], 2, "huge"),
    (["tune", "relu-vs-tanh", "--out", "{file}"], 2, "is not a directory"),
    (["tune", "relu-vs-tanh", "--out", UNCREATABLE], 2, "is not writable"),
    (["tune", "relu-vs-tanh", "--data-dir", "{nodata}", "--out", "{out}"], 3, "no archive"),
    # no command, unknown command, unknown backend
    ([], 2, "required: COMMAND"),
    (["fit"], 2, "invalid choice: 'fit'"),
    (["--backend", "mxnet", "models"], 2, "invalid choice: 'mxnet'"),
]  # fmt: skip

_DRIVER = """
import contextlib, io, json, sys
from keras_cnns.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    results.append({"code": code, "err": err.getvalue(), "out": out.getvalue()})
print(json.dumps({"results": results, "keras": "keras" in sys.modules}))
"""


@pytest.fixture
def places(tmp_path) -> dict[str, str]:
    file = tmp_path / "a-file"
    file.write_text("not a directory\n")
    (tmp_path / "nodata").mkdir()
    damaged = tmp_path / "damaged"
    storage.append_record(damaged / "relu-vs-tanh" / "records.jsonl", {"run_id": "a", "tags": {}})
    with (damaged / "relu-vs-tanh" / "records.jsonl").open("a") as f:
        f.write('{"run_id": "b", "tags": {"exp\n')
    return {
        "out": str(tmp_path / "out"),
        "file": str(file),
        "nodata": str(tmp_path / "nodata"),
        "damaged": str(damaged),
    }


@pytest.mark.smoke
def test_every_command_rejects_bad_input_with_one_line_before_any_work(places, tmp_path):
    argvs = [[a.format(**places) for a in argv] for argv, _, _ in CASES]
    env = {
        k: v for k, v in os.environ.items() if k not in ("KERAS_CNNS_DATA_DIR", storage.FAULT_ENV)
    }
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    failures = []
    for (argv, code, word), got in zip(CASES, report["results"], strict=True):
        lines = got["err"].strip().splitlines()
        problems = [
            f"exit {got['code']}, expected {code}" if got["code"] != code else "",
            f"{len(lines)} lines on stderr" if len(lines) != 1 else "",
            "a traceback" if "Traceback" in got["err"] else "",
            f"{word!r} not in the line" if word not in got["err"] else "",
            f"wrote to stdout: {got['out']!r}" if got["out"] else "",
        ]
        if any(problems):
            failures.append(
                f"{' '.join(argv)}: {'; '.join(p for p in problems if p)}: {got['err']!r}"
            )
    assert not failures, "\n".join(failures)
    assert report["keras"] is False  # every case failed before Keras was imported
    assert not Path(places["out"]).exists()  # and before anything was written
    assert sorted(p.name for p in (Path(places["damaged"]) / "relu-vs-tanh").iterdir()) == [
        "records.jsonl"
    ]


@pytest.mark.smoke
def test_an_unwritable_output_directory_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip(
                "running as root: permissions do not stop writes (the file case is in the table)"
            )
        assert main(["train", "lenet5", "--dataset", "mnist", "--out", str(locked / "runs")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not writable" in err and str(locked) in err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.fixture
def full_disk(monkeypatch):
    """``enospc`` faults (``keras_cnns.storage``): from the first such write on, the disk is full."""
    monkeypatch.setattr(storage, "_fault_counts", {})

    def fill(kind: str) -> None:
        monkeypatch.setenv(storage.FAULT_ENV, f"{kind}:1:enospc")

    return fill


_SMALL_RUN = [
    "train", "lenet5_modern", "--dataset", "mnist", "--epochs", "1", "--train-subset", "128",
    "--test-subset", "64", "--batch-size", "64", "--set", "val_size=0", "--set", "preprocess=lenet", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("earlier") / "runs"
    assert main([*_SMALL_RUN, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("kind", ["checkpoint-write", "file-write", "record-write"])
def test_a_full_disk_is_one_line_and_earlier_results_stay_intact(
    earlier_run, tmp_path, data_dir, capsys, full_disk, kind
):
    out = tmp_path / "runs"
    shutil.copytree(earlier_run, out)
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    full_disk(kind)
    assert main([*_SMALL_RUN, "--seed", "1", "--data-dir", str(data_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("keras-cnns: error: cannot write ") and "No space left on device" in err
    assert {p: p.read_bytes() for p in before} == before  # the earlier run's files, byte for byte
    assert len(storage.read_records(out / "records.jsonl")) == 1
    assert not [p for p in out.rglob("*") if storage.is_temp_file(p.name)]


def test_a_full_disk_while_writing_tables_keeps_the_old_ones(tmp_path, capsys, full_disk):
    from keras_cnns.lab import report

    _smoke_records(tmp_path, "relu-vs-tanh")
    assert main(["report", "relu-vs-tanh", "--out", str(tmp_path)]) == 0
    readme = tmp_path / "relu-vs-tanh" / report.REPORT_FILE
    before = readme.read_bytes()
    capsys.readouterr()
    full_disk("file-write")
    assert main(["report", "relu-vs-tanh", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(tmp_path) in err
    assert readme.read_bytes() == before
    assert not [p for p in tmp_path.rglob("*") if storage.is_temp_file(p.name)]


# --- what a newcomer runs into ------------------------------------------------------------------

# Runs the command line in a fresh interpreter in which the named packages cannot be imported,
# as after the README's set-up (TensorFlow only) for jax and torch.
_WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # import fails and find_spec finds nothing: as if not installed
from keras_cnns.cli import main
sys.exit(main(sys.argv[2:]))
"""


# TensorFlow's C++ start-up lines (absl's InitializeLog note, oneDNN's notice), written to
# stderr while it is imported; not the command's own output.
_TENSORFLOW_STARTUP = re.compile(r"absl::InitializeLog|\] oneDNN custom operations|cpu_feature_guard")


def _run_without(packages: str, argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, packages, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.smoke
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_backend_that_is_not_installed_is_one_line_saying_how_to_install_it(backend):
    for argv, env in (
        (["--backend", backend, "summary", "lenet5"], {}),
        (["train", "lenet5", "--dataset", "mnist"], {"KERAS_BACKEND": backend}),
    ):
        done = _run_without(backend, argv, env)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"the {backend} backend" in done.stderr and "is not installed" in done.stderr
        assert f"BACKENDS={backend} bash scripts/setup.sh" in done.stderr


@pytest.mark.smoke
def test_a_backend_keras_cnns_does_not_run_on_is_one_line():
    done = _run_without("", ["summary", "lenet5"], {"KERAS_BACKEND": "mxnet"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "KERAS_BACKEND=mxnet" in done.stderr and "tensorflow, jax, torch" in done.stderr


def _smoke_records(out: Path, name: str) -> tuple[Path, dict]:
    """``out/name/records.jsonl`` with a completed record of every run of the smoke preset (the
    committed smoke record, under each planned run's id and tags): re-running trains nothing.
    Returns the path and the template record."""
    from keras_cnns.lab import experiments, runner
    from keras_cnns.training.record import tag_key

    committed = storage.read_records(Path(__file__).resolve().parents[1] / "results" / name / "records.jsonl")
    template = next(r for r in committed if r["status"] == "completed" and r["tags"]["preset"] == "smoke")
    path = out / name / "records.jsonl"
    for run in runner.plan_runs(experiments.get_experiment(name), "smoke"):
        assert tag_key(run.tags)  # the ledger matches on these
        storage.append_record(path, {**template, "run_id": run.run_id, "tags": dict(run.tags)})
    return path, template


def _append_torn(path: Path, record: dict) -> tuple[bytes, bytes]:
    """Append ``record`` cut in half, as a writer killed mid-append leaves it; returns the file
    before, and the half line."""
    before = path.read_bytes()
    line = (json.dumps(record) + "\n").encode()
    path.write_bytes(before + line[: len(line) // 2])
    return before, line[: len(line) // 2]


def test_a_torn_last_record_does_not_stop_the_command_that_is_run_again(tmp_path, capsys):
    """A run killed mid-append leaves half a line; re-running reproduce (or report) sets it
    aside, says so, and goes on, instead of failing on it every time."""
    path, template = _smoke_records(tmp_path, "lenet5-mnist")
    killed = {**template, "run_id": "another-run", "tags": {**template["tags"], "seed": 9}}
    for argv in (
        ["reproduce", "lenet5-mnist", "--preset", "smoke", "--out", str(tmp_path), "--quiet"],
        ["report", "lenet5-mnist", "--out", str(tmp_path)],
    ):
        whole, half = _append_torn(path, killed)
        capsys.readouterr()
        assert main(argv) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert f"{path}:4: an incomplete record" in err and "records.jsonl.torn" in err
        assert path.read_bytes() == whole  # nothing trained again, nothing appended
        torn = path.parent / "records.jsonl.torn"
        assert torn.read_bytes() == half + b"\n"
        torn.unlink()


def test_lenet5_on_raw_mnist_names_the_option_and_leaves_nothing_behind(tmp_path, data_dir):
    """After the data is read and the model fails to build: one line naming the option, and no
    checkpoint folder holding only a lock file."""
    out = tmp_path / "runs"
    argv = ["train", "lenet5", "--dataset", "mnist", "--train-subset", "64", "--test-subset", "64"]
    done = subprocess.run(
        [sys.executable, "-m", "keras_cnns.cli", *argv, "--data-dir", str(data_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = [t for t in done.stderr.splitlines() if not _TENSORFLOW_STARTUP.search(t)]
    assert "pad 28x28 MNIST digits" in line and "--set preprocess=lenet" in line
    assert not out.exists()


def test_a_search_that_cannot_read_its_data_leaves_nothing_behind(tmp_path, capsys):
    damaged = tmp_path / "data"
    damaged.mkdir()
    (damaged / "mnist.npz").write_bytes(b"PK\x03\x04 not really an archive")
    out = tmp_path / "runs"
    argv = ["tune", "lenet5-mnist", "--preset", "smoke", "--trials", "1", "--quiet"]
    assert main([*argv, "--data-dir", str(damaged), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mnist.npz" in err
    assert not out.exists()  # no search folder with a trial that never started, no reports
