"""Transforms of a dataset's regression targets (log10 of a positive target, as Matbench's ``log_kvrh``)."""

from __future__ import annotations

import warnings

import numpy as np

from matgl_hybrid.data.structure_data import StructureData
from matgl_hybrid.data.validation import SkippedEntry

#: Units of the targets of the datasets this package knows (``../shared/data``, Matbench), for labels and cards
#: when the user gives none. Not Matbench's ``e_form``: eV/atom in ``matbench_mp_e_form``, eV per 5-atom cell in
#: ``matbench_perovskites`` (give ``--units``; Matbench runs take their task's own).
KNOWN_UNITS = {
    "heat_capacity": "J/K/mol",
    "K_VRH": "GPa",
    "G_VRH": "GPa",
    "bulk_modulus_vrh": "GPa",
    "shear_modulus_vrh": "GPa",
    "formation_energy_per_atom": "eV/atom",
    "e_above_hull": "eV/atom",
    "exfoliation_en": "meV/atom",
    "last phdos peak": "cm⁻¹",
    "gap pbe": "eV",
}


def target_units(name: str | None) -> str | None:
    """The units of a known target (``log10_<name>`` in ``log10 <units>``), else None."""
    if not name:
        return None
    if name.startswith("log10_") and (units := KNOWN_UNITS.get(name[len("log10_") :])):
        return f"log10 {units}"
    return KNOWN_UNITS.get(name)


def log10_targets(dataset: StructureData) -> StructureData:
    """The entries with a positive target, their target replaced by its log10 (as Matbench's ``log_kvrh``).

    Dropped entries (target ≤ 0) are added to ``skipped`` with a warning; the target is renamed ``log10_<name>``.

    Raises:
        ValueError: no target at all is positive (the data is not of a log-scaled quantity).
    """
    if dataset.targets is None:
        raise ValueError("log10_targets needs a dataset with targets")
    positive = dataset.targets > 0
    if len(dataset) and not positive.any():
        raise ValueError(f"no target of {dataset.target_name or 'the data'} is positive: log10 needs values > 0 "
                         "(leave out --log10-target)")  # fmt: skip
    result = dataset.subset(np.flatnonzero(positive))
    ids = zip(dataset.ids, positive, strict=True)
    dropped = [SkippedEntry(i, "target ≤ 0 has no log10") for i, ok in ids if not ok]
    if dropped:
        shown = ", ".join(e.id for e in dropped[:5]) + (" …" if len(dropped) > 5 else "")
        warnings.warn(f"dropped {len(dropped)} entries whose target is not positive: {shown}", stacklevel=2)
    result.targets = np.log10(result.targets)
    result.target_name = f"log10_{dataset.target_name or 'target'}"
    result.skipped = [*dataset.skipped, *dropped]
    return result
