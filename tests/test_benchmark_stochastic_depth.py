"""The stochastic-depth timing page: three nets a row, and rows from before the third net."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "benchmark_stochastic_depth", ROOT / "scripts" / "benchmark_stochastic_depth.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _row(**extra) -> dict:
    row = {
        "backend": "tensorflow", "model": "resnet110_cifar", "drop_path": 0.5, "batch_size": 128,
        "rounds": 3, "steps": 2, "constant_s_per_step": 3.0, "sd_s_per_step": 2.4,
        "ratio": 0.8, "round_ratio_min": 0.77, "round_ratio_max": 0.86,
        "constant_s_per_epoch": 1056.0, "sd_s_per_epoch": 844.8, "expected_block_fraction": 0.745,
        "cpu": "x86_64", "cores": 2, "load_before": "1 1 1", "load_after": "1 1 1",
        "versions": "keras", "written": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    return {**row, **extra}


def test_page_shows_the_none_dropped_net_and_dashes_for_older_rows(tmp_path):
    new = _row(
        kept_s_per_step=3.1,
        ratio_sd_to_kept=0.774,
        ratio_kept_to_constant=1.033,
        computed_block_fraction=0.759,
    )
    old = _row(model="resnet56_cifar")
    path = tmp_path / "stochastic_depth.csv"
    path.write_text(bench._csv([new, old]))
    rows = bench._read_rows(path)
    assert rows[1]["kept_s_per_step"] == ""  # an older row: the columns left empty
    lines = bench._markdown(rows).splitlines()
    header = next(line for line in lines if line.startswith("| backend"))
    assert "| none dropped s/step | SD / none dropped | none dropped / constant |" in header
    table = [line for line in lines if line.startswith("| tensorflow")]
    assert "| **0.800** | 0.77 - 0.86 | 3.100 | 0.774 | 1.033 |" in table[0]
    assert "| **0.800** | 0.77 - 0.86 | - | - | - |" in table[1]
    assert "| expected blocks | computed blocks |" in header
    assert "| 0.745 | 0.759 |" in table[0]
    assert "| 0.745 | - |" in table[1]
    assert len(header.split("|")) == len(table[0].split("|")) == len(table[1].split("|"))


def test_block_counter_counts_the_blocks_a_step_computed():
    import keras
    import numpy as np

    from keras_cnns.layers import StochasticDepth

    def branch(name):
        inputs = keras.Input((4,))
        y = keras.layers.Dense(4, name=f"{name}_dense")(inputs)
        return keras.Model(inputs, keras.layers.BatchNormalization(name=f"{name}_bn")(y))

    inputs = keras.Input((4,))
    x = inputs
    # One block always kept, one (survival 1e-9) always dropped, one kept with the layer
    # not skipping (survival 1: no conditional at all).
    for name, survival in (("kept", 0.999999), ("dropped", 1e-9), ("plain", 1.0)):
        x = StochasticDepth(survival, seed=0, branch=branch(name), name=name)([x, x])
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(optimizer="sgd", loss="mse")
    counter = bench.BlockCounter(model)
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    assert bench._steps(model, x, y, 2, counter) > 0
    assert (counter.computed, counter.offered) == (4, 6)
    assert counter.fraction == 4 / 6


def test_the_script_writes_a_row_with_all_three_nets(tmp_path):
    out = tmp_path / "out"
    argv = ["--models", "resnet20_cifar", "--rounds", "1", "--steps", "1", "--warmup", "0"]
    assert bench.main([*argv, "--batch-size", "8", "--out", str(out)]) == 0
    (row,) = bench._read_rows(out / "stochastic_depth.csv")
    assert row["model"] == "resnet20_cifar" and row["rounds"] == "1" and row["steps"] == "1"
    for key in ("constant_s_per_step", "sd_s_per_step", "kept_s_per_step"):
        assert float(row[key]) > 0, key
    # ResNet-20's 9 blocks, survival 1 - 0.5 * b / 9: one step computes between 1 and 9.
    assert 1 / 9 <= float(row["computed_block_fraction"]) <= 1.0
    assert float(row["expected_block_fraction"]) == round(sum(1 - 0.5 * b / 9 for b in range(1, 10)) / 9, 3)
    assert "| resnet20_cifar |" in (out / "stochastic_depth.md").read_text()
