"""Real Matbench (issue #19): jdft2d and phonons on the official folds, from the offline files in ``../shared``.

The files in ``../shared/data/matbench/`` are reconstructions (their sha256 differs from matminer's metadata; see
their README), read with the runner's explicit opt-in, which records their sha256 and provenance. Every model is
scored once per official test fold; any model choice used only the training part of each fold (the recommended
recipe was chosen by ``select_recipe.py`` on other data).

Models (all on the same folds):

- ``submission``: what ``matbench_submissions/matbench_v0.1_<--algorithm>/`` holds, run by the library's
  ``MatbenchRun`` with candidates: per fold, each of the four candidates below is trained on the training fold
  and the one with the lowest MAE on the inner validation split (10 % of the training fold, the same for all)
  predicts the test fold. The test fold plays no part in the choice;
- the candidates, each also reported on its own: ``recipe``, the recommended recipe (``TrainSpec()``'s defaults,
  chosen by ``select_recipe.py`` on other data); ``recipe_sim`` (issue #21), the recipe given ``sim:chgnet``
  (cheap tier) as well; ``recipe_long`` and ``recipe_sim_long``, the same two with a larger budget, 300 epochs of
  MatGL's schedule (about constant) without early stopping (the weights of the best inner-validation epoch are
  kept: with the recipe's patience of 25, two of five phonons folds of ``recipe_sim`` stopped with their best
  epoch at 3 and 10);
- ``megnet``: plain MEGNet as MatGL ships it (its Set2Set readout and head), no descriptors, the recipe's budget;
- ``set2set_recipe``, ``set2set_sim``, ``mean_sim`` and ``set2set_sim_long`` (2026-12-01, after the submission):
  the recipe with an intensive readout (Set2Set or the mean) instead of the extensive one, on the recipe's
  descriptors or those and ``sim:chgnet``, with the recipe's budget or (``_long``) the larger one. They answer a
  user's question (which readout for an intensive property?) that the test folds raised: ``megnet`` (Set2Set)
  beat every extensive-readout hybrid on phonons. Since that observation came from the test folds, they are
  reported on their own and never join the submission's candidates;
- ``submission_v2`` (issue "Matbench v2"): the protocol and four candidates registered in
  ``benchmarks/matbench_v2/`` before its runs; per fold, inner 5-fold cross-validation on the training fold chooses
  a candidate and its five inner models, an ensemble, predict the test fold (``protocol.md`` there);
- ``hybrid_gong28``: the hybrid as it was before the recipe (extensive readout, gong28, concat), the same budget;
- ``descriptors_rf``: a random forest (500 trees) on ``gong28+composition``;
- ``descriptors_rf_recipe``: the same forest on the recipe's descriptors (``gong28+composition+chgnet_noenergy``);
- ``descriptors_rf_sim``: the same forest on those and ``sim:chgnet``;
- ``finetuned_tensornet_matpes`` and ``scratch_tensornet_matpes`` (issue "Pretrained foundation backbones"): the
  hybrid on MatGL's pretrained TensorNet-MatPES, fine-tuned, and the same network from random initialisation;
- learning curves, ``M@0.25`` and ``M@0.5`` for ``M`` in ``finetuned_tensornet_matpes``, ``scratch_tensornet_matpes``
  and ``recipe``: the model trained on a seeded quarter or half of each training fold, scored on the official test
  folds, reported apart from the models above (points of a curve, not submissions).

Before the candidates' choice existed (2026-12-01), the submission was the recipe alone, and ``recipe_sim``,
``recipe_sim_long`` and ``recipe_long`` (jdft2d) were scored on the test folds as separate runs; their fold
records are the candidates' records now (same specs, same fingerprints). The ``sim:chgnet`` values of both tasks
come from ``sim_descriptors.py --stages datasets`` (archived in ``benchmarks/results/sim_values/``).

    python benchmarks/matbench_study.py                     # every model, both tasks (resumable per fold)
    python benchmarks/matbench_study.py --models submission # the four candidates and the choice
    python benchmarks/matbench_study.py --models submission_v2   # Matbench v2 (benchmarks/matbench_v2/protocol.md)
    python benchmarks/matbench_study.py --models descriptors_rf --tasks matbench_jdft2d
    python benchmarks/matbench_study.py --models finetuned_tensornet_matpes@0.25 --tasks matbench_jdft2d --folds 0
    python benchmarks/matbench_study.py --models submission_v2 --tasks matbench_phonons --folds 3   # one fold
    python benchmarks/matbench_study.py --report-only

Reports: ``benchmarks/results/matbench_<task>.{md,json,png}``, with the leaderboard entries beside our rows.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tasks import FINETUNE, MATPES_ARCHITECTURE, PRETRAINED_READOUTS, V2_PROMOTED, restore_sim_archives
from tasks import MATBENCH_DATA as DATA
from tasks import MATBENCH_PROVENANCE as PROVENANCE
from tasks import MATBENCH_TASKS as TASKS
from tasks import MATBENCH_UNITS as UNITS

from matgl_hybrid.checkpoint import sha256_file
from matgl_hybrid.descriptors import featurize, get_descriptor_set
from matgl_hybrid.evaluation import FoldStore
from matgl_hybrid.evaluation.matbench import (
    MatbenchRun,
    fold_data,
    load_leaderboard,
    load_task,
    validate_submission,
)
from matgl_hybrid.evaluation.report import report_figure
from matgl_hybrid.figures import save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.training import TrainSpec, device_name
from matgl_hybrid.training.baselines import descriptor_forest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "matbench_runs"
SUBMISSIONS = ROOT / "matbench_submissions"
#: Never submitted to the leaderboard; self-reported on the same folds (DenseGNN, npj Comput. Mater. 2024).
SELF_REPORTED = {"matbench_jdft2d": 30.22, "matbench_phonons": 23.52}
RECIPE_DESCRIPTORS = TrainSpec().descriptor_set
#: The larger budget: the whole cosine schedule, no early stopping (2 cores: about 1.5 s per phonons epoch).
LONG_BUDGET = {"max_epochs": 300, "patience": 300}
#: The submission's candidates (changes to the recipe), chosen per fold on the inner validation split.
CANDIDATES = {
    "recipe": {},
    "recipe_long": LONG_BUDGET,
    # issue #21: the recipe with simulated quantities (sim:chgnet, cheap tier) added to its descriptors
    "recipe_sim": {"descriptor_set": f"{RECIPE_DESCRIPTORS}+sim:chgnet"},
    "recipe_sim_long": {"descriptor_set": f"{RECIPE_DESCRIPTORS}+sim:chgnet", **LONG_BUDGET},
}
#: The GNN baselines (changes to the recipe), each run on its own.
GNN_CHANGES = {
    "megnet": {"readout": "native", "descriptor_set": None},
    "hybrid_gong28": {"readout": "extensive", "descriptor_set": "gong28", "fusion": "concat"},
    "set2set_recipe": {"readout": "set2set"},
    "set2set_sim": {"readout": "set2set", "descriptor_set": f"{RECIPE_DESCRIPTORS}+sim:chgnet"},
    "mean_sim": {"readout": "mean", "descriptor_set": f"{RECIPE_DESCRIPTORS}+sim:chgnet"},
    "set2set_sim_long": {"readout": "set2set", "descriptor_set": f"{RECIPE_DESCRIPTORS}+sim:chgnet", **LONG_BUDGET},
    # issue "Pretrained foundation backbones" (settings in tasks.FINETUNE; the readout per task in
    # tasks.PRETRAINED_READOUTS is applied by gnn_run)
    "finetuned_tensornet_matpes": {"backbone": "tensornet-matpes-pbe", **FINETUNE},
    "scratch_tensornet_matpes": {"backbone": "tensornet", "backbone_kwargs": MATPES_ARCHITECTURE, **FINETUNE},
}
#: The random forests (500 trees) and their descriptor sets: the issue's baseline, the recipe's inputs, and those
#: plus sim:chgnet, so that every GNN has a forest given the same inputs.
FORESTS = {
    "descriptors_rf": "gong28+composition",
    "descriptors_rf_recipe": RECIPE_DESCRIPTORS,
    "descriptors_rf_sim": f"{RECIPE_DESCRIPTORS}+sim:chgnet",
    "descriptors_rf_tensornet_matpes": "tensornet_matpes",
}
SUBMISSION = "submission"
#: The key of a report's JSON that holds the leaderboard, the published and self-reported numbers and the targets.
REFERENCES = "references"
#: Matbench v2 (issue "Matbench v2"): the protocol and candidates registered in benchmarks/matbench_v2/ before its
#: runs; inner 5-fold selection per outer fold, the chosen candidate's 5 inner models predict the test fold.
SUBMISSION_V2 = "submission_v2"
V2 = ROOT / "benchmarks" / "matbench_v2"
V2_INNER_FOLDS = 5
#: The commit that registered Matbench v2's protocol and candidates before any of its runs (its submission names it;
#: a test checks that candidates.json is unchanged since).
V2_REGISTERED = "d23f789"
#: sha256 of candidates.json as registered in that commit: a run refuses any other file (no git history needed).
V2_CANDIDATES_SHA256 = "a153ae80aa7833b1a6e6d179eb2ce14950784a8059f0c2b4be39584de36b5efd"
V2_PROTOCOL = (
    f"benchmarks/matbench_v2/protocol.md and candidates.json of matgl-hybrid, commit {V2_REGISTERED} (candidates, "
    "selection rule and budget unchanged since)"
)
#: Matbench v0.1's five official folds.
FOLDS = (0, 1, 2, 3, 4)
#: Drawn grey in the figures: the models that are not the hybrid.
BASELINES = ("megnet", *FORESTS)
#: Learning curves on the official test folds (issue "Pretrained foundation backbones"; registered in
#: units/cpu_matbench_learning_curves.txt before any ran): these models trained on a seeded part of each training
#: fold (``MatbenchRun.train_fraction``), run and reported as ``model@F``, one folder per task; not submissions.
CURVE_MODELS = ("finetuned_tensornet_matpes", "scratch_tensornet_matpes", "recipe")
CURVE_FRACTIONS = (0.25, 0.5)
CURVE_RUNS = tuple(f"{model}@{fraction:g}" for model in CURVE_MODELS for fraction in CURVE_FRACTIONS)
RUNNABLE = (SUBMISSION, SUBMISSION_V2, *GNN_CHANGES, *FORESTS, *CURVE_RUNS)
#: The GNNs whose readout depends on the task (tasks.PRETRAINED_READOUTS): run one task at a time.
PER_TASK_READOUT = ("finetuned_tensornet_matpes", "scratch_tensornet_matpes")
MODELS = (SUBMISSION, SUBMISSION_V2, *CANDIDATES, *GNN_CHANGES, *FORESTS, *CURVE_RUNS)  # the report's rows


def recipe_spec() -> TrainSpec:
    """The recommended recipe: ``TrainSpec()``'s defaults (no progress bars inside a study), descriptors unclipped as
    when every Matbench protocol here was registered (before ``TrainSpec.clip_descriptors``)."""
    return TrainSpec(progress=False, clip_descriptors=False)


def v2_registered_candidates() -> dict[str, dict]:
    """Matbench v2's candidates, in ``candidates.json``'s order, refused unless the file is the registered one."""
    path = V2 / "candidates.json"
    if (digest := sha256_file(path)) != V2_CANDIDATES_SHA256:
        raise ValueError(
            f"{path} is not the file registered in commit {V2_REGISTERED} (sha256 {digest[:12]}…, registered "
            f"{V2_CANDIDATES_SHA256[:12]}…): candidates may be added only as a new, separately reported run"
        )
    return json.loads(path.read_text())


def _v2_target_line(row: dict, best: dict, published: list[dict], units: str) -> str:
    """Issue "Matbench v2"'s targets for ``row`` (its summary): below the leaderboard's best and, the moonshot,
    below the best published numbers; a run of fewer than five folds says so."""
    done = sum(m is not None for m in row["fold_mae"])
    ours = row["mae_mean"]
    goals = [(f"{best['algorithm']}'s {best['mae_mean']:.2f} (leaderboard)", best["mae_mean"])]
    goals += [(f"{e['algorithm']}'s {e['mae_mean']:.2f} (published)", e["mae_mean"]) for e in published]
    verdicts = [
        f"{name}: " + ("met" if ours < goal else f"missed by {ours - goal:.2f} {units} ({(ours - goal) / goal:.0%})")
        for name, goal in goals
    ]
    partial = "" if done == 5 else f" (on {done} of 5 folds, not final)"
    return f'Targets (issue "Matbench v2"): submission_v2 {ours:.2f}{partial}; below ' + "; below ".join(verdicts) + "."


def gnn_run(run: str, tasks: list[str], algorithm: str, folds: tuple[int, ...] = FOLDS) -> MatbenchRun:
    """The runner of a GNN model on ``folds``: the submission (with its candidates) writes the submission folder,
    the baselines their own folders, a learning curve's point (``model@F``, :data:`CURVE_RUNS`) its own per task."""
    model, _, part = run.partition("@")
    spec, candidates, inner_folds, protocol = recipe_spec(), CANDIDATES, None, ""
    submitted, archived = SUBMISSIONS / f"matbench_v0.1_{algorithm}", RUNS / model / f"matbench_v0.1_{algorithm}"
    out = archived if V2_PROMOTED else submitted  # v1's folder
    if model == SUBMISSION_V2:
        candidates = v2_registered_candidates()
        inner_folds, out, protocol = V2_INNER_FOLDS, submitted if V2_PROMOTED else archived, V2_PROTOCOL
    elif model != SUBMISSION:
        spec, candidates = replace(spec, **{**CANDIDATES, **GNN_CHANGES}[model]), {}
        out = RUNS / model / f"matbench_v0.1_{model.replace('_', '')[:15]}"
    if model in PER_TASK_READOUT or part:  # one folder per task, so that each records its own spec
        (task,) = tasks
        readout = PRETRAINED_READOUTS[task] if model in PER_TASK_READOUT else spec.readout
        spec, out = replace(spec, readout=readout), RUNS / run / task / out.name
    return MatbenchRun(
        tasks=tasks,
        spec=spec,
        candidates=candidates,
        out=out,
        algorithm=algorithm if model in (SUBMISSION, SUBMISSION_V2) else model.replace("_", "")[:15],
        inner_folds=inner_folds,
        protocol=protocol,
        folds=folds,
        train_fraction=float(part or 1),
        data_dir=DATA,
        download=False,
        cache_dir=descriptor_cache_dir(),
        allow_unofficial_data=True,
        data_provenance=PROVENANCE,
    )


