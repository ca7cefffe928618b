"""Benchmark tooling: issue-#4 target lines decide met / MISSED from fold results; the unit runner's deadlines."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def accuracy():
    return _script("accuracy")


def _row(*maes: float) -> dict:
    return {"fold_mae": list(maes), "mae_mean": sum(maes) / len(maes), "mae_std": 0.01, "train_seconds": 1.0}


def _write(results: Path, dataset: str, tables: dict) -> None:
    (results / f"{dataset}.json").write_text(json.dumps(tables))


def test_summary_cross_dataset_target(accuracy, tmp_path):
    five = lambda x: _row(*[x] * 5)  # noqa: E731
    _write(
        tmp_path,
        "de_jong_2015_elasticity",
        {
            "log10_K_VRH": {"megnet": five(0.10), "hybrid_megnet": five(0.09)},  # +10 %
            "log10_G_VRH": {"megnet": five(0.20), "hybrid_megnet": five(0.19)},  # +5 %
        },
    )
    _write(
        tmp_path,
        "flla_2015_formation_energy",
        {
            "formation_energy_per_atom": {"megnet": five(0.05), "hybrid_megnet": _row(0.01, 0.01)},  # 2 folds only
        },
    )
    text = accuracy.summary(tmp_path)
    assert (tmp_path / "summary.md").read_text() == text
    assert "formation_energy_per_atom: not finished yet" in text
    assert "0.01 *2/5*" in text
    assert "- target:" not in text  # undecided while a task is unfinished

    _write(
        tmp_path,
        "flla_2015_formation_energy",
        {
            "formation_energy_per_atom": {"megnet": five(0.05), "hybrid_megnet": five(0.051)},  # worse than plain
        },
    )
    assert "- target: **MISSED**" in accuracy.summary(tmp_path)
    _write(
        tmp_path,
        "flla_2015_formation_energy",
        {
            "formation_energy_per_atom": {"megnet": five(0.05), "hybrid_megnet": five(0.05)},
        },
    )
    text = accuracy.summary(tmp_path)
    assert "- target: met" in text
    assert "hybrid +10.0 % vs plain MEGNet" in text
    assert "**0.090 ± 0.010**" in text  # best complete model of the row in bold


def test_heat_capacity_targets(accuracy):
    tables = {
        "heat_capacity": {
            m: {"mae_mean": v, "folds_done": 5}
            for m, v in {"megnet": 250.0, "megnet_readout": 9.0, "descriptors_rf": 15.0, "hybrid_megnet": 10.0}.items()
        }
    }
    lines = accuracy.target_checks("alexandria_heat_capacity", tables)
    assert "- heat_capacity: hybrid ≤ 0.1 × plain MEGNet (0.040×): met" in lines
    assert "- heat_capacity: hybrid < megnet_readout (10 vs 9): **MISSED**" in lines
    assert "- heat_capacity: hybrid < descriptors_rf (10 vs 15): met" in lines
    other = accuracy.target_checks("de_jong_2015_elasticity", tables)
    assert other[0] == "- heat_capacity: hybrid ≤ plain MEGNet (+96.0 %): met"
    assert all("reference, not a target" in line for line in other[1:])


def test_run_units_start_by_and_deadline(tmp_path):
    run_units = _script("run_units").run_units
    done = tmp_path / "done"
    units = [f"sleep 0.2 && touch {done}1", f"touch {done}2", "sleep 30"]
    # The first unit starts, the rest come after the start-by time: not started, and the first one still finishes.
    outcome = run_units(units, workers=1, deadline_s=20, logs=tmp_path / "logs", start_by_s=0.1)
    assert outcome == {"ok": 1, "failed": 0, "stopped": 0, "not started": 2}
    assert (tmp_path / "done1").exists()
    assert not (tmp_path / "done2").exists()
    # Without a start-by time the deadline stops the long unit.
    outcome = run_units(units[2:], workers=1, deadline_s=1.5, logs=tmp_path / "logs")
    assert outcome == {"ok": 0, "failed": 0, "stopped": 1, "not started": 0}
    assert (tmp_path / "logs" / "unit000.log").read_text().startswith("$ sleep 30")


def test_fusion_lines_choose_the_better_other_fusion(accuracy):
    five = lambda x: _row(*[x] * 5)  # noqa: E731
    k, g = accuracy.DATASETS["de_jong_2015_elasticity"][1]
    assert accuracy.fusion_lines({}) == ["- not compared yet: no task has 5 folds of every fusion"]
    tables = {
        ("de_jong_2015_elasticity", k): {
            "megnet": five(0.10),
            "hybrid_megnet": five(0.080),
            "hybrid_megnet_gate": five(0.088),  # 1.10 × concat
            "hybrid_megnet_film": five(0.084),  # 1.05 × concat: chosen
        },
        ("de_jong_2015_elasticity", g): {
            "megnet": five(0.20),
            "hybrid_megnet": five(0.18),
            "hybrid_megnet_film": _row(0.1, 0.1),  # unfinished: no line
        },
        ("flla_2015_formation_energy", accuracy.DATASETS["flla_2015_formation_energy"][1][0]): {
            "megnet": five(0.15),
            "hybrid_megnet": _row(0.1),  # concat unfinished: no line, and no error
            "hybrid_megnet_film": five(0.14),
        },
    }
    lines = accuracy.fusion_lines(tables)
    assert lines[0].endswith("hybrid MEGNet (gate) 1.100, hybrid MEGNet (FiLM) 1.050 → hybrid MEGNet (FiLM)")
    assert lines[1:] == [
        "- de_jong_2015_elasticity / log10_K_VRH: hybrid MEGNet (FiLM) +16.0 % vs plain MEGNet, -5.0 % vs concat"
    ]


def test_tensornet_lines_compare_model_5_only_when_complete(accuracy):
    five = lambda x: _row(*[x] * 5)  # noqa: E731
    (heat,) = accuracy.DATASETS["alexandria_heat_capacity"][1]
    k, g = accuracy.DATASETS["de_jong_2015_elasticity"][1]
    tables = {
        ("alexandria_heat_capacity", heat): {
            "tensornet": five(200.0),
            "tensornet_readout": five(10.0),
            "hybrid_tensornet": five(8.0),
        },
        ("de_jong_2015_elasticity", k): {"tensornet": five(0.1), "hybrid_tensornet": five(0.09)},  # no readout-only
        ("de_jong_2015_elasticity", g): {
            "tensornet": five(0.2),
            "tensornet_readout": five(0.2),
            "hybrid_tensornet": _row(0.1),  # unfinished
        },
    }
    assert accuracy.tensornet_lines(tables) == [
        "- alexandria_heat_capacity / heat_capacity: hybrid TensorNet 8 = 0.040× plain TensorNet (200), "
        "+20.0 % vs its extensive readout alone (10)"
    ]
    assert accuracy.tensornet_lines({}) == ["- no task has 5 folds of every TensorNet model yet"]
    assert "hybrid_tensornet" in accuracy.MODELS
    spec = accuracy.gnn_spec("alexandria_heat_capacity", "extensive", "gong28", backbone="tensornet")
    assert spec.backbone == "tensornet"
