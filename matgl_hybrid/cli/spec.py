"""The training options (``TrainSpec``'s fields as flags), shared by ``train``, ``cv`` and ``matbench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from matgl_hybrid import data
from matgl_hybrid.cli.options import add_cache_options, first_skipped
from matgl_hybrid.descriptors import NAMED_SETS
from matgl_hybrid.graphs import drop_unconnected
from matgl_hybrid.layers import FUSIONS, READOUTS
from matgl_hybrid.models.backbones import BACKBONES
from matgl_hybrid.training import TrainSpec
from matgl_hybrid.training.spec import LOSSES

#: The training flags: flag -> (type, meaning). Their defaults are ``TrainSpec()``'s (the recommended recipe), shown in
#: ``--help``; a flag not given keeps the ``--config`` file's value, else that default.
SPEC_FLAGS: dict[str, tuple[type, str]] = {
    "backbone": (str, "graph network"),
    "readout": (
        str,
        "pooling of node features into one vector per structure; native: the backbone's own readout and head, "
        "as MatGL ships it (no descriptors)",
    ),
    "descriptors": (
        str,
        f"descriptor set fused into the readout: {', '.join(NAMED_SETS)}, ssl:<encoder>:<layers> or "
        "sim:chgnet[:full], several joined with '+' (e.g. gong28+composition); none: the plain backbone",
    ),
    "fusion": (str, "how the descriptors join the readout"),
    "cutoff": (float, "graph cutoff radius (Å)"),
    "max_epochs": (int, "most training epochs"),
    "batch_size": (int, "structures per batch"),
    "lr": (float, "learning rate (cosine decay to lr × decay_alpha)"),
    "loss": (str, "training loss"),
    "val_fraction": (float, "fraction of the training data held out for early stopping"),
    "patience": (int, "epochs without a better validation MAE before training stops"),
    "seed": (int, "seed of the validation split and of the initialisation"),
    "accelerator": (str, "Lightning accelerator: auto (a GPU when present), cpu, gpu, …"),
    "n_jobs": (int, "descriptor workers (-1: all cores)"),
    "elements": (
        str,
        "elements the model accepts: training (those of the training data) or all (MatGL's 89); a list of "
        "symbols: in --config",
    ),
}
#: The allowed values of the training flags that have a fixed set of them.
SPEC_CHOICES = {"backbone": list(BACKBONES), "readout": [*READOUTS, "native"], "fusion": list(FUSIONS), "loss": LOSSES}
#: Flags whose TrainSpec field has another name (the flags keep their 0.1 names).
FLAG_FIELDS = {"descriptors": "descriptor_set", "elements": "element_types"}


def add_spec_options(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--devices``, one flag per :data:`SPEC_FLAGS` entry, and the cache options."""
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="JSON file of TrainSpec fields; flags given here override it (default: none, the defaults below)",
    )
    p.add_argument("--devices", default=None, help="Lightning devices, e.g. 1, 4 (default: auto)")
    recipe = TrainSpec()
    for name, (kind, meaning) in SPEC_FLAGS.items():
        default = getattr(recipe, FLAG_FIELDS.get(name, name))
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            choices=SPEC_CHOICES.get(name),
            help=f"{meaning} (default: {'none' if default is None else default})",
        )
    add_cache_options(p)


def train_spec(args: argparse.Namespace) -> TrainSpec:
    """Defaults, then the ``--config`` JSON file, then the flags given on the command line."""
    values = TrainSpec.from_json(args.config).to_dict() if args.config else {}
    for flag in SPEC_FLAGS:
        if (value := getattr(args, flag)) is not None:
            values[FLAG_FIELDS.get(flag, flag)] = value
    if args.devices is not None:
        values["devices"] = int(args.devices) if args.devices.isdigit() else args.devices
    return TrainSpec.from_dict(values)


def training_data(args: argparse.Namespace, spec: TrainSpec) -> data.StructureData:
    """``--data``/``--target``; with ``--skip-invalid``, without the invalid entries and those whose graph has no
    edges within the model's cutoff (listed on the screen)."""
    dataset = data.load(args.data, target=args.target, skip_invalid=args.skip_invalid)
    if not args.skip_invalid:
        return dataset
    dataset = drop_unconnected(dataset, spec.cutoff)
    if not len(dataset):
        raise ValueError(f"{args.data}: no valid entry to train on ({len(dataset.skipped)} skipped)")
    if skipped := dataset.skipped:
        print(f"skipped {len(skipped)} of {len(skipped) + len(dataset)} entries ({first_skipped(skipped)})")
    return dataset
