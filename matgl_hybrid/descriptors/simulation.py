"""Simulated physical quantities as descriptors: ``sim:<potential>[:full]`` (e.g. ``sim:chgnet``).

A pretrained universal interatomic potential computes, in seconds per structure, what a small-data GNN cannot
learn: how stiff the lattice is, how high its phonons go, how the energy changes with volume. The calculations are
matcalc's (``RelaxCalc``, ``EOSCalc``, ``PhononCalc`` through phonopy, ``ElasticityCalc``) on CHGNet 0.3.0's ASE
calculator, whose weights ship in the chgnet wheel (:mod:`matgl_hybrid.descriptors.uip`).

Cheap tier, ``sim:chgnet`` (seconds per structure on one CPU core: most of it the relaxations):

- ``sim_chgnet_relax``: relaxed energy per atom (eV/atom) and relative volume change on relaxation;
- ``sim_chgnet_eos``: Birch–Murnaghan bulk modulus (GPa) and its pressure derivative, on the relaxed structure;
- ``sim_chgnet_gamma``: Γ-point phonon frequencies of the relaxed primitive cell (THz; phonopy's displacements
  in the cell itself, exact at Γ, :func:`gamma_frequencies`): the highest, the mean of the optical modes, and 1.0
  when a mode is imaginary (below ``IMAGINARY_THZ``), else 0.0.

Full tier, ``sim:chgnet:full`` (opt-in; minutes per structure on a CPU, meant for a GPU), adds:

- ``sim_chgnet_elastic``: K_VRH and G_VRH (GPa) and the universal anisotropy of the elastic tensor;
- ``sim_chgnet_phonon``: from the phonon DOS, the frequency of its last (highest-frequency) peak (cm⁻¹, as
  Matbench's ``last phdos peak``), and heat capacity (J/K/mol of atoms) and internal energy (kJ/mol of atoms,
  with the zero-point energy) at 300 K.

Settings (:data:`SETTINGS`) are part of every group's version, with the potential's name and weights digest and
the versions of matcalc, phonopy and ASE, so that a cached value or a trained model is never mixed with values
computed otherwise. A calculation that fails (no convergence, a failed fit) gives NaN for its group with the reason
recorded, as for every group; a group that needs the relaxed structure fails with the relaxation.

Budgets: each relaxation (the structure's own, or one of its EOS or elastic fits) stops after its step limit
(``SETTINGS["relax"]["max_steps"]``; matcalc's 500 for the fits) or :data:`RELAX_WALL_S` seconds: NaN with the reason,
and no change of any value of a structure that relaxes within it (not in the version). A vacuum-dominated cell (a
slab or a molecule in a box: an empty gap wider than :data:`VACUUM_GAP_A` along a lattice vector,
:func:`vacuum_gap`) gets no volume response (EOS, elastic constants: NaN with the reason), since that of a box of
vacuum is not the material's; its relaxed energy and phonons are computed as for any cell. The EOS and elastic
groups' versions carry this change (revision 1), so values cached before it are not served.

Leakage: CHGNet was trained on MPtrj energies, forces and stresses (Materials Project relaxations), never on the
labels of the benchmark tasks; its relaxed energy per atom is close to a formation-energy label.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from unittest import mock

import numpy as np
from pymatgen.analysis.eos import BirchMurnaghan
from pymatgen.core import Structure

from matgl_hybrid.descriptors.groups import GROUP_VERSION, FeatureGroup, StructureContext
from matgl_hybrid.descriptors.sets import DescriptorSet
from matgl_hybrid.descriptors.uip import (
    CHGNET_MODEL,
    MATPES_POTENTIAL,
    POTENTIAL_LOCK,
    chgnet_model,
    chgnet_weights,
    matpes_potential,
    matpes_reference,
    weights_digest,
    weights_reference,
)
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.potentials import shipped_potentials
from matgl_hybrid.version import installed_version

#: How each quantity is computed; stored in every group's version (and so with every model trained on them).
SETTINGS: dict[str, Any] = {
    # larger cells take many minutes on a CPU core: their values are NaN with the reason
    "max_sites": 64,
    "relax": {"fmax": 0.05, "max_steps": 500, "optimizer": "FIRE", "cell_filter": "FrechetCellFilter"},
    "eos": {"n_points": 5, "max_abs_strain": 0.04, "fmax": 0.1},  # linear strain: volumes 0.88–1.12 × relaxed
    "gamma": {"supercell": 1, "atom_disp": 0.015},  # displacements in the primitive cell itself: exact at Γ
    "elastic": {"relax_deformed_structures": True, "fmax": 0.05},
    "phonon": {"min_length": 12.0, "atom_disp": 0.015, "mesh": 100.0, "temperature": 300.0, "peak_fraction": 0.05},
}
#: Wall-clock seconds one relaxation may take before it stops (TimeoutError: NaN with the reason); taken, with the
#: other settings, when a ``sim:`` set is resolved (a set resolved before a change keeps the earlier value). An
#: ordinary cheap-tier structure relaxes in seconds; a pathological one (atoms 0.6 Å apart) takes seconds per step
#: and would run the 500 steps for the better part of an hour.
RELAX_WALL_S = 300.0
#: An empty gap (Å) wider than this along a lattice vector makes a cell vacuum-dominated (not simulated): over the
#: potentials' cutoffs (CHGNet 0.3.0's 6 Å atom graph, TensorNet-MatPES's 5 Å), nothing interacts across it. In the
#: shipped data sets, bulk crystals (layered ones included) have 4.8 Å at most; Materials Project's monolayer entries
#: 8–20 Å, Matbench jdft2d's monolayers (every one) 20–34 Å.
VACUUM_GAP_A = 6.0
DEFAULT_VACUUM_GAP_A = VACUUM_GAP_A
#: A Γ frequency below this (THz) counts as imaginary (acoustic modes scatter by ~0.01 THz around 0).
IMAGINARY_THZ = -0.1
THZ_TO_INVERSE_CM = 33.35641
TIERS = ("cheap", "full")


@cache
def _matcalc() -> Any:
    """matcalc, imported on first use without its import-time query of the Hugging Face hub for MatGL's potentials
    (a network call that stalls offline; this module uses none of those potentials)."""
    import matgl

    with mock.patch.object(matgl, "get_available_pretrained_models", return_value=[]):
        import matcalc
    logging.getLogger("matcalc").setLevel(logging.ERROR)  # imaginary modes are a feature here, not a warning
    return matcalc


@cache
def calculator() -> Any:
    """CHGNet 0.3.0 as an ASE calculator (on the GPU when there is one), built once per process, on its own copy of
    the model: the calculator sets its graph converter to warn on an isolated atom, which the ``chgnet`` feature
    groups (the shared model) must keep refusing, whichever ran first in a worker."""
    from chgnet.model.dynamics import CHGNetCalculator

    model = copy.deepcopy(chgnet_model())
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints the device it runs on
        return CHGNetCalculator(model=model, use_device=str(next(model.parameters()).device))


@cache
def matpes_calculator() -> Any:
    """MatGL's TensorNet-MatPES-PBE (shipped in the package) as an ASE calculator, stress in eV/Å³ as matcalc's
    own ``load_matgl`` builds it, once per process."""
    from matgl.ext.ase import PESCalculator

    return PESCalculator(potential=matpes_potential(), stress_unit="eV/A3")


@dataclass(frozen=True)
class Simulator:
    """A universal potential that runs the simulations: ``sim:<name>``.

    Attributes:
        name: the set's potential name (``sim:<name>``) and the groups' infix (``sim_<name>_relax``, …).
        calculator: ``calculator() -> ASE calculator``, built once per process.
        tag: ``tag() -> str``, the potential and its weights' digest, in every group's version.
        requires: raises (one clear line) when the potential is not installed.
        weights: ``weights() -> {"model", "package", "sha256"}``, what a model trained on the groups references.
        packages: the installed packages whose versions are part of the groups' version.
    """

    name: str
    calculator: Callable[[], Any]
    tag: Callable[[], str]
    requires: Callable[[], object]
    weights: Callable[[], dict[str, str]]
    packages: tuple[str, ...]


def _chgnet_tag() -> str:
    try:
        digest = weights_digest()
    except (ModuleNotFoundError, FileNotFoundError):
        digest = "not-installed"
    return f"chgnet{CHGNET_MODEL}-{digest}"


def _matpes_tag() -> str:
    # the registry's pinned sha256 (load_potential refuses other weights): importing hashes nothing
    return f"{MATPES_POTENTIAL}-{shipped_potentials()[MATPES_POTENTIAL].weights_sha256[:12]}"


#: The simulators of ``sim:<name>``: CHGNet 0.3.0 (the chgnet wheel's weights) and MatGL's TensorNet-MatPES-PBE
#: (shipped in this package), both through matcalc.
SIMULATORS: dict[str, Simulator] = {
    "chgnet": Simulator(
        "chgnet", calculator, _chgnet_tag, chgnet_weights, weights_reference, ("matcalc", "phonopy", "ase", "chgnet")
    ),
    "tensornet_matpes": Simulator(
        "tensornet_matpes",
        matpes_calculator,
        _matpes_tag,
        matpes_reference,
        matpes_reference,
        ("matcalc", "phonopy", "ase", "matgl"),
    ),
}


def vacuum_gap(structure: Structure) -> tuple[float, str]:
    """The widest empty slab of ``structure`` (Å) between planes of atoms spanned by two lattice vectors, and the
    third vector's name (``a``, ``b`` or ``c``): the largest gap between the atoms' fractional coordinates along it,
    periodically, times the spacing of those planes."""
    lattice = structure.lattice
    widths = []
    for i in range(3):
        spacing = lattice.volume / np.linalg.norm(np.cross(lattice.matrix[(i + 1) % 3], lattice.matrix[(i + 2) % 3]))
        f = np.sort(np.mod(structure.frac_coords[:, i], 1.0))
        widths.append(float(np.diff(np.append(f, f[0] + 1.0)).max()) * spacing)
    i = int(np.argmax(widths))
    return widths[i], "abc"[i]


def _cell_filter(name: str) -> type:
    """ASE's cell filter class ``name`` (``SETTINGS["relax"]["cell_filter"]``): it relaxes the cell with the atoms."""
    import ase.filters

    if not isinstance(getattr(ase.filters, name, None), type):
        raise ValueError(f"SETTINGS['relax']['cell_filter'] {name!r} is not a cell filter of ase.filters")
    return getattr(ase.filters, name)


