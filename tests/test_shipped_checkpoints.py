"""The checkpoints shipped in the package: registered, small, loadable offline, and true to their model cards."""

import json
from pathlib import Path

import numpy as np
import pytest
from matgl.ext.pymatgen import get_element_list

from matgl_hybrid.checkpoint import verify
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.model_card import heldout_split, holdout_metrics, training_split
from matgl_hybrid.pretrained import REGISTRY_FILE, list_pretrained, load_pretrained, resolve

SHIPPED = {name: entry for name, entry in list_pretrained().items() if entry["source"].startswith("package:")}


def test_the_recipe_checkpoints_are_shipped_and_registered():
    recipe = {
        "hybrid-megnet-heat-capacity",
        "hybrid-megnet-log10-bulk-modulus",
        "hybrid-megnet-log10-shear-modulus",
        "hybrid-megnet-formation-energy",
        "hybrid-megnet-exfoliation-energy",
        "hybrid-megnet-last-phdos-peak",
    }
    assert recipe <= set(SHIPPED)
    # issue "Pretrained foundation backbones": the default selection keeps the fine-tuned backbone on phonons and on
    # heat capacity, each with the study's readout for its property
    for name, readout in (("hybrid-tensornet-matpes-last-phdos-peak", "max"),
                          ("hybrid-tensornet-matpes-heat-capacity", "extensive")):  # fmt: skip
        model = json.loads((REGISTRY_FILE.parent / name / "model.json").read_text())
        assert (model["kwargs"]["backbone"], model["kwargs"]["readout"]) == ("tensornet-matpes-pbe", readout), name
    for name in SHIPPED:
        folder = REGISTRY_FILE.parent / name
        assert sum(p.stat().st_size for p in folder.iterdir()) <= 5 * 2**20, f"{name} is over 5 MB"
        assert (folder / "model_card.md").read_text().count("matgl-hybrid train") == 1


@pytest.fixture(scope="module")
def descriptor_cache(tmp_path_factory):
    """One descriptor cache for the module, empty at first: checkpoints on the same structures share their values."""
    return tmp_path_factory.mktemp("descriptors")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_reproduces_its_model_card(name, shared_data, monkeypatch, tmp_path, descriptor_cache):
    monkeypatch.setenv("MATGL_HYBRID_CACHE", str(tmp_path))  # offline, nothing cached beforehand
    path = resolve(name)
    verify(path)
    record = json.loads((path / "training.json").read_text())
    test = record["test"]
    held_out = heldout_split(record, shared_data)
    assert len(held_out) == test["n"]
    assert SHIPPED[name]["data"] == Path(record["data"]).name
    model = load_pretrained(name)
    # the descriptor sets that need no torch, computed first on both cores (the parallel path gives the serial
    # values, tests/test_descriptors.py); the rest (CHGNet's) in this process, as the card's were
    numpy_only = "+".join(s for s in model.descriptor_set.split("+") if s in ("gong28", "composition"))
    if numpy_only:
        featurize(held_out.structures, numpy_only, n_jobs=2, cache_dir=descriptor_cache, ids=held_out.ids,
                  progress=False)  # fmt: skip
    scored = holdout_metrics(model, held_out, cache_dir=descriptor_cache)
    for metric in ("mae", "rmse", "r2"):
        # float32 sums: a few ulps of a value of hundreds of cm⁻¹ (2.7e-6 cm⁻¹ seen on phonons) are not a change
        assert scored[metric] == pytest.approx(test[metric], rel=1e-6, abs=1e-6), metric
        assert SHIPPED[name]["metrics"][metric] == test[metric]
    assert f"{test['mae']:.6g}" in (path / "model_card.md").read_text()
    assert np.allclose(scored["predictions"], test["predictions"], atol=1e-5)
    # embedding all 89 elements, it records those it trained on, so a prediction for another one is warned about
    assert model.trained_elements == tuple(get_element_list(training_split(record, shared_data).structures))
    assert len(model.trained_elements) < len(model.element_types)


def test_a_registered_model_whose_files_were_replaced_with_a_consistent_manifest_is_refused(tmp_path, monkeypatch):
    """Each file matches SHA256SUMS, but SHA256SUMS is not the one the registry pins: not the shipped model."""
    from matgl_hybrid import pretrained
    from matgl_hybrid.checkpoint import MANIFEST, CheckpointError, sha256_file

    name = "hybrid-megnet-exfoliation-energy"
    registry = json.loads(REGISTRY_FILE.read_text())
    (tmp_path / "models").mkdir()
    folder = tmp_path / "models" / name
    folder.mkdir()
    for file in (REGISTRY_FILE.parent / name).iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (tmp_path / "models" / "registry.json").write_text(json.dumps(registry))
    monkeypatch.setattr(pretrained, "REGISTRY_FILE", tmp_path / "models" / "registry.json")
    assert resolve(name) == folder  # the copy as shipped
    card = folder / "model_card.md"
    card.write_text(card.read_text() + "\nheld-out MAE: 0.01 (edited)\n")
    lines = [line for line in (folder / MANIFEST).read_text().splitlines() if not line.endswith("model_card.md")]
    (folder / MANIFEST).write_text("\n".join([*lines, f"{sha256_file(card)}  model_card.md"]) + "\n")
    verify(folder)  # consistent in itself
    with pytest.raises(CheckpointError, match="is not the registered hybrid-megnet-exfoliation-energy's"):
        resolve(name)
