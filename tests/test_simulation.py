"""Simulated quantities as descriptors (``sim:chgnet``, cheap tier): values, failures, cache, a model end to end."""

from __future__ import annotations

import ase.filters
import matgl
import numpy as np
import pytest
import torch
from conftest import TINY_MEGNET
from pymatgen.core import Lattice, Structure

from matgl_hybrid.checkpoint import save_checkpoint
from matgl_hybrid.data import StructureData
from matgl_hybrid.descriptors import featurize, get_descriptor_set, simulation
from matgl_hybrid.descriptors.groups import StructureContext
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.training import TrainSpec, fit


@pytest.fixture(scope="module")
def crystals() -> list[Structure]:
    """Rock-salt NaCl slightly expanded (the relaxation has work to do) and diamond Si (2-atom primitive cell)."""
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.9), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    return [nacl, si]


@pytest.fixture(scope="module")
def simulated(crystals, tmp_path_factory):
    cache = tmp_path_factory.mktemp("sim_cache")
    return featurize(crystals, "sim:chgnet", cache_dir=cache, progress=False), cache


def test_cheap_tier_values_are_physical_and_come_back_from_the_cache(crystals, simulated):
    frame, cache = simulated
    assert list(frame.columns) == list(get_descriptor_set("sim:chgnet").columns)
    assert not frame.isna().any().any()
    assert frame.attrs["errors"] == []
    nacl, si = frame.iloc[0], frame.iloc[1]
    assert nacl["sim_chgnet_relax_volume_change"] < -0.05  # 5.9 Å is ~4 % too large a lattice parameter
    assert si["sim_chgnet_relaxed_energy_per_atom"] == pytest.approx(-5.31, abs=0.05)  # CHGNet's Si, eV/atom
    assert 15 < nacl["sim_chgnet_eos_bulk_modulus"] < 40  # GPa (experiment: 24)
    assert 55 < si["sim_chgnet_eos_bulk_modulus"] < 110  # GPa (experiment: 98; CHGNet is softer)
    assert 2 < si["sim_chgnet_eos_bulk_modulus_derivative"] < 12
    assert 10 < si["sim_chgnet_gamma_max_frequency"] < 16  # THz (experiment: 15.5)
    assert si["sim_chgnet_gamma_imaginary"] == 0.0
    cached = featurize(crystals, "sim:chgnet", cache_dir=cache, progress=False)
    np.testing.assert_array_equal(cached.to_numpy(), frame.to_numpy())


def test_the_version_pins_potential_settings_and_libraries(monkeypatch):
    group = get_descriptor_set("sim:chgnet").groups[0]
    assert f"chgnet{simulation.CHGNET_MODEL}" in group.version
    assert not group.check_values
    full = get_descriptor_set("sim:chgnet:full")
    assert {g.name for g in full.groups} >= {"sim_chgnet_elastic", "sim_chgnet_phonon"}
    for bad in ("sim:mace", "sim:chgnet:huge", "sim:chgnet:full:x"):
        with pytest.raises(UnknownNameError, match="sim:<potential>"):
            get_descriptor_set(bad)
    # the calculators' versions: another matcalc (or phonopy, ase) computes another version's values
    sim = simulation.SIMULATORS["chgnet"]
    versions, base = dict(simulation._package_versions(sim)), simulation._version(sim)
    assert set(versions) == {"matcalc", "phonopy", "ase", "chgnet"}
    assert all(v != "not-installed" for v in versions.values())
    for package in versions:
        changed = {**versions, package: "0.0.0-other"}
        monkeypatch.setattr(simulation, "_package_versions", lambda s, changed=changed: changed)
        assert simulation._version(sim) != base, package


def test_settings_changed_at_run_time_give_other_keys_and_the_defaults_the_keys_values_were_cached_under(
    monkeypatch,
):
    """The error messages send users to SETTINGS["max_sites"] and VACUUM_GAP_A: values computed under another
    setting must not be served from the cache (the NaN of a cell once over the limit, say)."""
    default = get_descriptor_set("sim:chgnet").groups[1].key
    assert default == simulation.SIM_GROUPS["chgnet"]["cheap"][1].key  # at import: what archives are keyed by
    limit = simulation.SETTINGS["max_sites"]
    monkeypatch.setitem(simulation.SETTINGS, "max_sites", 2 * limit)
    assert get_descriptor_set("sim:chgnet").groups[1].key != default
    monkeypatch.setitem(simulation.SETTINGS, "max_sites", limit)
    assert get_descriptor_set("sim:chgnet").groups[1].key == default
    monkeypatch.setattr(simulation, "VACUUM_GAP_A", 2 * simulation.VACUUM_GAP_A)
    assert get_descriptor_set("sim:chgnet").groups[1].key != default


