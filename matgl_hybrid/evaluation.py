"""The Matbench evaluation protocol on any data: seeded 5-fold splits, resumable per-fold records, reports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import mean_absolute_error
from tqdm.auto import tqdm

from matgl_hybrid.data import StructureData
from matgl_hybrid.data.splits import MATBENCH_SEED, kfold_splits
from matgl_hybrid.descriptors import get_descriptor_set
from matgl_hybrid.files import atomic_write_text, check_output_dir, read_json
from matgl_hybrid.fingerprint import check_fingerprint, run_fingerprint


class FoldStore:
    """One JSON file per finished fold (``<directory>/fold<k>.json``), written atomically.

    A record holds at least ``mae`` (None for classification), ``train_seconds``, ``ids``, ``y_true`` (None when
    the test targets are hidden), ``y_pred`` and ``params``. A crash loses at most the fold in progress.

    With a ``fingerprint`` (:func:`~matgl_hybrid.fingerprint.run_fingerprint`), every record saved carries it and
    a finished fold is reused only when its fingerprint is equal: a fold of another run (other data, target,
    settings or descriptor version) raises :class:`~matgl_hybrid.fingerprint.FingerprintMismatch`.
    """

    HINT = "use another output folder, or move the old folds away to start over"

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any] | None = None):
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def path(self, fold: int) -> Path:
        return self.directory / f"fold{fold}.json"

    def has(self, fold: int) -> bool:
        """Whether the fold is finished; with a fingerprint, raises if it was finished by another run."""
        if not self.path(fold).is_file():
            return False
        if self.fingerprint is not None:
            check_fingerprint(self.load(fold).get("fingerprint"), self.fingerprint, self.path(fold), self.HINT)
        return True

    def load(self, fold: int) -> dict[str, Any]:
        return read_json(self.path(fold))

    def save(self, fold: int, record: dict[str, Any]) -> None:
        if self.fingerprint is not None:
            record = {**record, "fingerprint": self.fingerprint}
        atomic_write_text(self.path(fold), json.dumps(record))

    def records(self) -> dict[int, dict[str, Any]]:
        """All finished folds, by fold number."""
        return {int(p.stem[4:]): read_json(p) for p in sorted(self.directory.glob("fold*.json"))}


#: ``train_and_predict(train, test, fold) -> (predictions (n_test,), params)``.
TrainAndPredict = Callable[[StructureData, StructureData, int], tuple[np.ndarray, dict[str, Any]]]


def cross_validate(
    data: StructureData,
    train_and_predict: TrainAndPredict,
    store: FoldStore,
    folds: Iterable[int] = range(5),
    desc: str = "cross-validation",
    progress: bool = True,
) -> dict[int, dict[str, Any]]:
    """Run the Matbench protocol on ``data``; finished folds found in ``store`` are not redone.

    Returns:
        The records of all requested folds, by fold number.
    """
    if data.targets is None:
        raise ValueError("cross-validation needs targets")
    splits = kfold_splits(len(data))
    folds = list(folds)
    finished = {fold for fold in folds if store.has(fold)}  # a fold of another run is refused before any training
    bar = tqdm(folds, desc=desc, unit="fold", disable=not progress)
    for fold in bar:
        if fold in finished:
            continue
        train, test = data.subset(splits[fold][0]), data.subset(splits[fold][1])
        start = time.perf_counter()
        predicted, params = train_and_predict(train, test, fold)
        predicted = np.asarray(predicted, dtype=float)
        store.save(
            fold,
            {
                "mae": float(mean_absolute_error(test.targets, predicted)),
                "train_seconds": time.perf_counter() - start,
                "n_train": len(train),
                "n_test": len(test),
                "params": params,
                "ids": list(test.ids),
                "y_true": test.targets.tolist(),
                "y_pred": predicted.tolist(),
            },
        )
        bar.set_postfix(last_mae=f"{store.load(fold)['mae']:.4g}")
    return {fold: store.load(fold) for fold in folds}


def summarize(records: dict[int, dict[str, Any]], metric: str = "mae") -> dict[str, Any]:
    """``{"fold_<metric>": [...], "<metric>_mean", "<metric>_std", "train_seconds", "folds_done"}`` of fold records."""
    values = [records[f][metric] for f in sorted(records)]
    return {
        f"fold_{metric}": values,
        f"{metric}_mean": float(np.mean(values)),
        f"{metric}_std": float(np.std(values)),
        "train_seconds": float(np.mean([records[f]["train_seconds"] for f in records])),
        "folds_done": len(values),
    }


def write_report(
    stem: str | Path,
    title: str,
    tables: dict[str, dict[str, dict[str, Any]]],
    units: dict[str, str],
    parity: dict[str, tuple[str, np.ndarray, np.ndarray]] | None = None,
    reference: dict[str, list[dict[str, Any]]] | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Markdown table + PNG (bar chart of per-fold MAE, parity plot of the best model) for several targets.

    Args:
        stem: output path without suffix; writes ``<stem>.md`` and ``<stem>.png``.
        title: report heading.
        tables: ``{target: {model: summarize(...) (+ "mad")}}``.
        units: target units, for labels.
        parity: ``{target: (model, y_true, y_pred)}`` to plot.
        reference: ``{target: [{"algorithm", "mae_mean", "mae_std", "source"}, …]}``, e.g. leaderboard entries,
            listed beside our rows.
        notes: lines added under the title.
    """
    stem = Path(stem)
    lines = [f"# {title}", "", *notes, ""] if notes else [f"# {title}", ""]
    for target, rows in tables.items():
        complete = {m: r["mae_mean"] for m, r in rows.items() if r["folds_done"] == 5}
        best = min(complete, key=complete.get) if complete else None
        lines += [
            f"## {target} ({units.get(target, '')})",
            "",
            "| model | MAE (mean ± std) | MAE/MAD | folds | train s / fold |",
            "|---|---:|---:|---:|---:|",
        ]
        for model, r in sorted(rows.items(), key=lambda kv: kv[1]["mae_mean"]):
            ratio = f"{r['mae_mean'] / r['mad']:.3f}" if r.get("mad") else "–"
            flag = " **(best)**" if model == best else ""
            lines.append(
                f"| {model}{flag} | {r['mae_mean']:.4g} ± {r['mae_std']:.2g} | {ratio} | "
                f"{r['folds_done']}/5 | {r['train_seconds']:.0f} |"
            )
        for ref in (reference or {}).get(target, []):
            std = f" ± {ref['mae_std']:.2g}" if ref.get("mae_std") is not None else ""
            lines.append(f"| {ref['algorithm']} (leaderboard) | {ref['mae_mean']:.4g}{std} | – | – | – |")
        lines.append("")
    if reference:
        sources = sorted({r["source"] for refs in reference.values() for r in refs})
        lines += ["Leaderboard figures from: " + "; ".join(sources), ""]
    lines += [f"![results]({stem.name}.png)", ""]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines))

    fig, axes = plt.subplots(len(tables), 2, figsize=(11, 3.8 * len(tables)), squeeze=False)
    for row, (target, rows) in enumerate(tables.items()):
        ax = axes[row, 0]
        models = sorted(rows, key=lambda m: rows[m]["mae_mean"])
        for i, m in enumerate(models):
            ax.bar(i, rows[m]["mae_mean"], color="#1f77b4" if m.startswith("hybrid") else "#999999")
            ax.plot([i] * len(rows[m]["fold_mae"]), rows[m]["fold_mae"], "k.", ms=5)
        for ref in (reference or {}).get(target, []):
            ax.axhline(ref["mae_mean"], ls=":", lw=0.8, color="#d62728")
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
        ax.set_ylabel(f"MAE ({units.get(target, '')})")
        ax.set_title(f"{target}: MAE per model (dots: folds)", fontsize=10)
        ax = axes[row, 1]
        if parity and target in parity:
            name, y, p = parity[target]
            ax.scatter(y, p, s=4, alpha=0.5)
            lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_xlabel(f"reference ({units.get(target, '')})")
            ax.set_ylabel("predicted")
            ax.set_title(f"{target}: parity of {name} (held-out folds)", fontsize=10)
        else:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    plt.close(fig)


