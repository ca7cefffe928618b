"""Descriptor probing of frozen GNN embeddings (Gong et al. 2023) and descriptor importance of hybrid models.

``embed`` taps a model's graph-level vector (after the readout, or after fusion); ``probe`` regresses every
descriptor of a bank from it with ridge regression and a small MLP on Matbench folds and reports held-out R² and
MAE (accuracy for the crystal system); ``descriptor_importance`` permutes each descriptor input of a trained hybrid
on held-out data and reports the MAE increase.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from matgl_hybrid.data import as_structure, validate_structure
from matgl_hybrid.graphs import attach_positions, build_dataset, make_loader
from matgl_hybrid.models import HybridModel
from matgl_hybrid.splits import kfold_splits

#: Descriptors probed as classes (accuracy) rather than values (R²).
CATEGORICAL = ("crystal_system_int",)


def embed(
    model: HybridModel,
    structures: Sequence,
    ids: Sequence[str] | None = None,
    tap: str = "graph",
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Frozen graph-level embeddings of ``structures``: (n, F).

    Args:
        model: a trained or freshly initialised :class:`HybridModel`.
        tap: ``"graph"``, the readout's vector (+ MEGNet's state), or ``"fused"``, after descriptor fusion.
    """
    if tap not in ("graph", "fused"):
        raise ValueError(f"tap must be 'graph' or 'fused', got {tap!r}")
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(structures))]
    structures = [as_structure(s, i) for s, i in zip(structures, ids, strict=True)]
    for s, i in zip(structures, ids, strict=True):
        validate_structure(s, i, allowed_elements=model.element_types)
    descriptors = model.transformed_descriptors(structures, ids, cache_dir)
    dataset = build_dataset(structures, model.element_types, model.cutoff, ids, descriptors)
    model.eval()
    device = next(model.parameters()).device
    vectors = []
    with torch.no_grad():
        for g, lattice, state_attr, _ in make_loader(dataset, batch_size):
            g, lattice, state_attr = g.to(device), lattice.to(device), state_attr.to(device)
            attach_positions(g, lattice)
            model(g, state_attr=state_attr)
            vectors.append(model.feature_dict[tap].reshape(g.num_graphs, -1).cpu())
    return torch.cat(vectors).numpy().astype(np.float64)


def _estimators(categorical: bool, seed: int):
    if categorical:
        return {
            "ridge": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            "mlp": make_pipeline(
                StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=seed)
            ),
        }
    return {
        "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 4, 17))),
        "mlp": make_pipeline(
            StandardScaler(),
            MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, early_stopping=True, random_state=seed),
        ),
    }


def probe(
    embeddings: dict[str, np.ndarray],
    descriptors: pd.DataFrame,
    n_splits: int = 5,
    seed: int = 0,
    probes: Sequence[str] = ("ridge", "mlp"),
    n_jobs: int = 1,
) -> pd.DataFrame:
    """How well each descriptor can be recovered from each embedding, on held-out folds.

    Args:
        embeddings: ``{name: (n, F) array}``, rows aligned with ``descriptors``.
        descriptors: (n, D) descriptor values (NaN rows are left out per descriptor).
        n_splits: Matbench-protocol folds (seeded KFold); predictions on the held-out folds are pooled.
        probes: ``ridge`` (RidgeCV on standardized embeddings) and/or ``mlp`` (one hidden layer of 32).
        n_jobs: parallel (embedding, descriptor, probe) fits through joblib.

    Returns:
        Long table with columns ``embedding, descriptor, probe, metric, score, mae``: metric ``r2`` for values
        (score = held-out R², MAE in the descriptor's units) and ``accuracy`` for :data:`CATEGORICAL` ones.
    """
    tasks = []
    for descriptor in descriptors.columns:
        y_all = descriptors[descriptor].to_numpy(dtype=float)
        keep = np.isfinite(y_all)
        y = y_all[keep]
        if len(np.unique(y)) < 2 or len(y) < 2 * n_splits:
            continue  # a constant descriptor has nothing to recover
        splits = kfold_splits(len(y), n_splits)
        for name, x_all in embeddings.items():
            for probe_name in probes:
                tasks.append(delayed(_probe_one)(name, descriptor, probe_name, x_all[keep], y, splits, seed))
    rows = Parallel(n_jobs=n_jobs)(tasks)
    return pd.DataFrame(rows, columns=["embedding", "descriptor", "probe", "metric", "score", "mae"])


