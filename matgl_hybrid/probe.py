"""Descriptor probing of frozen GNN embeddings (Gong et al. 2023) and descriptor importance of hybrid models.

``embed`` (:func:`matgl_hybrid.inference.embed`) taps a model's graph-level vector (after the readout, or after
fusion); ``probe`` regresses every
descriptor of a bank from it with ridge regression and a small MLP on Matbench folds and reports held-out R² and
MAE (accuracy for the crystal system); ``descriptor_importance`` permutes each descriptor input of a trained hybrid
on held-out data and reports the MAE increase.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from matgl_hybrid import data, inference
from matgl_hybrid.checkpoint import load_checkpoint
from matgl_hybrid.data.splits import kfold_splits
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.figures import COLOURS, axis_label, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.inference import embed
from matgl_hybrid.markdown import markdown_table
from matgl_hybrid.models import HybridEnsemble, HybridModel

__all__ = [
    "CATEGORICAL",
    "PROBES",
    "check_probes",
    "descriptor_importance",
    "embed",
    "plot_importance",
    "plot_probe",
    "probe",
    "probe_matrix",
    "run_explain",
    "run_probe",
    "untrained_models",
    "write_importance_report",
    "write_probe_report",
]

#: Descriptors probed as classes (accuracy) rather than values (R²).
CATEGORICAL = ("crystal_system_int",)

#: The probe models :func:`probe` knows.
PROBES = ("ridge", "mlp")


def untrained_models(backbone: str, readouts: Sequence[str], seed: int = 0) -> dict[str, HybridModel]:
    """Freshly initialised (seeded) plain models of ``backbone`` with each readout, to probe what the architecture
    encodes before any training: ``{"<backbone>/<readout> (untrained)": model}``. Every readout sits on the same
    backbone weights (seeded anew for each), so that the readouts' scores differ by the readout alone."""

    def seeded(readout: str) -> HybridModel:
        torch.manual_seed(seed)
        return HybridModel(backbone=backbone, readout=readout)

    return {f"{backbone}/{r} (untrained)": seeded(r) for r in readouts}


def _estimators(categorical: bool, seed: int) -> dict[str, BaseEstimator]:
    """The probes of one descriptor: ``ridge`` and ``mlp`` on standardized embeddings; the MLP regressor also on
    standardized targets (descriptors range from 0.01 to 10⁴: on raw ones it stopped long before it fitted)."""
    if categorical:
        return {
            "ridge": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            "mlp": make_pipeline(
                StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=seed)
            ),
        }
    return {
        "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 4, 17))),
        "mlp": TransformedTargetRegressor(
            make_pipeline(
                StandardScaler(),
                MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, early_stopping=True, random_state=seed),
            ),
            transformer=StandardScaler(),
        ),
    }


def check_probes(probes: Sequence[str]) -> None:
    """Refuse, before any work, a probe name :func:`probe` does not know (or none at all)."""
    unknown = [name for name in probes if name not in PROBES]
    if unknown or not probes:
        named = ", ".join(map(repr, unknown)) or "(none given)"
        raise ValueError(f"unknown probe {named}: choose from {', '.join(PROBES)}")