def _budgeted(optimizer: str) -> type:
    """ASE's ``optimizer`` class, unchanged but for a TimeoutError at a step once a run is :data:`RELAX_WALL_S` old."""
    import ase.optimize

    class Budgeted(getattr(ase.optimize, optimizer)):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.deadline = time.monotonic() + RELAX_WALL_S

        def step(self, *args, **kwargs):
            if time.monotonic() > self.deadline:
                raise TimeoutError(
                    f"relaxation stopped at step {self.nsteps}: over its budget of {RELAX_WALL_S:g} s "
                    "(simulation.RELAX_WALL_S)"
                )
            return super().step(*args, **kwargs)

    return Budgeted


def _relaxed(ctx: StructureContext, sim: Simulator) -> dict[str, Any]:
    """matcalc's relaxation of ``ctx.structure`` (cell and atoms) by ``sim``, computed once per structure."""

    def relax(structure: Structure) -> dict[str, Any]:
        if len(structure) > SETTINGS["max_sites"]:
            limit = SETTINGS["max_sites"]
            raise ValueError(f"{len(structure)} sites: over the limit of {limit} (SETTINGS['max_sites'])")
        s = SETTINGS["relax"]
        result = _matcalc().RelaxCalc(
            sim.calculator(),
            optimizer=_budgeted(s["optimizer"]),
            max_steps=s["max_steps"],
            fmax=s["fmax"],
            cell_filter=_cell_filter(s["cell_filter"]),
        )
        out = result.calc(structure)
        # matcalc's is_converged looks at the atoms' forces only; the cell's generalized forces of ASE's
        # FrechetCellFilter are volume × stress / n_atoms (eV/Å): a symmetric cell under stress is not relaxed.
        final = out["final_structure"]
        cell_force = final.volume * float(np.abs(np.asarray(out["stress"])).max()) / len(final)
        if not np.isfinite([out["max_force"], cell_force]).all():  # FIRE carries NaN through every step
            raise RuntimeError("the potential gave non-finite forces or stress during the relaxation")
        if max(out["max_force"], cell_force) > s["fmax"]:
            raise RuntimeError(f"relaxation did not converge to fmax {s['fmax']} eV/Å in {s['max_steps']} steps")
        return out

    return ctx.shared(f"sim_{sim.name}_relax", relax)