def run_forest(model: str, tasks: list[str], folds: tuple[int, ...] = FOLDS) -> None:
    """The random forest ``model`` (on its set, :data:`FORESTS`) on the official ``folds`` (resumable per fold)."""
    from matbench.bench import MatbenchBenchmark

    cache = descriptor_cache_dir()
    for task in MatbenchBenchmark(autoload=False, subset=tasks).tasks:
        load_task(task, DATA, download=False, allow_unofficial=True, provenance=PROVENANCE)
        store = FoldStore(RUNS / model / task.dataset_name)
        for fold in folds:
            if store.has(fold):
                continue
            train, test = fold_data(task, fold)
            frames = [
                featurize(d.structures, FORESTS[model], n_jobs=-1, cache_dir=cache, ids=d.ids, progress=False)
                for d in (train, test)
            ]
            start = time.perf_counter()
            forest = descriptor_forest(seed=0, n_estimators=500)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                forest.fit(frames[0], train.targets)
            seconds = time.perf_counter() - start  # the forest's fit; featurization is cached and timed elsewhere
            predicted = forest.predict(frames[1])
            store.save(
                fold,
                {
                    "mae": None,
                    "n_train": len(train),
                    "n_test": len(test),
                    "ids": list(test.ids),
                    "y_pred": predicted.tolist(),
                    "params": {
                        "device": device_name("cpu"),
                        "descriptor_version": get_descriptor_set(FORESTS[model]).version,
                    },
                    "train_seconds": seconds,
                },
            )
            print(f"{task.dataset_name} fold {fold}: {model} done", flush=True)


