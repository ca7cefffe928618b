"""Pretrained foundation backbones (issue "Pretrained foundation backbones"): does fine-tuning MatGL's
TensorNet-MatPES inside the hybrid pay, where, and at what cost?

The protocol, committed before any of its folds ran (``tasks.FINETUNE``, ``tasks.PRETRAINED_READOUTS``): on every
task, the hybrid on the pretrained TensorNet-MatPES backbone, fine-tuned (``finetuned_tensornet_matpes``), against
the same network from random initialisation with the same settings and budget (``scratch_tensornet_matpes``), the
recipe (``hybrid_megnet_chgnet_noenergy`` of ``accuracy.py``, the submission's ``recipe`` on Matbench) and a
random forest on the frozen TensorNet-MatPES features (``descriptors_rf_tensornet_matpes``); learning curves (25 /
50 / 100 % of each training fold) on de Jong log10 K and heat capacity, the recipe trained on the same parts
(added later, before any of its parts ran). The runs are ``accuracy.py`` and ``matbench_study.py`` units (GPU
work: ``units/pretrained_backbones.txt``); this script measures the CPU cost and writes the report from the fold
records found:

    python benchmarks/pretrained_backbones.py --cost      # seconds per epoch per 1000 structures, 2 CPU cores
    python benchmarks/pretrained_backbones.py             # pretrained_backbones.{md,json,png}
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from lightning.pytorch.callbacks import Callback
from tasks import (
    DATASETS,
    FINETUNE,
    MATBENCH_TASKS,
    MATPES_ARCHITECTURE,
    PRETRAINED_READOUTS,
    RECIPE_DESCRIPTORS,
    RESULTS,
    load_task,
    store,
    units_of,
)

from matgl_hybrid.figures import Entry, bars, learning_curves, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.training import TrainSpec, device_name, fit

OUT = RESULTS / "pretrained_backbones"
MODELS = {
    "finetuned_tensornet_matpes": "fine-tuned TensorNet-MatPES hybrid",
    "scratch_tensornet_matpes": "same network from scratch",
    "hybrid_megnet_chgnet_noenergy": "recipe (hybrid MEGNet)",
    "descriptors_rf_tensornet_matpes": "RF on frozen TensorNet-MatPES features",
}
PRETRAINED_MODELS = ("finetuned_tensornet_matpes", "scratch_tensornet_matpes")
#: The learning curves' models: the two networks and the recipe with the same part of each training fold.
RECIPE = "hybrid_megnet_chgnet_noenergy"
CURVE_MODELS = (*PRETRAINED_MODELS, RECIPE)
SUPERSEDED_WHY = (
    "The first two learning-curve folds ran with a weight average of fixed decay 0.999: over the ~1400 steps of a "
    "25 % fold it still held a quarter of the initial weights (the random head included), for the fine-tuned and "
    "the from-scratch network alike. The average now ramps its decay up ((1 + n) / (10 + n), "
    "`matgl_hybrid.training.finetuning.warmup_ema_update`); those folds were rerun with it and stay listed here."
)
#: The learning-curve tasks and fractions of each training fold.
CURVES = {"de_jong_2015_elasticity": "log10_K_VRH", "alexandria_heat_capacity": "heat_capacity"}
FRACTIONS = (0.25, 0.5, 1.0)


class EpochTimer(Callback):
    """Wall seconds of each training epoch (training and validation)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def measure_cost(n: int = 100, epochs: int = 3) -> dict:
    """Seconds per training epoch per 1000 structures (forward + backward, the recipe's descriptors cached), for the
    fine-tuned and the from-scratch network on ``n`` de Jong structures, after a first epoch of warm-up."""
    task = DATASETS["de_jong_2015_elasticity"][1][0]
    data = load_task("de_jong_2015_elasticity", task).subset(range(n))
    found = {}
    for name, backbone, kwargs in (
        ("finetuned_tensornet_matpes", "tensornet-matpes-pbe", {}),
        ("scratch_tensornet_matpes", "tensornet", MATPES_ARCHITECTURE),
    ):
        budget = {**FINETUNE, "max_epochs": epochs, "patience": epochs}
        spec = TrainSpec(backbone=backbone, backbone_kwargs=kwargs, readout="set2set",
                         descriptor_set=RECIPE_DESCRIPTORS, progress=False, **budget)  # fmt: skip
        timer = EpochTimer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(data, spec=spec, cache_dir=descriptor_cache_dir(), callbacks=[timer])
        per_epoch = float(np.mean(timer.seconds[1:]))  # the first epoch warms up
        found[name] = {"seconds_per_epoch_per_1000": per_epoch * 1000 / len(result.train_ids),
                       "n_train": len(result.train_ids), "epoch_seconds": timer.seconds}  # fmt: skip
    record = {"device": device_name("cpu"), "models": found}
    atomic_write_text(OUT / "cost.json", json.dumps(record, indent=1) + "\n")
    return record


