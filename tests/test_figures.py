"""Report figures read at a glance: labelled axes with units, named reference lines, no overlapping titles, a
readable PNG (issue "Figures that read at a glance")."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from matgl_hybrid.evaluation.report import report_figure
from matgl_hybrid.figures import (
    Entry,
    Reference,
    axis_label,
    bars,
    fit_value_labels,
    learning_curves,
    panels,
    save,
)


def _summary(folds):
    return {"mae_mean": float(np.mean(folds)), "fold_mae": folds, "folds_done": len(folds), "train_seconds": 1.0}


def check_readable(fig: Figure, units: str | None) -> None:
    """Every visible panel has labelled axes (with ``units`` on the score axis), every dashed reference line a
    legend entry, and no two titles or tick labels of different panels overlap (checked as saved: after
    :func:`fit_value_labels`)."""
    fit_value_labels(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible
    for ax in visible:
        assert ax.get_xlabel(), ax.get_title()
        if units:
            assert f"({units})" in ax.get_xlabel() + ax.get_ylabel(), (ax.get_xlabel(), ax.get_ylabel())
        assert "()" not in ax.get_xlabel() + ax.get_ylabel()
        legend = ax.get_legend()
        named = {t.get_text() for t in legend.get_texts()} if legend else set()
        for line in ax.get_lines():  # a horizontal or vertical line marks a reference value: it must be named
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            if line.get_linestyle() != "None" and len(x) == 2 and (x[0] == x[1] or y[0] == y[1]):
                assert line.get_label() in named, f"unnamed reference line in {ax.get_title()!r}"
        if legend:  # a legend hides nothing drawn in the panel: no bar, line, fold dot or value label
            box = legend.get_window_extent(renderer)
            drawn = [*ax.patches, *ax.texts, *ax.get_lines()]
            for artist in drawn:
                hidden = box.overlaps(artist.get_window_extent(renderer))
                assert not hidden, f"legend over {artist} in {ax.get_title()!r}"
        frame = ax.get_window_extent(renderer)
        for text in ax.texts:  # a value label stays inside its panel, not across the spine into the legend
            assert text.get_window_extent(renderer).x1 <= frame.x1 + 1, f"{text.get_text()!r} past the axis"
        ticks = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()]
        for box_a, box_b in itertools.pairwise(sorted(ticks, key=lambda b: b.y0)):
            assert box_a.y1 <= box_b.y0 + 0.5, f"tick labels touch in {ax.get_title()!r}"
    boxes = [(ax, ax.title.get_window_extent(renderer)) for ax in visible if ax.get_title()]
    page = fig.bbox
    for ax, box in boxes:  # a title is read whole: not cut at the edge of the saved figure
        assert page.x0 - 1 <= box.x0, f"title {ax.get_title()!r} past the figure's left edge"
        assert box.x1 <= page.x1 + 1, f"title {ax.get_title()!r} past the figure's right edge"
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), (a.get_title(), b.get_title())
    panels_ = [ax.get_tightbbox(renderer) for ax in visible]
    for box_a, box_b in itertools.combinations(panels_, 2):
        assert not box_a.overlaps(box_b)


def test_axis_labels_never_print_empty_units():
    assert axis_label("MAE", "meV/atom") == "MAE (meV/atom)"
    assert axis_label("MAE", None) == "MAE"
    assert axis_label("MAE", "") == "MAE"


def test_a_far_reference_does_not_squeeze_the_entries():
    fig, (ax,) = panels(1)
    entries = [Entry("ours", 42.7, [44.3, 39.8, 48.6]), Entry("MEGNet-kgcnn", 28.76, kind="reference")]
    bars(ax, [*entries, Entry("Dummy", 323.8, kind="reference")], units="cm⁻¹", references=[Reference("RF", 54.3)])
    assert ax.get_xlim()[1] < 100  # set by the entries that matter, not by the dummy's 324
    assert "off the axis: Dummy 323.8" in ax.get_xlabel()  # the dummy is named with its value
    assert [t.get_text() for t in ax.get_yticklabels()] == ["MEGNet-kgcnn", "ours"]  # sorted, best first
    check_readable(fig, "cm⁻¹")
    plt.close(fig)


@pytest.mark.parametrize("units", ["log10 GPa", None])
def test_the_cv_and_matbench_report_figure_is_readable(units):
    tables = {
        "log10_K_VRH": {
            "megnet, extensive readout": _summary([0.051, 0.049, 0.055, 0.048, 0.052]),
            "descriptors RF": _summary([0.060, 0.058, 0.061, 0.057, 0.059]),
        },
        "exfoliation_en": {"hybrid recipe": _summary([22.7, 51.7, 44.4, 31.6, 40.1])},
    }
    reference = {
        "exfoliation_en": [{"algorithm": "MODNet", "mae_mean": 33.19}, {"algorithm": "Dummy", "mae_mean": 67.3}]
    }
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    fig = report_figure(
        tables, {"log10_K_VRH": units}, {"log10_K_VRH": ("megnet", y, y + rng.normal(0, 0.1, 50))}, reference
    )
    check_readable(fig, None)
    ax = fig.axes[0]
    if units:
        assert ax.get_xlabel() == f"MAE ({units})"
    plt.close(fig)


def test_a_parity_panel_of_a_long_model_name_keeps_its_title_inside_the_figure():
    """The parity panel names the model drawn: a learning-curve run's long name must not run off the figure."""
    rng = np.random.default_rng(0)
    y = rng.normal(1.5, 0.3, size=50)
    name = "finetuned_tensornet_matpes_clipped@0.25"
    tables = {"heat_capacity": {name: _summary([9.6, 9.1, 10.2, 9.9, 9.3])}}
    fig = report_figure(tables, {"heat_capacity": "J/K/mol"}, {"heat_capacity": (name, y, y + rng.normal(0, 0.1, 50))})
    check_readable(fig, "J/K/mol")
    plt.close(fig)


