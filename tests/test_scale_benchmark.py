"""benchmarks/scale.py: the growth-exponent fit, the superlinear flag and the report, on synthetic records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("benchmark_scale", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_power_fit(scale):
    ns = [1000, 4000, 11000]
    linear = scale.power_fit(ns, [2e-3 * n for n in ns])
    assert linear["b"] == pytest.approx(1.0)
    assert linear["a"] == pytest.approx(2e-3)
    assert scale.project(linear, 132_752) == pytest.approx(2e-3 * 132_752)
    assert scale.power_fit(ns, [1e-6 * n**2 for n in ns])["b"] == pytest.approx(2.0)
    assert scale.power_fit(ns, [1.0, 0.0, 2.0]) is None  # a non-positive value has no logarithm
    assert scale.power_fit([1000], [1.0]) is None


def _record(n: int, quadratic: str) -> dict:
    stage = {
        "rss_start_mib": 1000.0,
        "own_peak_delta_mib": 1.0,
        "cores_used": 1.9,
        "foreign_cpu_share": 0.0,
        "before_epoch_seconds": 1.0,
        "validation_seconds": 1.0,
    }
    stages = {}
    for key in ("featurize", "graphs", "fit", "epoch", "predict"):
        seconds = 1e-7 * n**2 if key == quadratic else 1e-3 * n
        stages[key] = {
            **stage,
            "seconds": seconds,
            "cpu_seconds": 1.9 * seconds,
            "peak_delta_mib": 0.01 * n,
            "peak_rss_mib": 1000 + 0.01 * n,
        }
    stages["graphs"]["foreign_cpu_share"] = 0.5 if n == 4000 else 0.0
    return {
        "label": str(n),
        "n": n,
        "seed": 0,
        "n_jobs": 2,
        "matbench": True,
        "torch_threads": 2,
        "device": "cpu (2 threads)",
        "pool_stats": {"alexandria_heat_capacity": {"records": 1170, "new_ids": 1170}},
        "selection": {"pool": 10297},
        "graphs": {"mean_sites": 9.0, "edges_per_structure": 260.0},
        "cache": {"files": n, "bytes": 1000 * n, "bytes_per_structure": 1000.0},
        "stages": stages,
    }


def test_report_flags_superlinear_and_disturbed(scale, tmp_path):
    runs = [_record(n, quadratic="graphs") for n in (1000, 4000, 11000)]
    summary = scale.write_report(runs, tmp_path, "python benchmarks/scale.py", threshold=1.15)
    assert summary["superlinear"] == ["graphs"]
    assert summary["fits"]["graphs"]["time_fit"]["b"] == pytest.approx(2.0)
    assert summary["fits"]["featurize"]["memory_fit"]["b"] == pytest.approx(1.0)
    assert summary["disturbed"] == [{"n": 4000, "stage": "graphs"}]
    text = (tmp_path / "scale.md").read_text()
    assert "**time superlinear**" in text
    assert "`python benchmarks/scale.py`" in text
    assert "**Disturbed**" in text
    assert json.loads((tmp_path / "scale.json").read_text())["target_n"] == 132_752
    assert (tmp_path / "scale.png").stat().st_size > 0


def test_a_rebuilt_report_keeps_the_measurement_s_command_and_machine(scale, tmp_path, monkeypatch):
    """``--report-only`` wrote its own command and this machine's CPU over those of the measurement it reports."""
    runs = [_record(n, quadratic="graphs") for n in (1000, 4000, 11000)]
    for run in runs:
        (tmp_path / f"scale.n{run['label']}.json").write_text(json.dumps(run))
    measured = {**scale.machine(), "cpu": "AMD EPYC"}
    scale.write_report(runs, tmp_path, "python benchmarks/scale.py --sizes 1000,4000,11000", 1.15, measured)
    sizes = "--sizes=1000,4000,11000"
    monkeypatch.setattr(sys, "argv", ["scale.py", "--report-only", "--out", str(tmp_path), sizes])
    scale.main()
    rebuilt = json.loads((tmp_path / "scale.json").read_text())
    assert rebuilt["command"] == "python benchmarks/scale.py --sizes 1000,4000,11000"
    assert rebuilt["machine"]["cpu"] == "AMD EPYC"
    assert "Machine: AMD EPYC" in (tmp_path / "scale.md").read_text()
