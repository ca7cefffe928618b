"""Reliability v2 (issue 33), simulated and universal-potential descriptors: a budget per structure, vacuum cells
flagged before any simulation, CHGNet groups keyed on weights and values, non-finite predictions refused."""

from __future__ import annotations

import importlib.metadata
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import DEMO_DATA, TINY_MEGNET
from pymatgen.core import Lattice, Structure

from matgl_hybrid import inference
from matgl_hybrid.data import load_records
from matgl_hybrid.descriptors import featurize, get_descriptor_set, simulation, uip
from matgl_hybrid.models import HybridModel
from matgl_hybrid.pretrained import load_pretrained

SHIPPED = "hybrid-megnet-formation-energy"  # gong28+composition+chgnet_noenergy, as every shipped checkpoint


@pytest.fixture(scope="module")
def silicon() -> Structure:
    """Diamond Si, 2-atom primitive cell, slightly compressed (the relaxation has work to do)."""
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.3), ["Si"], [[0, 0, 0]]).get_primitive_structure()


def test_a_relaxation_over_its_wall_budget_is_nan_with_the_reason(monkeypatch):
    close = Structure(Lattice.cubic(4.0), ["Si", "Si"], [[0, 0, 0], [0.15, 0, 0]])  # atoms 0.6 Å apart
    monkeypatch.setattr(simulation, "RELAX_WALL_S", 1.0)
    simulation.calculator()  # built beforehand: the budget is the relaxation's
    start = time.monotonic()
    with pytest.warns(UserWarning, match="featurizer failure"):
        frame = featurize([close], "sim:chgnet", progress=False)  # no cache: this budget is not the default
    assert time.monotonic() - start < 60  # seconds per step: the 500 steps would take the better part of an hour
    assert frame.isna().all().all()
    errors = frame.attrs["errors"]
    assert {e["group"] for e in errors} == {"sim_chgnet_relax", "sim_chgnet_eos", "sim_chgnet_gamma"}
    assert all("TimeoutError" in e["error"] and "RELAX_WALL_S" in e["error"] for e in errors)


def test_the_budgeted_optimizer_relaxes_exactly_as_matcalcs_own(silicon):
    relax = simulation._matcalc().RelaxCalc
    plain = relax(simulation.calculator(), optimizer="FIRE", max_steps=2, fmax=0.05).calc(silicon)
    budgeted = relax(simulation.calculator(), optimizer=simulation._budgeted("FIRE"), max_steps=2, fmax=0.05)
    out = budgeted.calc(silicon)
    assert out["energy"] == plain["energy"]
    np.testing.assert_array_equal(out["final_structure"].lattice.matrix, plain["final_structure"].lattice.matrix)


def test_a_vacuum_dominated_cell_gets_no_volume_response_but_its_relaxation_and_phonons_run(silicon, monkeypatch):
    slab = Structure(Lattice.tetragonal(3.8, 20.0), ["Si", "Si"], [[0, 0, 0.45], [0.5, 0.5, 0.55]])

    def never() -> None:
        raise AssertionError("a simulation was started")

    monkeypatch.setattr(simulation, "_matcalc", never)
    monkeypatch.setattr(simulation, "calculator", never)
    with pytest.warns(UserWarning, match="featurizer failure"):
        frame = featurize([slab], "sim:chgnet", progress=False)
    assert frame.isna().all().all()
    errors = {e["group"]: e["error"] for e in frame.attrs["errors"]}
    assert "vacuum-dominated" in errors["sim_chgnet_eos"]
    assert "along c" in errors["sim_chgnet_eos"]
    assert "a simulation was started" in errors["sim_chgnet_relax"]  # the slab's own relaxation is attempted
    assert simulation.vacuum_gap(slab) == (pytest.approx(18.0), "c")  # 0.9 of the 20 Å
    assert simulation.vacuum_gap(silicon)[0] < simulation.VACUUM_GAP_A  # a bulk crystal is simulated


def test_a_chgnet_release_with_the_same_weights_and_values_keeps_the_shipped_models(monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9" if name == "chgnet" else real(name))
    group = uip.UIP_GROUPS["chgnet_crystal"]
    assert uip._version() == group.version  # the group as a process with chgnet 9.9.9 would build it
    model = load_pretrained(SHIPPED)
    assert get_descriptor_set(model.descriptor_set).version == model.descriptor_version
    assert inference.recorded_keys(model)["chgnet_crystal"] == group.key


def test_chgnet_values_other_than_the_models_are_refused_naming_the_group(monkeypatch):
    model = load_pretrained(SHIPPED)
    monkeypatch.setattr(uip, "values_digest", lambda: "000000000000")
    with pytest.raises(ValueError, match="group chgnet_crystal gives other values") as error:
        inference.model_descriptors(model, [], [])
    message = str(error.value)
    assert "chgnet_magmom" in message  # the groups that differ, and only those
    assert "magpie" not in message
    assert "matminer" not in message
    assert "install the versions" not in message


def test_the_values_digest_is_far_from_its_rounding_boundaries():
    for value in uip.reference_values():  # float32 noise between devices is ~1e-5: it cannot flip the digest
        assert abs(round(value * 100) - value * 100) < 0.5 - 0.1, value


def test_non_finite_predictions_are_refused_naming_the_model_and_the_structures():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_records(DEMO_DATA / "de_jong_2015_elasticity.json.gz", limit=3)
    torch.manual_seed(0)
    model = HybridModel(
        element_types=sorted({e.symbol for s in data.structures for e in s.composition.elements}),
        cutoff=5.0,
        backbone_kwargs=TINY_MEGNET,
        head_hidden=(4,),
        target_names=("k_vrh",),
    ).eval()
    assert np.isfinite(inference.predict(model, data.structures, data.ids)).all()
    model = HybridModel(**{**model._init_args, "target_std": [1e308]}).eval()  # a rehashed target normalization
    with pytest.raises(ValueError, match=f"HybridModel of k_vrh gave non-finite predictions .*{data.ids[0]}"):
        inference.predict(model, data.structures, data.ids)
