"""Data-parallel training (``keras_cnns.training.distribute``): the arithmetic, then real runs.

The runs need several devices before the backend starts, so each runs in a subprocess: JAX with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (four virtual CPU devices), TensorFlow
with four logical CPU devices, and a two-process JAX cluster of 2 x 2 devices on localhost
(``jax.distributed`` over gloo). One subprocess per setting trains every run of its test, so
the backend starts once. The net (``tiny_bn``, registered inside the subprocess) has two batch
norms, so global-batch statistics are part of what is compared.

Tolerance: the devices reduce the same numbers in another order (a sharded mean, an all-reduce
of gradients), float32 rounding of about 1e-7 relative per operation, amplified a little by
each SGD step. Over these 8 steps the curves of 1, 2 and 4 devices agree to about 1e-6
(measured); ``RTOL = 1e-4`` leaves room for other CPUs while a real difference of semantics
(per-replica batch norm: 3e-3 here, measured by the negative control below; a dropped or
duplicated image; a learning rate scaled by the device count) is far outside it.

These tests run in the TensorFlow suite (CI has JAX in the same environment); they skip only if
JAX (or TensorFlow) cannot be imported.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_cnns.errors import UserError
from keras_cnns.training import distribute
from keras_cnns.training.config import TrainConfig, parse_devices

RTOL = 1e-4
CURVE_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

# 256 training images: 4 batches of 64, none dropped on 2 or 4 devices. 62 validation and 63
# test images: each padded to 64 on 4 devices (63 to 64 on 2), so the exact evaluation is
# exercised, with one batch shape to compile. Weight decay puts a penalty in the loss that
# the evaluation's correction must handle.
BASE = TrainConfig(
    model="tiny_bn",
    dataset="cifar10",
    epochs=2,
    batch_size=64,
    learning_rate=0.05,
    weight_decay=5e-4,
    val_size=62,
    train_subset=256,
    test_subset=63,
)

WORKER = r"""
import json, sys, time
spec = json.loads(open(sys.argv[1]).read())
if spec.get("tf_logical"):
    import tensorflow as tf  # logical devices must exist before TensorFlow starts
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * spec["tf_logical"])
from keras_cnns.training import distribute
if spec.get("cluster"):
    distribute.init_cluster(spec["cluster"], spec["process_id"])
import keras
from keras_cnns import registry, training
from keras_cnns.errors import UserError
from keras_cnns.training.config import TrainConfig

def build_tiny_bn(spec, *, input_shape, num_classes, name, dropout=0.0):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(x))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn2")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=1, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name=name)

registry.list_models()
registry.register("tiny_bn", family="test", builder=build_tiny_bn, spec=None, paper="-",
                  input_shape=(32, 32, 3), num_classes=10)

class Stop(Exception):
    pass

class StopInSecondEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 1:
            raise Stop()

prepare = distribute.Placement.prepare
results = {}
for job in spec["jobs"]:
    config = TrainConfig.from_dict(job["config"])
    if job.get("unsynchronised"):  # the negative control: batch norm per replica
        distribute.Placement.prepare = lambda self, model: 0
    start = time.perf_counter()
    try:
        callbacks = [StopInSecondEpoch()] if job.get("interrupt") else []
        record = training.train(config, out_dir=job["out"], data_dir=spec["data_dir"], verbose=0, callbacks=callbacks).to_json()
    except Stop:
        record = {"interrupted": True}
    except UserError as err:
        record = {"error": str(err)}
    finally:
        distribute.Placement.prepare = prepare
    record["seconds"] = time.perf_counter() - start
    results[job["name"]] = record
if spec.get("draws"):
    # A dropout layer under the strategy of the run: the mask each replica draws.
    import numpy as np
    import tensorflow as tf
    strategy = distribute.placement(spec["draws"]).handle
    with strategy.scope():
        layer = keras.layers.Dropout(0.5, seed=1)
    batches = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(np.ones((spec["draws"], 64), "float32")).batch(spec["draws"]))
    out = strategy.run(tf.function(lambda x: layer(x, training=True)), args=(next(iter(batches)),))
    results["draws"] = [(v.numpy()[0] > 0).astype(int).tolist() for v in strategy.experimental_local_results(out)]
