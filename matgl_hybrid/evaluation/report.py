"""Reports of evaluations: a markdown table per target and a PNG (MAE per model and fold, parity of the best)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from matgl_hybrid.files import atomic_write_text


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
        others = [r["mae_mean"] for r in (reference or {}).get(target, [])]
        best = min(complete, key=complete.get) if complete else None
        if best is not None and (len(complete) + len(others) < 2 or min(others, default=np.inf) < complete[best]):
            best = None  # "(best)" only on the lowest row of a comparison, leaderboard entries included
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