def fold_predictions(model: str, task: str, algorithm: str) -> dict[int, dict]:
    """The finished fold records of ``model`` on ``task`` (the submission's: its choice where every candidate of
    the fold is finished)."""
    if model in FORESTS:
        return FoldStore(RUNS / model / task).records()
    if model in (*GNN_CHANGES, SUBMISSION_V2, *CURVE_RUNS):  # v2: one record per fold, its ensemble's predictions
        return FoldStore(gnn_run(model, [task], algorithm).out / "folds" / task).records()
    run = gnn_run(SUBMISSION, [task], algorithm)
    by_candidate = {name: FoldStore(run.candidate_folder(task, name)).records() for name in CANDIDATES}
    if model in CANDIDATES:
        return by_candidate[model]
    folds = set.intersection(*(set(records) for records in by_candidate.values()))
    return {fold: run.choose({n: r[fold] for n, r in by_candidate.items()}) for fold in sorted(folds)}


def check_nothing_reported_vanished(task: str, rows: dict[str, dict]) -> None:
    """Refuse to rewrite ``task``'s report without a fold that its committed report scored (records moved, as when a
    run's folder becomes the submission, or deleted): every configuration ever scored stays reported."""
    committed = RESULTS / f"matbench_{task}.json"
    if not committed.is_file():
        return
    before = {model: [fold for fold, mae in enumerate(row["fold_mae"]) if mae is not None]
              for model, row in json.loads(committed.read_text()).items() if "fold_mae" in row}  # fmt: skip
    lost = {model: sorted(set(folds) - set(rows.get(model, {}).get("fold_mae", {}))) for model, folds in before.items()}
    if lost := {model: folds for model, folds in lost.items() if folds}:
        shown = "; ".join(f"{model} folds {', '.join(map(str, folds))}" for model, folds in lost.items())
        raise SystemExit(f"{committed} reports {shown}, whose fold records are not found now: restore them (or read "
                         "them from where they moved) before the report is written again")


