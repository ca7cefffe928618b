"""Lightning DDP for real: two CPU processes (gloo) train one model, one process writes it, its record is exact."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import matgl
import numpy as np
import pytest
from conftest import DEMO_DATA, TINY_MEGNET, write_small_records

from matgl_hybrid import data


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_saves_one_model_whose_record_is_exact(tmp_path):
    path, _ = write_small_records(DEMO_DATA, "de_jong_2015_elasticity.json.gz", 44, tmp_path)
    config = tmp_path / "tiny.json"
    # 44 structures, 25 % validation: 11, an odd number, so that the two ranks validate unequal shares.
    spec = {"backbone_kwargs": TINY_MEGNET, "batch_size": 8, "val_fraction": 0.25, "descriptor_set": "lattice"}
    config.write_text(json.dumps({**spec, "progress": False}))
    out = tmp_path / "model"
    command = [sys.executable, "-m", "matgl_hybrid.cli", "--verbose", "train", "--data", str(path), "--target", "K_VRH"]
    command += ["--no-select", "--config", str(config), "--max-epochs", "3", "--accelerator", "cpu", "--devices", "2"]
    command += ["--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "MEMBER: 2/2" in run.stderr + run.stdout  # two processes really trained (Lightning says so with --verbose)
    assert (run.stdout + run.stderr).count("saved HybridModel") == 1  # one of them wrote the model

    record = json.loads((out / "training.json").read_text())
    model = matgl.load_model(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = data.load(path, target="K_VRH")
    position = {entry_id: i for i, entry_id in enumerate(dataset.ids)}
    val = dataset.subset([position[i] for i in record["val_ids"]])
    assert len(val) == 11
    predicted = model.predict(val.structures, ids=val.ids, cache_dir=None)
    mae = float(np.mean(np.abs(predicted - val.targets)))
    assert record["members"][0]["best_val_mae"] == pytest.approx(mae, rel=1e-5)