with open(spec["result"], "w") as f:
    json.dump(results, f)
"""


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _run_workers(
    tmp_path: Path, backend: str, specs: list[tuple[dict, dict]], timeout: int = 500
) -> list[dict]:
    """Run one worker per ``(spec, environment)`` at once and return each one's results.

    Started together, so a cluster's processes find each other (and independent workers
    overlap the time a cluster spends waiting on itself).
    """
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs, paths = [], []
    for i, (spec, env) in enumerate(specs):
        spec_path = tmp_path / f"spec{i}.json"
        spec["result"] = str(tmp_path / f"result{i}.json")
        spec_path.write_text(json.dumps(spec))
        log = open(tmp_path / f"worker{i}.log", "w")  # closed below
        full_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
        command = [sys.executable, str(script), str(spec_path)]
        procs.append(
            (subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT), log)
        )
        paths.append(Path(spec["result"]))
    try:
        for proc, _ in procs:
            proc.wait(timeout=timeout)
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            log.close()
    for i, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"worker{i}.log").read_text()[-4000:]
    return [json.loads(p.read_text()) for p in paths]


def _job(name: str, out: Path, **changes) -> dict:
    flags = {k: changes.pop(k) for k in ("interrupt", "unsynchronised") if k in changes}
    return {"name": name, "config": BASE.replace(**changes).to_dict(), "out": str(out), **flags}


def _curve(record: dict) -> np.ndarray:
    rows = [[h[k] for k in CURVE_KEYS] for h in record["history"]]
    return np.array([*rows, [record["test"]["loss"], record["test"]["accuracy"], 0.0, 0.0]])


def _assert_same_curve(a: dict, b: dict, what: str) -> None:
    np.testing.assert_allclose(_curve(a), _curve(b), rtol=RTOL, atol=1e-6, err_msg=what)


def _gap(a: dict, b: dict) -> float:
    """The largest relative difference between two runs' curves."""
    x, y = _curve(a), _curve(b)
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-3)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# Dropout in every JAX run: JAX draws over the global batch, so the draws must match too.
DROP = {"model_kwargs": {"dropout": 0.5}}
JAX_RUN_ID = BASE.replace(**DROP).run_id()


# --- the arithmetic (no devices needed) ----------------------------------------------------------


@pytest.mark.smoke
def test_devices_field_parses_validates_and_is_placement_only():
    assert parse_devices("4") == 4 and parse_devices("ALL") == "all" and parse_devices(2) == 2
    for bad in (0, -1, "two", 1.5, True, ""):
        with pytest.raises(UserError, match="devices"):
            parse_devices(bad)
    config = BASE.with_overrides(["devices=4"])
    assert config.devices == 4 and TrainConfig.from_dict(config.to_dict()) == config
    # Where a run executes is not what it computes: same run id, and a checkpoint of 4
    # devices belongs to the same run on 1.
    assert config.run_id() == BASE.run_id()
    assert BASE.replace(epochs=3).run_id() != BASE.run_id()
    with pytest.raises(UserError, match="global batch.*does not split over 3"):
        BASE.replace(devices=3)
    with pytest.raises(UserError, match="image_size is for streamed datasets"):
        BASE.replace(image_size=64)


@pytest.mark.smoke
def test_linear_lr_scaling_follows_the_global_batch():
    config = BASE.replace(
        lr_scaling="linear", lr_reference_batch=256, learning_rate=0.1, batch_size=1024
    )
    assert config.scaled_learning_rate == pytest.approx(0.4)  # Goyal et al.: 0.1 * 1024 / 256
    assert config.replace(devices=8).scaled_learning_rate == pytest.approx(0.4)  # not per device
    assert BASE.scaled_learning_rate == BASE.learning_rate  # "none" (the default) keeps it
    from keras_cnns.training import learning_rate_at

    assert learning_rate_at(config, 0, 10) == pytest.approx(0.4)