def report(tasks: list[str], algorithm: str) -> dict[str, dict[str, dict]]:
    """``matbench_<task>.{md,json,png}``: per-fold MAE of every model, the leaderboard beside them; returns
    ``{task: table}`` (see :func:`_write_task_report`)."""
    from matbench.bench import MatbenchBenchmark

    leaderboard, tables = load_leaderboard(), {}
    for task in MatbenchBenchmark(autoload=False, subset=tasks).tasks:
        checked = load_task(task, DATA, download=False, allow_unofficial=True, provenance=PROVENANCE)
        rows = {}
        for model in MODELS:
            records = fold_predictions(model, task.dataset_name, algorithm)
            maes = {}
            for fold, record in sorted(records.items()):
                truth = task.get_test_data(fold, include_target=True)[1].loc[record["ids"]].to_numpy(dtype=float)
                maes[fold] = float(np.mean(np.abs(np.asarray(record["y_pred"]) - truth)))
            if maes:
                params = {fold: r["params"] for fold, r in records.items()}
                devices = sorted({str(p.get("device", "cpu (2 threads)")) for p in params.values()})
                epochs = [r["params"].get("best_epoch") for _, r in sorted(records.items())]
                rows[model] = {
                    "fold_mae": maes,
                    "devices": devices,
                    "best_epochs": [e for e in epochs if e is not None],
                    "chosen": [
                        r["params"]["candidate"] for _, r in sorted(records.items()) if "candidate" in r["params"]
                    ],
                    "inner_mae": {f: p["inner_mae"] for f, p in params.items() if "inner_mae" in p},
                    "chosen_in": {f: p["candidate"] for f, p in params.items() if "inner_mae" in p},
                    "members": {f: p.get("members") for f, p in params.items() if "inner_mae" in p},
                }
        check_nothing_reported_vanished(task.dataset_name, rows)
        if not rows:
            continue
        best = min(leaderboard[task.dataset_name], key=lambda e: e["mae_mean"])
        tables[task.dataset_name] = _write_task_report(
            task.dataset_name, rows, leaderboard[task.dataset_name], best, checked.note()
        )
    return tables