def probe(
    embeddings: dict[str, np.ndarray],
    descriptors: pd.DataFrame,
    n_splits: int = 5,
    seed: int = 0,
    probes: Sequence[str] = PROBES,
    n_jobs: int = 1,
    copies: Sequence[Hashable] | None = None,
) -> pd.DataFrame:
    """How well each descriptor can be recovered from each embedding, on held-out folds.

    Args:
        embeddings: ``{name: (n, F) array}``, rows aligned with ``descriptors``.
        descriptors: (n, D) descriptor values (NaN rows are left out per descriptor).
        n_splits: Matbench-protocol folds (seeded KFold); predictions on the held-out folds are pooled.
        probes: ``ridge`` (RidgeCV on standardized embeddings) and/or ``mlp`` (one hidden layer of 32).
        n_jobs: parallel (embedding, descriptor, probe) fits through joblib.
        copies: (n,) one key per row (:meth:`~matgl_hybrid.data.StructureData.structure_keys`): copies of a
            structure share a fold, so no probe is scored on a copy of a row it was fitted on.

    Returns:
        Long table with columns ``embedding, descriptor, probe, metric, score, mae``: metric ``r2`` for values
        (score = held-out R², MAE in the descriptor's units) and ``accuracy`` for :data:`CATEGORICAL` ones.

    Raises:
        ValueError: an unknown probe, or no descriptor with ``2 * n_splits`` finite, non-constant values.
    """
    check_probes(probes)
    tasks = []
    for descriptor in descriptors.columns:
        y_all = descriptors[descriptor].to_numpy(dtype=float)
        keep = np.isfinite(y_all)
        y = y_all[keep]
        if len(np.unique(y)) < 2 or len(y) < 2 * n_splits:
            continue  # a constant descriptor has nothing to recover
        kept_copies = None if copies is None else [key for key, k in zip(copies, keep, strict=True) if k]
        splits = kfold_splits(len(y), n_splits, copies=kept_copies)
        for name, x_all in embeddings.items():
            for probe_name in probes:
                tasks.append(delayed(_probe_one)(name, descriptor, probe_name, x_all[keep], y, splits, seed))
    if not tasks:
        raise ValueError(
            f"no descriptor of {', '.join(descriptors.columns)} has {2 * n_splits} finite values that are not all "
            f"equal ({len(descriptors)} structures): nothing to probe"
        )
    rows = Parallel(n_jobs=n_jobs)(tasks)
    table = pd.DataFrame(rows, columns=["embedding", "descriptor", "probe", "metric", "score", "mae"])
    table.attrs["n_splits"] = n_splits
    return table


def _probe_one(name: str, descriptor: str, probe_name: str, x: np.ndarray, y: np.ndarray, splits, seed: int):
    """One (embedding, descriptor, probe) cell: pooled held-out predictions over the folds."""
    categorical = descriptor in CATEGORICAL
    estimator = _estimators(categorical, seed)[probe_name]
    predicted = np.empty_like(y)
    for train, test in splits:
        if categorical and len(np.unique(y[train])) < 2:  # a rare class all in one test fold: no classifier fits
            predicted[test] = y[train][0]
            continue
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
    fig, (ax,) = panels(1, size=(2.6 + 1.3 * matrix.shape[1], 1.6 + 0.32 * matrix.shape[0]))
    image = ax.imshow(matrix.to_numpy(dtype=float).clip(-0.2, 1), cmap="viridis", vmin=-0.2, vmax=1, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if value < 0.5 else "k")
    fig.colorbar(image, ax=ax, label="held-out R² (accuracy for crystal_system_int)")
    ax.set_xlabel("embedding")
    ax.set_ylabel("descriptor")
    ax.set_title(title, fontsize=10)
    save(fig, path)


def check_repeats(n_repeats: int) -> None:
    """Refuse fewer than one permutation per descriptor (every importance would be the NaN mean of none)."""
    if not isinstance(n_repeats, int) or n_repeats < 1:
        raise ValueError(f"repeats must be a whole number >= 1 (permutations per descriptor), got {n_repeats!r}")


