"""StructuralHeterogeneity on structures with a fractional coordinate outside [0, 1): matminer vs ours.

For every such structure of the four shared datasets, compares matminer's StructuralHeterogeneity on the
structure as written and ours (``featurize(…, "gong28")``) with matminer's on the same sites wrapped into the cell
(the reference: the same crystal, written in the cell). Writes ``benchmarks/results/heterogeneity_wrap.{md,json,png}``.

    python benchmarks/heterogeneity_wrap.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matminer.featurizers.structure import StructuralHeterogeneity
from pymatgen.core import Structure
from tqdm import tqdm

from matgl_hybrid.data import load_records
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.descriptors.groups import GROUPS, HETEROGENEITY_STATS
from matgl_hybrid.figures import COLOURS, panels, save
from matgl_hybrid.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = (
    "alexandria_heat_capacity",
    "mp_binary_elasticity",
    "de_jong_2015_elasticity",
    "flla_2015_formation_energy",
)
OUTCOMES = ("matminer raises", "matminer: wrong cells", "matminer: same as wrapped")


def matminer_heterogeneity(structure: Structure) -> np.ndarray | None:
    """matminer's values, or None where it raises."""
    try:
        return np.array(StructuralHeterogeneity(weight="area", stats=HETEROGENEITY_STATS).featurize(structure))
    except Exception:  # matminer raises anything; the outcome is what we count
        return None


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """The test suite's agreement criterion (rtol 1e-6; atol 1e-12 for features that are zero in exact arithmetic)."""
    return bool(np.allclose(a, b, rtol=1e-6, atol=1e-12))


def study(path: Path) -> dict:
    """Outcome counts and our agreement with the wrapped reference, over one dataset's out-of-cell structures."""
    data = load_records(path)
    picked = [i for i, s in enumerate(data.structures) if ((s.frac_coords < 0) | (s.frac_coords >= 1)).any()]
    counts = dict.fromkeys(OUTCOMES, 0)
    ours_agree, worst = 0, []
    if picked:
        structures = [data.structures[i] for i in picked]
        ours = featurize(structures, "gong28", progress=False)[list(GROUPS["heterogeneity"].labels)].to_numpy()
        for s, mine, sid in tqdm(zip(structures, ours, [data.ids[i] for i in picked], strict=True), total=len(picked)):
            reference = matminer_heterogeneity(Structure.from_sites([site.to_unit_cell() for site in s]))
            as_written = matminer_heterogeneity(s)
            if as_written is None:
                counts["matminer raises"] += 1
            elif reference is not None and close(as_written, reference):
                counts["matminer: same as wrapped"] += 1
            else:
                counts["matminer: wrong cells"] += 1
            if reference is not None and close(mine, reference):
                ours_agree += 1
            else:
                gap = "matminer raises" if reference is None else f"max |diff| {np.abs(mine - reference).max():.1e}"
                worst.append(f"{sid} ({gap})")
    return {
        "n_structures": len(data.structures),
        "n_out_of_cell": len(picked),
        "matminer": counts,
        "ours_equal_wrapped_reference": ours_agree,
        "ours_not_equal": worst,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    results = {name: study(args.data_dir / f"{name}.json.gz") for name in DATASETS}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "heterogeneity_wrap.json", json.dumps(results, indent=1) + "\n")

    lines = [
        "# StructuralHeterogeneity on structures written with coordinates outside the unit cell",
        "",
        "Reference: matminer on the same sites wrapped into [0, 1). Agreement: rtol 1e-6, atol 1e-12. "
        "Command: `python benchmarks/heterogeneity_wrap.py`.",
        "",
        "| dataset | structures | outside [0, 1) | " + " | ".join(OUTCOMES) + " | ours = reference |",
        "|---|---:|---:|" + "---:|" * (len(OUTCOMES) + 1),
    ]
    for name, r in results.items():
        share = r["n_out_of_cell"] / r["n_structures"]
        cells = " | ".join(str(r["matminer"][o]) for o in OUTCOMES)
        lines.append(
            f"| {name} | {r['n_structures']} | {r['n_out_of_cell']} ({share:.1%}) | {cells} | "
            f"{r['ours_equal_wrapped_reference']} |"
        )
    misses = [f"{name}: {', '.join(r['ours_not_equal'])}" for name, r in results.items() if r["ours_not_equal"]]
    lines += ["", f"Ours not equal to the reference: {'; '.join(misses) or 'none'}.", ""]
    lines += ["![matminer outcomes and ours](heterogeneity_wrap.png)", ""]
    atomic_write_text(RESULTS / "heterogeneity_wrap.md", "\n".join(lines))

    fig, (ax,) = panels(1, size=(7.0, 3.6))
    names = [n for n, r in results.items() if r["n_out_of_cell"]]
    bottom = np.zeros(len(names))
    for colour, outcome in zip((COLOURS["baseline"], *COLOURS["reference"]), OUTCOMES, strict=False):
        values = np.array([results[n]["matminer"][outcome] for n in names])
        ax.bar(names, values, bottom=bottom, label=outcome, color=colour)
        bottom += values
    ax.plot(names, [results[n]["ours_equal_wrapped_reference"] for n in names], "k_", ms=40, mew=2, label="ours = ref.")
    ax.set_ylabel("out-of-cell structures")
    ax.set_xlabel("dataset")
    ax.set_title("matminer StructuralHeterogeneity on out-of-cell input", fontsize=10)
    ax.legend(fontsize=8, markerscale=0.3, loc="upper left")
    save(fig, RESULTS / "heterogeneity_wrap.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
