"""Universal-potential descriptor sets (CHGNet 0.3.0 from the chgnet wheel): values, cache, models end to end."""

from __future__ import annotations

import hashlib
import importlib.metadata

import matgl
import numpy as np
import pytest
import torch
from conftest import TINY_MEGNET

from matgl_hybrid.checkpoint import save_checkpoint
from matgl_hybrid.descriptors import featurize, get_descriptor_set, uip
from matgl_hybrid.model_card import LEAKAGE_CHGNET, render_card
from matgl_hybrid.training import TrainSpec, fit


def test_chgnet_values_are_the_potentials_own_and_come_back_from_the_cache(elastic, tmp_path):
    structures = elastic.structures[:4]
    frame = featurize(structures, "chgnet", cache_dir=tmp_path, progress=False)
    assert frame.shape == (4, 130)
    assert not frame.isna().any().any()
    direct = uip.chgnet_model().predict_structure(
        structures[1], task="em", return_atom_feas=True, return_crystal_feas=True
    )
    np.testing.assert_allclose(frame.iloc[1, :64], direct["crystal_fea"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frame.iloc[1, 64:128], direct["atom_fea"].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert frame["chgnet_energy_per_atom"].iloc[1] == pytest.approx(float(direct["e"]), rel=1e-6)
    assert frame["chgnet_energy_per_atom"].between(-15, 0).all()  # eV/atom of stable crystals
    cached = featurize(structures, "chgnet", cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(cached.to_numpy(), frame.to_numpy())
    without = featurize(structures, "lattice+chgnet_noenergy", cache_dir=tmp_path, progress=False)
    assert without.shape == (4, 9 + 129)
    assert "chgnet_energy_per_atom" not in without.columns
    group = get_descriptor_set("chgnet").groups[0]
    assert f"chgnet{uip.CHGNET_MODEL}" in group.version
    assert group.key == f"{group.name}@{group.version}:{uip.values_digest()}"  # weights digest + CHGNet's values
    assert importlib.metadata.version("chgnet") not in group.version  # a release computing the same values keeps models
    assert not group.check_values  # float32 values: a CPU-trained model must predict on a GPU (and vice versa)
    assert uip.chgnet_weights().name.endswith(".pth.tar")


def test_sets_reference_the_potentials_weights_by_name_and_sha256():
    (reference,) = get_descriptor_set("gong28+chgnet_noenergy+sim:chgnet").referenced_weights()
    assert reference == {
        "model": "CHGNet 0.3.0",
        "package": uip.CHGNET_REQUIREMENT,
        "sha256": hashlib.sha256(uip.chgnet_weights().read_bytes()).hexdigest(),
    }
    assert get_descriptor_set("gong28+composition").referenced_weights() == []


def test_a_missing_chgnet_is_one_clear_error_before_any_work(monkeypatch):
    monkeypatch.setattr(uip.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install chgnet"):
        get_descriptor_set("gong28+chgnet")


@pytest.mark.slow
def test_a_hybrid_on_chgnet_descriptors_trains_saves_and_predicts_the_same_after_loading(elastic, tmp_path):
    torch.manual_seed(0)
    spec = TrainSpec(
        descriptor_set="lattice+chgnet", backbone_kwargs=TINY_MEGNET, batch_size=8, max_epochs=2, progress=False
    )
    result = fit(elastic, spec=spec, cache_dir=tmp_path / "cache")
    model = result.model
    assert model.descriptor_names[-1] == "chgnet_mean_abs_magmom"
    before = model.predict(elastic.structures[:5])
    save_checkpoint(model, tmp_path / "m")
    loaded = matgl.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(elastic.structures[:5]), before)


def test_model_cards_of_chgnet_models_state_the_leakage():
    record = {
        "spec": {"backbone": "megnet", "readout": "extensive", "descriptor_set": "gong28+chgnet", "fusion": "concat"},
        "members": [{"best_val_mae": 1.0, "best_epoch": 1, "epochs_run": 2, "seconds": 1.0}],
        "target_name": "y",
        "n_structures": 10,
    }
    record["spec"].update({"cutoff": 5.0, "val_fraction": 0.1, "batch_size": 8, "lr": 1e-3, "max_epochs": 2})
    record["spec"].update({"patience": 1, "loss": "l1_loss", "seed": 0})
    assert LEAKAGE_CHGNET in render_card(record, "t")
    record["referenced_weights"] = [{"model": "CHGNet 0.3.0", "package": "chgnet==0.4.2", "sha256": "ab" * 32}]
    assert f"sha256 `{'ab' * 32}`" in render_card(record, "t")
    del record["referenced_weights"]
    record["spec"]["descriptor_set"] = "gong28"
    assert "Leakage" not in render_card(record, "t")
    assert "seed 0; 1 s on unknown device." in render_card(record, "t")
    # an ensemble: the time of every member and each one's seed, not the first member's alone
    record["members"] = [{**record["members"][0], "seed": k, "seconds": 10.0} for k in range(3)]
    assert "seeds 0, 1, 2; 30 s on unknown device (3 members together)." in render_card(record, "t")


def test_potential_groups_are_refused_on_threads_which_would_share_one_calculator(elastic):
    from joblib import parallel_config

    with parallel_config(backend="threading"), pytest.raises(ValueError, match="not threads"):
        featurize(elastic.structures[:2], "lattice+chgnet_noenergy", n_jobs=2, progress=False)
    with parallel_config(backend="threading"):  # groups without a shared calculator thread as before
        assert featurize(elastic.structures[:2], "lattice", n_jobs=2, progress=False).shape == (2, 9)