def _write_task_report(task: str, rows: dict, entries: list[dict], best: dict, data_note: str) -> dict[str, dict]:
    """``matbench_<task>.{md,json,png}``; returns the table written: ``{model: {"fold_mae", "mae_mean", "mae_std",
    "devices"[, "chosen"]}}``."""
    units = UNITS[task]
    lines = [
        f"# Matbench {task}: official folds (issue #19)",
        "",
        data_note,
        "",
        "Command: `python benchmarks/matbench_study.py --models M` for each model below (its docstring), then "
        "`python benchmarks/matbench_study.py --report-only` (this report). MAE per official test fold, each scored "
        "once; every "
        "configuration scored on these test folds is listed. `submission` (v1: "
        f"{'archived in `benchmarks/results/matbench_runs/submission/`' if V2_PROMOTED else 'the submission folder'}"
        "): per fold, "
        f"the candidate among {', '.join(CANDIDATES)} with the lowest MAE on the inner validation split of the "
        "training fold (the test fold plays no part in the choice, but the candidate list was fixed after three of "
        "them had been scored on the test folds); a fold shows once all its candidates ran. "
        '`submission_v2` (issue "Matbench v2", protocol and candidates registered in `benchmarks/matbench_v2/` '
        f"before its runs): per fold, the candidate among {', '.join(v2_registered_candidates())} with the lowest "
        f"out-of-fold MAE of an inner {V2_INNER_FOLDS}-fold cross-validation on the training fold; its "
        f"{V2_INNER_FOLDS} inner models, averaged, predict the test fold"
        f"{' (the submission folder since all ten folds finished)' if V2_PROMOTED else ''}.",
        "",
        "| model | fold 0 | fold 1 | fold 2 | fold 3 | fold 4 | "
        f"mean ± std ({units}) | folds below {best['algorithm']} ({best['mae_mean']:.2f}) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary, curve_lines = {}, []
    for model, r in rows.items():
        maes = [r["fold_mae"].get(f) for f in range(5)]
        done = [m for m in maes if m is not None]
        mean, std = float(np.mean(done)), float(np.std(done))
        summary[model] = {"fold_mae": maes, "mae_mean": mean, "mae_std": std, "devices": r["devices"]}
        if r["chosen"]:
            summary[model]["chosen"] = r["chosen"]
        cells = " | ".join("—" if m is None else f"{m:.2f}" for m in maes)
        suffix = "" if len(done) == 5 else f" *{len(done)}/5*"
        if model in CURVE_RUNS:  # trained on a part of each training fold: not comparable with the leaderboard
            curve_lines.append(f"| {model} | {cells} | {mean:.2f} ± {std:.2f}{suffix} |")
            continue
        below = sum(m < best["mae_mean"] for m in done)
        lines.append(f"| {model} | {cells} | {mean:.2f} ± {std:.2f}{suffix} | {below}/{len(done)} |")
    for entry in sorted(entries, key=lambda e: e["mae_mean"]):
        lines.append(
            f"| {entry['algorithm']} (leaderboard) | | | | | | {entry['mae_mean']:.2f} ± {entry['mae_std']:.2f} | |"
        )
    for entry in load_leaderboard(published=True).get(task, []):
        lines.append(f"| {entry['algorithm']}: {entry['source'].split(';')[0]} | | | | | | {entry['mae_mean']:.2f} | |")
    lines.append(f"| DenseGNN (self-reported, never submitted) | | | | | | {SELF_REPORTED[task]:.2f} | |")
    published = load_leaderboard(published=True).get(task, [])
    targets = []
    if SUBMISSION in summary:
        ours = summary[SUBMISSION]["mae_mean"]
        gap = ours - best["mae_mean"]
        verdict = "met" if gap < 0 else f"missed by {gap:.2f} {units} ({gap / best['mae_mean']:.0%})"
        targets.append(f"Target (issue #19): the v1 submission below {best['algorithm']}'s {best['mae_mean']:.2f}: "
                       f"{ours:.2f}, {verdict}; DenseGNN's self-report {SELF_REPORTED[task]:.2f}.")  # fmt: skip
    if SUBMISSION_V2 in summary:
        targets.append(_v2_target_line(summary[SUBMISSION_V2], best, published, units))
    for line in targets:
        lines += ["", line]
    if curve_lines:
        lines += ["", "Learning curve (`model@F`: trained on a seeded part F of each training fold, the same rows for "
                  "every model, scored on the official test folds; points of a curve, not submissions; "
                  "`benchmarks/results/pretrained_backbones.md` draws them):", "",
                  f"| run | fold 0 | fold 1 | fold 2 | fold 3 | fold 4 | mean ± std ({units}) |",
                  "|---|---:|---:|---:|---:|---:|---:|", *curve_lines]  # fmt: skip
    lines += [
        "",
        "Devices: " + "; ".join(f"{m}: {', '.join(s['devices'])}" for m, s in summary.items()) + ".",
        "",
        *(f"Candidate chosen per fold, {m}: {', '.join(s['chosen'])}." for m, s in summary.items() if "chosen" in s),
        "",
        *(
            f"Best inner-validation epoch per fold, {m}: {', '.join(str(e) for e in r['best_epochs'])}."
            for m, r in rows.items()
            if r.get("best_epochs")
        ),
        *_inner_score_tables(rows, units),
        "",
        f"![MAE per fold](matbench_{task}.png)",
    ]
    atomic_write_text(RESULTS / f"matbench_{task}.md", "\n".join(lines) + "\n")
    # the reference numbers beside our models' rows (a key no model has), as the report shows them
    references = {"leaderboard": [{k: e[k] for k in ("algorithm", "mae_mean", "mae_std")} for e in entries],
                  "published": [{k: e[k] for k in ("algorithm", "mae_mean", "source")} for e in published],
                  "self_reported": {"DenseGNN": SELF_REPORTED[task]}, "units": units, "targets": targets}  # fmt: skip
    atomic_write_text(
        RESULTS / f"matbench_{task}.json", json.dumps({**summary, REFERENCES: references}, indent=1) + "\n"
    )
    whole_folds = {model: row for model, row in summary.items() if model not in CURVE_RUNS}
    save(task_figure(task, whole_folds, entries), RESULTS / f"matbench_{task}.png")
    return summary


def _inner_score_tables(rows: dict, units: str) -> list[str]:
    """Markdown tables of every candidate's inner out-of-fold MAE per outer fold (the choice's evidence; the test
    folds play no part in it), for the models chosen by inner cross-validation (``submission_v2``)."""
    lines = []
    for model, r in rows.items():
        if not r.get("inner_mae"):
            continue
        names = list(next(iter(r["inner_mae"].values())))
        lines += [
            "",
            f"Inner out-of-fold MAE ({units}) per candidate and outer fold, {model} (training folds only; the chosen "
            "in bold):",
            "",
            "| candidate | fold 0 | fold 1 | fold 2 | fold 3 | fold 4 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in names:
            cells = []
            for fold in range(5):
                scores = r["inner_mae"].get(fold)
                if scores is None:
                    cells.append("—")
                    continue
                cell = f"{scores[name]:.2f}"
                cells.append(f"**{cell}**" if name == r["chosen_in"][fold] else cell)  # as recorded
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", _members_line(model, r["members"])]
    return lines


def _members_line(model: str, members: dict[int, list[dict] | None]) -> str:
    """Whether each fold's ensemble members are the fits that were scored (a member retrained after a lost
    checkpoint is not bitwise the same on CPU; see the protocol's operational notes)."""
    said = []
    for fold, found in sorted(members.items()):
        if found is None:
            said.append(f"fold {fold}: not recorded (the record predates it)")
            continue
        differ = [m for m in found if not m["same"]]
        text = f"fold {fold}: {len(found) - len(differ)} of {len(found)} are the scored fits"
        if differ:
            text += (
                " (retrained: best validation MAE "
                + ", ".join(f"{m['best_val_mae']:.2f} vs {m['scored_best_val_mae']:.2f} scored" for m in differ)
                + ")"
            )
        said.append(text)
    return f"Ensemble members, {model}: " + "; ".join(said) + "."


def task_figure(task: str, summary: dict, entries: list[dict]) -> Figure:
    """MAE per model with fold dots (the GNN and forest baselines grey) beside the leaderboard's entries, the best
    published numbers (JMP-L) and DenseGNN's self-report (hatched; the dummy predictor named off the axis)."""
    rows = {
        model: {"mae_mean": s["mae_mean"], "fold_mae": done, "folds_done": len(done)}
        for model, s in summary.items()
        for done in [[m for m in s["fold_mae"] if m is not None]]
    }
    others = [
        *entries,
        *load_leaderboard(published=True).get(task, []),
        {"algorithm": "DenseGNN (self-reported)", "mae_mean": SELF_REPORTED[task]},
    ]
    return report_figure({task: rows}, {task: UNITS[task]}, reference={task: others}, baselines=BASELINES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--models", default=",".join(RUNNABLE), help=f"comma-separated, of {', '.join(RUNNABLE)}")
    parser.add_argument("--algorithm", default="MatGLHybrid", help="the recipe's leaderboard name (5-15 characters)")
    parser.add_argument(
        "--folds",
        default=",".join(map(str, FOLDS)),
        help="official folds to run, comma-separated (one process per fold runs them in parallel, e.g. on a GPU "
        "machine; each run's folder records every finished fold, so the runs add up to a whole submission)",
    )
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    folds = tuple(int(f) for f in args.folds.split(",") if f.strip().isdigit())
    if len(folds) != len(args.folds.split(",")) or not set(folds) <= set(FOLDS):
        parser.error(f"--folds: official folds are {FOLDS}, got {args.folds!r}")
    unknown = sorted(set(args.models.split(",")) - set(RUNNABLE))
    if unknown:
        parser.error(f"unknown models {unknown} (the candidates run as part of '{SUBMISSION}'); known: {RUNNABLE}")
    if not args.report_only:
        restore_sim_archives("matbench_*")  # the committed sim:chgnet values: no candidate simulates again
        for model in args.models.split(","):
            if model in FORESTS:
                run_forest(model, tasks, folds)
            elif model in (*PER_TASK_READOUT, *CURVE_RUNS):
                for task in tasks:
                    gnn_run(model, [task], args.algorithm, folds).run()
            else:
                run = gnn_run(model, tasks, args.algorithm, folds)
                run.run()
                if model in (SUBMISSION, SUBMISSION_V2):  # the leaderboard's checks of the folder just written
                    problems = validate_submission(run.out)
                    print(f"{run.out}: " + ("valid submission" if not problems else "; ".join(problems)))
    report(tasks, args.algorithm)


if __name__ == "__main__":
    main()
