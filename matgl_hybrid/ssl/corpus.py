"""The corpus of label-free pretraining: the union of datasets, minus the structures kept for evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matgl.config import DEFAULT_ELEMENTS
from pymatgen.core import Structure

from matgl_hybrid import data


@dataclass
class Corpus:
    """Structures to pretrain on, with their ids, and how many were left out as evaluation structures."""

    structures: list[Structure]
    ids: list[str]
    n_excluded: int


def pretraining_corpus(sources: Sequence, exclude: Sequence = ()) -> Corpus:
    """The union of ``sources``, without the structures of ``exclude``.

    An id seen again with the same formula is the same entry (kept once); with another formula it is another
    material under a file's own id (a CSV row number, say), kept as ``<source>#<id>``. Evaluation structures stay
    out by id with the same formula, and by material (formula, size, space group:
    :func:`~matgl_hybrid.data.material_key`), since the same crystal can come from another database under another id.

    Args:
        sources, exclude: anything :func:`matgl_hybrid.data.load` reads (record files, folders, CSV).
    """
    structures: dict[str, Structure] = {}
    for source in sources:
        # an element no encoder embeds (MatGL's 89 leave out Po … Ra and Am on) is refused naming its entry
        dataset = data.load(source, allowed_elements=DEFAULT_ELEMENTS)
        for entry_id, structure in zip(dataset.ids, dataset.structures, strict=True):
            seen = structures.get(entry_id)
            if seen is None:
                structures[entry_id] = structure
            elif _formula(seen) != _formula(structure):
                structures.setdefault(f"{source}#{entry_id}", structure)
    held = [data.load(source) for source in exclude]
    held_formulas: dict[str, set[str]] = {}  # an id of several excluded files may name several materials
    for d in held:
        for i, s in zip(d.ids, d.structures, strict=True):
            held_formulas.setdefault(i, set()).add(_formula(s))
    held_keys = {data.material_key(s) for d in held for s in d.structures}
    kept = {i: s for i, s in structures.items() if _formula(s) not in held_formulas.get(i, ())}
    if held_keys:
        kept = {i: s for i, s in kept.items() if data.material_key(s) not in held_keys}
    return Corpus(list(kept.values()), list(kept), len(structures) - len(kept))


def _formula(structure: Structure) -> str:
    """The reduced formula: what tells a shared id of one material from a file-local id of two."""
    return structure.composition.reduced_formula
