"""The one look of every report figure (cv, Matbench, demo, benchmarks): bars with fold dots, parity, learning curves.

Colour-blind-safe colours (Okabe & Ito), constrained layout, units on every axis, short labels with reference lines
named in a legend, and axis ranges set by the entries that matter: a reference far outside them (a dummy
predictor) is drawn as an arrow at the edge with its value, not allowed to squeeze the rest.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from matgl_hybrid.files import atomic_write_bytes

#: Okabe & Ito's colour-blind-safe palette: ours first, then baselines, then references.
COLOURS = {
    "ours": "#0072B2",
    "baseline": "#999999",
    "published": "#E69F00",
    "reference": ("#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"),
}
#: A reference line farther than this multiple of the largest entry is drawn as an arrow at the axis edge.
FAR = 2.5
#: Resolution of saved figures (dots per inch).
DPI = 150
#: Height of one bar's row (inches): a panel of many bars grows so that their labels never touch.
BAR_HEIGHT_IN = 0.24
#: The gid of a bar's value label: :func:`fit_value_labels` widens the score axis until each ends inside it.
VALUE_LABEL = "value-label"


@dataclass
class Entry:
    """One bar: a model's mean score over folds.

    Attributes:
        label: a short name (the axis label).
        mean: the mean score.
        folds: the per-fold scores, drawn as dots.
        kind: ``ours``, ``baseline`` (a model we ran for comparison) or ``reference`` (a score reported elsewhere,
            e.g. a leaderboard entry): its colour.
    """

    label: str
    mean: float
    folds: Sequence[float] = field(default_factory=tuple)
    kind: str = "ours"


@dataclass
class Reference:
    """A score to compare with (a leaderboard entry, a published number, a dummy predictor), drawn as a line."""

    label: str
    value: float


def axis_label(quantity: str, units: str | None = None) -> str:
    """``quantity (units)``, or the quantity alone when it has no units (never ``()``)."""
    return f"{quantity} ({units})" if units else quantity


def panels(n: int, *, ncols: int | None = None, size: tuple[float, float] = (5.6, 4.2)) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels (``ncols`` per row, default up to 3 so each stays readable), constrained layout.

    Args:
        size: (width, height) of one panel in inches.
    """
    ncols = ncols or min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), layout="constrained", squeeze=False
    )
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def bars(
    ax: Axes,
    entries: Sequence[Entry],
    *,
    quantity: str = "MAE",
    units: str | None = None,
    references: Sequence[Reference] = (),
    title: str | None = None,
    higher_is_better: bool = False,
) -> None:
    """Horizontal bars of ``entries`` (best at the top: the lowest, or with ``higher_is_better`` the highest, e.g.
    ROC-AUC) with fold dots, and ``references`` as labelled lines.

    The score axis is set by the entries that matter: those we ran (all entries when there are none), and the
    entries and references within :data:`FAR` times the largest of them. Anything beyond (a dummy predictor) is
    named with its value under the axis ("off the axis: Dummy 323.8 →").
    """
    unscored = [e.label for e in entries if not np.isfinite(e.mean)]  # named under the axis, not drawn
    entries = [e for e in entries if np.isfinite(e.mean)]
    ran = [e for e in entries if e.kind != "reference"] or list(entries)
    largest = max([float(np.nanmax([e.mean, *e.folds])) for e in ran], default=1.0)
    shown = sorted((e for e in entries if e.mean <= FAR * largest), key=lambda e: e.mean, reverse=higher_is_better)
    near = [r for r in references if r.value <= FAR * largest]
    beyond = [(e.label, e.mean) for e in entries if e.mean > FAR * largest]
    beyond += [(r.label, r.value) for r in references if r.value > FAR * largest]
    limit = 1.15 * max([largest, *(e.mean for e in shown), *(r.value for r in near)])
    rows = np.arange(len(shown))
    for row, entry in zip(rows, shown, strict=True):
        colour = COLOURS["published"] if entry.kind == "reference" else COLOURS[entry.kind]
        ax.barh(row, entry.mean, color=colour, height=0.62, hatch="//" if entry.kind == "reference" else None)
        if len(entry.folds):
            ax.plot(entry.folds, [row] * len(entry.folds), "o", ms=3.5, color="black", alpha=0.75, zorder=3)
        right = float(np.nanmax([entry.mean, *entry.folds]))  # right of the dots: "mean" says it is not a dot's
        text = f"mean {entry.mean:.4g}" if right > entry.mean else f"{entry.mean:.4g}"
        ax.annotate(
            text, (right, row), xytext=(7, 0), textcoords="offset points", va="center", fontsize=8, gid=VALUE_LABEL
        )
    ax.set_yticks(rows, [e.label for e in shown])
    pad = max(0.0, (3 - len(shown)) / 2)  # a lone bar is as thick as one of three, not the whole panel
    ax.set_ylim(len(shown) - 0.5 + pad, -0.5 - pad)  # best at the top
    for colour, ref in zip(COLOURS["reference"], near, strict=False):
        unit = f" {units}" if units else ""
        ax.axvline(ref.value, color=colour, ls="--", lw=1.2, label=f"{ref.label}: {ref.value:.4g}{unit}")
    ax.set_xlim(0, limit)
    off_axis = "; ".join(f"{label} {value:.4g} →" for label, value in beyond)
    ax.set_xlabel(
        axis_label(quantity, units)
        + (f"\noff the axis: {off_axis}" if off_axis else "")
        + (f"\nno score: {', '.join(unscored)}" if unscored else "")
    )
    if title:
        ax.set_title(title, fontsize=10)
    kinds = [k for k in ("ours", "baseline", "reference") if any(e.kind == k for e in shown)]
    patches = {
        "ours": Patch(facecolor=COLOURS["ours"], label="ours"),
        "baseline": Patch(facecolor=COLOURS["baseline"], label="baseline we ran"),
        "reference": Patch(facecolor=COLOURS["published"], hatch="//", label="reported elsewhere"),
    }
    handles = [patches[k] for k in kinds] if len(kinds) > 1 else []
    handles += ax.get_legend_handles_labels()[0]
    if handles:  # beside the panel, never over a bar, a fold dot or a value
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