def _bulk(ctx: StructureContext, sim: Simulator) -> Structure:
    """The relaxed structure, for a calculation of the volume response (EOS, elastic constants); a
    vacuum-dominated cell (a slab or a molecule in a box) is refused: the response of a box of vacuum is not the
    material's."""
    gap, axis = vacuum_gap(ctx.structure)
    if gap > VACUUM_GAP_A:
        raise ValueError(
            f"vacuum-dominated cell (a slab or a molecule in a box): an empty gap of {gap:.1f} Å along {axis}, "
            f"over {VACUUM_GAP_A:g} Å (simulation.VACUUM_GAP_A); no volume response computed"
        )
    return _relaxed(ctx, sim)["final_structure"]


def _relax_values(ctx: StructureContext, sim: Simulator) -> list[float]:
    out = _relaxed(ctx, sim)
    return [out["energy"] / len(out["final_structure"]), out["final_structure"].volume / ctx.structure.volume - 1]


def _eos_values(ctx: StructureContext, sim: Simulator) -> list[float]:
    s = SETTINGS["eos"]
    structure = _bulk(ctx, sim)  # first: a structure that is not relaxed builds no calculator
    calc = _matcalc().EOSCalc(
        sim.calculator(),
        optimizer=_budgeted("FIRE"),  # matcalc's default optimizer, with the budget
        n_points=s["n_points"],
        max_abs_strain=s["max_abs_strain"],
        fmax=s["fmax"],
        relax_structure=False,
    )
    eos = calc.calc(structure)["eos"]
    fit = BirchMurnaghan(eos["volumes"], eos["energies"])
    fit.fit()
    return [float(fit.b0_GPa), float(fit.b1)]


