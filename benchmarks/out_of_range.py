"""Which test structures of each fold had descriptors outside the range of the part they were trained on, and how far
off were their predictions? The check behind ``TrainSpec.clip_descriptors``: a run's fold records (ids, targets,
predictions) against the cached descriptors of its training part (the seeded ``--train-fraction`` of each training
fold, as ``accuracy.py`` draws it).

    python benchmarks/out_of_range.py --dataset alexandria_heat_capacity --task heat_capacity \\
        --model hybrid_megnet_chgnet_noenergy --train-fraction 0.25
    # -> results/out_of_range/<dataset>_<task>_<model>@<fraction>.{md,json,png}
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from tasks import DATASETS, RESULTS, load_task, store, training_part, units_of

from matgl_hybrid.descriptors import featurize
from matgl_hybrid.figures import axis_label, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.training import TrainSpec

OUT = RESULTS / "out_of_range"


def excess(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """How far each test value lies beyond the training range, in training standard deviations (1 where the column
    is constant in training and the test value differs from it; 0 inside the range): (n_test, D)."""
    low, high, spread = train.min(), train.max(), train.std(ddof=0)
    beyond = (test - high).clip(lower=0) + (low - test).clip(lower=0)
    constant = spread == 0
    scaled = beyond / spread.where(~constant, 1.0)
    scaled.loc[:, constant] = (beyond.loc[:, constant] > 0).astype(float)
    return scaled.fillna(0.0)


def inspect(dataset: str, task_name: str, model: str, fraction: float) -> dict:
    """Per fold: the columns constant in the training part, and every test structure with a value beyond the
    training range (its largest excess, that column, target, prediction), largest error first."""
    task = next(t for t in DATASETS[dataset][1] if t.name == task_name)
    data = load_task(dataset, task)
    name = model if fraction == 1 else f"{model}@{fraction:g}"
    records = store(dataset, task_name, name).records()
    spec = records[min(records)]["params"]["settings"]["spec"] if records else None
    descriptors = (spec or {}).get("descriptor_set") or TrainSpec().descriptor_set
    frame = featurize(data.structures, descriptors, cache_dir=descriptor_cache_dir(), ids=data.ids, progress=False)
    frame.index = list(data.ids)
    folds = {}
    for fold, record in sorted(records.items()):
        test_ids = set(record["ids"])
        training_fold = data.subset([k for k, i in enumerate(data.ids) if i not in test_ids])  # in dataset order
        train_ids = list(training_part(training_fold, fraction, fold).ids)  # accuracy.py's seeded part
        train = frame.loc[train_ids]
        beyond = excess(train, frame.loc[record["ids"]])
        error = np.abs(np.asarray(record["y_pred"]) - np.asarray(record["y_true"]))
        rows = [
            {"id": i, "formula": data.structures[data.ids.index(i)].composition.reduced_formula,
             "excess": float(beyond.loc[i].max()), "column": str(beyond.loc[i].idxmax()),
             "target": float(record["y_true"][k]), "predicted": float(record["y_pred"][k]), "error": float(error[k])}
            for k, i in enumerate(record["ids"])
        ]  # fmt: skip
        folds[fold] = {
            "mae": record["mae"],
            "n_train": len(train_ids),
            "constant_columns": [str(c) for c in train.columns[train.std(ddof=0) == 0]],
            "structures": sorted(rows, key=lambda r: -r["error"]),
        }
    return {"dataset": dataset, "task": task_name, "run": name, "descriptor_set": descriptors, "folds": folds}


def report(found: dict) -> str:
    key = f"{found['dataset']}_{found['task']}_{found['run']}"
    units = units_of(f"{found['dataset']}/{found['task']}")
    lines = [
        f"# Descriptors beyond the training range: {found['dataset']}/{found['task']}, {found['run']}",
        "",
        f"Descriptor set `{found['descriptor_set']}`. Excess: how far a test value lies beyond the training part's "
        "range, in its standard deviations (a column constant in training: 1 when the test value differs). "
        f"Command: `python benchmarks/out_of_range.py --dataset {found['dataset']} --task {found['task']} "
        f"--model {found['run'].split('@')[0]} --train-fraction {found['run'].partition('@')[2] or 1}`.",
        "",
        "| fold | test MAE | training rows | constant columns | test structures beyond the range | their share of "
        "the absolute error |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for fold, f in found["folds"].items():
        out = [r for r in f["structures"] if r["excess"] > 0]
        share = sum(r["error"] for r in out) / max(sum(r["error"] for r in f["structures"]), 1e-300)
        lines.append(f"| {fold} | {f['mae']:.4g} | {f['n_train']} | {len(f['constant_columns'])} | {len(out)} of "
                     f"{len(f['structures'])} | {share:.0%} |")  # fmt: skip
    lines += ["", f"The five largest errors of each fold ({units}):", "",
              "| fold | id | formula | target | predicted | largest excess | in column |",
              "|---:|---|---|---:|---:|---:|---|"]  # fmt: skip
    for fold, f in found["folds"].items():
        for r in f["structures"][:5]:
            lines.append(f"| {fold} | {r['id']} | {r['formula']} | {r['target']:.4g} | {r['predicted']:.4g} | "
                         f"{r['excess']:.3g} | {r['column']} |")  # fmt: skip
    fig, (ax,) = panels(1)
    for fold, f in found["folds"].items():
        ax.scatter(
            [r["excess"] for r in f["structures"]], [r["error"] for r in f["structures"]], s=10, label=f"fold {fold}"
        )
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_yscale("log")
    ax.set_xlabel("largest excess beyond the training range (training std)")
    ax.set_ylabel(axis_label("absolute error", units))
    ax.set_title(found["run"], fontsize=10)
    ax.legend(fontsize=8)
    save(fig, OUT / f"{key}.png")
    lines += ["", f"![error against excess]({key}.png)", ""]
    text = "\n".join(lines)
    atomic_write_text(OUT / f"{key}.md", text)
    atomic_write_text(OUT / f"{key}.json", json.dumps(found, indent=1) + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", required=True, help="an accuracy.py model with fold records")
    parser.add_argument("--train-fraction", type=float, default=1.0)
    args = parser.parse_args()
    print(report(inspect(args.dataset, args.task, args.model, args.train_fraction)))


if __name__ == "__main__":
    main()