def _task_rows() -> dict[str, dict[str, list[float | None]]]:
    """Per task (``dataset/task``), per model, the test MAE of each of the 5 folds (None: not run)."""
    rows = {}
    for dataset, (_, tasks) in DATASETS.items():
        for task in tasks:
            records = {m: store(dataset, task.name, m).records() for m in MODELS}
            rows[f"{dataset}/{task.name}"] = {m: [r[f]["mae"] if f in r else None for f in range(5)]
                                              for m, r in records.items()}  # fmt: skip
    for task in MATBENCH_TASKS:
        path = RESULTS / f"matbench_{task}.json"
        table = json.loads(path.read_text()) if path.is_file() else {}
        names = {"recipe": "hybrid_megnet_chgnet_noenergy"}
        rows[f"matbench/{task}"] = {
            names.get(m, m): list(table[m]["fold_mae"]) if m in table else [None] * 5
            for m in (*PRETRAINED_MODELS, "recipe", "descriptors_rf_tensornet_matpes")
        }
    return rows


def _learning_curve(dataset: str, task: str) -> dict:
    """Per model and fraction of the training fold, the mean test MAE over the folds every pretrained model has run
    at that fraction (None: none yet; the recipe: None unless it has run all of them); ``folds``: how many folds
    that is, per fraction; ``recipe_whole_fold``: the recipe trained on the whole training folds, mean over the
    folds of the smallest fraction's point (None: not all of them run)."""
    maes = {m: {f: store(dataset, task, m if f == 1 else f"{m}@{f:g}").records() for f in FRACTIONS}
            for m in CURVE_MODELS}  # fmt: skip
    curve: dict = {"folds": {}}
    for fraction in FRACTIONS:
        common = sorted(set.intersection(*(set(maes[m][fraction]) for m in PRETRAINED_MODELS)))
        curve["folds"][fraction] = len(common)
        for model in CURVE_MODELS:
            found = maes[model][fraction]
            complete = bool(common) and all(fold in found for fold in common)
            mean = float(np.mean([found[fold]["mae"] for fold in common])) if complete else None
            curve.setdefault(model, {})[fraction] = mean
    smallest = sorted(set.intersection(*(set(maes[m][FRACTIONS[0]]) for m in PRETRAINED_MODELS)))
    whole = maes[RECIPE][1.0]
    curve["recipe_whole_fold"] = (float(np.mean([whole[f]["mae"] for f in smallest]))
                                  if smallest and all(f in whole for f in smallest) else None)  # fmt: skip
    return curve


#: Each learning-curve model and its rerun with descriptors clipped to their training range.
CLIPPED = {
    "hybrid_megnet_chgnet_noenergy": "recipe_clipped",
    "finetuned_tensornet_matpes": "finetuned_tensornet_matpes_clipped",
    "scratch_tensornet_matpes": "scratch_tensornet_matpes_clipped",
}
CLIPPED_WHY = (
    "At 25 %, heat-capacity folds 2 and 3 failed for every model, on test structures with descriptor values the "
    "training quarter never had. Fold 2: no compound of its training quarter has a commonest element of f-valence 14 "
    "(`MagpieData mode NfValence` is 0 in all 234 rows), so the descriptor branch's BatchNorm learned a variance of 0 "
    "for that column and divided the Tl compounds of the test fold (mp-27484 Tl2O, 138 J/K/mol; mp-582753 Tl2Te, "
    "1621) by the square root of its epsilon: both came out near 20 000 J/K/mol, for the recipe and the fine-tuned "
    "network alike. Fold 3: FeS2, FeSi2 and CoP2 have CHGNet atom features beyond the training quarter's range "
    "(FeS2, 246 J/K/mol, predicted 1523 by the recipe). The package now clips each standardized descriptor to its "
    "training range (`TrainSpec.clip_descriptors`, the default since); the registered runs above kept the setting "
    "they were registered with, and these reruns (units committed before they ran) show what clipping changes. "
    "Which test structures lay beyond the range, per fold: `results/out_of_range/` (`benchmarks/out_of_range.py`)."
)


