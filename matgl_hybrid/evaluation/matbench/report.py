"""A Matbench run's report: per-fold scores and the stored leaderboard entries side by side."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matgl_hybrid.evaluation.folds import summarize
from matgl_hybrid.evaluation.report import METRIC_LABELS, write_report

if TYPE_CHECKING:
    from matbench.bench import MatbenchBenchmark

LEADERBOARD_FILE = Path(__file__).resolve().parents[1] / "leaderboard.json"


def load_leaderboard(published: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Stored leaderboard figures per task: ``{task: [{"algorithm", "mae_mean", "mae_std", "source"}, …]}``; with
    ``published``, the best published numbers on the official folds outside the leaderboard (e.g. JMP-L)."""
    stored = json.loads(LEADERBOARD_FILE.read_text())
    return stored["published"]["tasks"] if published else stored["tasks"]


def write_matbench_report(
    mb: MatbenchBenchmark,
    stem: Path,
    notes: Sequence[str] = (),
    train_seconds: Mapping[str, Mapping[int, float]] | None = None,
    name: str = "matgl-hybrid",
) -> None:
    """Per-fold scores, mean ± std and the stored leaderboard entries side by side (markdown + PNG); ``notes``
    (e.g. which dataset files were read) go under the title; ``train_seconds`` (task -> fold -> s, training and
    prediction) gives the time column (NaN where a fold's time is not known); ``name``: the run's row (its
    algorithm)."""
    leaderboard, published = load_leaderboard(), load_leaderboard(published=True)
    tables, units, reference, metrics, parity = {}, {}, {}, {}, {}
    for task in mb.tasks:
        metric, scores = fold_scores(task)
        seconds = (train_seconds or {}).get(task.dataset_name, {})
        folds = {f: {metric: score, "train_seconds": seconds.get(f, float("nan"))} for f, score in scores.items()}
        if not folds:
            continue
        if metric == "mae" and task.df is not None:  # the test folds' predictions against their targets, pooled
            predicted = {i: p for f in scores for i, p in task.results[task.folds_map[f]]["data"].items()}
            targets = task.df.loc[list(predicted), task.metadata.target].to_numpy(dtype=float)
            parity[task.dataset_name] = (name, targets, np.fromiter(predicted.values(), dtype=float))
        tables[task.dataset_name] = {name: {**summarize(folds, metric), "mad": task.metadata.get("mad")}}
        metrics[task.dataset_name] = metric
        units[task.dataset_name] = task_unit(task)
        reference[task.dataset_name] = [  # stored as mae_mean / mae_std whatever their metric: under its name here
            *(_under_metric(entry, metric) for entry in leaderboard.get(task.dataset_name, [])),
            *({**_under_metric(entry, metric), "where": "published"} for entry in published.get(task.dataset_name, [])),
        ]
    if tables:
        write_report(stem, "Matbench v0.1 run", tables, units, parity or None, reference=reference, notes=list(notes),
                     metrics=metrics)  # fmt: skip


def fold_scores(task: Any) -> tuple[str, dict[int, float]]:
    """A recorded ``MatbenchTask``'s metric (``mae``, ``rocauc`` for a classification task) and its score on each
    recorded fold."""
    metric = "rocauc" if task.metadata.task_type == "classification" else "mae"
    recorded = [f for f in task.folds if task.is_recorded[f]]
    return metric, {f: float(task.results[task.folds_map[f]]["scores"][metric]) for f in recorded}


def score_lines(mb: MatbenchBenchmark) -> list[str]:
    """One line per recorded task of a run: mean ± std over its folds, in its units, and the leaderboard's best."""
    leaderboard = load_leaderboard()
    lines = []
    for task in mb.tasks:
        metric, scores = fold_scores(task)
        if not scores:
            continue
        values = list(scores.values())
        unit = f" {task_unit(task)}" if metric == "mae" and task_unit(task) else ""
        line = (f"{task.dataset_name}: {METRIC_LABELS[metric]} {np.mean(values):.4g} ± {np.std(values):.2g}{unit} "
                f"over {len(values)} of {len(task.folds)} folds")  # fmt: skip
        if metric == "mae" and (entries := leaderboard.get(task.dataset_name)):  # lowest is best (an MAE)
            leader = min(entries, key=lambda e: e["mae_mean"])
            line += f" (leaderboard best: {leader['algorithm']} {leader['mae_mean']:.4g})"
        lines.append(line)
    return lines


def task_unit(task: Any) -> str | None:
    """A Matbench task's unit as matbench's metadata writes it, ``^-1`` as a superscript (``cm^-1`` → cm⁻¹)."""
    unit = task.metadata.get("unit") or None
    return unit.replace("^-1", "⁻¹") if unit else None


def _under_metric(entry: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """A stored leaderboard entry (its score under ``mae_mean`` / ``mae_std``) with the score under ``metric``'s
    keys (``rocauc_mean`` for a classification task), as :func:`~matgl_hybrid.evaluation.report.write_report` reads
    them."""
    moved = {f"{metric}_mean": entry["mae_mean"], f"{metric}_std": entry.get("mae_std")}
    return {**{k: v for k, v in entry.items() if k not in ("mae_mean", "mae_std")}, **moved}
