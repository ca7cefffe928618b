"""Accuracy on real data with the Matbench protocol: hybrid vs plain GNN vs descriptor-only models.

5-fold ``KFold(shuffle=True, random_state=18012019)`` over the dataset order; every scaler, imputer and target
normalization is fitted on the training folds only (GNNs hold out 10 % of the training folds for early stopping).
Each finished fold is written at once (atomically) to ``benchmarks/results/folds/``, so a killed run keeps its
finished folds and a rerun continues; the report is rebuilt from all finished folds:
``benchmarks/results/<dataset>.{md,json,png}``.

    python benchmarks/accuracy.py --dataset alexandria_heat_capacity \\
        --models megnet,megnet_readout,descriptors_rf,descriptors_mlp,hybrid_megnet
    python benchmarks/accuracy.py --dataset alexandria_heat_capacity --report-only
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor

from matgl_hybrid.data import StructureData, load_records
from matgl_hybrid.descriptors import DescriptorTransform, featurize
from matgl_hybrid.descriptors.cache import atomic_write_text
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.training import TrainSpec, fit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
MATBENCH_SEED = 18012019


@dataclass(frozen=True)
class Task:
    """One target of a dataset: the record field, whether it is modelled as log10, and its units."""

    name: str
    field: str
    log10: bool
    units: str


DATASETS: dict[str, tuple[str, list[Task]]] = {
    "alexandria_heat_capacity": (
        "alexandria_heat_capacity.json.gz",
        [Task("heat_capacity", "heat_capacity", False, "J/K/mol of cells")],
    ),
    "mp_binary_elasticity": (
        "mp_binary_elasticity.json.gz",
        [
            Task("log10_bulk_modulus", "bulk_modulus_vrh", True, "log10 GPa"),
            Task("log10_shear_modulus", "shear_modulus_vrh", True, "log10 GPa"),
        ],
    ),
    "de_jong_2015_elasticity": (
        "de_jong_2015_elasticity.json.gz",
        [Task("log10_K_VRH", "K_VRH", True, "log10 GPa"), Task("log10_G_VRH", "G_VRH", True, "log10 GPa")],
    ),
    "flla_2015_formation_energy": (
        "flla_2015_formation_energy.json.gz",
        [Task("formation_energy_per_atom", "formation_energy_per_atom", False, "eV/atom")],
    ),
}

DESCRIPTORS_ONLY = "gong28+composition"


def gnn_spec(readout: str, descriptors: str | None, fusion: str = "concat", **overrides) -> TrainSpec:
    """The GNN training budget of this benchmark (MEGNet, CPU-sized; see README)."""
    return TrainSpec(
        backbone="megnet",
        readout=readout,
        descriptors=descriptors,
        fusion=fusion,
        max_epochs=overrides.pop("max_epochs", 120),
        patience=overrides.pop("patience", 25),
        batch_size=32,
        lr=2e-3,
        progress=False,
        **overrides,
    )


def load_task(dataset: str, task: Task) -> StructureData:
    """The dataset's records with a finite (and, for log10 targets, positive) target, in file order."""
    data = load_records(SHARED / DATASETS[dataset][0], task.field, skip_invalid=True)
    if task.log10:
        keep = np.flatnonzero(data.targets > 0)
        data = data.subset(keep)
        data.targets = np.log10(data.targets)
        data.target_name = task.name
    return data


def _descriptor_model(make: Callable[[], object]) -> Callable:
    def run(train: StructureData, test: StructureData, cache: Path, **_) -> np.ndarray:
        frames = [
            featurize(d.structures, DESCRIPTORS_ONLY, n_jobs=-1, cache_dir=cache, ids=d.ids, progress=False)
            for d in (train, test)
        ]
        transform = DescriptorTransform().fit(frames[0])
        mean, std = train.targets.mean(), train.targets.std()
        model = make()
        model.fit(transform.transform(frames[0]), (train.targets - mean) / std)
        return model.predict(transform.transform(frames[1])) * std + mean

    return run


def _gnn_model(readout: str, descriptors: str | None, fusion: str = "concat") -> Callable:
    def run(train: StructureData, test: StructureData, cache: Path, fold: int, **overrides) -> np.ndarray:
        spec = gnn_spec(readout, descriptors, fusion, seed=fold, n_jobs=-1, **overrides)
        result = fit(train, spec=spec, cache_dir=cache)
        return result.model.predict(test.structures, cache_dir=cache, ids=test.ids)

    return run


MODELS: dict[str, Callable] = {
    "megnet": _gnn_model("native", None),
    "megnet_readout": _gnn_model("extensive", None),
    "descriptors_rf": _descriptor_model(lambda: RandomForestRegressor(n_estimators=300, n_jobs=-1, random_state=0)),
    "descriptors_mlp": _descriptor_model(
        lambda: MLPRegressor((256, 128), early_stopping=True, max_iter=1000, random_state=0)
    ),
    "hybrid_megnet": _gnn_model("extensive", "gong28", "concat"),
    "hybrid_megnet_gate": _gnn_model("extensive", "gong28", "gate"),
    "hybrid_megnet_film": _gnn_model("extensive", "gong28", "film"),
}


def fold_path(dataset: str, task: str, model: str, fold: int) -> Path:
    return RESULTS / "folds" / dataset / task / model / f"fold{fold}.json"


