"""Reports of evaluations: a markdown table per target and a PNG (score per model and fold, parity of the best)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from matgl_hybrid.figures import BAR_HEIGHT_IN, Entry, axis_label, bars, panels, save
from matgl_hybrid.figures import parity as parity_plot
from matgl_hybrid.files import atomic_write_text

#: Scores a report knows: their label; every score is lower-is-better but those in :data:`HIGHER_IS_BETTER`.
METRIC_LABELS = {"mae": "MAE", "rocauc": "ROC-AUC"}
HIGHER_IS_BETTER = frozenset({"rocauc"})


def write_report(
    stem: str | Path,
    title: str,
    tables: dict[str, dict[str, dict[str, Any]]],
    units: dict[str, str],
    parity: dict[str, tuple[str, np.ndarray, np.ndarray]] | None = None,
    reference: dict[str, list[dict[str, Any]]] | None = None,
    notes: Sequence[str] = (),
    baselines: Collection[str] = (),
    metrics: Mapping[str, str] | None = None,
) -> None:
    """Markdown table + PNG (bar chart of per-fold scores, parity plot of the best model) for several targets.

    Args:
        stem: output path without suffix; writes ``<stem>.md`` and ``<stem>.png``.
        title: report heading.
        tables: ``{target: {model: summarize(..., metric) (+ "mad")}}``.
        units: target units, for labels.
        parity: ``{target: (model, y_true, y_pred)}`` to plot.
        reference: ``{target: [{"algorithm", "<metric>_mean", "<metric>_std", "source"}, …]}``, e.g. leaderboard
            entries, listed beside our rows.
        notes: lines added under the title.
        baselines: models drawn as baselines (grey) rather than ours.
        metrics: each target's score, a key of :data:`METRIC_LABELS` (default ``mae``); the best row is the lowest
            score, or the highest for :data:`HIGHER_IS_BETTER` scores (a classifier's ``rocauc``).
    """
    stem = Path(stem)
    metrics = metrics or {}
    lines = [f"# {title}", "", *notes, ""] if notes else [f"# {title}", ""]
    for target, rows in tables.items():
        metric = metrics.get(target, "mae")
        label, sign = METRIC_LABELS[metric], -1.0 if metric in HIGHER_IS_BETTER else 1.0
        scores = {m: sign * r[f"{metric}_mean"] for m, r in rows.items()}
        complete = {m: s for m, s in scores.items() if rows[m]["folds_done"] == 5 and np.isfinite(s)}  # NaN: diverged
        others = [sign * r[f"{metric}_mean"] for r in (reference or {}).get(target, [])]
        best = min(complete, key=complete.get) if complete else None
        if best is not None and (len(complete) + len(others) < 2 or min(others, default=np.inf) < complete[best]):
            best = None  # "(best)" only on the best row of a comparison, leaderboard entries included
        ratio_column = metric == "mae"  # MAE/MAD: an error relative to the dummy's; no such ratio for ROC-AUC
        lines += [
            f"## {axis_label(target, units.get(target))}",
            "",
            f"| model | {label} (mean ± std) |" + (" MAE/MAD |" if ratio_column else "")
            + " folds | train s / fold | per fold |",
            "|---|---:|" + ("---:|" if ratio_column else "") + "---:|---:|---|",
        ]
        for model, r in sorted(rows.items(), key=lambda kv: (not np.isfinite(scores[kv[0]]), scores[kv[0]])):
            ratio = (f" {r['mae_mean'] / r['mad']:.3f} |" if r.get("mad") else " – |") if ratio_column else ""
            flag = " **(best)**" if model == best else ""
            per_fold = ", ".join("–" if v is None or not np.isfinite(v) else f"{v:.4g}" for v in r[f"fold_{metric}"])
            seconds = f"{r['train_seconds']:.0f}" if np.isfinite(r["train_seconds"]) else "–"  # not recorded
            lines.append(
                f"| {model}{flag} | {r[f'{metric}_mean']:.4g} ± {r[f'{metric}_std']:.2g} |{ratio} "
                f"{r['folds_done']}/5 | {seconds} | {per_fold} |"
            )
        for ref in (reference or {}).get(target, []):
            std = f" ± {ref[f'{metric}_std']:.2g}" if ref.get(f"{metric}_std") is not None else ""
            where = ref.get("where", "leaderboard")
            dashes = " – | – | – | – |" if ratio_column else " – | – | – |"
            lines.append(f"| {ref['algorithm']} ({where}) | {ref[f'{metric}_mean']:.4g}{std} |{dashes}")
        lines.append("")
    if reference:
        sources = sorted({r["source"] for refs in reference.values() for r in refs})
        lines += ["Reference figures from: " + "; ".join(sources), ""]
    lines += [f"![results]({stem.name}.png)", ""]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines))

    save(report_figure(tables, units, parity, reference, baselines, metrics), stem.with_suffix(".png"))


def report_figure(
    tables: dict[str, dict[str, dict[str, Any]]],
    units: dict[str, str],
    parity: dict[str, tuple[str, np.ndarray, np.ndarray]] | None = None,
    reference: dict[str, list[dict[str, Any]]] | None = None,
    baselines: Collection[str] = (),
    metrics: Mapping[str, str] | None = None,
) -> Figure:
    """Per target, the score per model (bars, fold dots, reference entries; ``baselines`` in grey) and the parity
    of ``parity``'s model; ``metrics`` as in :func:`write_report`."""
    ncols = 2 if parity else 1
    most = max((len(rows) + len((reference or {}).get(t, [])) for t, rows in tables.items()), default=1)
    fig, axes = panels(ncols * len(tables), ncols=ncols, size=(5.6, max(4.2, 1.4 + BAR_HEIGHT_IN * most)))
    for row, (target, rows) in enumerate(tables.items()):
        metric = (metrics or {}).get(target, "mae")
        entries = [  # a run of fewer than five folds says so on its bar, as in the table
            Entry(
                model + (f" ({r['folds_done']}/5)" if r.get("folds_done", 5) < 5 else ""),
                r[f"{metric}_mean"],
                r[f"fold_{metric}"],
                "baseline" if model in baselines else "ours",
            )
            for model, r in rows.items()
        ]
        entries += [
            Entry(ref["algorithm"], ref[f"{metric}_mean"], kind="reference")
            for ref in (reference or {}).get(target, [])
        ]
        label, higher = METRIC_LABELS[metric], metric in HIGHER_IS_BETTER
        bars(
            axes[ncols * row],
            entries,
            quantity=label,
            units=None if higher else units.get(target),  # ROC-AUC has no units
            title=f"{target}: {label} per model (dots: folds)",
            higher_is_better=higher,
        )
        if parity and target in parity:
            name, y, p = parity[target]
            parity_plot(axes[ncols * row + 1], y, p, quantity=target, units=units.get(target),
                        title=f"{name}\nheld-out folds pooled")  # fmt: skip
        elif parity:
            axes[ncols * row + 1].set_visible(False)
    return fig