def descriptor_importance(
    model: HybridModel,
    structures: Sequence,
    targets: np.ndarray,
    ids: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    n_repeats: int = 3,
    seed: int = 0,
    target: str | None = None,
) -> pd.DataFrame:
    """Permutation importance of each descriptor input of a trained hybrid on held-out data.

    ``targets`` (n,) are the values of the model's output named ``target`` (needed for a model of several targets;
    default: its only one).

    Each raw descriptor column is permuted over the structures (``n_repeats`` times, seeded); the model imputes and
    standardizes the permuted values as usual. The graph network runs once: only fusion and head see the permuted
    descriptors (:meth:`HybridModel.predict_from_graph`).

    Returns:
        One row per descriptor: ``descriptor``, ``mae_increase`` (mean over repeats, target units) and
        ``mae_increase_std``, sorted by importance; ``baseline_mae`` in ``df.attrs``.
    """
    check_repeats(n_repeats)
    if model.descriptor_set is None:
        raise ValueError("descriptor importance needs a hybrid model (one with descriptors)")
    names = list(model.target_names)
    if (target is None and len(names) > 1) or (target is not None and target not in names):
        raise ValueError(f"the model predicts {', '.join(names)}: name the target the data holds (one of them)")
    output = 0 if target is None else names.index(target)
    targets = np.asarray(targets, dtype=float)
    if len(targets) != len(structures):
        raise ValueError(f"{len(targets)} targets for {len(structures)} structures: give one target per structure")
    data = inference.prepare(model, structures, ids, cache_dir)
    raw = data.descriptors
    device = next(model.parameters()).device  # graph vectors come back float32: in the model's dtype (bf16, say)
    graph = inference.run(model, data, lambda out, g: inference.graph_features(model, g))
    graph = graph.to(device, next(model.parameters()).dtype)

    def mae_with(values: np.ndarray) -> float:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                descriptors = torch.as_tensor(values, dtype=torch.float64, device=device)
                predicted = model.predict_from_graph(graph, descriptors).float().cpu()
        finally:
            model.train(was_training)
        return float(mean_absolute_error(targets, predicted.reshape(len(targets), -1)[:, output].numpy()))

    baseline = mae_with(raw)
    rng = np.random.default_rng(seed)
    rows = []
    for j, name in enumerate(model.descriptor_names):
        increases = []
        for _ in range(n_repeats):
            shuffled = raw.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            increases.append(mae_with(shuffled) - baseline)
        rows.append((name, float(np.mean(increases)), float(np.std(increases))))
    table = pd.DataFrame(rows, columns=["descriptor", "mae_increase", "mae_increase_std"])
    table = table.sort_values("mae_increase", ascending=False, ignore_index=True)
    table.attrs["baseline_mae"] = baseline
    return table


def plot_importance(
    table: pd.DataFrame, path: str | Path, title: str = "Descriptor importance", units: str | None = None
) -> None:
    """Horizontal bar chart of :func:`descriptor_importance`; ``units``: the target's (the MAE's)."""
    fig, (ax,) = panels(1, size=(7.0, 1.6 + 0.28 * len(table)))
    ax.barh(table["descriptor"], table["mae_increase"], xerr=table["mae_increase_std"], color=COLOURS["ours"])
    ax.invert_yaxis()
    label = axis_label("MAE increase when permuted", units)
    baseline = table.attrs.get("baseline_mae")
    if baseline is not None and np.isfinite(baseline):
        label += f"\nbaseline MAE (nothing permuted): {baseline:.4g}"
    ax.set_xlabel(label)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title, fontsize=10)
    save(fig, path)


#: The files of a probe report and of an importance report, in their ``out`` folder.
PROBE_REPORT = ("probe.csv", "probe.md", "probe.png")
IMPORTANCE_REPORT = ("importance.csv", "importance.md", "importance.png")


