"""No command writes into the working directory unless an output path there is given (issue "Architecture v3":
a stray descriptor cache once landed in ``./default``)."""

import gzip
import json

import pytest
from conftest import TINY

from matgl_hybrid.cli import main
from matgl_hybrid.datasets import DE_JONG_2015_PATH


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory; the cache root and every output live elsewhere."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MATGL_HYBRID_CACHE", str(tmp_path / "cache"))
    return cwd


def test_featurize_train_and_predict_leave_the_working_directory_empty(workdir, tmp_path):
    with gzip.open(DE_JONG_2015_PATH, "rt") as f:
        rows = json.load(f)[:8]
    path = tmp_path / "data.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(rows, f)
    out, config = tmp_path / "out", tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    assert main(["featurize", "--data", str(path), "--descriptors", "lattice", "--out", str(out / "x.csv")]) == 0
    train = ["train", "--no-select", "--data", str(path), "--target", "K_VRH", "--out", str(out / "m"), "--config",
             str(config)]
    assert main([*train, "--max-epochs", "1", "--batch-size", "4", "--accelerator", "cpu", "--n-jobs", "1"]) == 0
    assert main(["predict", "--model", str(out / "m"), "--data", str(path), "--out", str(out / "p.csv")]) == 0
    assert sorted(p.name for p in workdir.iterdir()) == []
