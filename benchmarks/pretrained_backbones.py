"""Pretrained foundation backbones (issue "Pretrained foundation backbones"): does fine-tuning MatGL's
TensorNet-MatPES inside the hybrid pay, where, and at what cost?

The protocol, committed before any of its folds ran (``tasks.FINETUNE``, ``tasks.PRETRAINED_READOUTS``): on every
task, the hybrid on the pretrained TensorNet-MatPES backbone, fine-tuned (``finetuned_tensornet_matpes``), against
the same network from random initialisation with the same settings and budget (``scratch_tensornet_matpes``), the
recipe (``hybrid_megnet_chgnet_noenergy`` of ``accuracy.py``, the submission's ``recipe`` on Matbench) and a
random forest on the frozen TensorNet-MatPES features (``descriptors_rf_tensornet_matpes``); learning curves (25 /
50 / 100 % of each training fold) on de Jong log10 K and heat capacity, the recipe trained on the same parts
(added later, before any of its parts ran), and on Matbench jdft2d and phonons (added 2026-12-06, before any of
their parts ran: their 100 % points are the official whole folds, so they cost a fraction of the others'; the
``M@F`` runs of ``matbench_study.py``, ``units/cpu_matbench_learning_curves.txt``). The runs are ``accuracy.py``
and ``matbench_study.py`` units (GPU work: ``units/pretrained_backbones.txt``); this script measures the CPU cost
and writes the report from the fold records found:

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

from matgl_hybrid.figures import COLOURS, Entry, bars, learning_curves, panels, save
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
#: The Matbench tasks' extra row: our best submission there, its choices made by inner cross-validation.
MATBENCH_MODELS = {"submission_v2": "our Matbench v2 submission (inner 5-fold selection, 5-model ensembles)"}
#: The inner-validation table's extra row: MatGL's MEGNet, which Matbench v2's inner cross-validation chose on every
#: phonons fold.
INNER_MODELS = {"megnet": "MatGL's MEGNet (no descriptors)"}
#: The bar chart's labels: short, so that eight panels of them fit.
SHORT = {
    "finetuned_tensornet_matpes": "fine-tuned",
    "scratch_tensornet_matpes": "from scratch",
    "hybrid_megnet_chgnet_noenergy": "recipe",
    "submission_v2": "v2 submission",
    "descriptors_rf_tensornet_matpes": "RF, frozen features",
}
MATBENCH_NOTE = (
    "On the Matbench tasks, every fold of the two TensorNet networks was trained from 2026-12-06 on (schedule "
    "revision 2, transform revision 3: `git log` of `results/matbench_runs/*_tensornet_matpes/`); the recipe's and "
    "the v2 submission's folds were trained before (transform revision 1: a test value of a descriptor column "
    "constant in the training fold kept its standardized value, see above)."
)
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
#: The Matbench learning curves (``matbench_study.py``'s ``M@F`` runs, registered in
#: units/cpu_matbench_learning_curves.txt before any ran): the whole folds are the official Matbench runs.
MATBENCH_CURVES = MATBENCH_TASKS
#: A Matbench run's name in ``matbench_study.py`` (the recipe is v1's candidate ``recipe``).
MATBENCH_NAMES = {RECIPE: "recipe"}
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
        # one warm-up epoch: TrainSpec refuses a warm-up as long as the run, and the rate does not change the cost
        budget = {**FINETUNE, "max_epochs": epochs, "patience": epochs, "warmup_epochs": 1}
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
            for m in (*PRETRAINED_MODELS, "recipe", *MATBENCH_MODELS, "descriptors_rf_tensornet_matpes")
        }
    return rows


def _matbench_records(model: str, task: str) -> dict[int, dict]:
    """The fold records of a Matbench run: a model's own run (the two networks', MEGNet's), the recipe's among v1's
    candidates."""
    if model == RECIPE:
        paths = (RESULTS / "matbench_runs" / "submission").glob(f"*/folds/{task}/recipe/fold*.json")
    else:
        paths = (RESULTS / "matbench_runs" / model).glob(f"**/folds/{task}/fold*.json")
    return {int(p.stem.removeprefix("fold")): json.loads(p.read_text()) for p in paths}


def _inner_validation() -> dict[str, dict[str, list[float | None]]]:
    """Per Matbench task, per network, the MAE on the inner validation split of each official training fold (the
    seeded 10 % that early stopping watched, the same structures for every network): what a choice may use."""
    found = {}
    for task in MATBENCH_TASKS:
        found[task] = {}
        for model in (*PRETRAINED_MODELS, RECIPE, "megnet"):
            records = _matbench_records(model, task)
            found[task][model] = [records[f]["params"]["best_val_mae"] if f in records else None for f in range(5)]
    return found


def _curve_records(dataset: str, task: str, run: str, fraction: float) -> dict[int, dict]:
    """The fold records (with ``mae``) of ``run`` trained on ``fraction`` of each training fold: an
    ``accuracy.py`` store, or on Matbench (``dataset`` "matbench") the test MAE per official fold that
    ``matbench_study.py``'s report scored."""
    if dataset != "matbench":
        return store(dataset, task, run if fraction == 1 else f"{run}@{fraction:g}").records()
    path = RESULTS / f"matbench_{task}.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    name = MATBENCH_NAMES.get(run, run) + ("" if fraction == 1 else f"@{fraction:g}")
    maes = table.get(name, {}).get("fold_mae", [])
    return {fold: {"mae": mae} for fold, mae in enumerate(maes) if mae is not None}