@pytest.mark.smoke
def test_training_rows_drop_only_what_does_not_split_and_shares_tile_each_batch():
    one = distribute.Placement("jax")
    four = distribute.Placement("jax", replicas=4, api=distribute.API_JAX)
    order = np.random.default_rng(0).permutation(302)  # 4 batches of 64 and one of 46
    assert np.array_equal(one.train_rows(order, 64), order)
    assert np.array_equal(four.train_rows(order, 64), order[:300])  # 46 = 4 * 11 + 2
    assert four.steps_per_epoch(302, 64) == 5 and four.steps_per_epoch(258, 64) == 4
    assert four.kept(45_000, 128) == 45_000  # CIFAR: nothing dropped on 2, 4 or 8 devices
    # Two hosts of two devices: each process feeds its half of every global batch, and the
    # halves put together are the one-process batches.
    hosts = [
        distribute.Placement(
            "jax", replicas=4, processes=2, process_index=i, api=distribute.API_JAX
        )
        for i in (0, 1)
    ]
    shares = [h.train_rows(order, 64) for h in hosts]
    assert [len(s) for s in shares] == [150, 150] and hosts[0].local_batch(64) == 32
    batches = [np.concatenate([s[j : j + 32] for s in shares]) for j in range(0, 128, 32)]
    assert np.array_equal(np.concatenate(batches), order[:256])
    assert np.array_equal(np.sort(np.concatenate(shares)), np.sort(order[:300]))


@pytest.mark.smoke
def test_evaluation_padding_is_weight_zero_and_the_loss_correction_is_exact():
    four = distribute.Placement("jax", replicas=4, api=distribute.API_JAX)
    rows, weights = four.eval_rows(75, 64)
    assert len(rows) == 76 and rows[-1] == 0 and weights.sum() == 75 and weights[-1] == 0
    # Keras' mean of a padded evaluation: sum(w * l) / batch + reg per batch, weighted by
    # the batch size; exact_loss recovers the mean over the real images.
    rng = np.random.default_rng(1)
    losses, reg = rng.random(75), 0.3
    padded = np.concatenate([losses, [0.0]])
    batches = [padded[:64], padded[64:]]
    keras_mean = sum(len(b) * (b.sum() / len(b) + reg) for b in batches) / 76
    assert distribute.exact_loss(keras_mean, reg, 75, 76) == pytest.approx(
        losses.mean() + reg, rel=1e-12
    )


@pytest.mark.smoke
def test_cluster_arguments_are_checked_in_one_line():
    assert distribute.init_cluster(None, None) == 1  # no cluster: nothing to do
    for addresses, process_id, words in [
        ("10.0.0.1", 0, "HOST:PORT"),
        ("a:1,a:1", 0, "twice"),
        ("a:1,b:2", None, "process-id 0..1"),
        ("a:1,b:2", 2, "outside 0..1"),
        (None, 1, "needs a cluster"),
    ]:
        with pytest.raises(UserError, match=words):
            distribute.init_cluster(addresses, process_id)


@pytest.mark.smoke
def test_more_devices_than_exist_is_a_user_error_naming_the_count(backend):
    if backend == "torch":
        with pytest.raises(UserError, match="JAX or TensorFlow"):
            distribute.placement(2)
        return
    with pytest.raises(UserError, match=r"devices=64, but there (is|are) only \d+ \w+ device"):
        distribute.placement(64)
    assert not distribute.placement(1).distributed  # one device: the plain path


@pytest.mark.smoke
def test_tensorflow_several_hosts_is_refused_in_one_line(backend, monkeypatch):
    if backend != "tensorflow":
        pytest.skip("TF_CONFIG is TensorFlow's")
    # Keras 3 cannot fit under MultiWorkerMirroredStrategy (keras-team/keras#20585): say so
    # at once, instead of waiting for the other workers and failing inside fit.
    cluster = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    with pytest.raises(UserError, match="JAX backend.*keras-team/keras#20585"):
        distribute.placement("all")


