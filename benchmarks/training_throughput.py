"""Training throughput: plain MatGL MEGNet vs hybrid MEGNet (gong28, concat), same data and batch size.

Graphs and descriptors are computed once before timing (as ``fit`` does: they are cached per dataset), then each
model trains for the same number of epochs with MatGL's ``ModelLightningModule``; runs alternate
(plain, hybrid, plain, hybrid, …) and the median structures/s is reported. Writes
``benchmarks/results/training_throughput.{md,json,png}``.

    python benchmarks/training_throughput.py [--n 400] [--epochs 4] [--repeats 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import torch
from matgl.ext.pymatgen import get_element_list
from matgl.models import MEGNet
from matgl.utils.training import ModelLightningModule

from matgl_hybrid.data import load_records
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.figures import Entry, bars, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.models import HybridModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def structures_per_second(model, dataset, data_mean: float, data_std: float, epochs: int, batch_size: int) -> float:
    """Train ``model`` for ``epochs`` epochs (no validation) and return structures/s."""
    L.seed_everything(0, verbose=False)
    loader = make_loader(dataset, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0), drop_last=True)
    module = ModelLightningModule(model=model, data_mean=data_mean, data_std=data_std, loss="l1_loss", lr=1e-3)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    start = time.perf_counter()
    trainer.fit(module, loader)
    seconds = time.perf_counter() - start
    return len(loader) * batch_size * epochs / seconds


def n_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters (the hybrid's backbone has no MatGL readout and head)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "alexandria_heat_capacity.json.gz"))
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    data = load_records(args.data, "heat_capacity", limit=args.n)
    elements = get_element_list(data.structures)
    cutoff = 5.0  # TrainSpec's default
    frame = featurize(data.structures, "gong28", n_jobs=-1, progress=False)
    transform = DescriptorTransform().fit(frame)
    plain_set = build_dataset(data.structures, elements, cutoff, data.ids, None, data.targets)
    raw = frame.to_numpy(dtype=float)  # the model imputes and standardizes them itself (DescriptorScaler)
    hybrid_set = build_dataset(data.structures, elements, cutoff, data.ids, raw, data.targets)
    mean, std = float(data.targets.mean()), float(data.targets.std())

    def plain():
        return MEGNet(element_types=elements, cutoff=cutoff)

    def hybrid():
        return HybridModel(
            backbone="megnet",
            element_types=elements,
            cutoff=cutoff,
            readout="extensive",
            descriptor_set="gong28",
            descriptor_version=get_descriptor_set("gong28").version,
            descriptor_transform=transform.to_dict(),
            target_mean=[mean],
            target_std=[std],
        )

    runs: dict[str, list[float]] = {"plain MEGNet (Set2Set)": [], "hybrid MEGNet (extensive + gong28, concat)": []}
    for repeat in range(args.repeats):
        for (label, values), (make, dataset, m, s) in zip(
            runs.items(), [(plain, plain_set, mean, std), (hybrid, hybrid_set, 0.0, 1.0)], strict=True
        ):
            torch.manual_seed(repeat)
            values.append(structures_per_second(make(), dataset, m, s, args.epochs, args.batch_size))
            print(f"repeat {repeat + 1}: {label}: {values[-1]:.1f} structures/s")

    medians = {k: statistics.median(v) for k, v in runs.items()}
    plain_label, hybrid_label = list(runs)
    ratio = medians[hybrid_label] / medians[plain_label]
    summary = {
        "data": Path(args.data).name,
        "n_structures": len(data),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "device": f"cpu ({torch.get_num_threads()} torch threads)",
        "parameters": {plain_label: n_parameters(plain()), hybrid_label: n_parameters(hybrid())},
        "structures_per_second": runs,
        "median": medians,
        "ratio_hybrid_over_plain": ratio,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "training_throughput.json", json.dumps(summary, indent=1) + "\n")
    lines = [
        "# Training throughput: hybrid vs plain MEGNet",
        "",
        f"{len(data)} structures of `{summary['data']}`, batch size {args.batch_size}, {args.epochs} epochs per run, "
        f"{args.repeats} alternating runs per model, CPU ({summary['torch_threads']} torch threads). Graphs and "
        "descriptors are built once before timing. Command: `python benchmarks/training_throughput.py`.",
        "",
        "| model | parameters | structures/s (median) | runs |",
        "|---|---:|---:|---|",
        *(
            f"| {k} | {summary['parameters'][k]:,} | {medians[k]:.1f} | {', '.join(f'{v:.1f}' for v in runs[k])} |"
            for k in runs
        ),
        "",
        f"Hybrid / plain throughput: **{ratio:.2f}×** (target ≥ 0.9×).",
        "",
        "![throughput](training_throughput.png)",
        "",
    ]
    atomic_write_text(RESULTS / "training_throughput.md", "\n".join(lines))

    fig, (ax,) = panels(1, size=(7.0, 2.8))
    kinds = ("baseline", "ours")  # plain MEGNet, then the hybrid
    entries = [
        Entry(label, medians[label], values, kind) for (label, values), kind in zip(runs.items(), kinds, strict=True)
    ]
    bars(ax, entries, quantity="training throughput", units="structures/s",
         title=f"hybrid / plain = {ratio:.2f} (bars: median, dots: runs)")  # fmt: skip
    save(fig, RESULTS / "training_throughput.png")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
