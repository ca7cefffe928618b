"""Probe study: what do MEGNet embeddings know about periodicity? (Gong et al. 2023, on mp_binary_elasticity)

Trains MEGNet on log10 bulk modulus of ``mp_binary_elasticity`` (90 % of the structures, seeded) with several
readouts and cutoffs and a hybrid, freezes them, and probes every ``gong28`` descriptor from each graph-level
embedding (ridge and MLP, 5-fold held-out R², accuracy for the crystal system); an untrained MEGNet is the
baseline. Then measures the hybrid's descriptor importance (permutation on the held-out 10 %). Writes
``benchmarks/results/probe.{md,csv,png}`` and ``probe_importance.{csv,png}``.

    python benchmarks/probe_study.py [--limit N] [--max-epochs 40] [--accelerator auto]

The work is resumable per model (``benchmarks/results/probe_work/``) and splits in two stages:
``--stage train --only mean5,sum5`` trains and embeds some models (several such processes can share one GPU),
``--stage probe`` fits the probes on the stored embeddings and writes the report; ``--stage figures`` redraws
the two PNGs from the committed results.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from matgl_hybrid.data import load_records, log10_targets
from matgl_hybrid.data.splits import split_indices
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.markdown import markdown_table
from matgl_hybrid.models import HybridModel
from matgl_hybrid.probe import descriptor_importance, embed, plot_importance, plot_probe, probe, probe_matrix
from matgl_hybrid.training import TrainSpec, device_name, fit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data" / "mp_binary_elasticity.json.gz"

#: key -> (label, readout, cutoff Å, descriptors); the embedding probed is the readout's vector (+ MEGNet's state).
MODELS = {
    "mean5": ("mean (5 Å)", "mean", 5.0, None),
    "sum5": ("sum (5 Å)", "sum", 5.0, None),
    "extensive5": ("extensive (5 Å)", "extensive", 5.0, None),
    "native5": ("native Set2Set (5 Å)", "native", 5.0, None),
    "mean7": ("mean (7 Å)", "mean", 7.0, None),
    "hybrid5": ("hybrid extensive+gong28 (5 Å)", "extensive", 5.0, "gong28"),
}
UNTRAINED = "untrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N structures only (a quick check)")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cache-dir", type=Path, default=None, help="descriptor cache (default: none)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stage", choices=["train", "probe", "figures", "all"], default="all",
                        help="figures: redraw the PNGs from the committed csv and json files (nothing trained)")
    parser.add_argument("--only", default=",".join([UNTRAINED, *MODELS]), help="models of the train stage")
    args = parser.parse_args()
    if args.stage == "figures":
        draw(args.out)
        return
    warnings.filterwarnings("ignore")
    start = time.perf_counter()

    data = load_records(args.data, "bulk_modulus_vrh", skip_invalid=True, limit=args.limit)
    data = log10_targets(data)
    work = args.out / "probe_work"  # per-model embeddings and records: a rerun skips finished models
    work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("train", "all"):
        for key in args.only.split(","):
            train_and_embed(key, data, work, args)
    if args.stage in ("probe", "all"):
        write_study(data, work, args, time.perf_counter() - start)


def draw(out: Path) -> None:
    """``probe.png`` and ``probe_importance.png`` from the written ``probe.csv``, ``probe_importance.csv`` and
    ``probe_study.json`` (the importance's baseline is the hybrid's held-out MAE: same model, same held-out 10 %)."""
    table = pd.read_csv(out / "probe.csv")
    plot_probe(table, out / "probe.png", "gong28 descriptors probed from MEGNet embeddings (mp_binary_elasticity)")
    hybrid_label = next(m[0] for m in MODELS.values() if m[3])
    importance = pd.read_csv(out / "probe_importance.csv")
    models = json.loads((out / "probe_study.json").read_text())["models"]
    importance.attrs["baseline_mae"] = models[hybrid_label]["test_mae_log10_GPa"]
    title = f"{hybrid_label}: descriptor importance"
    plot_importance(importance, out / "probe_importance.png", title, units="log10 GPa")


def train_and_embed(key: str, data, work: Path, args: argparse.Namespace) -> None:
    """Train model ``key`` on 90 % (seeded), store its held-out MAE and the embeddings of all structures."""
    done = work / f"{key}.npz"
    if done.exists():
        return
    if key == UNTRAINED:
        torch.manual_seed(0)
        untrained = HybridModel(backbone="megnet", readout="mean", cutoff=5.0)
        np.savez(done, graph=embed(untrained, data.structures, data.ids).astype(np.float32))
        return
    label, readout, cutoff, descriptor_set = MODELS[key]
    train_idx, test_idx = split_indices(len(data), 0.1, seed=0)
    train, test = data.subset(train_idx), data.subset(test_idx)
    spec = TrainSpec(
        readout=readout,
        cutoff=cutoff,
        descriptor_set=descriptor_set,
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        patience=10,
        lr=2e-3,
        element_types="all",
        accelerator=args.accelerator,
        progress=False,
        n_jobs=-1,
        clip_descriptors=False,  # as the committed probe trained (before clipping became the default)
    )
    result = fit(train, spec=spec, cache_dir=args.cache_dir)
    model = result.model
    predicted = model.predict(test.structures, cache_dir=args.cache_dir)
    record = {
        "test_mae_log10_GPa": float(np.mean(np.abs(predicted - test.targets))),
        "best_epoch": result.best_epoch,
        "seconds": result.seconds,
        "device": device_name(args.accelerator),
    }
    taps = {"graph": embed(model, data.structures, data.ids, cache_dir=args.cache_dir)}
    if descriptor_set:
        taps["fused"] = embed(model, data.structures, data.ids, tap="fused", cache_dir=args.cache_dir)
        importance = descriptor_importance(model, test.structures, test.targets, test.ids, args.cache_dir)
        atomic_write_text(work / f"{key}_importance.csv", importance.to_csv(index=False))
    atomic_write_text(work / f"{key}.json", json.dumps(record))
    np.savez(done, **{k: v.astype(np.float32) for k, v in taps.items()})
    print(f"{label}: held-out MAE {record['test_mae_log10_GPa']:.4f} log10 GPa", flush=True)


def write_study(data, work: Path, args: argparse.Namespace, seconds: float) -> None:
    """Probe every stored embedding for every ``gong28`` descriptor; write probe.{md,csv,png} and the importance."""
    missing = [k for k in [UNTRAINED, *MODELS] if not (work / f"{k}.npz").exists()]
    if missing:
        raise SystemExit(f"models not trained yet: {missing}; run --stage train first")
    descriptors = featurize(data.structures, "gong28", n_jobs=-1, cache_dir=args.cache_dir, ids=data.ids)
    embeddings = {"untrained mean (5 Å)": np.load(work / f"{UNTRAINED}.npz")["graph"]}
    records = {}
    for key, (label, *_) in MODELS.items():
        records[label] = json.loads((work / f"{key}.json").read_text())
        taps = np.load(work / f"{key}.npz")
        embeddings[label] = taps["graph"]
        if "fused" in taps:
            embeddings[label.replace("hybrid", "hybrid fused")] = taps["fused"]
    hybrid_key = next(k for k, m in MODELS.items() if m[3])
    hybrid_label = MODELS[hybrid_key][0]
    importance = pd.read_csv(work / f"{hybrid_key}_importance.csv")
    atomic_write_text(args.out / "probe_importance.csv", importance.to_csv(index=False))

    # The probe fits are the slow part: reused while no embedding file is newer than them.
    table_file = work / "probe.csv"
    newest = max(f.stat().st_mtime for f in work.glob("*.npz"))
    table = pd.read_csv(table_file) if table_file.exists() and table_file.stat().st_mtime > newest else None
    if table is None or set(table["embedding"]) != set(embeddings):
        table = probe(embeddings, descriptors, n_jobs=-1)
        atomic_write_text(table_file, table.to_csv(index=False))
    atomic_write_text(args.out / "probe.csv", table.to_csv(index=False))
    summary = {"n_structures": len(data), "max_epochs": args.max_epochs, "models": records, "seconds": seconds}
    atomic_write_text(args.out / "probe_study.json", json.dumps(summary, indent=1) + "\n")
    draw(args.out)

    matrix = probe_matrix(table)
    plain = [c for c in matrix.columns if "hybrid" not in c]
    poor = [d for d in matrix.index if matrix.loc[d, plain].max() < 0.5]
    lines = [
        "# Probe study: what do MEGNet embeddings know about periodicity?",
        "",
        f"`{args.data.name}`: {len(data)} binaries; MEGNet trained on log10 bulk modulus (90 %, at most "
        f"{args.max_epochs} epochs, batch {args.batch_size}, early stopping), embeddings of all structures frozen "
        "and probed. Command: `python benchmarks/probe_study.py`.",
        "",
        "## Models",
        "",
        markdown_table(_frame(records), "{:.4g}"),
        "## Held-out R² of each descriptor (best of ridge / MLP; accuracy for crystal_system_int)",
        "",
        markdown_table(matrix, "{:.2f}"),
        "![probe](probe.png)",
        "",
        f"Descriptors no plain GNN embedding recovers (R² < 0.5): {', '.join(poor) or 'none'}.",
        "",
        f"## Descriptor importance in the hybrid (held-out MAE {records[hybrid_label]['test_mae_log10_GPa']:.4f} "
        "log10 GPa; MAE increase when one descriptor is permuted)",
        "",
        markdown_table(importance.set_index("descriptor").head(12), "{:.4f}"),
        "The probe-poor descriptors in the hybrid:",
        "",
        markdown_table(importance.set_index("descriptor").loc[poor], "{:.4f}"),
        "![importance](probe_importance.png)",
        "",
        *findings(matrix, importance, poor),
    ]
    atomic_write_text(args.out / "probe.md", "\n".join(lines))
    print("\n".join(lines))


def findings(matrix: pd.DataFrame, importance: pd.DataFrame, poor: list[str]) -> list[str]:
    """The study's conclusions, each computed from the probe matrix, and their agreement with Gong et al. (2023)."""
    r2 = {label: matrix[label] for label in matrix.columns}
    natoms = {k: r2[MODELS[k][0]]["natoms"] for k in ("mean5", "native5", "sum5", "extensive5")}
    plain = [MODELS[k][0] for k in ("mean5", "sum5", "extensive5", "native5", "mean7")]
    periodic = ["spacegroup_num", "crystal_system_int", "alpha", "beta", "gamma"]
    best_periodic = {d: matrix.loc[d, plain].max() for d in periodic}
    cutoff_gain = float((r2[MODELS["mean7"][0]] - r2[MODELS["mean5"][0]]).median())
    lattice = {d: (r2[MODELS["mean5"][0]][d], r2[MODELS["sum5"][0]][d]) for d in ("a", "b", "c")}
    local = ["mean Average bond length", "density", "vpa"]
    top = importance.head(3)["descriptor"].tolist()
    return [
        "## Findings",
        "",
        f"- **Readout.** The number of atoms in the cell is invisible to intensive readouts (R² {natoms['mean5']:.2f} "
        f"mean, {natoms['native5']:.2f} MatGL's Set2Set) and exact from extensive ones ({natoms['sum5']:.2f} sum, "
        f"{natoms['extensive5']:.2f} mean ⊕ sum ⊕ log n). The lattice lengths follow the same pattern (a, b, c: "
        + ", ".join(f"{m:.2f} → {x:.2f}" for m, x in lattice.values())
        + " from mean to sum): the readout is one cause of the missing periodicity knowledge.",
        "- **Symmetry and angles.** No plain embedding recovers them (best R² / accuracy: "
        + ", ".join(f"{d} {v:.2f}" for d, v in best_periodic.items())
        + "): crystal system, space group and cell angles are not encoded by this local message-passing network, "
        "whatever the readout.",
        f"- **Cutoff.** Going from 5 Å to 7 Å with the mean readout changes the median R² over the 28 descriptors by "
        f"{cutoff_gain:+.2f}: a larger cutoff alone does not supply the long-range (periodicity) information the paper "
        "finds missing; it needs to reach the readout in another way (here: the descriptors).",
        "- **What GNNs do capture.** Local, intensive quantities are recovered well from every embedding (R² "
        + ", ".join(f"{d} {matrix.loc[d, plain].max():.2f}" for d in local)
        + "; untrained: "
        + ", ".join(f"{matrix.loc[d, 'untrained mean (5 Å)']:.2f}" for d in local)
        + ").",
        f"- **Mechanism.** The hybrid leans hardest on {', '.join(top)} (largest MAE increase when permuted): "
        "descriptors that summarise bond lengths and volume exactly, which the GNN encodes only approximately; "
        f"the {len(poor)} probe-poor descriptors matter far less for the bulk modulus (second table).",
        "",
        verdict(natoms["mean5"] < 0.5 < 0.9 < natoms["sum5"], max(best_periodic.values()) < 0.5, cutoff_gain > 0.05),
        "",
    ]


def verdict(readout_blind: bool, symmetry_missing: bool, cutoff_helps: bool) -> str:
    """Agreement with Gong et al. (2023), stated from the three tests of :func:`findings`."""
    said = {
        "the number of atoms is lost by mean pooling and kept by sum pooling": readout_blind,
        "symmetry and cell angles are missing from every plain embedding": symmetry_missing,
        "a longer cutoff brings periodicity information in": cutoff_helps,
    }
    agree = [k for k, v in said.items() if v]
    disagree = [k for k, v in said.items() if not v]
    text = "**Agreement with the paper.** " + (f"Agrees: {'; '.join(agree)}." if agree else "")
    return text + (f" Not reproduced here: {'; '.join(disagree)}." if disagree else "")


def _frame(records: dict) -> pd.DataFrame:
    frame = pd.DataFrame(records).T
    frame.index.name = "model"
    return frame


if __name__ == "__main__":
    main()
