"""Choose the recommended recipe with inner validation on training folds only (issue #18).

For every task of the datasets in ``ORDER`` (heat capacity, de Jong log10 K and G), the training part of outer fold
``--outer`` (Matbench's 5-fold KFold, seed 18012019) is split again the same way, and inner fold 0 (80 % train /
20 % validation of the training part) scores each candidate. The outer test fold is never read. Each finished
(task, candidate) is written at once to ``benchmarks/results/selection/`` (resumable); the report
``benchmarks/results/recipe_selection.{md,json,png}`` names the winner: the GNN candidate with the lowest geometric
mean over tasks of inner-validation MAE / the MAE of ``descriptors_rf`` (gong28+composition) on the same split,
taken over the tasks where every candidate finished.

    python benchmarks/select_recipe.py                 # heat capacity, de Jong log10 K and G
    python benchmarks/select_recipe.py --report-only

Stage 1 (descriptors): candidates are ``accuracy.py`` models, trained exactly as there (same budget); the
descriptor-only models with the same descriptors are scored as references, not as candidates. Stage 2 (budget,
``--short``): the stage-1 winner trained for at most ``SHORT_EPOCHS`` epochs (MatGL's schedule, sized by the
budget) on the same tasks; it replaces the full budget as the recommended one when its score is at most
``SHORT_TOLERANCE`` above the full budget's, since it trains in well under half the time on a CPU. Both rules were
fixed before any stage-2 run.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from tasks import COLUMN_NAMES, DATASETS, MODELS, RESULTS, SHARED, load_task, units_of

from matgl_hybrid.data.splits import kfold_splits
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.evaluation import FoldStore, cross_validate
from matgl_hybrid.figures import Entry, bars, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.training import device_name

#: GNN recipes competing to become the defaults of ``TrainSpec()`` / ``matgl-hybrid train``.
CANDIDATES = ("hybrid_megnet_composition", "hybrid_megnet_chgnet_noenergy")
#: Descriptor-only models with the same descriptors, scored on the same split for reference.
REFERENCES = ("descriptors_rf", "descriptors_rf_chgnet_noenergy", "descriptors_mlp_chgnet_noenergy")
BASELINE = "descriptors_rf"
#: The datasets the choice is made on: the three ~1200-structure tasks, where one inner run of a candidate takes
#: ~12 min on 2 CPU cores (the ~4000-structure sets would take about four times as long; they are scored on their
#: test folds like the rest, but take no part in the choice).
ORDER = ("alexandria_heat_capacity", "de_jong_2015_elasticity")
SELECTION = RESULTS / "selection"
SHORT_EPOCHS = 50
SHORT_TOLERANCE = 0.03  # relative


def short_name(model: str) -> str:
    """The stage-2 variant of ``model``: the same at most ``SHORT_EPOCHS`` epochs."""
    return f"{model}_e{SHORT_EPOCHS}"


def store(dataset: str, task: str, outer: int, model: str) -> FoldStore:
    return FoldStore(SELECTION / dataset / task / f"outer{outer}" / model)


def run(datasets: list[str], models: list[str], outer: int, data_dir: Path, tasks: list[str] | None = None) -> None:
    """Score ``models`` on inner fold 0 of the training part of outer fold ``outer``, task by task (``tasks``:
    ``dataset/task`` names, default all); a name made by :func:`short_name` trains with ``SHORT_EPOCHS``."""
    cache = descriptor_cache_dir()
    for dataset in datasets:
        for task in DATASETS[dataset][1]:
            if tasks is not None and f"{dataset}/{task.name}" not in tasks:
                continue
            data = load_task(dataset, task, data_dir)
            # the outer test fold is left out here
            training_part = data.subset(kfold_splits(len(data), copies=data.structure_keys())[outer][0])
            featurize(
                training_part.structures, "gong28+composition+chgnet", n_jobs=-1, cache_dir=cache, ids=training_part.ids
            )
            for model in models:

                def train_and_predict(train, validation, fold, model=model, dataset=dataset):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        base = model.removesuffix(f"_e{SHORT_EPOCHS}")
                        budget = {"max_epochs": SHORT_EPOCHS} if base != model else {}
                        predicted, extra = MODELS[base](train, validation, cache, fold=outer, dataset=dataset,
                                                        **budget)  # fmt: skip
                    return predicted, {**extra, "device": device_name(), "outer_fold": outer, **budget}

                records = cross_validate(
                    training_part,
                    train_and_predict,
                    store(dataset, task.name, outer, model),
                    folds=[0],
                    desc=f"select {dataset}/{task.name}/{model}",
                )
                print(f"{dataset}/{task.name}/{model}: inner-validation MAE {records[0]['mae']:.4g}", flush=True)


def _geometric_score(table: dict[str, dict[str, dict]], model: str, tasks: list[str]) -> float:
    """Geometric mean over ``tasks`` of ``model``'s validation MAE / ``BASELINE``'s."""
    return float(np.exp(np.mean([np.log(table[t][model]["mae"] / table[t][BASELINE]["mae"]) for t in tasks])))


def selection(outer: int) -> dict:
    """The finished scores and the choice: ``{"table", "tasks_used", "score", "stage1_winner", "short", "winner",
    "max_epochs"}`` (``winner`` None until stage 1 has a complete task)."""
    shorts = tuple(short_name(m) for m in CANDIDATES)
    table: dict[str, dict[str, dict]] = {}
    for dataset in ORDER:
        for task in DATASETS[dataset][1]:
            rows = {}
            for model in (*REFERENCES, *CANDIDATES, *shorts):
                s = store(dataset, task.name, outer, model)
                if s.has(0):
                    r = s.load(0)
                    rows[model] = {"mae": r["mae"], "seconds": r["train_seconds"], "device": r["params"]["device"]}
            if rows:
                table[f"{dataset}/{task.name}"] = rows
    used = [t for t, rows in table.items() if all(m in rows for m in (*CANDIDATES, BASELINE))]
    score = {m: _geometric_score(table, m, used) for m in CANDIDATES} if used else {}
    first = min(score, key=score.get) if score else None
    short = None
    if first and all(short_name(first) in table[t] for t in used):
        short = _geometric_score(table, short_name(first), used)
        score[short_name(first)] = short
    takes_short = short is not None and short <= score[first] * (1 + SHORT_TOLERANCE)
    return {
        "outer_fold": outer,
        "table": table,
        "tasks_used": used,
        "score": score,
        "stage1_winner": first,
        "short_budget_tried": short is not None,
        "winner": first,
        "max_epochs": SHORT_EPOCHS if takes_short else None,
    }


def report(outer: int) -> str:
    """``recipe_selection.{md,json,png}`` from the finished (task, model) pairs; returns the markdown."""
    chosen = selection(outer)
    table, used, score, winner = chosen["table"], chosen["tasks_used"], chosen["score"], chosen["winner"]
    models = [*REFERENCES, *CANDIDATES, *(short_name(m) for m in CANDIDATES)]
    models = [m for m in models if any(m in rows for rows in table.values())]
    lines = [
        "# Recipe selection (issue #18): inner validation on training folds only",
        "",
        f"Inner fold 0 (KFold 5, seed 18012019) of the training part of outer fold {outer}; the outer test fold is "
        "never read. Cells: validation MAE (units of the task), and train seconds of the GNNs on the device listed "
        "below. Command: `python benchmarks/select_recipe.py` (stage 1), then `--short` (stage 2).",
        "",
        f"Not nested: the structures of this inner fold belong to outer test folds other than {outer} of the same "
        "datasets, so the recipe's test scores on those folds of the selection tasks (heat capacity, de Jong log10 "
        "K and G) are not independent of its choice (two candidates: a small bias). mp_binary and flla took no part "
        "in it; `default_selection.md` chooses inside each outer fold.",
        "",
        "| task | " + " | ".join(COLUMN_NAMES.get(m, m) for m in models) + " |",
        "|---|" + "---:|" * len(models),
    ]
    for t, rows in table.items():
        cells = [
            "—"
            if m not in rows
            else f"{rows[m]['mae']:.4g}" + (f" ({rows[m]['seconds']:.0f} s)" if "hybrid" in m else "")
            for m in models
        ]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    devices = sorted({r["device"] for rows in table.values() for r in rows.values()})
    lines += ["", f"Devices: {'; '.join(devices)}.", ""]
    if winner:
        budget = f"at most {chosen['max_epochs']} epochs" if chosen["max_epochs"] else "the full budget of accuracy.py"
        lines += [
            f"Score (geometric mean over {len(used)} complete tasks of MAE / {BASELINE}'s MAE): "
            + ", ".join(f"{m} {v:.3f}" for m, v in sorted(score.items(), key=lambda kv: kv[1])),
            "",
            f"Tasks used: {', '.join(used)}.",
            "",
            f"Stage 1 (descriptors): {winner}. Stage 2 (budget): "
            + (
                f"{short_name(winner)} scored {score[short_name(winner)]:.3f} against {score[winner]:.3f} "
                f"(tolerance {SHORT_TOLERANCE:.0%})."
                if chosen["short_budget_tried"]
                else "not run yet (`--short`)."
            ),
            "",
            f"**Winner: {winner}** ({COLUMN_NAMES.get(winner, winner)}), {budget}.",
        ]
    else:
        lines.append("No task has every candidate and the baseline yet: no winner.")
    text = "\n".join(lines) + "\n"
    atomic_write_text(RESULTS / "recipe_selection.json", json.dumps(chosen, indent=1) + "\n")
    atomic_write_text(RESULTS / "recipe_selection.md", text + "\n![validation MAE per task](recipe_selection.png)\n")
    _plot(table, models, RESULTS / "recipe_selection.png")
    return text


def _plot(table: dict[str, dict[str, dict]], models: list[str], path: Path) -> None:
    """One panel per task: inner-validation MAE of each model (candidates coloured, references grey)."""
    tasks = [t for t, rows in table.items() if BASELINE in rows] or list(table)
    fig, axes = panels(max(len(tasks), 1), ncols=min(3, max(len(tasks), 1)), size=(5.2, 3.4))
    for ax, task in zip(axes, tasks, strict=False):
        rows = table[task]
        kinds = {m: "baseline" if m in REFERENCES else "ours" for m in models if m in rows}
        bars(ax, [Entry(m, rows[m]["mae"], kind=k) for m, k in kinds.items()], quantity="validation MAE",
             units=units_of(task), title=task)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(ORDER), help="comma-separated, in the order to run")
    parser.add_argument("--models", default=",".join((*REFERENCES, *CANDIDATES)))
    parser.add_argument("--outer", type=int, default=0, help="outer fold whose training part is split")
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--short", action="store_true", help="stage 2: the stage-1 winner with SHORT_EPOCHS")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.short:
        chosen = selection(args.outer)
        if chosen["stage1_winner"] is None:
            parser.error("stage 1 has no complete task yet")
        datasets = sorted({t.split("/")[0] for t in chosen["tasks_used"]}, key=ORDER.index)
        run(datasets, [short_name(chosen["stage1_winner"])], args.outer, args.data_dir, chosen["tasks_used"])
    elif not args.report_only:
        run(args.datasets.split(","), args.models.split(","), args.outer, args.data_dir)
    print(report(args.outer))


if __name__ == "__main__":
    main()