def test_cli_devices_errors_are_one_line(tmp_path, capsys):
    from keras_cnns.cli import main

    assert (
        main(
            [
                "train",
                "cifar_4layer",
                "--dataset",
                "cifar10",
                "--devices",
                "0",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "devices must be a positive number" in capsys.readouterr().err
    args = [
        "train",
        "cifar_4layer",
        "--dataset",
        "cifar10",
        "--devices",
        "3",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "does not split over 3" in err
    args = ["reproduce", "relu-vs-tanh", "--devices", "3", "--out", str(tmp_path)]
    assert main(args) == 2 and "does not split over 3" in capsys.readouterr().err
    args = [
        "train",
        "cifar_4layer",
        "--dataset",
        "cifar10",
        "--cluster",
        "h:1,h:2",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2 and "--process-id" in capsys.readouterr().err


# --- real runs on several devices ----------------------------------------------------------------


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory, data_dir):
    """One process of 4 devices: 1 and 2 of them, and a run of 4 interrupted in its second
    epoch and resumed on 1. Beside it, at the same time, the 4-device run: a cluster of two
    processes of 2 devices each on localhost, writing into one shared ``--out``."""
    if not _have("jax"):
        pytest.skip("jax is not importable: the JAX multi-device runs need it")
    tmp = tmp_path_factory.mktemp("jax")
    jobs = [
        _job("one", tmp / "one", **DROP),
        _job("two", tmp / "two", devices=2, **DROP),
        _job("broken", tmp / "resume", devices=4, interrupt=True, **DROP),
        _job("resumed", tmp / "resume", devices=1, **DROP),
    ]
    addresses = f"localhost:{_free_port()},localhost:{_free_port()}"
    cluster = [_job("cluster", tmp / "shared", devices="all", **DROP)]
    specs = [
        ({"data_dir": str(data_dir), "jobs": jobs}, {"XLA_FLAGS": _devices_flag(4)}),
        *(
            (
                {"data_dir": str(data_dir), "jobs": cluster, "cluster": addresses, "process_id": i},
                {"XLA_FLAGS": _devices_flag(2)},
            )
            for i in (0, 1)
        ),
    ]
    single, chief, other = _run_workers(tmp, "jax", specs)
    return tmp, {**single, "chief": chief["cluster"], "other": other["cluster"]}


def _devices_flag(n: int) -> str:
    return f"--xla_force_host_platform_device_count={n}"


def test_jax_two_and_four_devices_give_the_one_device_curve(jax_runs):
    _, runs = jax_runs
    # Four devices: the cluster's (the first epoch of the resumed run is checked below).
    for name in ("two", "chief"):
        _assert_same_curve(runs["one"], runs[name], name)
    info = runs["two"]["distribution"]
    assert info["api"] == "keras.distribution.DataParallel" and info["devices"] == 2
    assert (info["global_batch"], info["per_device_batch"]) == (64, 32)
    assert info["train_images_dropped_per_epoch"] == 0 and info["learning_rate"] == 0.05
    assert "global batch" in info["batchnorm"] and "same draws" in info["random_draws"]
    assert runs["one"]["distribution"]["api"] is None
    assert runs["one"]["run_id"] == runs["two"]["run_id"] == runs["chief"]["run_id"]


def test_jax_checkpoint_of_four_devices_resumes_on_one(jax_runs):
    tmp, runs = jax_runs
    assert runs["broken"].get("interrupted") is True
    resumed = runs["resumed"]
    _assert_same_curve(runs["one"], resumed, "4 devices, then resumed on 1")
    assert resumed["distribution"]["devices"] == 1 and resumed["config"]["devices"] == 1
    state = json.loads((tmp / "resume" / "checkpoints" / JAX_RUN_ID / "state.json").read_text())
    assert state["status"] == "completed" and state["config"]["devices"] == 4  # begun on 4


def test_tensorflow_mirrored_strategy_gives_the_one_device_curve(tmp_path, data_dir):
    if not _have("tensorflow"):
        pytest.skip("tensorflow is not importable")
    jobs = [
        _job("one", tmp_path / "one"),
        _job("four", tmp_path / "four", devices=4),
        _job("broken", tmp_path / "resume", devices=4, interrupt=True),
        _job("resumed", tmp_path / "resume", devices=1),
        # Negative control: batch norm per replica (what MirroredStrategy does by default).
        _job("unsynchronised", tmp_path / "unsync", devices=4, unsynchronised=True),
        # TensorFlow keeps one set of devices per process (see keras_cnns.training.distribute).
        _job("other_devices", tmp_path / "two", devices=2),
    ]
    spec = {"data_dir": str(data_dir), "jobs": jobs, "tf_logical": 4, "draws": 4}
    (runs,) = _run_workers(tmp_path, "tensorflow", [(spec, {})])
    _assert_same_curve(runs["one"], runs["four"], "4 replicas")
    _assert_same_curve(runs["one"], runs["resumed"], "4 replicas, then resumed on 1")
    info = runs["four"]["distribution"]
    assert info["api"] == "tf.distribute.MirroredStrategy" and info["devices"] == 4
    assert "synchronized" in info["batchnorm"] and "same masks" in info["random_draws"]
    assert _gap(runs["one"], runs["unsynchronised"]) > 10 * RTOL  # per-replica statistics differ
    # What the record says of random draws: a dropout layer under the run's strategy gives
    # every replica the same mask.
    masks = runs["draws"]
    assert len(masks) == 4 and all(m == masks[0] for m in masks) and 0 < sum(masks[0]) < 64
    assert "one set of devices per process" in runs["other_devices"]["error"]
    # The saved model loads anywhere: synchronized is switched off for the .keras file.
    model_file = tmp_path / "four" / "checkpoints" / BASE.run_id() / "model.keras"
    import zipfile

    with zipfile.ZipFile(model_file) as archive:
        assert '"synchronized": false' in archive.read("config.json").decode()


def test_jax_cluster_of_two_processes_gives_the_one_device_curve(jax_runs):
    tmp, runs = jax_runs
    out = tmp / "shared"  # the one --out both hosts see
    for name in ("chief", "other"):
        _assert_same_curve(runs["one"], runs[name], f"2 hosts x 2 devices ({name})")
    info = runs["chief"]["distribution"]
    assert (info["processes"], info["devices"], info["per_device_batch"]) == (2, 4, 16)
    # Only the chief wrote: one record, one checkpoint directory.
    from keras_cnns.storage import read_records

    assert [r["run_id"] for r in read_records(out / "records.jsonl")] == [JAX_RUN_ID]
    assert [p.name for p in (out / "checkpoints").iterdir()] == [JAX_RUN_ID]


# --- the throughput script -----------------------------------------------------------------------


def test_benchmark_devices_script_writes_its_table(tmp_path):
    # Tiny sizes: this checks the machinery; CPU numbers say nothing about the GPU target.
    backend = "jax" if _have("jax") else "tensorflow"
    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_devices.py"
    command = [
        sys.executable, str(script), "--backend", backend, "--model", "cifar_4layer",
        "--image-size", "8", "--batch-size", "8", "--steps", "2", "--warmup", "1",
        "--repeats", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "devices.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["devices"]) for r in rows] == [("single", "1"), ("distributed", "1")]
    api = distribute.API_JAX if backend == "jax" else distribute.API_MIRRORED
    assert [r["api"] for r in rows] == ["none", api]
    assert [r["feed"] for r in rows] == ["HostFeed", "ShardedFeed"]
    assert all(float(r["images_per_second"]) > 0 for r in rows)
    table = (tmp_path / "devices.md").read_text()
    assert f"**{rows[0]['device']}**" in table and rows[0]["versions"] in table
    assert "x the single-device path" in table and "CPU numbers" in table