#: The ratio of the largest to the smallest value above which a parity panel of positive values uses log axes.
LOG_SPAN = 100.0


def parity(
    ax: Axes,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    quantity: str,
    units: str | None = None,
    title: str | None = None,
) -> None:
    """Predicted against reference on a square panel with the diagonal; the title ends with the MAE of the finite
    pairs, and says how many pairs were not finite (a diverged fold: they are not drawn, and the MAE is not the
    whole run's). Positive values spanning more than :data:`LOG_SPAN` (exfoliation energies from 1 to 1600
    meV/atom) are drawn on log axes, so that the bulk is not squeezed into a corner by a few large ones."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    finite = np.isfinite(y_true) & np.isfinite(y_pred)
    dropped = int((~finite).sum())
    y_true, y_pred = y_true[finite], y_pred[finite]
    lo = float(min(y_true.min(), y_pred.min())) if finite.any() else 0.0
    hi = float(max(y_true.max(), y_pred.max())) if finite.any() else 1.0
    log = lo > 0 and hi / lo > LOG_SPAN
    low, high = (lo / 1.3, hi * 1.3) if log else (lo - 0.04 * (hi - lo or 1.0), hi + 0.04 * (hi - lo or 1.0))
    ax.plot([low, high], [low, high], color="black", ls="--", lw=0.8)
    ax.scatter(y_true, y_pred, s=7, alpha=0.55, color=COLOURS["ours"], edgecolors="none")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel(axis_label(f"reference {quantity}", units))
    ax.set_ylabel(axis_label(f"predicted {quantity}", units))
    mae = float(np.mean(np.abs(y_true - y_pred))) if finite.any() else float("nan")
    unit = f" {units}" if units else ""
    missing = f" of the finite; {dropped} of {finite.size} not finite" if dropped else ""
    ax.set_title(f"{title + chr(10) if title else ''}MAE {mae:.4g}{unit}{missing}", fontsize=10)


def learning_curves(
    ax: Axes,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    quantity: str = "validation MAE",
    units: str | None = None,
    title: str | None = None,
    xlabel: str = "epoch",
    xticks: Sequence[float] | None = None,
    references: Mapping[str, float] | None = None,
    styles: Mapping[str, Mapping[str, object]] | None = None,
) -> None:
    """``{label: (x, values)}`` as lines with markers, one colour each, with a legend; x: epochs by default.

    ``xticks``: the x positions to mark and span (a curve over a few training sizes reads as such even while only
    one size has run); ``references``: ``{label: value}`` drawn as dashed grey horizontal lines (a model trained on
    everything, a published number); ``styles``: ``{label: matplotlib line keywords}`` over the defaults (the same
    colour for a model on every panel, an open marker for a variant of it)."""
    colours = itertools.cycle([COLOURS["ours"], *COLOURS["reference"]])  # more curves than colours: repeated
    for colour, (label, (x, values)) in zip(colours, curves.items(), strict=False):
        style = {"color": colour, "lw": 1.4, "marker": "o", "ms": 4, **(styles or {}).get(label, {})}
        ax.plot(x, values, label=label, **style)
    for style, (label, value) in zip(("--", ":", "-."), (references or {}).items(), strict=False):
        ax.axhline(value, color=COLOURS["baseline"], ls=style, lw=1.2, label=label)
    if xticks:
        ax.set_xticks(list(xticks))
        span = max(xticks) - min(xticks)
        ax.set_xlim(min(xticks) - 0.08 * span, max(xticks) + 0.08 * span)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(axis_label(quantity, units))
    if title:
        ax.set_title(title, fontsize=10)
    if curves or references:  # beside the panel, never over a curve
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def fit_value_labels(fig: Figure, attempts: int = 6) -> None:
    """Widen the score axis of each bar panel of ``fig`` until its value labels end inside the panel (their width
    in points does not shrink with the axis, and the layout settles only once every panel is drawn); a no-op for
    figures without them. Called by :func:`png` before saving."""
    labelled = [
        (ax, [t for t in ax.texts if t.get_gid() == VALUE_LABEL and t.get_visible()])
        for ax in fig.axes
        if ax.get_visible()
    ]
    labelled = [(ax, labels) for ax, labels in labelled if labels]
    for _ in range(attempts if labelled else 0):
        fig.draw_without_rendering()  # extents below are measured with the figure's own renderer (any backend)
        widened = False
        for ax, labels in labelled:
            frame = ax.get_window_extent()
            right = max(t.get_window_extent().x1 for t in labels)
            if right > frame.x1 - 2 and frame.width > 0:
                low, high = ax.get_xlim()
                ax.set_xlim(low, low + (high - low) * (right - frame.x0 + 6) / frame.width)
                widened = True
        if not widened:
            return


def png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes (:data:`DPI`); the figure is closed."""
    fit_value_labels(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically, :data:`DPI`) and close it."""
    atomic_write_bytes(path, png(fig))
    return Path(path)