def _clipped(fraction: float = 0.25) -> dict[str, dict[str, dict[str, list[float | None]]]]:
    """Per learning-curve task, per model, the test MAE of each fold unclipped and clipped at ``fraction``."""
    found = {}
    for dataset, task in CURVES.items():
        rows = {}
        for model, clipped in CLIPPED.items():
            pair = {run: store(dataset, task, f"{run}@{fraction:g}").records() for run in (model, clipped)}
            if pair[clipped]:
                rows[model] = {run: [r[f]["mae"] if f in r else None for f in range(5)] for run, r in pair.items()}
        if rows:
            found[f"{dataset}/{task}"] = rows
    return found


def _superseded() -> dict[str, dict[int, float]]:
    """Every fold scored with the first, superseded weight average (``<model>_fixedema``): ``{dataset/task/run:
    {fold: test MAE}}``."""
    found = {}
    for dataset, (_, tasks) in DATASETS.items():
        for task in tasks:
            for folder in sorted((RESULTS / "folds" / dataset / task.name).glob("*_fixedema*")):
                records = store(dataset, task.name, folder.name).records()
                found[f"{dataset}/{task.name}/{folder.name}"] = {f: r["mae"] for f, r in sorted(records.items())}
    return found


def report() -> dict:
    rows = _task_rows()
    cost_file = OUT / "cost.json"
    cost = json.loads(cost_file.read_text()) if cost_file.is_file() else None
    lines = [
        "# Pretrained foundation backbones: fine-tuned TensorNet-MatPES inside the hybrid",
        "",
        "Test MAE per fold (Matbench protocol folds; official folds on Matbench). Settings fixed before any fold ran: "
        f"`{json.dumps(FINETUNE)}`; readout per task `{json.dumps(PRETRAINED_READOUTS)}`. Command: see "
        "`benchmarks/pretrained_backbones.py` (runs: `units/pretrained_backbones.txt`).",
        "",
        "The frozen features are the last layer's per-atom features pooled by mean, max and std: they carry no atom "
        "count, so the forest on them alone cannot follow a per-cell quantity (heat capacity); the recipe's inputs "
        "can (gong28 has the number of sites).",
        "",
    ]
    summary: dict = {"settings": FINETUNE, "readouts": PRETRAINED_READOUTS, "tasks": {}, "cost": cost}
    figure = {}
    for key, models in rows.items():
        lines += [f"## {key} ({units_of(key)})", "", "| model | " + " | ".join(f"fold {f}" for f in range(5))
                  + " | mean ± std |", "|---|" + "---:|" * 6]  # fmt: skip
        entries = []
        for model, maes in models.items():
            done = [m for m in maes if m is not None]
            cells = " | ".join("—" if m is None else f"{m:.4g}" for m in maes)
            mean = f"{np.mean(done):.4g} ± {np.std(done):.2g}" if len(done) == 5 else f"{len(done)} of 5 folds run"
            lines.append(f"| {MODELS[model]} | {cells} | {mean} |")
            if len(done) == 5:
                kind = "baseline" if model.startswith("descriptors") else "ours"
                entries.append(Entry(MODELS[model], float(np.mean(done)), done, kind))
        lines.append("")
        summary["tasks"][key] = models
        if len(entries) > 1:
            figure[key] = entries
    curves = {f"{dataset}/{task}": _learning_curve(dataset, task) for dataset, task in CURVES.items()}
    summary["learning_curves"] = curves
    lines += ["## Learning curves", "", "Test MAE with a seeded part of each training fold, mean over the folds that "
              "both networks have run at that size (how many in brackets; — none yet); the recipe over the same "
              "folds.", "",
              "| task | model | " + " | ".join(f"{f:.0%}" for f in FRACTIONS) + " |",
              "|---|---|" + "---:|" * len(FRACTIONS)]  # fmt: skip
    for key, curve in curves.items():
        for model in CURVE_MODELS:
            cells = [f"{curve[model][f]:.4g} ({curve['folds'][f]})" if curve[model][f] is not None else "—"
                     for f in FRACTIONS]  # fmt: skip
            lines.append(f"| {key} | {MODELS[model]} | " + " | ".join(cells) + " |")
        if curve["recipe_whole_fold"] is not None:
            lines.append(
                f"| {key} | recipe on the whole training fold, same folds as the {FRACTIONS[0]:.0%} point | "
                + " | ".join(["—"] * (len(FRACTIONS) - 1))
                + f" | {curve['recipe_whole_fold']:.4g} |"
            )
    lines.append("")
    plotted = {k: c for k, c in curves.items() if any(c["folds"].values())}
    if plotted:
        lines += ["![learning curves](pretrained_backbones_curves.png)", ""]
        fig, axes = panels(len(plotted))
        for ax, (key, curve) in zip(axes, plotted.items(), strict=False):
            shown = {m: [f for f in FRACTIONS if curve[m][f] is not None] for m in CURVE_MODELS}
            lines_of = {MODELS[m]: ([100 * f for f in shown[m]], [curve[m][f] for f in shown[m]])
                        for m in CURVE_MODELS if shown[m]}  # fmt: skip
            whole = curve["recipe_whole_fold"]
            n = curve["folds"][FRACTIONS[0]]
            references = {f"recipe, whole training fold ({n} fold{'s' * (n > 1)})": whole} if whole else {}
            learning_curves(ax, lines_of, quantity="test MAE", units=units_of(key), title=key,
                            xlabel="% of each training fold", xticks=[100 * f for f in FRACTIONS],
                            references=references)  # fmt: skip
        save(fig, OUT.parent / "pretrained_backbones_curves.png")
    clipped = _clipped()
    summary["clipped"] = clipped
    if clipped:
        lines += ["## Descriptors clipped to their training range (25 % of each training fold)", "", CLIPPED_WHY, "",
                  "| task | model | " + " | ".join(f"fold {f}" for f in range(5)) + " | mean over folds both ran |",
                  "|---|---|" + "---:|" * 6]  # fmt: skip
        fig, axes = panels(len(clipped))
        for ax, (key, rows) in zip(axes, clipped.items(), strict=False):
            lines_of = {}
            for model, runs in rows.items():
                both = [f for f in range(5) if all(runs[r][f] is not None for r in runs)]
                for run, maes in runs.items():
                    label = MODELS[model] + (", clipped" if run != model else "")
                    cells = " | ".join("—" if m is None else f"{m:.4g}" for m in maes)
                    mean = f"{np.mean([maes[f] for f in both]):.4g} ({len(both)})" if both else "—"
                    lines.append(f"| {key} | {label} | {cells} | {mean} |")
                    done = [f for f in range(5) if maes[f] is not None]
                    lines_of[label] = (done, [maes[f] for f in done])
            learning_curves(ax, lines_of, quantity="test MAE", units=units_of(key), title=key, xlabel="test fold",
                            xticks=list(range(5)))  # fmt: skip
            ax.set_yscale("log")
        save(fig, OUT.parent / "pretrained_backbones_clipped.png")
        lines += ["", "![clipped vs unclipped per fold](pretrained_backbones_clipped.png)", ""]
    superseded = _superseded()
    summary["superseded"] = superseded
    if superseded:
        lines += ["## Superseded runs (reported, not compared)", "", SUPERSEDED_WHY, "",
                  "| run | fold | test MAE |", "|---|---:|---:|"]  # fmt: skip
        lines += [f"| {run} | {fold} | {mae:.4g} |" for run, folds in superseded.items() for fold, mae in folds.items()]
        lines.append("")
    lines += ["", "## Cost", ""]
    if cost:
        for model, c in cost["models"].items():
            lines.append(f"- {MODELS[model]}: {c['seconds_per_epoch_per_1000']:.0f} s per epoch per 1000 training "
                         f"structures on {cost['device']} (batch {FINETUNE['batch_size']}).")  # fmt: skip
    else:
        lines.append("Not measured yet (`--cost`).")
    if not figure:
        lines += ["", "No task has all five folds of two models yet: no figure."]
    else:
        lines += ["", "![test MAE per task](pretrained_backbones.png)"]
        fig, axes = panels(len(figure))
        for ax, (key, entries) in zip(axes, figure.items(), strict=False):
            bars(ax, entries, units=units_of(key), title=key.split("/")[-1])
        save(fig, OUT.with_suffix(".png"))
    atomic_write_text(OUT.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_text(OUT.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", action="store_true", help="measure seconds per epoch per 1000 structures first")
    args = parser.parse_args()
    if args.cost:
        print(json.dumps(measure_cost(), indent=1))
    report()


if __name__ == "__main__":
    main()
