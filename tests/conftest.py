"""Shared fixtures.

Real data: tests that need the unpacked MNIST / CIFAR archives take the ``data_dir`` fixture.
It reads ``KERAS_CNNS_DATA_DIR`` (``scripts/test.sh`` unpacks ``../shared/data`` there). With
``KERAS_CNNS_REQUIRE_DATA=1`` (as in CI) a missing archive fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# JAX on CPU compiles one XLA program per distinct shape: every random initializer draw while a
# model builds, every op of an eager forward pass. At XLA's default optimisation each of those
# compiles takes 0.3-1 s on 2 cores, and the tests run a few tiny batches, so compiling is nearly
# all their time. These two flags cut it ~9x (densenet40_cifar build + eager forward: 183 s ->
# 21 s; ten differently shaped truncated-normal draws: 39 s -> 1.4 s; 2 cores shared with other
# work). The programs compute the same thing, less optimised; convolutions and matmuls call the
# same runtime kernels either way.
_FAST_JAX_CPU_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def _speed_up_jax_compiles() -> None:
    """Add ``_FAST_JAX_CPU_XLA_FLAGS`` to ``XLA_FLAGS`` on the JAX backend, before JAX starts.

    Only under ``KERAS_BACKEND=jax`` (TensorFlow also reads ``XLA_FLAGS``) and only when JAX
    runs on the CPU (an accelerator compiles differently; leave it alone). XLA aborts the
    process on a flag its version does not know, so a child process tries the flags first and
    they are left out if it fails. A flag already named in ``XLA_FLAGS`` is left as the user set it.
    """
    if os.environ.get("KERAS_BACKEND") != "jax":
        return
    current = os.environ.get("XLA_FLAGS", "")
    wanted = [f for f in _FAST_JAX_CPU_XLA_FLAGS if f.split("=")[0] not in current]
    if not wanted:
        return
    flags = " ".join([current, *wanted]).strip()
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.default_backend())"],
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0 and probe.stdout.strip() == "cpu":
        os.environ["XLA_FLAGS"] = flags


_speed_up_jax_compiles()


def _data_dir() -> Path | None:
    d = os.environ.get("KERAS_CNNS_DATA_DIR")
    return Path(d) if d else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if d is None or not d.is_dir():
        msg = "real data not unpacked: run 'bash scripts/data.sh' and set KERAS_CNNS_DATA_DIR=.data"
        if os.environ.get("KERAS_CNNS_REQUIRE_DATA"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def backend() -> str:
    import keras

    return keras.backend.backend()
