"""The main job of ``matgl-hybrid demo``: plain MEGNet against the recommended hybrid on the embedded de Jong set.

On 2 CPU cores it takes about 2 minutes (1 min 56 s measured, the descriptor cache empty): featurize the 1181
structures of de Jong et al. (2015), hold out a seeded 20 % test split, train MEGNet as MatGL ships it and the
hybrid of :class:`~matgl_hybrid.training.TrainSpec`'s defaults (the recommended recipe) with the same short budget,
score both on the test split, write a table, a parity plot and the trained hybrid, and predict three textbook
crystals with a shipped checkpoint.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from matgl_hybrid import data
from matgl_hybrid.checkpoint import check_model_dir, is_saved_model, load_checkpoint
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.figures import panels, parity, save
from matgl_hybrid.files import atomic_write_text, check_output_dir, read_json
from matgl_hybrid.pretrained import resolve
from matgl_hybrid.training import TrainedModel, TrainSpec, train

#: The shipped checkpoint the demo predicts with, and the crystals it predicts (lattice constants in Å, room
#: temperature) with their measured bulk moduli (GPa, rounded; for orientation only).
DEMO_CHECKPOINT = "hybrid-megnet-log10-bulk-modulus"
EXAMPLES: dict[str, tuple[Structure, float]] = {
    "NaCl (rock salt)": (
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        24.0,
    ),
    "MgO (rock salt)": (
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        160.0,
    ),
    "GaAs (zinc blende)": (
        Structure.from_spacegroup("F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        75.0,
    ),
}
#: The files the demo writes into its folder (only these; anything else there is left alone).
TABLE, PLOT, MODEL = "demo_results.md", "demo_parity.png", "hybrid_model"


@dataclass
class DemoRow:
    """One model of the demo: its held-out test MAE (log10 GPa), MAE/MAD, training seconds and epochs."""

    model: str
    mae: float
    mae_over_mad: float
    seconds: float
    epochs: int
    predictions: np.ndarray = field(repr=False)


@dataclass
class DemoResult:
    """What :func:`run_demo` measured and wrote.

    Attributes:
        rows: plain MEGNet, then the hybrid.
        y_test: the test split's log10 K_VRH (log10 GPa), shape (n_test,).
        featurize_seconds: featurization of the whole set into the cache (NaN without a cache).
        examples: ``(name, predicted K in GPa, measured K in GPa)`` of the shipped checkpoint.
        out: the folder written.
    """

    rows: list[DemoRow]
    y_test: np.ndarray
    featurize_seconds: float
    examples: list[tuple[str, float, float]]
    out: Path

    @property
    def verdict(self) -> str:
        """One sentence on what the table shows, from the measured numbers."""
        plain, hybrid = self.rows
        change = 100 * (1 - hybrid.mae / plain.mae)
        if change > 0:
            return (
                f"With the same data and training budget, fusing descriptors and CHGNet features into MEGNet cut the "
                f"test error by {change:.0f} % ({plain.mae:.3f} → {hybrid.mae:.3f} log10 GPa)."
            )
        return (
            f"On this split and budget the hybrid did not beat plain MEGNet ({hybrid.mae:.3f} vs {plain.mae:.3f} "
            "log10 GPa); see benchmarks/results for the 5-fold comparison."
        )

    def table(self) -> str:
        """The table as markdown."""
        lines = [
            "| model | test MAE (log10 GPa) | MAE/MAD | training time (s) | epochs |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.model} | {r.mae:.4f} | {r.mae_over_mad:.3f} | {r.seconds:.0f} | {r.epochs} |" for r in self.rows
        ]
        return "\n".join(lines)


def demo_specs(max_epochs: int, n_jobs: int) -> dict[str, TrainSpec]:
    """The two models of the demo: MEGNet as MatGL ships it, and the recommended hybrid (``TrainSpec()``'s
    defaults), both with ``max_epochs`` and the same learning rate, batch size and early stopping; both accept every
    element of MatGL's default set (the test split holds elements that the training split may lack)."""
    recipe = TrainSpec(max_epochs=max_epochs, n_jobs=n_jobs, element_types="all")
    return {
        "MEGNet (as MatGL ships it)": replace(recipe, readout="native", descriptor_set=None),
        f"hybrid MEGNet + {recipe.descriptor_set}": recipe,
    }


def predict_examples(cache_dir: str | Path | None = None) -> list[tuple[str, float, float]]:
    """Predict :data:`EXAMPLES` with the shipped :data:`DEMO_CHECKPOINT`: ``(name, K in GPa, measured K in GPa)``."""
    model = load_checkpoint(resolve(DEMO_CHECKPOINT))
    names = list(EXAMPLES)
    log10_k = model.predict([EXAMPLES[n][0] for n in names], cache_dir=cache_dir, ids=names)
    return [(n, float(10**p), EXAMPLES[n][1]) for n, p in zip(names, log10_k, strict=True)]


