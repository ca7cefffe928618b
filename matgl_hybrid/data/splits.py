"""Data splits: a seeded train/validation (or held-out test) split, and Matbench's 5-fold cross-validation folds.

Given ``copies`` (one key per item, such as :meth:`~matgl_hybrid.data.StructureData.structure_keys`), items with
equal keys (one structure under several ids) land on one side of a split, that of the first of them: a model is
never scored on a copy of what it trained on. Without copies among the items, a split is exactly the plain one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.model_selection import KFold

#: Matbench's ``KFold(n_splits=5, shuffle=True, random_state=18012019)`` seed.
MATBENCH_SEED = 18012019


def split_indices(
    n: int, val_fraction: float, seed: int, copies: Sequence[Hashable] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` items: (kept indices, held-out indices), each sorted; at least one held out.

    With ``copies``, the copies of an item go where the first of them does (see the module docstring).
    """
    if n < 2:
        raise ValueError(f"need at least 2 structures to train with a validation split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    kept, held = np.sort(order[n_val:]), np.sort(order[:n_val])
    if _has_copies(copies, n):
        kept, held = _copies_together([kept, held], copies)
    return kept, held


def kfold_splits(
    n: int, n_splits: int = 5, seed: int = MATBENCH_SEED, copies: Sequence[Hashable] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Matbench's folds over ``n`` items in dataset order: ``[(train_indices, test_indices), …]``.

    With ``copies``, the copies of an item are in the test fold of the first of them (see the module docstring).
    """
    splits = list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(n)))
    if not _has_copies(copies, n):
        return splits
    tests = _copies_together([test for _, test in splits], copies)
    return [(np.setdiff1d(np.arange(n), test), test) for test in tests]


def _has_copies(copies: Sequence[Hashable] | None, n: int) -> bool:
    if copies is None:
        return False
    if len(copies) != n:
        raise ValueError(f"{len(copies)} copy keys for {n} items")
    return len(set(copies)) < n


def _copies_together(sides: list[np.ndarray], copies: Sequence[Hashable]) -> list[np.ndarray]:
    """The partition ``sides`` of the items, each item moved to the side of the first item with its key."""
    side = np.empty(len(copies), dtype=int)
    for s, members in enumerate(sides):
        side[members] = s
    first: dict[Hashable, int] = {}
    moved = np.array([side[first.setdefault(key, i)] for i, key in enumerate(copies)])
    together = [np.flatnonzero(moved == s) for s in range(len(sides))]
    if any(not len(members) for members in together):
        raise ValueError("every item of one side of the split is a copy of an item on another: keep one of each")
    return together