def _phonons(structure: Structure, sim: Simulator, **kwargs) -> Any:
    """A phonopy ``Phonopy`` of ``structure`` with force constants from matcalc's ``PhononCalc``, symmetrized.

    Symmetrized (phonopy's ``symmetrize_force_constants``): the finite-displacement force constants of a potential
    break translational invariance slightly, which leaves the acoustic modes at Γ at ±0.1–0.2 THz instead of 0
    and would flag stable crystals as having imaginary modes.
    """
    calc = _matcalc().PhononCalc(
        sim.calculator(), relax_structure=False, write_phonon=False, on_imaginary_modes="warn", **kwargs
    )
    phonon = calc.calc(structure)["phonon"]
    phonon.symmetrize_force_constants(show_drift=False)
    return phonon


def gamma_frequencies(structure: Structure, supercell: int, atom_disp: float, simulator: str = "chgnet") -> np.ndarray:
    """The Γ-point phonon frequencies (THz, sorted) of the primitive cell ``structure`` with ``simulator``'s potential.

    Phonopy's finite displacements in the cell as given (``supercell`` times along each axis).

    Forces come from matcalc's ``run_pes_calc``, the force constants are symmetrized (acoustic modes exactly 0).
    At Γ the primitive cell itself (``supercell=1``) is exact: a displaced atom moves with all its periodic images,
    which is the Γ mode; larger supercells only add other q-points. matcalc's ``PhononCalc`` would also run a
    dense mesh with eigenvectors and the thermal properties, most of the cost, which Γ does not need.
    """
    from phonopy import Phonopy
    from pymatgen.io.phonopy import get_phonopy_structure, get_pmg_structure

    _matcalc()  # imported without its hub query, before its backend module
    from matcalc.backend import run_pes_calc

    cell = get_phonopy_structure(structure)
    # "P": the callers pass a primitive cell already; "auto" would only reorient it (and warn once per structure)
    phonon = Phonopy(cell, supercell_matrix=supercell * np.eye(3, dtype=int), primitive_matrix="P")
    phonon.generate_displacements(distance=atom_disp)
    cells = [get_pmg_structure(cell) for cell in phonon.supercells_with_displacements if cell is not None]
    phonon.forces = [run_pes_calc(cell, SIMULATORS[simulator].calculator()).forces for cell in cells]
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants(show_drift=False)
    phonon.run_qpoints([[0, 0, 0]])
    return np.sort(phonon.qpoints.frequencies[0])


def _gamma_values(ctx: StructureContext, sim: Simulator) -> list[float]:
    s = SETTINGS["gamma"]
    primitive = _relaxed(ctx, sim)["final_structure"].get_primitive_structure()
    frequencies = gamma_frequencies(primitive, s["supercell"], s["atom_disp"], sim.name)
    optical = frequencies[3:]
    return [
        float(frequencies.max()),
        float(optical.mean()) if optical.size else float("nan"),
        float(frequencies.min() < IMAGINARY_THZ),
    ]