def test_a_report_of_thirty_models_keeps_its_labels_apart():
    """A study of thirty models (a whole accuracy benchmark): the panel grows with its rows, tick labels never
    touch, and a value label right of an outlying fold says it is the mean, not that fold's score."""
    rng = np.random.default_rng(1)
    rows = {f"model number {i}": _summary(list(5 + i + rng.uniform(0, 3, 5))) for i in range(30)}
    rows["outlier folds"] = _summary([1.0, 1.0, 1.0, 1.0, 40.0])
    fig = report_figure({"heat_capacity": rows}, {"heat_capacity": "J/K/mol"})
    check_readable(fig, None)
    assert "mean 8.8" in {t.get_text() for t in fig.axes[0].texts}
    plt.close(fig)


def test_value_labels_end_inside_narrow_panels():
    """Three narrow panels with long model names and a legend each (recipe_selection.png): the values 0.09534 and
    0.09696 ran across the spine under the legend."""
    fig, axes = panels(3, size=(5.2, 3.4))
    for ax in axes:
        entries = [Entry(f"hybrid_megnet_chgnet_noenergy_e{i}", 0.095 + 0.002 * i) for i in range(3)]
        bars(ax, [*entries, Entry("descriptors_rf", 0.1027, kind="baseline")], units="log10 GPa")
    check_readable(fig, "log10 GPa")
    plt.close(fig)


def test_figures_are_written_as_readable_png(tmp_path):
    fig, (ax,) = panels(1)
    bars(ax, [Entry("a", 1.0, [0.9, 1.1])], units="eV")
    path = save(fig, tmp_path / "f.png")
    width, height = Image.open(path).size
    assert width >= 600
    assert height >= 400


def test_a_legend_never_hides_a_bar():
    """A panel full of bars of similar length (no free corner for ``loc="best"``) keeps its legend off them."""
    fig, (ax,) = panels(1, size=(5.0, 3.0))
    entries = [Entry(f"model {i}", 1.0 + 0.02 * i, [0.95 + 0.02 * i, 1.05 + 0.02 * i], kind) for i, kind in
               enumerate(["ours", "baseline"] * 6)]  # fmt: skip
    bars(ax, entries, units="eV", references=[Reference("leaderboard", 0.5)])
    check_readable(fig, "eV")
    plt.close(fig)


def test_many_panels_wrap_into_rows_that_stay_readable():
    """Eight task panels (a study over every task) wrap into rows of at most three, not one strip 45 inches wide."""
    fig, axes = panels(8)
    assert len(axes) == 8
    rows = {round(ax.get_position().y0, 3) for ax in axes}
    assert len(rows) == 3
    assert fig.get_size_inches()[0] <= 3 * 5.6 + 1e-9
    plt.close(fig)


def test_learning_curves_over_training_size_are_readable():
    """A learning curve over the size of the training fold: labelled axes with units, one line per model."""
    fig, axes = panels(2)
    for ax, units in zip(axes, ("log10 GPa", "J/K/mol"), strict=True):
        curves = {"fine-tuned": ([25, 50, 100], [0.06, 0.045, 0.04]), "from scratch": ([25, 100], [0.08, 0.05])}
        learning_curves(ax, curves, quantity="test MAE", units=units, xlabel="% of each training fold")
    check_readable(fig, units=None)
    assert [ax.get_xlabel() for ax in axes] == ["% of each training fold"] * 2
    assert axes[1].get_ylabel() == "test MAE (J/K/mol)"
    assert [list(line.get_xdata()) for line in axes[0].get_lines()] == [[25, 50, 100], [25, 100]]
    plt.close(fig)