def _probe_one(name: str, descriptor: str, probe_name: str, x: np.ndarray, y: np.ndarray, splits, seed: int):
    """One (embedding, descriptor, probe) cell: pooled held-out predictions over the folds."""
    categorical = descriptor in CATEGORICAL
    estimator = _estimators(categorical, seed)[probe_name]
    predicted = np.empty_like(y)
    for train, test in splits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predicted[test] = estimator.fit(x[train], y[train]).predict(x[test])
    if categorical:
        return (name, descriptor, probe_name, "accuracy", accuracy_score(y, predicted), np.nan)
    return (name, descriptor, probe_name, "r2", r2_score(y, predicted), mean_absolute_error(y, predicted))


def probe_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Descriptor × embedding matrix of the best probe's score (R² or accuracy)."""
    best = table.groupby(["descriptor", "embedding"], sort=False)["score"].max().reset_index()
    matrix = best.pivot(index="descriptor", columns="embedding", values="score")
    order = list(dict.fromkeys(table["descriptor"]))
    return matrix.loc[order, list(dict.fromkeys(table["embedding"]))]


def plot_probe(table: pd.DataFrame, path: str | Path, title: str = "Descriptor probes") -> None:
    """Heat map of :func:`probe_matrix` (held-out R², accuracy for the crystal system)."""
    matrix = probe_matrix(table)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * matrix.shape[1], 1.2 + 0.32 * matrix.shape[0]))
    image = ax.imshow(matrix.to_numpy(dtype=float).clip(-0.2, 1), cmap="viridis", vmin=-0.2, vmax=1, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if value < 0.5 else "k")
    fig.colorbar(image, ax=ax, label="held-out R² (accuracy for crystal_system_int)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def descriptor_importance(
    model: HybridModel,
    structures: Sequence,
    targets: np.ndarray,
    ids: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    n_repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Permutation importance of each descriptor input of a trained hybrid on held-out data.

    Returns:
        One row per descriptor: ``descriptor``, ``mae_increase`` (mean over repeats, target units) and
        ``mae_increase_std``, sorted by importance; ``baseline_mae`` in ``df.attrs``.
    """
    if model.descriptor_set is None:
        raise ValueError("descriptor importance needs a hybrid model (one with descriptors)")
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(structures))]
    structures = [as_structure(s, i) for s, i in zip(structures, ids, strict=True)]
    x = model.transformed_descriptors(structures, ids, cache_dir)
    dataset = build_dataset(structures, model.element_types, model.cutoff, ids, x)
    targets = np.asarray(targets, dtype=float)

    def mae_with(values: np.ndarray) -> float:
        for graph, row in zip(dataset.graphs, torch.as_tensor(values, dtype=torch.float32), strict=True):
            graph.descriptor = row.unsqueeze(0)
        model.eval()
        device = next(model.parameters()).device
        out = []
        with torch.no_grad():
            for g, lattice, state_attr, _ in make_loader(dataset, 64):
                g, lattice, state_attr = g.to(device), lattice.to(device), state_attr.to(device)
                attach_positions(g, lattice)
                out.append(model(g, state_attr=state_attr).reshape(g.num_graphs, -1)[:, 0].cpu())
        return float(np.mean(np.abs(torch.cat(out).numpy() - targets)))

    baseline = mae_with(x)
    rng = np.random.default_rng(seed)
    rows = []
    for j, name in enumerate(model.transform.feature_names_in_):
        increases = []
        for _ in range(n_repeats):
            shuffled = x.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            increases.append(mae_with(shuffled) - baseline)
        rows.append((str(name), float(np.mean(increases)), float(np.std(increases))))
    mae_with(x)  # leave the dataset as it was
    table = pd.DataFrame(rows, columns=["descriptor", "mae_increase", "mae_increase_std"])
    table = table.sort_values("mae_increase", ascending=False, ignore_index=True)
    table.attrs["baseline_mae"] = baseline
    return table


def plot_importance(table: pd.DataFrame, path: str | Path, title: str = "Descriptor importance") -> None:
    """Horizontal bar chart of :func:`descriptor_importance`."""
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * len(table)))
    ax.barh(table["descriptor"], table["mae_increase"], xerr=table["mae_increase_std"], color="#1f77b4")
    ax.invert_yaxis()
    ax.set_xlabel(f"MAE increase when permuted (baseline MAE {table.attrs.get('baseline_mae', float('nan')):.4g})")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
