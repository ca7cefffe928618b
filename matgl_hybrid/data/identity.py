"""Structure identity: the exact key of a structure (the descriptor cache's, and copies in one dataset) and a
material key that survives other ids and other cells (to keep evaluation structures out of a pretraining corpus,
``matgl-hybrid pretrain --exclude``).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from pymatgen.core import Element, Structure


def structure_key(structure: Structure) -> str:
    """sha256 of the lattice, elements and fractional coordinates, and of what else changes a computed value: the
    species' oxidation states (symmetry tells Fe2+ from Fe3+) and the ``selective_dynamics`` site property (fixed
    atoms relax otherwise). Equal keys mean identical structures.

    A structure without either hashes its lattice, elements and coordinates alone, as keys always have, so that
    caches and archives written before stay valid. Other site properties (``forces``, ``velocities``, ``magmom``)
    are not part of it: no descriptor reads them (pymatgen hands ``magmom`` to spglib, whose symmetry dataset
    ignores it, so gong28's space group of an antiferromagnet is its structural one; tests/test_descriptors.py).
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.array([site.specie.Z for site in structure], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    species = [site.specie for site in structure]
    if not all(isinstance(s, Element) for s in species):
        h.update(json.dumps(["species", *map(str, species)]).encode())
    if (fixed := structure.site_properties.get("selective_dynamics")) is not None:
        h.update(b"selective_dynamics" + np.asarray(fixed, dtype=bool).tobytes())
    return h.hexdigest()


def material_key(structure: Structure, symprec: float = 0.1) -> tuple[str, int, int]:
    """(reduced formula, sites in the primitive cell, space-group number): one material across databases.

    The primitive cell makes a conventional cell or a supercell of a crystal match its primitive copy elsewhere. Used
    to keep evaluation structures out of a pretraining corpus even when they come with other ids.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer  # spglib: imported only when keys are asked for

    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
        number, sites = analyzer.get_space_group_number(), len(analyzer.find_primitive())
    except Exception:  # spglib gives up on a few distorted cells: compare formula and cell size only
        number, sites = 0, len(structure)
    return structure.composition.reduced_formula, sites, number
