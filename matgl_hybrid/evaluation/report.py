"""Reports of evaluations: a markdown table per target and a PNG (MAE per model and fold, parity of the best)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from matgl_hybrid.figures import Entry, axis_label, bars, panels, save
from matgl_hybrid.figures import parity as parity_plot
from matgl_hybrid.files import atomic_write_text


def write_report(
    stem: str | Path,
    title: str,
    tables: dict[str, dict[str, dict[str, Any]]],
    units: dict[str, str],
    parity: dict[str, tuple[str, np.ndarray, np.ndarray]] | None = None,
    reference: dict[str, list[dict[str, Any]]] | None = None,
    notes: Sequence[str] = (),
    baselines: Collection[str] = (),
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
        baselines: models drawn as baselines (grey) rather than ours.
    """
    stem = Path(stem)
    lines = [f"# {title}", "", *notes, ""] if notes else [f"# {title}", ""]
    for target, rows in tables.items():
        complete = {m: r["mae_mean"] for m, r in rows.items() if r["folds_done"] == 5}
        others = [r["mae_mean"] for r in (reference or {}).get(target, [])]
        best = min(complete, key=complete.get) if complete else None
        if best is not None and (len(complete) + len(others) < 2 or min(others, default=np.inf) < complete[best]):
            best = None  # "(best)" only on the lowest row of a comparison, leaderboard entries included
        lines += [
            f"## {axis_label(target, units.get(target))}",
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
            where = ref.get("where", "leaderboard")
            lines.append(f"| {ref['algorithm']} ({where}) | {ref['mae_mean']:.4g}{std} | – | – | – |")
        lines.append("")
    if reference:
        sources = sorted({r["source"] for refs in reference.values() for r in refs})
        lines += ["Reference figures from: " + "; ".join(sources), ""]
    lines += [f"![results]({stem.name}.png)", ""]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines))

    save(report_figure(tables, units, parity, reference, baselines), stem.with_suffix(".png"))


def report_figure(
    tables: dict[str, dict[str, dict[str, Any]]],
    units: dict[str, str],
    parity: dict[str, tuple[str, np.ndarray, np.ndarray]] | None = None,
    reference: dict[str, list[dict[str, Any]]] | None = None,
    baselines: Collection[str] = (),
) -> Figure:
    """Per target, MAE per model (bars, fold dots, reference entries; ``baselines`` in grey) and the parity of
    ``parity``'s model."""
    ncols = 2 if parity else 1
    fig, axes = panels(ncols * len(tables), ncols=ncols)
    for row, (target, rows) in enumerate(tables.items()):
        entries = [
            Entry(model, r["mae_mean"], r["fold_mae"], "baseline" if model in baselines else "ours")
            for model, r in rows.items()
        ]
        entries += [
            Entry(ref["algorithm"], ref["mae_mean"], kind="reference") for ref in (reference or {}).get(target, [])
        ]
        bars(axes[ncols * row], entries, units=units.get(target), title=f"{target}: MAE per model (dots: folds)")
        if parity and target in parity:
            name, y, p = parity[target]
            parity_plot(
                axes[ncols * row + 1], y, p, quantity=target, units=units.get(target), title=f"{name}, held-out folds"
            )
        elif parity:
            axes[ncols * row + 1].set_visible(False)
    return fig
