"""Descriptor speed: matminer's featurizers vs ``matgl_hybrid.descriptors.featurize`` for ``gong28``; ``chgnet``.

Measures ms/structure on the same real structures (default: the first 100 of alexandria_heat_capacity) for
matminer on 1 and 2 cores, ours on 1 and 2 cores with an empty cache, and ours from a filled cache; checks that
the values agree. Then the cost of the ``chgnet`` set (one CHGNet 0.3.0 pass per structure) on 1 and 2 cores, cold
and cached. Writes ``benchmarks/results/descriptor_speed.{md,json,png}``.

    python benchmarks/descriptor_speed.py [--n 100] [--data ../shared/data/alexandria_heat_capacity.json.gz]
    python benchmarks/descriptor_speed.py --report-only   # md and png from the json
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matminer.featurizers.base import MultipleFeaturizer
from matminer.featurizers.site import AverageBondAngle, AverageBondLength, CoordinationNumber
from matminer.featurizers.structure import (
    DensityFeatures,
    GlobalSymmetryFeatures,
    SiteStatsFingerprint,
    StructuralComplexity,
    StructuralHeterogeneity,
)
from pymatgen.core.local_env import VoronoiNN
from timing import featurize_runs, speed_runs, timed

from matgl_hybrid.data import load_records
from matgl_hybrid.figures import COLOURS, axis_label, panels, save
from matgl_hybrid.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def matminer_gong28(structures, n_jobs: int) -> np.ndarray:
    """The 28 values with matminer's own featurizers (MultipleFeaturizer, errors as NaN)."""
    featurizer = MultipleFeaturizer(
        [
            GlobalSymmetryFeatures(desired_features=["spacegroup_num", "crystal_system_int"]),
            StructuralComplexity(),
            StructuralHeterogeneity(stats=("maximum", "range", "mean", "avg_dev")),
            SiteStatsFingerprint(AverageBondLength(VoronoiNN())),
            SiteStatsFingerprint(AverageBondAngle(VoronoiNN())),
            SiteStatsFingerprint(CoordinationNumber(VoronoiNN())),
            # Two featurizers, as the bank's groups are: one DensityFeatures for all three would drop density and vpa
            # wherever the packing fraction raises (no atomic radius, e.g. for Xe).
            DensityFeatures(desired_features=["density", "vpa"]),
            DensityFeatures(desired_features=["packing fraction"]),
        ]
    )
    featurizer.set_n_jobs(n_jobs)
    rows = featurizer.featurize_many(structures, ignore_errors=True, pbar=False)
    lattice = [[*s.lattice.abc, *s.lattice.angles, len(s)] for s in structures]
    return np.array([[*r, *x] for r, x in zip(rows, lattice, strict=True)], dtype=float)