def test_a_group_computes_under_the_settings_of_its_key_in_a_process_that_holds_the_defaults(crystals, monkeypatch):
    """A loky or Dask worker imports the module afresh (its defaults): values cached under the key of settings
    changed in the parent must be computed with those settings, not the worker's."""
    from matgl_hybrid.descriptors.groups import StructureContext

    monkeypatch.setitem(simulation.SETTINGS, "max_sites", 4)
    relax = next(g for g in get_descriptor_set("sim:chgnet").groups if g.name == "sim_chgnet_relax")
    monkeypatch.setitem(simulation.SETTINGS, "max_sites", 64)  # as in a worker process
    with pytest.raises(ValueError, match="8 sites: over the limit of 4"):
        relax.compute(StructureContext(crystals[0]))  # NaCl's conventional cell
    assert simulation.SETTINGS["max_sites"] == 64  # the process's own settings are restored


def test_the_relaxation_uses_the_cell_filter_its_settings_name(crystals, monkeypatch):
    """SETTINGS["relax"]["cell_filter"] is in every group's key: the relaxation must use it, and a wrong name is
    refused naming the setting."""
    used = []

    class Spy:
        def __init__(self, calculator, cell_filter, **kwargs):
            used.append(cell_filter)

        def calc(self, structure):
            raise RuntimeError("spy")

    monkeypatch.setattr(simulation._matcalc(), "RelaxCalc", Spy)
    monkeypatch.setitem(simulation.SETTINGS, "relax", {**simulation.SETTINGS["relax"], "cell_filter": "UnitCellFilter"})
    relax = next(g for g in get_descriptor_set("sim:chgnet").groups if g.name == "sim_chgnet_relax")
    with pytest.raises(RuntimeError, match="spy"):
        relax.compute(StructureContext(crystals[0]))
    assert used == [ase.filters.UnitCellFilter]
    monkeypatch.setitem(simulation.SETTINGS, "relax", {**simulation.SETTINGS["relax"], "cell_filter": "Frechet"})
    relax = next(g for g in get_descriptor_set("sim:chgnet").groups if g.name == "sim_chgnet_relax")
    with pytest.raises(ValueError, match=r"SETTINGS\['relax'\]\['cell_filter'\] 'Frechet' is not a cell filter"):
        relax.compute(StructureContext(crystals[0]))


def test_a_relaxation_with_non_finite_forces_fails_with_its_reason(crystals, monkeypatch):
    """FIRE carries NaN forces through every step, and ``max(nan, x) > fmax`` is false: the relaxation passed as
    converged, its NaN values cached as a success with no reason."""

    class NaNForces:
        def __init__(self, calculator, **kwargs):
            pass

        def calc(self, structure):
            return {"final_structure": structure, "max_force": float("nan"), "stress": np.zeros((3, 3))}

    monkeypatch.setattr(simulation._matcalc(), "RelaxCalc", NaNForces)
    relax = next(g for g in get_descriptor_set("sim:chgnet").groups if g.name == "sim_chgnet_relax")
    with pytest.raises(RuntimeError, match="non-finite forces or stress"):
        relax.compute(StructureContext(crystals[0]))


def test_a_failed_relaxation_is_nan_with_its_reason_for_every_group_that_needs_it(crystals, monkeypatch):
    monkeypatch.setitem(simulation.SETTINGS, "relax", {**simulation.SETTINGS["relax"], "max_steps": 1})
    with pytest.warns(UserWarning, match="featurizer failure"):
        frame = featurize(crystals[:1], "sim:chgnet", progress=False)  # no cache: the settings changed
    assert frame.isna().all().all()
    errors = frame.attrs["errors"]
    assert {e["group"] for e in errors} == {"sim_chgnet_relax", "sim_chgnet_eos", "sim_chgnet_gamma"}
    assert all("did not converge" in e["error"] for e in errors)


def test_last_dos_peak_is_the_highest_frequency_local_maximum():
    f = np.linspace(0, 10, 101)
    dos = np.exp(-((f - 3) ** 2)) + 0.5 * np.exp(-((f - 7) ** 2) / 0.1) + 0.001 * np.exp(-((f - 9.5) ** 2) / 0.01)
    assert simulation.last_dos_peak(f, dos, 0.05) == pytest.approx(7.0)  # the tiny peak at 9.5 is below 5 %
    with pytest.raises(ValueError, match="no peak"):
        simulation.last_dos_peak(f, f, 0.05)


