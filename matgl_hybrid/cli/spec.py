"""The training options (``TrainSpec``'s fields as flags, generated from their metadata), shared by ``train``, ``cv``
and ``matbench``."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from matgl_hybrid import data
from matgl_hybrid.cli.options import add_cache_options, first_skipped
from matgl_hybrid.training import TrainSpec


def spec_flags() -> list[tuple[str, str, dict]]:
    """``(field, flag, option)`` of each ``TrainSpec`` field that is a flag (its metadata's ``option``)."""
    return [
        (f.name, f.metadata["option"]["flag"] or f.name, f.metadata["option"])
        for f in fields(TrainSpec)
        if "option" in f.metadata
    ]


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
    for name, flag, option in spec_flags():
        default = getattr(recipe, name)
        p.add_argument(
            f"--{flag.replace('_', '-')}",
            dest=name,
            metavar=None if option["choices"] else flag.upper(),
            type=option["kind"],
            default=None,
            choices=option["choices"],
            help=f"{option['meaning']} (default: {'none' if default is None else default})",
        )
    add_cache_options(p)


def train_spec(args: argparse.Namespace) -> TrainSpec:
    """Defaults, then the ``--config`` JSON file, then the flags given on the command line."""
    values = TrainSpec.from_json(args.config).to_dict() if args.config else {}
    for name, _, _ in spec_flags():
        if (value := getattr(args, name)) is not None:
            values[name] = value
    if args.devices is not None:
        values["devices"] = int(args.devices) if args.devices.isdigit() else args.devices
    return TrainSpec.from_dict(values)


def print_skipped(dataset: data.StructureData) -> None:
    """Say how many entries were left out on loading (``--skip-invalid``), naming the first."""
    if skipped := dataset.skipped:
        print(f"skipped {len(skipped)} of {len(skipped) + len(dataset)} entries ({first_skipped(skipped)})")
