"""``keras-cnns models``, ``summary`` and ``shape``: exit codes, one-line errors, and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_cnns import registry
from keras_cnns.cli import main


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"expected one line, got: {err!r}"
    return err


@pytest.mark.smoke
def test_help_via_console_script():
    script = Path(sys.executable).parent / "keras-cnns"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "keras_cnns.cli"]
    done = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("models", "summary", "shape"):
        assert command in done.stdout


@pytest.mark.smoke
def test_output_into_a_closed_pipe_stops_quietly():
    # `keras-cnns models | head -1`: the reader leaves; no traceback, SIGPIPE's status.
    child = subprocess.Popen(
        [sys.executable, "-m", "keras_cnns.cli", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.stdout.close()  # no reader before the first line is written
    err = child.stderr.read().decode()
    child.stderr.close()
    assert child.wait(timeout=60) == 141
    assert err == ""


@pytest.mark.smoke
def test_a_broken_pipe_that_is_not_stdout_shows_its_traceback(monkeypatch):
    # A worker's pipe, say: stdout is fine, so it is a bug, not the reader leaving.
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("keras_cnns.cli._cmd_shape", broken)
    with pytest.raises(BrokenPipeError):
        main(["shape", "--input", "5", "--kernel", "3"])


# --- shape -------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_shape_prints_size_and_formula(capsys):
    assert main(["shape", "--input", "5", "--kernel", "3", "--stride", "2", "--padding", "1"]) == 0
    out = capsys.readouterr().out
    assert "output size: 3x3" in out
    assert "floor((5 + 2*1 - 1*(3 - 1) - 1) / 2) + 1 = 3" in out


@pytest.mark.smoke
def test_shape_height_and_width(capsys):
    args = ["shape", "--input", "224x160", "--kernel", "7", "--stride", "2", "--padding", "same"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "output size: 112x80" in out
    assert "ceil(160 / 2) = 80" in out


@pytest.mark.smoke
def test_shape_too_large_kernel_is_one_line(capsys):
    assert main(["shape", "--input", "5", "--kernel", "7", "--dilation", "2", "--padding", "2"]) == 2
    err = _error_line(capsys)
    assert "spans 13 pixels but the padded input has only 9" in err


@pytest.mark.smoke
def test_shape_zero_stride_is_one_line(capsys):
    assert main(["shape", "--input", "32", "--kernel", "3", "--stride", "0"]) == 2
    assert "stride must be a positive integer, got 0" in _error_line(capsys)


@pytest.mark.smoke
def test_shape_bad_number_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["shape", "--input", "big", "--kernel", "3"])
    assert exit_info.value.code == 2
    assert "--input" in _error_line(capsys)


# --- summary -----------------------------------------------------------------------------------


@pytest.mark.smoke
def test_summary_unknown_model_names_closest_matches(capsys):
    assert main(["summary", "vgg61"]) == 2
    err = _error_line(capsys)
    assert "unknown model 'vgg61'" in err and "vgg16" in err


@pytest.mark.smoke
def test_summary_bad_input_shape_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "lenet5", "--input-shape", "32by32"])
    assert exit_info.value.code == 2
    assert "expected a shape such as 32x32x3" in _error_line(capsys)


@pytest.mark.smoke
def test_summary_wrong_rank_input_shape(capsys):
    assert main(["summary", "lenet5", "--input-shape", "32x32"]) == 2
    assert "has 2 dimensions; lenet5 takes 3" in _error_line(capsys)


@pytest.mark.smoke
def test_summary_too_small_input_is_one_line(capsys, monkeypatch):
    """Keras only finds a map that shrank to nothing while building: a real Keras error here."""

    def build_tiny(name, *, input_shape=None, num_classes=None):
        import keras

        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Conv2D(4, 11, name="conv")(inputs))

    monkeypatch.setattr(registry, "build_model", build_tiny)
    assert main(["summary", "lenet5", "--input-shape", "8x8x3"]) == 2
    err = _error_line(capsys)
    assert err.startswith("keras-cnns: error: input shape 8x8x3 is too small for lenet5: ")
    assert "zero or negative" in err


@pytest.mark.smoke
def test_summary_lenet5(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "c1_conv" in out and "28x28x6" in out
    assert "(trainable 60,000)" in out  # LeCun et al. 1998: exactly 60,000 trainable parameters
    assert out.splitlines()[-2].startswith("total")
    # Every layer's multiply-adds, C3 and the subsampling layers included: C1 117,600, S2 1,176,
    # C3 100 pixels x 25 x 60 connected map pairs = 150,000, S4 400, C5 48,000, F6 10,080,
    # the RBF output 84 x 10 = 840.
    assert "not counted" not in out
    assert out.splitlines()[-2].split()[-1] == "328,096"
    assert out.splitlines()[-1].endswith("multiply-adds 328.1K")


# --- models ------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_models_without_params_lists_the_family(capsys):
    assert main(["models", "--family", "vgg", "--no-params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["name", "family", "paper", "input", "classes"]
    assert [line.split()[0] for line in lines[1:]] == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert all("224x224x3" in line and "1000" in line for line in lines[1:])


_MODELS_IN_A_FRESH_PROCESS = """
import sys
from keras_cnns.cli import main
code = main(["models"])
print("keras imported:", "keras" in sys.modules)
sys.exit(code)
"""


@pytest.mark.smoke
def test_models_lists_every_architecture_at_once_and_says_how_to_count_parameters():
    done = subprocess.run(
        [sys.executable, "-c", _MODELS_IN_A_FRESH_PROCESS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "keras imported: False"  # nothing is built: the list is instant
    assert [line.split()[0] for line in lines[1:-1]] == [e.name for e in registry.list_models()]
    assert "--params" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.smoke
def test_models_counts_parameters(capsys):
    assert main(["models", "--family", "lenet", "--params"]) == 0
    captured = capsys.readouterr()
    assert "building 2 nets" in captured.err  # said before the slow part starts
    lines = captured.out.splitlines()
    assert lines[0].split()[-2:] == ["parameters", "trainable"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["lenet5"][-1] == "60,000"
    assert rows["lenet5_modern"][-2] == "61,706"


@pytest.mark.smoke
def test_models_unknown_family(capsys):
    assert main(["models", "--family", "transformers"]) == 2
    err = _error_line(capsys)
    assert "no model family 'transformers'" in err and "resnet_cifar" in err


# --- where commands write ------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "lenet5", "--dataset", "mnist"],
        ["reproduce", "lenet5-mnist"],
        ["tune", "lenet5-mnist"],
        ["report"],
        ["benchmark"],
    ],
)
def test_every_writing_command_writes_under_runs_unless_told(argv):
    from keras_cnns.cli import build_parser

    out = build_parser().parse_args(argv).out
    assert Path(out).parts[0] == "runs", f"{argv[0]} writes to {out} by default"


# --- train, as a newcomer runs it ----------------------------------------------------------------


def test_train_on_a_subset_validates_on_as_few_and_logs_one_line_per_epoch(tmp_path, data_dir):
    """stdout redirected to a file (as in a log): no progress-bar control characters; a small
    --train-subset is not validated on 5,000 images."""
    out = tmp_path / "runs"
    argv = [
        "train", "lenet5_modern", "--dataset", "mnist", "--epochs", "2", "--train-subset", "128",
        "--test-subset", "64", "--batch-size", "64", "--set", "preprocess=lenet",
        "--data-dir", str(data_dir), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "keras_cnns.cli", *argv], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not set(done.stdout) & {"\r", "\b", "\x1b"}, repr(done.stdout[-500:])
    epochs = [line for line in done.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs == ["Epoch 1/2", "Epoch 2/2"], done.stdout
    assert "validating on 128 held-out images, not 5,000" in done.stdout
    (record,) = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert record["dataset"]["n_train"] == 128 and record["dataset"]["n_val"] == 128