def run(dataset: str, models: list[str], folds: list[int], overrides: dict) -> None:
    cache = descriptor_cache_dir()
    for task in DATASETS[dataset][1]:
        data = load_task(dataset, task)
        splits = list(KFold(n_splits=5, shuffle=True, random_state=MATBENCH_SEED).split(np.arange(len(data))))
        for model in models:
            for fold in folds:
                path = fold_path(dataset, task.name, model, fold)
                if path.exists():
                    print(f"{dataset}/{task.name}/{model}/fold{fold}: done already")
                    continue
                train_idx, test_idx = splits[fold]
                train, test = data.subset(train_idx), data.subset(test_idx)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    predicted = MODELS[model](train, test, cache, fold=fold, **overrides)
                seconds = time.perf_counter() - start
                mae = float(np.mean(np.abs(predicted - test.targets)))
                record = {
                    "mae": mae,
                    "train_seconds": seconds,
                    "n_train": len(train),
                    "n_test": len(test),
                    "settings": overrides,
                    "ids": test.ids,
                    "y_true": test.targets.tolist(),
                    "y_pred": np.asarray(predicted, dtype=float).tolist(),
                }
                atomic_write_text(path, json.dumps(record))
                print(f"{dataset}/{task.name}/{model}/fold{fold}: MAE {mae:.4g} ({seconds:.0f} s)", flush=True)


def report(dataset: str) -> None:
    """Rebuild ``<dataset>.{json,md,png}`` from the finished folds."""
    summary: dict[str, dict] = {}
    mads, parity = {}, {}
    for task in DATASETS[dataset][1]:
        base = RESULTS / "folds" / dataset / task.name
        rows = {}
        for model_dir in sorted(base.glob("*")) if base.exists() else []:
            folds = sorted(model_dir.glob("fold*.json"))
            records = [json.loads(p.read_text()) for p in folds]
            if not records:
                continue
            maes = [r["mae"] for r in records]
            rows[model_dir.name] = {
                "fold_mae": maes,
                "mae_mean": float(np.mean(maes)),
                "mae_std": float(np.std(maes)),
                "train_seconds": float(np.mean([r["train_seconds"] for r in records])),
                "folds_done": len(records),
            }
            y = np.concatenate([r["y_true"] for r in records])
            mads[task.name] = float(np.mean(np.abs(y - y.mean())))
            parity.setdefault(task.name, {})[model_dir.name] = (y, np.concatenate([r["y_pred"] for r in records]))
        if rows:
            summary[task.name] = rows
    if not summary:
        print(f"no finished folds for {dataset}")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / f"{dataset}.json", json.dumps(summary, indent=1) + "\n")

    units = {t.name: t.units for t in DATASETS[dataset][1]}
    lines = [f"# {dataset}: Matbench protocol (5-fold KFold, seed {MATBENCH_SEED})", ""]
    for task, rows in summary.items():
        complete = {m: r["mae_mean"] for m, r in rows.items() if r["folds_done"] == 5}
        best = min(complete, key=complete.get) if complete else None
        lines += [
            f"## {task} ({units[task]})",
            "",
            "| model | MAE (mean ± std) | MAE/MAD | folds | train s / fold |",
            "|---|---:|---:|---:|---:|",
        ]
        for model, r in sorted(rows.items(), key=lambda kv: kv[1]["mae_mean"]):
            flag = " **(best)**" if model == best else ""
            lines.append(
                f"| {model}{flag} | {r['mae_mean']:.4g} ± {r['mae_std']:.2g} | {r['mae_mean'] / mads[task]:.3f} | "
                f"{r['folds_done']}/5 | {r['train_seconds']:.0f} |"
            )
        lines.append("")
    lines += [f"![MAE per model]({dataset}.png)", ""]
    atomic_write_text(RESULTS / f"{dataset}.md", "\n".join(lines))
    _plot(dataset, summary, parity, units)
    print("\n".join(lines))


def _plot(dataset: str, summary: dict, parity: dict, units: dict) -> None:
    n = len(summary)
    fig, axes = plt.subplots(n, 2, figsize=(11, 3.8 * n), squeeze=False)
    for row, (task, rows) in enumerate(summary.items()):
        ax = axes[row, 0]
        models = sorted(rows, key=lambda m: rows[m]["mae_mean"])
        for i, m in enumerate(models):
            ax.bar(i, rows[m]["mae_mean"], color="#1f77b4" if m.startswith("hybrid") else "#999999")
            ax.plot([i] * len(rows[m]["fold_mae"]), rows[m]["fold_mae"], "k.", ms=5)
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
        ax.set_ylabel(f"MAE ({units[task]})")
        ax.set_title(f"{task}: MAE per model (dots: folds)", fontsize=10)
        best = models[0]
        y, p = parity[task][best]
        ax = axes[row, 1]
        ax.scatter(y, p, s=4, alpha=0.5)
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"DFT ({units[task]})")
        ax.set_ylabel("predicted")
        ax.set_title(f"{task}: parity of {best} (held-out folds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{dataset}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--models", default="descriptors_rf,descriptors_mlp,megnet,megnet_readout,hybrid_megnet")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the GNN epoch budget")
    parser.add_argument("--accelerator", default=None, help="Lightning accelerator for the GNNs (default: auto)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        unknown = [m for m in args.models.split(",") if m not in MODELS]
        if unknown:
            parser.error(f"unknown models {unknown}; known: {sorted(MODELS)}")
        overrides = {k: v for k, v in {"max_epochs": args.max_epochs, "accelerator": args.accelerator}.items() if v}
        run(args.dataset, args.models.split(","), [int(f) for f in args.folds.split(",")], overrides)
    report(args.dataset)


if __name__ == "__main__":
    main()