def write_probe_report(table: pd.DataFrame, out: str | Path, source: str, n_structures: int, tap: str) -> pd.DataFrame:
    """Write ``probe.csv``, ``probe.md`` and ``probe.png`` of a :func:`probe` table into ``out``; returns the matrix."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "probe.csv", table.to_csv(index=False))
    matrix = probe_matrix(table)
    probes = " / ".join(dict.fromkeys(table["probe"]))
    best = f"the best of {probes}" if "/" in probes else probes
    text = [
        "# Descriptor probes",
        "",
        f"Data: `{source}` ({n_structures} structures), tap: {tap}. "
        f"Held-out R² of {best} (accuracy for crystal_system_int), {table.attrs.get('n_splits', 5)}-fold. "
        "A best of several probes is picked on the held-out folds themselves: read it as an upper estimate.",
        "",
        markdown_table(matrix, "{:.3f}"),
        "![probe](probe.png)",
        "",
    ]
    atomic_write_text(out / "probe.md", "\n".join(text))
    plot_probe(table, out / "probe.png")
    return matrix


def write_importance_report(
    table: pd.DataFrame,
    out: str | Path,
    model_source: str,
    source: str,
    n_structures: int,
    repeats: int,
    units: str | None = None,
) -> None:
    """Write ``importance.{csv,md,png}`` of a :func:`descriptor_importance` table into ``out`` (``units``: the
    target's)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "importance.csv", table.to_csv(index=False))
    text = [
        "# Descriptor importance",
        "",
        f"Model `{model_source}`, data `{source}` ({n_structures} structures); "
        f"baseline MAE {table.attrs['baseline_mae']:.4g}{f' {units}' if units else ''}. MAE increase when one "
        f"descriptor is permuted ({repeats} repeats).",
        "",
        markdown_table(table.set_index("descriptor"), "{:.4g}"),
        "![importance](importance.png)",
        "",
    ]
    atomic_write_text(out / "importance.md", "\n".join(text))
    plot_importance(table, out / "importance.png", units=units)


def run_probe(
    source: str | Path,
    out: str | Path,
    *,
    model: str | Path | None = None,
    backbone: str | None = None,
    readouts: Sequence[str] = ("mean", "sum", "extensive"),
    seed: int = 0,
    tap: str = "graph",
    probes: Sequence[str] = PROBES,
    descriptor_set: str = "gong28",
    cache_dir: str | Path | None = None,
    n_jobs: int = -1,
) -> pd.DataFrame:
    """Probe the frozen embeddings of a saved ``model`` (or of a fresh ``backbone`` with each of ``readouts``) on
    the structures of ``source`` for every descriptor of ``descriptor_set``; writes the report (``probe.csv``,
    ``.md``, ``.png``) into ``out`` and returns the (models × descriptors) matrix of held-out R².

    Raises:
        ValueError: neither or both of ``model`` and ``backbone``.
    """
    if (model is None) == (backbone is None):
        raise ValueError("give a trained model (--model DIR) or a fresh backbone (--backbone NAME), one of the two")
    check_probes(probes)
    if model is not None:  # before any featurizing: a wrong folder is refused at once
        loaded = load_checkpoint(model)
        if isinstance(loaded, HybridEnsemble):  # one embedding per member, none of its own
            raise ValueError(f"{model}: probe takes one model, not an ensemble of {len(loaded.members)}")
        if not isinstance(loaded, HybridModel):
            raise ValueError(
                f"{model}: a {type(loaded).__name__} without targets (a `pretrain` encoder?) has no graph vector to "
                f"probe; its embeddings are descriptors: ssl:{model}:<layers>"
            )
        models = {Path(model).name: loaded}
    else:
        models = untrained_models(backbone, readouts, seed)
    dataset = data.load(source)
    descriptors = featurize(dataset.structures, descriptor_set, n_jobs=n_jobs, cache_dir=cache_dir, ids=dataset.ids)
    embeddings = {
        name: embed(m, dataset.structures, dataset.ids, tap, cache_dir=cache_dir, n_jobs=n_jobs)
        for name, m in models.items()
    }
    table = probe(embeddings, descriptors, probes=probes, n_jobs=n_jobs, copies=dataset.structure_keys())
    return write_probe_report(table, out, str(source), len(dataset), tap)


def run_explain(
    model: str | Path,
    source: str | Path,
    target: str,
    out: str | Path,
    *,
    repeats: int = 3,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Permutation importance of each descriptor input of the saved hybrid ``model`` on the held-out data
    ``source`` (with its ``target``; a model that learnt ``log10_<target>`` is scored on the log10 of the data's
    values, as ``train --log10-target`` made it); writes ``importance.{csv,md,png}`` into ``out`` and returns the
    table."""
    check_repeats(repeats)  # before the model and the data are read
    hybrid = load_checkpoint(model)
    if not isinstance(hybrid, HybridModel):  # an ensemble runs no fusion of its own to permute into
        raise ValueError(f"{model}: explain takes one hybrid model, not a {type(hybrid).__name__}")
    dataset = data.load(source, target=target)
    if f"log10_{target}" in hybrid.target_names and target not in hybrid.target_names:
        dataset, target = data.log10_targets(dataset), f"log10_{target}"  # compared on the model's own scale
    several = len(hybrid.target_names) > 1  # the data's target is the model's output of that name
    table = descriptor_importance(
        hybrid, dataset.structures, dataset.targets, dataset.ids, cache_dir, n_repeats=repeats,
        target=target if several else None,
    )
    units = getattr(hybrid, "target_units", None)
    write_importance_report(table, out, str(model), str(source), len(dataset), repeats, units)
    return table