def _elastic_values(ctx: StructureContext, sim: Simulator) -> list[float]:
    s = SETTINGS["elastic"]
    structure = _bulk(ctx, sim)
    calc = _matcalc().ElasticityCalc(
        sim.calculator(),
        fmax=s["fmax"],
        relax_structure=False,
        relax_deformed_structures=s["relax_deformed_structures"],
        relax_calc_kwargs={"optimizer": _budgeted("FIRE")},  # matcalc's default optimizer, with the budget
        units_GPa=True,
    )
    out = calc.calc(structure)
    return [out["bulk_modulus_vrh"], out["shear_modulus_vrh"], out["elastic_tensor"].universal_anisotropy]


def last_dos_peak(frequencies: np.ndarray, dos: np.ndarray, fraction: float) -> float:
    """The highest frequency at which ``dos`` has a local maximum of at least ``fraction`` × its maximum."""
    high = dos >= fraction * dos.max()
    peaks = [i for i in range(1, len(dos) - 1) if high[i] and dos[i] >= dos[i - 1] and dos[i] > dos[i + 1]]
    if not peaks:
        raise ValueError("the phonon DOS has no peak")
    return float(frequencies[peaks[-1]])


def _phonon_values(ctx: StructureContext, sim: Simulator) -> list[float]:
    s = SETTINGS["phonon"]
    structure = _relaxed(ctx, sim)["final_structure"]
    t = s["temperature"]
    phonon = _phonons(structure, sim, min_length=s["min_length"], atom_disp=s["atom_disp"], t_min=t, t_max=t, t_step=1)
    phonon.run_mesh(s["mesh"])
    phonon.run_total_dos()
    peak = last_dos_peak(phonon.total_dos.frequency_points, phonon.total_dos.dos, s["peak_fraction"])
    phonon.run_thermal_properties(t_min=t, t_max=t, t_step=1)
    thermal = phonon.get_thermal_properties_dict()  # per mole of primitive cells (matcalc's phonopy: primitive "P")
    n = len(phonon.primitive)
    heat_capacity = thermal["heat_capacity"][0] / n
    internal_energy = (thermal["free_energy"][0] + t * thermal["entropy"][0] / 1000) / n
    return [peak * THZ_TO_INVERSE_CM, float(heat_capacity), float(internal_energy)]


def _requires(sim: Simulator) -> None:
    """matcalc, phonopy and the potential's weights are installed (one clear line otherwise)."""
    sim.requires()
    for package in ("matcalc", "phonopy"):
        if installed_version(package) is None:
            raise ModuleNotFoundError(f"the sim: descriptor sets need {package}: pip install matcalc")


@cache
def _package_versions(sim: Simulator) -> dict[str, str]:
    """The installed versions of the packages the simulator computes with."""
    return {p: installed_version(p) or "not-installed" for p in sim.packages}


def _version(sim: Simulator) -> str:
    """The bank's version, the potential and its weights digest, the settings as they are now (:data:`SETTINGS`,
    :data:`VACUUM_GAP_A`: changing either at run time gives other keys) and the calculators' versions."""
    # revision: the definition of the computed values (2: thermal properties per atom of the primitive cell;
    # 3: symmetrized force constants, Γ phonons in the primitive cell)
    definition = {"settings": SETTINGS, "imaginary": IMAGINARY_THZ, "versions": _package_versions(sim), "revision": 3}
    if VACUUM_GAP_A != DEFAULT_VACUUM_GAP_A:  # at its default, absent: the keys of every value cached before stay
        definition["vacuum_gap"] = VACUUM_GAP_A
    settings = json.dumps(definition, sort_keys=True)
    return f"{GROUP_VERSION}-sim-{sim.tag()}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def _settings_now() -> dict[str, Any]:
    """A copy of the module's settings as they are now: :data:`SETTINGS` and the other tunable constants."""
    return copy.deepcopy(
        {"settings": SETTINGS, "vacuum_gap": VACUUM_GAP_A, "wall_s": RELAX_WALL_S, "imaginary": IMAGINARY_THZ}
    )