def run_demo(
    out: str | Path = "demo",
    *,
    max_epochs: int = 10,
    n_structures: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    n_jobs: int = -1,
    cache_dir: str | Path | None = None,
    log: Callable[[str], Any] = print,
) -> DemoResult:
    """Train and compare plain MEGNet and the recommended hybrid on the embedded de Jong set (log10 K_VRH).

    Args:
        out: folder to write :data:`TABLE`, :data:`PLOT` and the trained hybrid (:data:`MODEL`); anything else in it
            is left alone, and what an earlier demo wrote there is replaced (:func:`check_demo_folder`).
        max_epochs: training budget of each model (early stopping may end it sooner).
        n_structures: use only the first ``n_structures`` of the set (at least 10), for a quick try (None: all 1181).
        test_fraction, seed: the held-out test split (seeded), the same for both models.
        n_jobs: descriptor workers (-1: all cores).
        cache_dir: descriptor cache (None: none; the second run of a cached demo skips featurization).
        log: where progress lines go.
    """
    if n_structures is not None and n_structures < 10:  # a test split of 2 (the MAD of one value is 0), training
        raise ValueError(f"the demo needs at least 10 structures, got {n_structures}")
    out = check_output_dir(out)
    check_demo_folder(out)
    dataset = data.log10_targets(data.load_demo("K_VRH"))
    if n_structures is not None:
        dataset = dataset.subset(range(min(n_structures, len(dataset))))
    specs = demo_specs(max_epochs, n_jobs)
    recipe = list(specs.values())[-1]
    log(f"de Jong et al. 2015: {len(dataset)} structures, target log10 K_VRH (log10 GPa)")
    featurize_seconds = float("nan")  # without a cache, training featurizes (a first pass here would be wasted)
    if cache_dir is not None:
        start = time.perf_counter()
        featurize(dataset.structures, recipe.descriptor_set, n_jobs=n_jobs, cache_dir=cache_dir, ids=dataset.ids)
        featurize_seconds = time.perf_counter() - start
        log(f"featurized {recipe.descriptor_set} in {featurize_seconds:.0f} s (kept in the cache {cache_dir})")

    rows, trained_hybrid = [], None
    for name, spec in specs.items():
        log(f"training {name}: at most {spec.max_epochs} epochs")
        trained = train(dataset, spec, test_fraction=test_fraction, test_seed=seed, cache_dir=cache_dir,
                        target_units=data.target_units(dataset.target_name))  # fmt: skip
        test = trained.score_test()
        y = trained.test.targets
        member = trained.record["members"][0]
        rows.append(
            DemoRow(
                name,
                test["mae"],
                test["mae"] / mad if (mad := float(np.mean(np.abs(y - y.mean())))) > 0 else float("nan"),
                member["seconds"],
                member["epochs_run"],
                np.asarray(test["predictions"]),
            )
        )
        trained_hybrid = trained
    source = {"data": "embedded de Jong et al. 2015 set", "target": "K_VRH", "target_transform": "log10"}
    words = ["matgl-hybrid", "demo", "--out", str(out), "--max-epochs", str(max_epochs), "--seed", str(seed)]
    if n_structures is not None:
        words += ["--n-structures", str(n_structures)]
    command = shlex.join(words)  # a folder with spaces in its name reruns too
    trained_hybrid.save(out / MODEL, source=source, command=command, title="matgl-hybrid demo: hybrid MEGNet")
    log(f"predicting {len(EXAMPLES)} crystals with the shipped checkpoint {DEMO_CHECKPOINT}")
    result = DemoResult(rows, trained_hybrid.test.targets, featurize_seconds, predict_examples(cache_dir), out)
    _write(result, len(dataset), command)
    return result


def check_demo_folder(out: Path) -> None:
    """Before any work: the demo's files in ``out`` (:data:`TABLE`, :data:`PLOT`, :data:`MODEL`) are new, or an
    earlier demo's, which it replaces; a file or model of the same name that no demo wrote is refused."""
    table, model = out / TABLE, out / MODEL
    ours = table.is_file() and table.read_text(encoding="utf-8", errors="replace").startswith(HEADER)
    theirs = [name for name in (TABLE, PLOT) if (out / name).exists() and not ours]
    if is_saved_model(model):
        record = model / "training.json"
        command = read_json(record).get("command") if record.is_file() else None
        if not str(command).startswith("matgl-hybrid demo"):
            theirs.append(MODEL)
    if theirs:
        raise FileExistsError(f"{out} holds {', '.join(theirs)}, which no earlier demo wrote: give the demo another "
                              "--out (nothing was changed)")  # fmt: skip
    check_model_dir(model, writes=TrainedModel.FILES)


#: The first line of :data:`TABLE`, by which a later demo knows the folder's files as a demo's.
HEADER = "# matgl-hybrid demo: plain MEGNet vs the recommended hybrid"


def _write(result: DemoResult, n_structures: int, command: str) -> None:
    """The table (:data:`TABLE`) and the parity plot of both models (:data:`PLOT`)."""
    lines = [
        HEADER,
        "",
        f"de Jong et al. 2015, {n_structures} structures, log10 K_VRH; held-out test split of "
        f"{len(result.y_test)} structures. Command: `{command}`.",
        "",
        result.table(),
        "",
        result.verdict,
        "",
        f"![parity]({PLOT})",
        "",
    ]
    atomic_write_text(result.out / TABLE, "\n".join(lines))
    fig, axes = panels(len(result.rows), size=(4.8, 4.6))
    for ax, row in zip(axes, result.rows, strict=True):
        parity(
            ax, result.y_test, row.predictions, quantity="log10 K_VRH", units="log10 GPa", title=f"{row.model}, test"
        )
    save(fig, result.out / PLOT)
