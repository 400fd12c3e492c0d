"""TensorFlow's C++ start-up lines are filtered from the command's stderr, and nothing else is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from keras_cnns import native_logs

ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    "I0000 00:00:1796604317.181544    4008 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors."
)


@pytest.mark.smoke
def test_only_the_known_lines_are_noise():
    assert native_logs.is_noise(ABSL) and native_logs.is_noise(ONEDNN)
    for line in ("Traceback (most recent call last):", "ImportError: libcudart.so.12", "oneDNN"):
        assert not native_logs.is_noise(line)


@pytest.mark.smoke
def test_filtered_stderr_drops_the_noise_and_passes_the_rest_in_order():
    code = (
        "import os, sys\n"
        "from keras_cnns import native_logs\n"
        "with native_logs.filtered_stderr():\n"
        f"    os.write(2, {ABSL!r}.encode() + b'\\n')\n"
        "    os.write(2, b'first real line\\n')\n"
        f"    os.write(2, {ONEDNN!r}.encode() + b'\\n')\n"
        "    print('second real line', file=sys.stderr)\n"
        "os.write(2, b'after\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr.splitlines() == ["first real line", "second real line", "after"]


@pytest.mark.smoke
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="TensorFlow's lines")
def test_the_command_prints_no_tensorflow_start_up_line():
    done = subprocess.run(
        [sys.executable, "-m", "keras_cnns.cli", "summary", "lenet5"],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)},
    )
    assert done.returncode == 0, done.stderr
    assert "C5" in done.stdout or "c5" in done.stdout.lower()
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr, done.stderr