def pooled_parity(records: dict[int, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """All held-out (y_true, y_pred) of the finished folds."""
    y = np.concatenate([r["y_true"] for r in records.values()])
    p = np.concatenate([r["y_pred"] for r in records.values()])
    return y, p


def run_cv(
    data: StructureData,
    spec: Any,
    out: str | Path,
    cache_dir: str | Path | None = "default",
    units: str = "",
) -> dict[str, Any]:
    """Matbench protocol for a :class:`~matgl_hybrid.training.TrainSpec` on any dataset (``matgl-hybrid cv``).

    Writes ``<out>/folds/fold<k>.json`` (resumable: a finished fold is reused only when it was produced from the
    same data, target, settings and descriptor version), ``<out>/cv.json`` (the summary) and ``<out>/cv.{md,png}``.
    """
    from matgl_hybrid.training import fit

    out = check_output_dir(out)
    spec.validate()
    version = get_descriptor_set(spec.descriptors).version if spec.descriptors else None
    store = FoldStore(out / "folds", run_fingerprint([data], spec.to_dict(), version))

    def train_and_predict(train: StructureData, test: StructureData, fold: int):
        # Test folds may hold elements the training folds lack: embed all of MatGL's default elements.
        fold_spec = type(spec)(**{**spec.to_dict(), "seed": spec.seed + fold, "elements": "all"})
        result = fit(train, spec=fold_spec, cache_dir=cache_dir)
        predicted = result.model.predict(test.structures, cache_dir=cache_dir, ids=test.ids)
        return predicted, {"best_val_mae": result.best_val_mae, "best_epoch": result.best_epoch}

    records = cross_validate(data, train_and_predict, store, desc=f"cv {data.target_name}")
    y, p = pooled_parity(records)
    summary = {**summarize(records), "mad": float(np.mean(np.abs(y - y.mean()))), "spec": spec.to_dict()}
    atomic_write_text(out / "cv.json", json.dumps(summary, indent=1) + "\n")
    name = data.target_name or "target"
    label = f"{spec.backbone}/{spec.readout}/{spec.descriptors or 'no descriptors'}"
    write_report(
        out / "cv",
        f"Cross-validation of {name} (Matbench protocol)",
        {name: {label: summary}},
        {name: units},
        {name: (label, y, p)},
        notes=[
            f"5-fold KFold(shuffle=True, random_state={MATBENCH_SEED}) over the dataset order, {len(data)} entries."
        ],
    )
    return summary


def markdown_table(frame, float_format: str = "{:.3f}") -> str:
    """A DataFrame as a GitHub markdown table (index as the first column)."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        cells = [float_format.format(v) if isinstance(v, float | np.floating) else str(v) for v in row]
        lines.append("| " + " | ".join([str(index), *cells]) + " |")
    return "\n".join(lines) + "\n"