def test_a_learning_curve_marks_every_training_size_and_its_references():
    """One size run so far still reads as a curve over 25 / 50 / 100 %, and a model trained on everything is a
    labelled dashed line across the panel, in the legend."""
    fig, axes = panels(1)
    learning_curves(axes[0], {"fine-tuned": ([25], [0.047]), "fine-tuned, clipped": ([25], [0.046])},
                    quantity="test MAE", units="log10 GPa", xlabel="% of each training fold", xticks=[25, 50, 100],
                    references={"recipe, whole training fold": 0.037},
                    styles={"fine-tuned, clipped": {"color": "#0072B2", "mfc": "white", "marker": "s"}})  # fmt: skip
    ax = axes[0]
    plain, variant = (next(line for line in ax.get_lines() if line.get_label() == label)
                      for label in ("fine-tuned", "fine-tuned, clipped"))  # fmt: skip
    assert variant.get_color() == plain.get_color()
    assert variant.get_marker() == "s" != plain.get_marker()
    assert variant.get_markerfacecolor() == "white"
    assert list(ax.get_xticks()) == [25, 50, 100]
    low, high = ax.get_xlim()
    assert low < 25
    assert high > 100
    reference = [line for line in ax.get_lines() if line.get_label() == "recipe, whole training fold"]
    assert len(reference) == 1
    assert set(reference[0].get_ydata()) == {0.037}
    assert reference[0].get_linestyle() == "--"
    assert "recipe, whole training fold" in [t.get_text() for t in ax.get_legend().get_texts()]
    check_readable(fig, units=None)
    plt.close(fig)


def test_a_run_of_fewer_than_five_folds_says_so_on_its_bar():
    partial = {**_summary([0.05, 0.06]), "folds_done": 2}
    fig = report_figure({"t": {"whole": _summary([0.07] * 5), "early": partial}}, {"t": "eV"})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["early (2/5)", "whole"]
    plt.close(fig)


def test_learning_curves_draw_every_curve_when_there_are_more_than_colours():
    """An ensemble of 9 members: each member's curve is drawn (the colours repeat), none dropped."""
    _, (ax,) = panels(1)
    learning_curves(ax, {f"member {k}": ([1, 2], [1.0, 0.5 + k]) for k in range(9)})
    assert [line.get_label() for line in ax.get_lines()] == [f"member {k}" for k in range(9)]


def test_bars_name_an_entry_without_a_score_instead_of_failing():
    """A classifier's ROC-AUC is undefined on a fold of one class: a NaN mean is named under the axis, not drawn."""
    _, (ax,) = panels(1)
    bars(ax, [Entry("scored", 0.8, (0.7, float("nan"), 0.9)), Entry("unscored", float("nan"))], quantity="ROC-AUC",
         higher_is_better=True)  # fmt: skip
    assert [t.get_text() for t in ax.get_yticklabels()] == ["scored"]
    assert "no score: unscored" in ax.get_xlabel()


def test_a_parity_panel_of_a_diverged_fold_says_what_it_leaves_out():
    """A NaN or infinite prediction: the panel drew the finite pairs under an MAE that looked like the run's (the
    table said NaN), its limits ignored the predictions, and an infinite one failed set_xlim."""
    from matgl_hybrid.figures import parity

    fig, ax = plt.subplots()
    y_true = np.array([1.0, 2.0, 3.0, 4.0])
    parity(ax, y_true, np.array([1.5, np.nan, 9.0, np.inf]), quantity="K", units="GPa")
    assert ax.get_title() == "MAE 3.25 GPa of the finite; 2 of 4 not finite"
    assert ax.get_ylim()[1] > 9.0  # the finite predictions are inside the axes
    plt.close(fig)


def test_a_parity_panel_of_values_over_decades_uses_log_axes():
    """jdft2d's exfoliation energies run from 1 to 1600 meV/atom: on linear axes the bulk below 200 sat in a corner
    behind a few outliers. Values with a sign, or within two decades, keep linear axes."""
    from matgl_hybrid.figures import parity

    fig, (wide, narrow, signed) = plt.subplots(1, 3)
    y = np.array([2.0, 30.0, 80.0, 1600.0])
    parity(wide, y, y * 1.1, quantity="E", units="meV/atom")
    parity(narrow, np.array([20.0, 80.0, 1600.0]), np.array([25.0, 70.0, 1500.0]), quantity="E")
    parity(signed, np.array([-2.0, 30.0, 1600.0]), np.array([1.0, 35.0, 1500.0]), quantity="E")
    assert (wide.get_xscale(), wide.get_yscale()) == ("log", "log")
    low, high = wide.get_xlim()
    assert 0 < low < 2.0  # every point inside
    assert high > 1760.0
    assert narrow.get_xscale() == signed.get_xscale() == "linear"
    plt.close(fig)