def _learning_curve(dataset: str, task: str) -> dict:
    """Per run (each curve model and its clipped rerun) and fraction of the training fold, the mean test MAE over
    the same folds at every fraction: those both pretrained networks have run at each fraction run on the most
    folds, so that a line joins like with like (None: the run lacks one of them); ``folds``: those folds;
    ``partial``: a fraction both networks have run on other folds only (a size still running), ``{fraction:
    {"folds": [...], run: mean over them}}``, reported beside the line rather than on it; ``recipe_whole_fold``: the
    recipe trained on the whole training folds, mean over ``folds`` (None: not all of them run)."""
    runs = (*CURVE_MODELS, *(CLIPPED[m] for m in CURVE_MODELS))
    maes = {m: {f: _curve_records(dataset, task, m, f) for f in FRACTIONS} for m in runs}
    ran = [set.intersection(*(set(maes[m][f]) for m in PRETRAINED_MODELS)) for f in FRACTIONS]
    most = max(map(len, ran))
    used = sorted(set.intersection(*[folds for folds in ran if len(folds) == most])) if most else []
    curve: dict = {"folds": used, "mixed": {}, "partial": {}}
    for f, folds in zip(FRACTIONS, ran, strict=True):
        if folds and not set(used) <= folds:
            curve["partial"][f] = {"folds": sorted(folds)} | {
                run: float(np.mean([maes[run][f][k]["mae"] for k in folds]))
                for run in runs if all(k in maes[run][f] for k in folds)}  # fmt: skip
    for run in runs:
        curve[run] = {f: float(np.mean([maes[run][f][k]["mae"] for k in used]))
                      if used and set(used) <= folds and all(k in maes[run][f] for k in used) else None
                      for f, folds in zip(FRACTIONS, ran, strict=True)}  # fmt: skip
        # a mean over folds trained under two schedule revisions (SCHEDULE_NOTE: the fine-tuned networks'; the
        # recipe trains with MatGL's schedule, which the fixes did not touch) or transform revisions is marked
        fine_tuned = run in (*PRETRAINED_MODELS, *(CLIPPED[m] for m in PRETRAINED_MODELS))
        curve["mixed"][run] = [f for f in FRACTIONS if curve[run][f] is not None and len(
            {revisions(maes[run][f][k], fine_tuned) for k in used}) > 1]
    whole = maes[RECIPE][1.0]
    curve["recipe_whole_fold"] = (float(np.mean([whole[k]["mae"] for k in used]))
                                  if used and all(k in whole for k in used) else None)  # fmt: skip
    return curve


