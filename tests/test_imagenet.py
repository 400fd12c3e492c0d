"""ImageNet, streamed (``keras_cnns.data.imagenet``): the ResNet pipeline, the missing-data errors,
and the ``resnet50-imagenet`` smoke preset end to end on a synthetic tfds mock.

No ImageNet is needed: ``tfds.testing.mock_data`` makes random JPEGs in ImageNet's format.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from keras_cnns.data import imagenet
from keras_cnns.errors import DataError
from keras_cnns.lab import runner
from keras_cnns.storage import read_records
from keras_cnns.training.config import TrainConfig

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")


def _jpeg(height: int, width: int) -> tf.Tensor:
    rng = np.random.default_rng(0)
    return tf.io.encode_jpeg(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _manual_dir(tmp_path):
    """A data directory holding (empty) ILSVRC-2012 archives: enough for the mock."""
    root = tmp_path / "data" / imagenet.NAME
    root.mkdir(parents=True)
    for name in imagenet.ARCHIVES:
        (root / name).touch()
    return tmp_path / "data"


def test_resnet_pipeline_crops_flips_and_standardises():
    jpeg = _jpeg(60, 90)
    a = imagenet.train_image(jpeg, tf.constant([1, 2], tf.int64), 32)
    b = imagenet.train_image(jpeg, tf.constant([1, 2], tf.int64), 32)
    c = imagenet.train_image(jpeg, tf.constant([1, 3], tf.int64), 32)
    assert a.shape == (32, 32, 3) and a.dtype == tf.float32
    np.testing.assert_array_equal(a, b)  # stateless: the seed decides the crop and the flip
    assert not np.array_equal(a, c)
    # Evaluation: shorter side to 32 * 8/7 = 37, then the centre 32x32.
    e = imagenet.eval_image(jpeg, 32)
    assert e.shape == (32, 32, 3)
    np.testing.assert_array_equal(e, imagenet.eval_image(jpeg, 32))
    # Mid-grey lands where the ImageNet statistics put it.
    grey = imagenet.eval_image(
        tf.io.encode_jpeg(tf.fill((40, 40, 3), tf.constant(128, tf.uint8))), 32
    )
    expected = (128 / 255 - np.array(imagenet.MEAN)) / np.array(imagenet.STD)
    np.testing.assert_allclose(grey[16, 16], expected, atol=0.05)


def test_missing_imagenet_is_a_fast_one_line_data_error(tmp_path, monkeypatch):
    config = TrainConfig(model="resnet50", dataset="imagenet2012", val_size=0)
    monkeypatch.delenv("KERAS_CNNS_DATA_DIR", raising=False)
    start = time.perf_counter()
    with pytest.raises(DataError, match="ILSVRC2012_img_train.tar"):
        imagenet.open_imagenet(config, None)
    with pytest.raises(DataError, match="lacks ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar"):
        imagenet.open_imagenet(config, tmp_path)
    assert time.perf_counter() - start < 10  # nothing waits on a download


def test_resnet50_imagenet_smoke_preset_runs_on_a_tfds_mock(tmp_path):
    data_dir = _manual_dir(tmp_path)
    with tfds.testing.mock_data(num_examples=32):
        records = runner.run_experiment(
            "resnet50-imagenet",
            preset="smoke",
            out_dir=tmp_path / "results",
            data_dir=data_dir,
            verbose=0,
        )
    (record,) = (r.to_json() for r in records)
    assert record["status"] == "completed" and record["model"] == "resnet50"
    assert record["dataset"]["source"].startswith("tfds:") and record["dataset"]["n_train"] == 32
    assert record["params"] == 25_636_712  # keras.applications' ResNet50; input size is free
    assert math.isfinite(record["test"]["loss"]) and 0 <= record["test"]["error"] <= 100
    assert record["preprocessing"]["eval"] == "shorter side 37, centre crop 32"
    assert record["distribution"]["learning_rate"] == pytest.approx(0.1 * 256 / 256)
    exp_dir = tmp_path / "results" / "resnet50-imagenet"
    assert len(read_records(exp_dir / "records.jsonl")) == 1
    assert "## Preset `smoke`" in (exp_dir / "README.md").read_text()
