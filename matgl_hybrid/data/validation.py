"""Validation of single entries: is a structure usable, is a target a finite number, and conversion to a Structure.

Everything here looks at one entry at a time and reports a bad one as :class:`InvalidStructureError`; the loaders
(:mod:`matgl_hybrid.data.loading`) decide whether to raise it or record a :class:`SkippedEntry`.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms
from monty.io import zopen
from pymatgen.core import DummySpecies, Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor


class InvalidStructureError(ValueError):
    """An entry (structure or target) that cannot be used; ``id`` and ``reason`` say which and why."""

    def __init__(self, id: str, reason: str) -> None:
        super().__init__(id, reason)
        self.id = id
        self.reason = reason

    def __str__(self) -> str:
        return f"entry {self.id!r}: {self.reason}"


@dataclass(frozen=True)
class SkippedEntry:
    """An entry dropped by ``skip_invalid=True``, with the reason it was invalid."""

    id: str
    reason: str


@dataclass(frozen=True)
class _Missing:
    """Stands in for an absent structure or target; ``reason`` says why it is absent."""

    reason: str


def validate_structure(
    structure: Structure,
    id: str,
    allowed_elements: Collection[str] | None = None,
    min_distance: float = 0.5,
) -> None:
    """Raise InvalidStructureError unless ``structure`` is ordered, made of known elements and has no overlaps."""
    if not isinstance(structure, Structure):
        raise InvalidStructureError(id, f"expected a pymatgen Structure, got {type(structure).__name__}")
    if len(structure) == 0:
        raise InvalidStructureError(id, "structure is empty (0 sites)")
    if not (np.isfinite(structure.lattice.matrix).all() and structure.volume > 1e-6):
        raise InvalidStructureError(id, f"lattice is degenerate or not finite (volume {structure.volume:.3g} Å³)")
    if not np.isfinite(structure.frac_coords).all():
        raise InvalidStructureError(id, "atomic coordinates are not finite")
    _require_periodic(structure.lattice.pbc, id, "lattice")

    symbols = set()
    for i, site in enumerate(structure):
        if not site.is_ordered:
            raise InvalidStructureError(id, f"site {i} is disordered or partially occupied ({site.species_string})")
        species = next(iter(site.species))
        element = getattr(species, "element", species)
        if isinstance(species, DummySpecies) or not isinstance(element, Element):
            raise InvalidStructureError(id, f"site {i} holds {species}, which is not a chemical element")
        symbols.add(element.symbol)

    if allowed_elements is not None:
        unknown = sorted(symbols - {str(e) for e in allowed_elements})
        if unknown:
            raise InvalidStructureError(
                id,
                f"element(s) {', '.join(unknown)} unknown to the model (it accepts the elements it was built for: "
                "those of its training data unless trained with --elements all, MatGL's 89)",
            )

    if min_distance > 0:
        centers, neighbors, images, distances = structure.get_neighbor_list(r=min_distance)
        if len(distances) and distances.min() < min_distance:
            k = int(np.argmin(distances))
            image_note = " (periodic images)" if np.any(images[k]) else ""
            raise InvalidStructureError(
                id,
                f"overlapping atoms: sites {centers[k]} and {neighbors[k]}{image_note} are "
                f"{distances[k]:.3f} Å apart, less than min_distance={min_distance} Å",
            )


def validate_target(value: Any, id: str, target_name: str) -> float:
    """Return ``value`` as a finite float or raise InvalidStructureError (None, NaN, inf, non-numeric); a boolean (a
    class label such as ``"is_metal": true``) is 1.0 or 0.0."""
    if value is None or value is pd.NA:
        raise InvalidStructureError(id, f"target {target_name!r} is missing")
    if isinstance(value, bool | np.bool_):
        return float(value)
    if not isinstance(value, numbers.Real):
        raise InvalidStructureError(id, f"target {target_name!r} is not a number: {value!r}")
    number = float(value)
    if math.isnan(number):
        raise InvalidStructureError(id, f"target {target_name!r} is NaN")
    if math.isinf(number):
        raise InvalidStructureError(id, f"target {target_name!r} is infinite ({number})")
    return number


def _existing_file(text: str) -> Path | None:
    """The file a one-line string names, when it names one (not JSON, CIF or POSCAR text)."""
    text = text.strip()
    if "\n" in text or text.startswith("{") or len(text) > 4096:
        return None
    try:
        path = Path(text).expanduser()
        return path if path.is_file() else None
    except OSError:  # a name too long for the file system, say
        return None


def _require_one_block(cif: str, id: str) -> None:
    """Refuse a CIF of several data blocks (structures): pymatgen would keep the first (or the first it parses)."""
    blocks = len(re.findall(r"(?im)^[ \t]*data_", cif))
    if blocks > 1:
        raise InvalidStructureError(id, f"the CIF holds {blocks} structures (data blocks): give one per file")


def _require_periodic(pbc: Sequence[bool], id: str, source: str) -> None:
    """Raise InvalidStructureError unless periodic along all three axes, as MatGL's graphs (and CHGNet's) are."""
    if not all(pbc):
        axes = ", ".join("abc"[i] for i, periodic in enumerate(pbc) if not periodic)
        raise InvalidStructureError(
            id, f"not periodic along {axes} ({source} pbc={list(map(bool, pbc))}): the graphs are periodic in 3D; "
            "give a cell with vacuum around the atoms and pbc=True"
        )


#: pymatgen's warning for a POSCAR without a species line: it names the atoms H, He, Li… by their order.
UNNAMED_POSCAR = "Elements in POSCAR cannot be determined"


def as_structure(obj: Any, id: str = "?") -> Structure:
    """Convert a Structure, ase Atoms, as_dict() dict, JSON/CIF/POSCAR string or file path (a ``Path``, or a string
    naming an existing file) to a Structure. A POSCAR without its species line and a CIF of several structures (data
    blocks) are refused: pymatgen would name the atoms H, He, … or keep the first block alone."""
    if isinstance(obj, _Missing):
        raise InvalidStructureError(id, obj.reason)
    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, Atoms):
        _require_periodic(obj.pbc, id, "ase")
    if isinstance(obj, str) and (path := _existing_file(obj)) is not None:
        obj = path
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=UNNAMED_POSCAR)
            if isinstance(obj, Atoms):
                return AseAtomsAdaptor.get_structure(obj)
            if isinstance(obj, dict):
                return Structure.from_dict(obj)
            if isinstance(obj, str):
                text = obj.lstrip()
                fmt = "json" if text.startswith("{") else "cif" if "_cell_length_a" in text else "poscar"
                if fmt == "cif":
                    _require_one_block(text, id)
                return Structure.from_str(obj, fmt=fmt)
            if isinstance(obj, Path):
                if ".cif" in obj.name.lower():
                    _require_one_block(zopen(obj, "rt").read(), id)
                return Structure.from_file(obj)
    except InvalidStructureError:
        raise
    except Warning as exc:
        if UNNAMED_POSCAR in str(exc):
            raise InvalidStructureError(
                id, "the POSCAR names no elements (no species line above the counts): add it"
            ) from None
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())  # a reader's message can span lines: one line, cut at 300 characters
        raise InvalidStructureError(id, f"cannot read structure: {type(exc).__name__}: {detail[:300]}") from exc
    raise InvalidStructureError(id, f"expected a Structure, ase Atoms, dict or string, got {type(obj).__name__}")
