"""StructureData: the validated dataset every loader returns (structures, ids, optional float64 targets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from matgl_hybrid.data.identity import structure_key
from matgl_hybrid.data.validation import SkippedEntry


@dataclass
class StructureData:
    """Validated structures with their ids and, optionally, one float64 target per structure."""

    structures: list[Structure]
    targets: np.ndarray | None
    ids: list[str]
    target_name: str | None = None
    skipped: list[SkippedEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.structures):
            raise ValueError(f"{len(self.structures)} structures but {len(self.ids)} ids")
        if self.targets is not None:
            self.targets = np.asarray(self.targets, dtype=np.float64)
            if self.targets.shape != (len(self.structures),):
                raise ValueError(f"targets must have shape ({len(self.structures)},), got {self.targets.shape}")

    def __len__(self) -> int:
        return len(self.structures)

    def structure_keys(self) -> list[str]:
        """:func:`~matgl_hybrid.data.identity.structure_key` of each structure: equal keys are copies of one
        structure (under several ids), which the package's splits keep on one side."""
        return [structure_key(s) for s in self.structures]

    def subset(self, indices: Sequence[int]) -> StructureData:
        """Return the entries at ``indices``, in that order (``skipped`` is kept as is)."""
        index = np.asarray(indices)
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {index.dtype}")
        positions = [int(i) for i in index.reshape(-1)]
        return StructureData(
            structures=[self.structures[i] for i in positions],
            targets=None if self.targets is None else self.targets[positions],
            ids=[self.ids[i] for i in positions],
            target_name=self.target_name,
            skipped=list(self.skipped),
        )

    def seeded_part(self, fraction: float, seed: int) -> StructureData:
        """A random part of ``round(fraction * len(self))`` entries drawn with ``seed``, in their order here (a
        learning curve's training set: the same entries for every model given the same seed); ``fraction`` >= 1:
        every entry."""
        if not fraction > 0:
            raise ValueError(f"fraction must be above 0, got {fraction}")
        if fraction >= 1:
            return self
        keep = np.random.default_rng(seed).permutation(len(self))[: round(fraction * len(self))]
        return self.subset(np.sort(keep))
