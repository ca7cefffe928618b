"""Transforms of a dataset's regression targets (log10 of a positive target, as Matbench's ``log_kvrh``)."""

from __future__ import annotations

import warnings

import numpy as np

from matgl_hybrid.data.structure_data import StructureData
from matgl_hybrid.data.validation import SkippedEntry


def log10_targets(dataset: StructureData) -> StructureData:
    """The entries with a positive target, their target replaced by its log10 (as Matbench's ``log_kvrh``).

    Dropped entries (target ≤ 0) are added to ``skipped`` with a warning; the target is renamed ``log10_<name>``.
    """
    if dataset.targets is None:
        raise ValueError("log10_targets needs a dataset with targets")
    positive = dataset.targets > 0
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