def write_report(summary: dict) -> list[str]:
    """``descriptor_speed.{md,png}`` from the measured ``summary`` (``descriptor_speed.json``); returns the lines."""
    n, mean_sites, identical_runs = summary["n_structures"], summary["mean_sites"], summary["runs_identical"]
    ms, chgnet_ms = summary["ms_per_structure"], summary["chgnet_ms_per_structure"]
    lines = [
        "# Descriptor speed: `gong28`, matminer vs matgl-hybrid",
        "",
        f"{n} structures of `{summary['data']}` (mean {mean_sites:.1f} sites), 2-core CI-class machine. "
        "Command: `python benchmarks/descriptor_speed.py`.",
        "",
        "| run | ms / structure | vs matminer 1 core |",
        "|---|---:|---:|",
        *(f"| {k} | {v:.1f} | {ms['matminer, 1 core'] / v:.1f}× |" for k, v in ms.items()),
        "",
        f"- Speed-up on one core, cold cache: **{summary['speedup_1_core']:.0f}×** (target ≥ 10×).",
        f"- Scaling from 1 to 2 cores: **{summary['scaling_2_cores']:.2f}×** with the worker processes running, "
        f"{summary['scaling_2_cores_incl_startup']:.2f}× including their start-up (about 2 s of imports, paid once "
        "per Python session; it matters only for small datasets).",
        f"- Cached second run vs cold: **{summary['cache_speedup']:.0f}×** faster (target ≥ 100×).",
        f"- All values agree with matminer (rtol 1e-6, or both NaN): **{summary['values_agree_with_matminer']}**;"
        f" all of our runs give identical values: **{identical_runs}**.",
        "",
        "## `chgnet` (CHGNet 0.3.0, energy and magnetic moments, crystal and atom features: 130 columns)",
        "",
        "The model is loaded and its values on the reference structures computed once per process (the first "
        "row includes that for the main process; the worker rows, for each worker).",
        "",
        "| run | ms / structure |",
        "|---|---:|",
        *(f"| {k} | {v:.1f} |" for k, v in chgnet_ms.items()),
        "",
        "![ms per structure](descriptor_speed.png)",
        "",
    ]
    atomic_write_text(RESULTS / "descriptor_speed.md", "\n".join(lines))
    fig, axes = panels(2, ncols=1, size=(9.0, 3.4))
    titles = (f"gong28 descriptors: {n} structures of {summary['data']}", "chgnet descriptors (CHGNet 0.3.0, CPU)")
    every = [*ms.values(), *chgnet_ms.values()]  # one scale for both panels: their bars compare by eye
    for ax, values, title in zip(axes, (ms, chgnet_ms), titles, strict=True):
        colours = [COLOURS["baseline"] if k.startswith("matminer") else COLOURS["ours"] for k in values]
        ax.barh(list(values), list(values.values()), color=colours)
        ax.set_xscale("log")
        ax.set_xlabel(axis_label("time per structure (log scale)", "ms"))
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlim(min(every) / 2, max(every) * 5)
        for i, v in enumerate(values.values()):
            ax.text(v, i, f" {v:.1f}", va="center", fontsize=8)
    save(fig, RESULTS / "descriptor_speed.png")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "alexandria_heat_capacity.json.gz"))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--report-only", action="store_true", help="rebuild the md and png from the json")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads((RESULTS / "descriptor_speed.json").read_text()))
        return
    warnings.filterwarnings("ignore")

    data = load_records(args.data, limit=args.n)
    structures = data.structures
    n = len(structures)
    mean_sites = float(np.mean([len(s) for s in structures]))
    print(f"{n} structures from {Path(args.data).name}, mean {mean_sites:.1f} sites")

    rows = {}
    reference, rows["matminer, 1 core"] = timed(lambda: matminer_gong28(structures, 1))
    print(f"matminer 1 core: {rows['matminer, 1 core'] / n * 1000:.0f} ms/structure")
    _, rows["matminer, 2 cores"] = timed(lambda: matminer_gong28(structures, 2))
    seconds, ours = featurize_runs(structures, "gong28", speed_runs("ours"))
    rows.update(seconds)

    # The chgnet set: one CHGNet 0.3.0 pass per structure; the first run also loads the model in this process.
    chgnet_seconds, _ = featurize_runs(structures, "chgnet", speed_runs("chgnet", loads_model=True))
    chgnet_ms = {k: v / n * 1000 for k, v in chgnet_seconds.items()}

    got = ours["ours, 1 core, cold cache"]
    agree = np.isclose(got, reference, rtol=1e-6, atol=1e-12) | (np.isnan(got) & np.isnan(reference))
    identical_runs = all(np.array_equal(v, got, equal_nan=True) for v in ours.values())
    ms = {k: v / n * 1000 for k, v in rows.items()}
    summary = {
        "data": Path(args.data).name,
        "n_structures": n,
        "mean_sites": mean_sites,
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "ms_per_structure": ms,
        "speedup_1_core": ms["matminer, 1 core"] / ms["ours, 1 core, cold cache"],
        "scaling_2_cores": ms["ours, 1 core, cold cache"] / ms["ours, 2 cores, cold cache, workers running"],
        "scaling_2_cores_incl_startup": ms["ours, 1 core, cold cache"]
        / ms["ours, 2 cores, cold cache, incl. worker start-up"],
        "cache_speedup": ms["ours, 1 core, cold cache"] / ms["ours, cached (2nd run)"],
        "values_agree_with_matminer": bool(agree.all()),
        "runs_identical": identical_runs,
        "chgnet_ms_per_structure": chgnet_ms,
        "device": "cpu",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "descriptor_speed.json", json.dumps(summary, indent=1) + "\n")
    write_report(summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