def revisions(record: dict, fine_tuned: bool) -> tuple[int, int]:
    """The fine-tuning schedule's revision (SCHEDULE_NOTE; 1 for a model MatGL's schedule trains) and the unclipped
    transform's (TRANSFORM_NOTE; 2 for clipped descriptors, which always gave constant columns 0) of a fold record."""
    settings = record.get("params", {}).get("settings", {})
    clipped = TrainSpec.from_stored(settings["spec"]).clip_descriptors if "spec" in settings else True
    return (settings.get("schedule_revision", 1) if fine_tuned else 1,
            2 if clipped else settings.get("transform_revision", 1))  # fmt: skip


#: Each learning-curve model and its rerun with descriptors clipped to their training range.
CLIPPED = {
    "hybrid_megnet_chgnet_noenergy": "recipe_clipped",
    "finetuned_tensornet_matpes": "finetuned_tensornet_matpes_clipped",
    "scratch_tensornet_matpes": "scratch_tensornet_matpes_clipped",
}
SCHEDULE_NOTE = (
    "Folds whose record has no `schedule_revision` (every one trained before 2026-12-05) sized the warm-up + "
    "cosine schedule for ⌊n / batch⌋ batches an epoch where ⌈n / batch⌉ ran (a last batch of one structure is "
    "dropped): the cosine reached its floor up to one epoch in 14 early (with 220 structures in batches of 16, "
    "at epoch 93 of 100), and their weight average was computed as a · rate + c · (1 − rate), which lets frozen "
    "weights drift by float32 rounding. Both are fixed since (`datamodule.batches_per_epoch`, `torch.lerp`); folds "
    "recorded with `schedule_revision` 2 use the fixed schedule, the same for the fine-tuned and the from-scratch "
    "network, so a mean over folds of both revisions is marked where it is one."
)
TRANSFORM_NOTE = (
    "Descriptors unclipped (the registered models): folds whose record has no `transform_revision` (every one "
    "trained before 2026-12-06) kept a test value of a column constant in their training part standardized by scale "
    "1, so the BatchNorm that had seen one value put it hundreds of standard deviations away (the failures of "
    "heat-capacity folds 2 and 3 at 25 %, below). Folds with `transform_revision` 2 (2026-12-06) gave 0 for a column "
    "whose standard deviation was exactly 0; with 3 (since), every constant column gives its training value, as "
    "clipping does (a constant whose mean rounds off it, standard deviation ~1e-17, included); a mean over folds "
    "of different revisions is marked."
)
CLIPPED_WHY = (
    "At 25 %, heat-capacity folds 2 and 3 failed for every model, on test structures with descriptor values the "
    "training quarter never had. Fold 2: no compound of its training quarter has a commonest element of f-valence 14 "
    "(`MagpieData mode NfValence` is 0 in all 234 rows), so the descriptor branch's BatchNorm learned a variance of 0 "
    "for that column and divided the Tl compounds of the test fold (mp-27484 Tl2O, 138 J/K/mol; mp-582753 Tl2Te, "
    "1621) by the square root of its epsilon: both came out between 19 000 and 31 000 J/K/mol, for the recipe "
    "(21 387, 20 989) and the fine-tuned network (31 341, 19 001) alike. Fold 3: FeS2, FeSi2 and CoP2 have CHGNet "
    "atom features beyond the training quarter's range "
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


def _curve_runs(curve: dict) -> list[str]:
    """The runs of a learning curve with any point: each curve model, then its clipped rerun."""
    runs = [r for m in CURVE_MODELS for r in (m, CLIPPED[m])]
    return [r for r in runs if any(v is not None for v in curve[r].values())]


def _drawn(curve: dict) -> dict[str, dict[float, float]]:
    """The points the learning-curve figure draws, ``{run: {fraction: MAE}}``: each curve model's line takes its
    clipped rerun where one ran (the package's default, which the unclipped runs' failures of heat-capacity folds
    2 and 3 at 25 % cannot reach) and its registered run elsewhere; the clipped points are drawn again, as open
    squares, to show which they are."""
    drawn = {}
    for model in CURVE_MODELS:
        clipped = {f: v for f, v in curve[CLIPPED[model]].items() if v is not None}
        drawn[model] = {f: clipped.get(f, v) for f, v in curve[model].items() if f in clipped or v is not None}
        drawn[CLIPPED[model]] = clipped
    return drawn


def _partial_drawn(curve: dict) -> dict[str, tuple[str, float, float]]:
    """The points the learning-curve figure draws off the lines, ``{label: (run, fraction, MAE)}``: each curve model
    at a size both networks have run on fewer folds so far (``partial``), over those folds, unless its line has a
    point there (the recipe's whole folds, all run)."""
    drawn = {}
    for f, point in curve["partial"].items():
        folds = f"fold{'s' * (len(point['folds']) > 1)} " + ", ".join(map(str, point["folds"]))
        for run in (m for m in CURVE_MODELS if m in point and curve[m][f] is None):
            drawn[f"{_run_label(run)}, {f:.0%}, {folds}"] = (run, f, point[run])
    return drawn


def _run_label(run: str) -> str:
    """A curve run's legend label."""
    clipped = {c: m for m, c in CLIPPED.items()}
    return MODELS[run] if run in MODELS else f"{MODELS[clipped[run]]}, descriptors clipped"


def _curve_styles() -> dict[str, dict[str, object]]:
    """One colour per curve model on every panel; its clipped rerun in the same colour with an open square."""
    colours = dict(zip(CURVE_MODELS, (COLOURS["ours"], *COLOURS["reference"]), strict=False))
    styles = {_run_label(m): {"color": c} for m, c in colours.items()}
    variant = {"marker": "s", "mfc": "white", "ls": ":"}
    styles |= {_run_label(CLIPPED[m]): {"color": c, **variant} for m, c in colours.items()}
    return styles


def _fold_times() -> dict[str, dict[str, list[float]]]:
    """Per run of the two networks and the recipe on every property task (``dataset/task/run``, any part of the
    training folds) and Matbench run of them (``matbench/task/run``), per device, the training seconds of each fold
    run there."""
    found: dict = {}
    parts = [f"{MATBENCH_NAMES.get(m, m)}@{f:g}" for m in CURVE_MODELS for f in FRACTIONS if f < 1]
    for model in (*PRETRAINED_MODELS, *parts):
        for task in MATBENCH_TASKS:
            for path in sorted((RESULTS / "matbench_runs" / model / task).glob(f"*/folds/{task}/fold*.json")):
                record = json.loads(path.read_text())
                found.setdefault(f"matbench/{task}/{model}", {}).setdefault(record["params"]["device"], []).append(
                    record["train_seconds"]
                )
    for dataset, (_, tasks) in DATASETS.items():
        for task in (t.name for t in tasks):
            folder = RESULTS / "folds" / dataset / task
            runs = sorted(f.name for f in folder.iterdir()) if folder.is_dir() else []
            for run in (r for r in runs if r.split("@")[0] in (*CURVE_MODELS, *CLIPPED.values())):
                for record in store(dataset, task, run).records().values():
                    device = record["params"]["settings"]["device"]
                    found.setdefault(f"{dataset}/{task}/{run}", {}).setdefault(device, []).append(
                        record["train_seconds"]
                    )
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
        "Mean ± std is over the five folds; std is the population standard deviation (numpy's default, ddof 0), as "
        "Matbench's leaderboard reports it.",
        "",
        SCHEDULE_NOTE,
        "",
        TRANSFORM_NOTE,
        "",
        MATBENCH_NOTE,
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
            label = {**MODELS, **MATBENCH_MODELS}[model]
            lines.append(f"| {label} | {cells} | {mean} |")
            if len(done) == 5:
                kind = "baseline" if model.startswith("descriptors") else "ours"
                entries.append(Entry(SHORT[model], float(np.mean(done)), done, kind))
        lines.append("")
        summary["tasks"][key] = models
        if len(entries) > 1:
            figure[key] = entries
    inner = _inner_validation()
    summary["matbench_inner_validation"] = inner
    lines += ["## Matbench: inner validation", "", "MAE on each official training fold's inner validation split "
              "(10 %, seeded, the same structures for every network; early stopping watched it), the only score a "
              "choice between the networks may use. One split of ~50 (jdft2d) or ~100 (phonons) structures is a "
              "noisy judge: Matbench v2 chose by inner 5-fold cross-validation.", "",
              "| task | model | " + " | ".join(f"fold {f}" for f in range(5)) + " |", "|---|---|" + "---:|" * 5]
    for task, models in inner.items():
        for model, maes in models.items():
            cells = " | ".join("—" if m is None else f"{m:.4g}" for m in maes)
            lines.append(f"| {task} | {INNER_MODELS.get(model, MODELS.get(model))} | {cells} |")
    lines.append("")
    curves = {f"{dataset}/{task}": _learning_curve(dataset, task)
              for dataset, task in (*CURVES.items(), *(("matbench", t) for t in MATBENCH_CURVES))}  # fmt: skip
    summary["learning_curves"] = curves
    lines += ["## Learning curves", "", "Test MAE with a seeded part of each training fold, mean over the same folds "
              "at every size: those both networks have run at each size run on the most folds (listed; — a run lacks "
              "one of them); a size both have run on fewer folds so far has rows of its own over those folds, and "
              "open diamonds off the line in the figure. The registered runs kept their descriptors unclipped; the "
              "clipped reruns are the package's default since (see below).", "",
              "| task | folds | model | " + " | ".join(f"{f:.0%}" for f in FRACTIONS) + " |",
              "|---|---|---|" + "---:|" * len(FRACTIONS)]  # fmt: skip
    for key, curve in curves.items():
        folds = ", ".join(map(str, curve["folds"])) or "—"
        for run in _curve_runs(curve):
            mark = {f: "†" if f in curve["mixed"][run] else "" for f in FRACTIONS}
            cells = ["—" if curve[run][f] is None else f"{curve[run][f]:.4g}{mark[f]}" for f in FRACTIONS]
            lines.append(f"| {key} | {folds} | {_run_label(run)} | " + " | ".join(cells) + " |")
        if curve["recipe_whole_fold"] is not None and curve[RECIPE][1.0] is None:  # not drawn on its curve
            cells = ["—"] * (len(FRACTIONS) - 1) + [f"{curve['recipe_whole_fold']:.4g}"]
            lines.append(f"| {key} | {folds} | recipe on the whole training fold | " + " | ".join(cells) + " |")
        for f, point in curve["partial"].items():
            where = ", ".join(map(str, point["folds"])) + f" ({f:.0%} so far)"
            for run in (r for m in CURVE_MODELS for r in (m, CLIPPED[m]) if r in point):
                cells = [f"{point[run]:.4g}" if g == f else "—" for g in FRACTIONS]
                lines.append(f"| {key} | {where} | {_run_label(run)} | " + " | ".join(cells) + " |")
    if any(c["mixed"][run] for c in curves.values() for run in c["mixed"]):
        lines.append("")
        lines.append("† a mean over folds of two schedule or transform revisions (see the notes above).")
    lines.append("")
    plotted = {k: c for k, c in curves.items() if c["folds"]}
    if plotted:
        lines += ["The figure draws each model's line through its clipped rerun where one ran (open squares) and "
                  "its registered run elsewhere, so a failure of the unclipped transform (below) does not stand for "
                  "the size it ran at; the table gives both.", "",
                  "![learning curves](pretrained_backbones_curves.png)", ""]
        fig, axes = panels(len(plotted), ncols=2, size=(7.6, 4.2))  # room for each legend beside its panel
        for ax, (key, curve) in zip(axes, plotted.items(), strict=False):
            lines_of = {_run_label(run): ([100 * f for f in points], list(points.values()))
                        for run, points in _drawn(curve).items() if points}  # fmt: skip
            styles = _curve_styles()
            for label, (run, f, mae) in _partial_drawn(curve).items():
                lines_of[label] = ([100 * f], [mae])
                styles[label] = {**styles[_run_label(run)], "marker": "D", "mfc": "white", "ls": "none"}
            whole = curve["recipe_whole_fold"] if curve[RECIPE][1.0] is None else None
            references = {"recipe, whole training fold": whole} if whole else {}
            n = len(curve["folds"])
            learning_curves(ax, lines_of, quantity="test MAE", units=units_of(key),
                            title=f"{key} ({n} fold{'s' * (n > 1)})", xlabel="% of each training fold",
                            xticks=[100 * f for f in FRACTIONS], references=references,
                            styles=styles)  # fmt: skip
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
            for runs in rows.values():
                both = [f for f in range(5) if all(runs[r][f] is not None for r in runs)]
                for run, maes in runs.items():
                    label = _run_label(run)  # the curves figure's labels, hence its colours
                    cells = " | ".join("—" if m is None else f"{m:.4g}" for m in maes)
                    mean = f"{np.mean([maes[f] for f in both]):.4g} ({len(both)})" if both else "—"
                    lines.append(f"| {key} | {label} | {cells} | {mean} |")
                    done = [f for f in range(5) if maes[f] is not None]
                    lines_of[label] = (done, [maes[f] for f in done])
            learning_curves(ax, lines_of, quantity="test MAE", units=units_of(key), title=key, xlabel="test fold",
                            xticks=list(range(5)), styles=_curve_styles())  # fmt: skip
            ax.set_yscale("log")
        save(fig, OUT.parent / "pretrained_backbones_clipped.png")
        lines += ["", "![clipped vs unclipped per fold](pretrained_backbones_clipped.png)", ""]
        for key, rows in clipped.items():
            means = {model: np.mean(runs[CLIPPED[model]]) for model, runs in rows.items()
                     if None not in runs[CLIPPED[model]]}  # fmt: skip
            whole = [r["mae"] for r in store(*key.split("/"), RECIPE).records().values()]
            if len(means) > 1 and len(whole) == 5:
                said = "; ".join(f"{MODELS[m]} {v:.4g}" for m, v in sorted(means.items(), key=lambda kv: kv[1]))
                lines += [f"{key}, clipped, 25 %, mean of five folds: {said}; the recipe on the whole training "
                          f"fold (unclipped): {np.mean(whole):.4g} {units_of(key)}.", ""]  # fmt: skip
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
    times = _fold_times()
    summary["fold_seconds"] = times
    lines += ["", "Training seconds per fold of the Matbench, learning-curve and whole-fold runs, by the device each "
              "ran on (a GPU machine ran 4 to 12 folds at once, sharing the GPU and 16 CPU cores, as records written "
              "since 2026-12-05 say in `side_by_side`; the CPU runs had the 2 cores alone). The cost follows the atoms "
              "(and bonds) of a cell more than the structures: Matbench's small cells train fastest per structure:", "",
              "| run | device | folds | mean s | range s |", "|---|---|---:|---:|---|"]  # fmt: skip
    for run, devices in times.items():
        for device, seconds in devices.items():
            lines.append(f"| {run} | {device} | {len(seconds)} | {np.mean(seconds):.0f} | "
                         f"{min(seconds):.0f}–{max(seconds):.0f} |")  # fmt: skip
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
