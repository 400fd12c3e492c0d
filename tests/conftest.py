"""Shared fixtures.

Real data: tests that need the unpacked MNIST / CIFAR archives take the ``data_dir`` fixture.
It reads ``KERAS_CNNS_DATA_DIR`` (``scripts/test.sh`` unpacks ``../shared/data`` there). With
``KERAS_CNNS_REQUIRE_DATA=1`` (as in CI) a missing archive fails the test instead of skipping it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
