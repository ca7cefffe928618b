"""Data splits: a seeded train/validation (or held-out test) split, and Matbench's 5-fold cross-validation folds.

Given ``copies`` (one key per item, such as :meth:`~matgl_hybrid.data.StructureData.structure_keys`), items with
equal keys (one structure under several ids) land on one side of a split: the side of the one the seeded shuffle
drew first (so the held-out side, drawn first, is never emptied by it). A model is never scored on a copy of what it
trained on. Without copies among the items, a split is exactly the plain one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

#: Matbench's ``KFold(n_splits=5, shuffle=True, random_state=18012019)`` seed.
MATBENCH_SEED = 18012019


def split_indices(
    n: int,
    val_fraction: float,
    seed: int,
    copies: Sequence[Hashable] | None = None,
    classes: Sequence[Hashable] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` items: (kept indices, held-out indices), each sorted; at least one held out.

    With ``copies``, the copies of an item go where the first of them drawn does (see the module docstring). With
    the ``classes`` of a classification task, stratified: each class is held out in its share (at least one of a
    class of two or more items), so a small split is never of one class alone.
    """
    if n < 2:
        raise ValueError(f"need at least 2 structures to train with a validation split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    if classes is not None:  # the first drawn of each class, its share of the split; held-out side first
        labels = np.asarray(classes)
        drawn = [order[labels[order] == c] for c in np.unique(labels)]
        first = np.concatenate([m[:k] for m, k in zip(drawn, _shares(n_val, [len(m) for m in drawn]), strict=True)])
        order = np.concatenate([order[np.isin(order, first)], order[~np.isin(order, first)]])
        n_val = len(first)
    kept, held = np.sort(order[n_val:]), np.sort(order[:n_val])
    if _has_copies(copies, n):
        held, kept = _copies_together([held, kept], copies, order)
    return kept, held


def _shares(total: int, counts: list[int]) -> list[int]:
    """``total`` split over classes of ``counts`` items in proportion (largest remainders), each class of two or more
    items at least 1 and at most all but one (taken from the largest shares while the total is exceeded)."""
    share = np.array([total * c / sum(counts) for c in counts])
    taken = np.floor(share).astype(int)
    taken[np.argsort(taken - share)[: total - taken.sum()]] += 1
    limits = [(1, c - 1) if c > 1 else (0, 0) for c in counts]
    taken = np.array([min(max(t, low), high) for t, (low, high) in zip(taken, limits, strict=True)])
    while taken.sum() > max(total, sum(low for low, _ in limits)):
        taken[int(np.argmax([t - low for t, (low, _) in zip(taken, limits, strict=True)]))] -= 1
    return [int(t) for t in taken]


def kfold_splits(
    n: int,
    n_splits: int = 5,
    seed: int = MATBENCH_SEED,
    copies: Sequence[Hashable] | None = None,
    classes: Sequence[Hashable] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Matbench's folds over ``n`` items in dataset order: ``[(train_indices, test_indices), …]``; with the
    ``classes`` of a classification task, stratified by them, as Matbench made its classification folds
    (``StratifiedKFold`` with the same seed).

    With ``copies``, the copies of an item are in the test fold of the first of them drawn (see the module
    docstring).
    """
    folds = KFold if classes is None else StratifiedKFold
    splits = list(folds(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(n), classes))
    if not _has_copies(copies, n):
        return splits
    tests = [test for _, test in splits]  # KFold's test folds: consecutive slices of one seeded permutation
    tests = _copies_together(tests, copies, np.concatenate(tests))
    return [(np.setdiff1d(np.arange(n), test), test) for test in tests]


def _has_copies(copies: Sequence[Hashable] | None, n: int) -> bool:
    if copies is None:
        return False
    if len(copies) != n:
        raise ValueError(f"{len(copies)} copy keys for {n} items")
    return len(set(copies)) < n


def _copies_together(sides: list[np.ndarray], copies: Sequence[Hashable], order: np.ndarray) -> list[np.ndarray]:
    """The partition ``sides`` of the items, each item moved to the side of the first item with its key in
    ``order`` (the seeded permutation the sides were cut from, first side first)."""
    side = np.empty(len(copies), dtype=int)
    for s, members in enumerate(sides):
        side[members] = s
    first: dict[Hashable, int] = {}
    for i in order:
        first.setdefault(copies[i], int(i))
    moved = np.array([side[first[key]] for key in copies])
    together = [np.flatnonzero(moved == s) for s in range(len(sides))]
    if any(not len(members) for members in together):
        raise ValueError(
            f"the {len(copies)} items are only {len(set(copies))} distinct structures: with copies kept together, "
            "one side of the split would be empty (fewer folds or a larger fraction; or keep one of each)"
        )
    return together