@contextlib.contextmanager
def _settings_of(frozen: dict[str, Any]):
    """The module's settings set to ``frozen`` (of :func:`_settings_now`) while the block runs, then restored."""

    def apply(values: dict[str, Any]) -> None:
        global VACUUM_GAP_A, RELAX_WALL_S, IMAGINARY_THZ
        SETTINGS.clear()
        SETTINGS.update(copy.deepcopy(values["settings"]))
        VACUUM_GAP_A, RELAX_WALL_S, IMAGINARY_THZ = values["vacuum_gap"], values["wall_s"], values["imaginary"]

    before = _settings_now()
    apply(frozen)
    try:
        yield
    finally:
        apply(before)


#: One simulation at a time per process: the settings are module-wide, and so is each potential's calculator
#: (Dask workers run tasks on several threads); the lock of every forward pass of a shared potential.
_SIMULATING = POTENTIAL_LOCK


def _computed_under(frozen: dict[str, Any], compute: Callable, ctx: StructureContext, sim: Simulator) -> list[float]:
    """``compute(ctx, sim)`` under the settings the group's key was made with: a worker process (loky, Dask) is a
    fresh interpreter whose module holds the defaults, not the settings its parent changed at run time."""
    with _SIMULATING, _settings_of(frozen):
        return compute(ctx, sim)


def _group(sim: Simulator, quantity: str, labels: tuple[str, ...], compute, revision: int = 0) -> FeatureGroup:
    """The simulated group ``sim_<potential>_<quantity>`` (labels likewise prefixed); ``revision`` counts changes of
    this group's own definition (1: the volume response of a vacuum-dominated cell is NaN, no longer a number
    describing the box). Its values are computed under the settings its key was made with, in any process."""
    # The version pins the values (weights, settings, library versions): no reference-structure digest, which
    # would run these simulations on every reference structure in every process.
    version = _version(sim) + (f"-r{revision}" if revision else "")
    frozen = _settings_now()
    return FeatureGroup(
        f"sim_{sim.name}_{quantity}",
        tuple(f"sim_{sim.name}_{label}" for label in labels),
        lambda ctx: _computed_under(frozen, compute, ctx, sim),
        version=version,
        check_values=False,
        requires=lambda: _requires(sim),
        weights=sim.weights,
    )


def tier_groups(sim: Simulator) -> dict[str, tuple[FeatureGroup, ...]]:
    """The groups of ``sim:<potential>`` (``cheap``) and those ``sim:<potential>:full`` adds (``full``)."""
    cheap = (
        _group(sim, "relax", ("relaxed_energy_per_atom", "relax_volume_change"), _relax_values),
        _group(sim, "eos", ("eos_bulk_modulus", "eos_bulk_modulus_derivative"), _eos_values, revision=1),
        _group(sim, "gamma", ("gamma_max_frequency", "gamma_mean_optical_frequency", "gamma_imaginary"), _gamma_values),
    )
    full = (
        _group(sim, "elastic", ("k_vrh", "g_vrh", "universal_anisotropy"), _elastic_values, revision=1),
        _group(sim, "phonon", ("last_dos_peak", "heat_capacity_300K", "internal_energy_300K"), _phonon_values),
    )
    return {"cheap": cheap, "full": full}


#: Every simulated group, by potential and tier, under the default settings (:func:`simulation_set` builds them
#: under the settings of its call).
SIM_GROUPS = {name: tier_groups(sim) for name, sim in SIMULATORS.items()}
#: CHGNet's (the first simulator's) cheap-tier groups.
CHEAP_GROUPS = SIM_GROUPS["chgnet"]["cheap"]
POTENTIALS = tuple(SIMULATORS)


def simulation_set(name: str) -> DescriptorSet:
    """The set ``sim:<potential>`` (cheap tier) or ``sim:<potential>:full`` (both tiers)."""
    parts = name.split(":")
    potential, tier = ([*parts, "cheap"])[1:3] if len(parts) in (2, 3) else ("", "")
    if potential not in POTENTIALS or tier not in TIERS:
        raise UnknownNameError(
            f"unknown simulation set {name!r}: use sim:<potential> or sim:<potential>:full, potentials "
            f"{', '.join(POTENTIALS)}"
        )
    tiers = tier_groups(SIMULATORS[potential])  # the settings as they are now
    groups = tiers["cheap"] + (tiers["full"] if tier == "full" else ())
    return DescriptorSet(name, groups, tuple(label for g in groups for label in g.labels))
