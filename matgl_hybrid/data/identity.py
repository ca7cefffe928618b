"""Material identity across databases: a de-duplication key that survives other ids and other cells.

Used to keep evaluation structures out of a pretraining corpus (``matgl-hybrid pretrain --exclude``).
"""

from __future__ import annotations

from pymatgen.core import Structure


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