@pytest.mark.slow
def test_a_hybrid_on_simulated_descriptors_trains_saves_and_predicts_the_same(crystals, simulated, tmp_path):
    _, cache = simulated
    repeated = [s.copy() for _ in range(3) for s in crystals]  # the cached crystals: no new simulation
    torch.manual_seed(0)
    spec = TrainSpec(
        descriptor_set="lattice+sim:chgnet",
        backbone_kwargs=TINY_MEGNET,
        batch_size=4,
        max_epochs=2,
        element_types="all",
        progress=False,
    )
    data = StructureData(repeated, np.arange(len(repeated), dtype=float), [f"s{i}" for i in range(len(repeated))], "y")
    model = fit(data, spec=spec, cache_dir=cache).model
    assert model.descriptor_names[-1] == "sim_chgnet_gamma_imaginary"
    before = model.predict(repeated[:3], cache_dir=cache)
    save_checkpoint(model, tmp_path / "m")
    loaded = matgl.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(repeated[:3], cache_dir=cache), before)


@pytest.mark.slow
def test_full_tier_heat_capacity_is_per_atom_whatever_the_cell(crystals, monkeypatch):
    """The conventional 8-atom and the primitive 2-atom cell of Si give the same per-atom C_V, below 3R."""
    # fast: smaller supercells, and the experimental lattice (CHGNet's is within 1 %) instead of a relaxation
    monkeypatch.setitem(simulation.SETTINGS, "phonon", {**simulation.SETTINGS["phonon"], "min_length": 7.0})
    monkeypatch.setattr(simulation, "_relaxed", lambda ctx, sim: {"final_structure": ctx.structure})
    phonon_group = next(g for g in get_descriptor_set("sim:chgnet:full").groups if g.name == "sim_chgnet_phonon")
    si = crystals[1]
    conventional = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]])
    assert (len(si), len(conventional)) == (2, 8)
    column = phonon_group.labels.index("sim_chgnet_heat_capacity_300K")
    primitive_cv, conventional_cv = (phonon_group.compute(StructureContext(s))[column] for s in (si, conventional))
    assert primitive_cv == pytest.approx(conventional_cv, rel=0.02)
    assert 15 < primitive_cv < 3 * 8.314462618  # J/K/mol of atoms (experiment: ~19.8 at 300 K)


def test_gamma_frequencies_in_the_primitive_cell_equal_the_supercells_and_acoustic_modes_are_zero(crystals):
    """At Γ the primitive cell is exact (a 2×2×2 supercell gives the same frequencies); symmetrized force constants
    make the three acoustic modes zero, so that no stable crystal is flagged as having imaginary modes."""
    nacl = crystals[0].get_primitive_structure()
    in_cell = simulation.gamma_frequencies(nacl, supercell=1, atom_disp=0.015)
    in_supercell = simulation.gamma_frequencies(nacl, supercell=2, atom_disp=0.015)
    np.testing.assert_allclose(in_cell[:3], 0.0, atol=1e-4)  # THz; unsymmetrized they are not
    np.testing.assert_allclose(in_cell[3:], in_supercell[3:], rtol=0.02)
    assert in_cell[3] > 1.0


def test_a_cell_over_the_size_limit_is_nan_with_the_reason(crystals, monkeypatch):
    monkeypatch.setitem(simulation.SETTINGS, "max_sites", 4)
    with pytest.warns(UserWarning, match="featurizer failure"):
        frame = featurize(crystals, "sim:chgnet", progress=False)  # no cache: the settings changed
    assert frame.iloc[0].isna().all()  # NaCl's conventional cell: 8 sites
    assert {e["group"] for e in frame.attrs["errors"] if e["row"] == 0} == {g.name for g in simulation.CHEAP_GROUPS}
    assert all("8 sites: over the limit of 4" in e["error"] for e in frame.attrs["errors"])
    assert frame.iloc[1].notna().all()  # Si's primitive cell: 2 sites


def test_the_simulator_leaves_the_feature_groups_model_as_it_found_it():
    from matgl_hybrid.descriptors import uip

    simulation.calculator()  # CHGNet's calculator sets its converter to warn on an isolated atom: on its own copy
    assert uip.chgnet_model().graph_converter.on_isolated_atoms == "error"
