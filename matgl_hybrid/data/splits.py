"""Data splits: a seeded train/validation (or held-out test) split, and Matbench's 5-fold cross-validation folds."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold

#: Matbench's ``KFold(n_splits=5, shuffle=True, random_state=18012019)`` seed.
MATBENCH_SEED = 18012019


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` items: (kept indices, held-out indices), each sorted; at least one held out."""
    if n < 2:
        raise ValueError(f"need at least 2 structures to train with a validation split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def kfold_splits(n: int, n_splits: int = 5, seed: int = MATBENCH_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """Matbench's folds over ``n`` items in dataset order: ``[(train_indices, test_indices), …]``."""
    return list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(n)))
