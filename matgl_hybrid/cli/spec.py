"""The training options (``TrainSpec``'s fields as flags, generated from their metadata), shared by ``train``, ``cv``
and ``matbench``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from matgl_hybrid import data
from matgl_hybrid.cli.options import add_cache_options, first_skipped
from matgl_hybrid.files import read_json
from matgl_hybrid.training import Candidate, InnerKFold, TrainSpec, candidate_specs, default_candidates, read_candidates
from matgl_hybrid.training.selection import Scheme

#: What an optional number's flag parses ``none`` to: the field set to None (a flag not given stays None).
_NONE = object()


def _number_or_none(kind: type) -> Callable[[str], object]:
    """An argparse ``type`` for a number field that may be None: ``none`` turns it off (over ``--config``)."""

    def parse(text: str) -> object:
        return _NONE if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid float value" message
    return parse


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
    optional = {f.name for f in fields(TrainSpec) if "None" in str(f.type).split(" | ")}
    for name, flag, option in spec_flags():
        default = getattr(recipe, name)
        kind = option["kind"]
        if name in optional and kind in (int, float):
            kind = _number_or_none(kind)
        meaning = f"{option['meaning']} (default: {'none' if default is None else default})"
        if option["kind"] is bool:  # --flag / --no-flag
            p.add_argument(f"--{flag.replace('_', '-')}", dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=meaning)  # fmt: skip
            continue
        p.add_argument(
            f"--{flag.replace('_', '-')}",
            dest=name,
            metavar=None if option["choices"] else flag.upper(),
            type=kind,
            default=None,
            choices=option["choices"],
            help=meaning,
        )
    add_cache_options(p)


def train_spec(args: argparse.Namespace) -> TrainSpec:
    """Defaults, then the ``--config`` JSON file, then the flags given on the command line, checked together (a
    file asking ``readout: native`` with ``--descriptors none`` given here is a valid spec)."""
    values = TrainSpec.json_values(args.config) if args.config else {}
    for name, _, _ in spec_flags():
        if (value := getattr(args, name)) is not None:
            values[name] = None if value is _NONE else value
    if args.devices is not None:
        values["devices"] = int(args.devices) if args.devices.isdigit() else args.devices
    source = f"{args.config} and the command line" if args.config else "the command line"
    return TrainSpec.from_dict(values, source=source)


def print_skipped(dataset: data.StructureData) -> None:
    """Say how many entries were left out on loading (``--skip-invalid``), naming the first."""
    if skipped := dataset.skipped:
        print(f"skipped {len(skipped)} of {len(skipped) + len(dataset)} entries ({first_skipped(skipped)})")


def add_selection_options(p: argparse.ArgumentParser, by_default: bool) -> None:
    """How a model is chosen on inner data: ``--no-select`` (or ``--select``), ``--candidates``, ``--inner-folds``."""
    if by_default:
        p.add_argument(
            "--no-select",
            dest="select",
            action="store_false",
            help="train the one spec given (flags, --config) as it is; default: choose on a validation split among "
            "it with the extensive readout, with the set2set readout, and a random forest on its descriptors (guard)",
        )
        p.set_defaults(select_by_default=True)
    else:
        p.add_argument(
            "--select",
            action="store_true",
            help="in each fold, choose as `train` does by default (extensive vs set2set readout, forest guard)",
        )
    p.add_argument(
        "--candidates",
        type=Path,
        default=None,
        help='JSON file {"name": {spec field: value}} or {"name": {"model": "random_forest"}}: choose among these '
        "(each a change of the spec) instead",
    )
    p.add_argument(
        "--inner-folds",
        type=int,
        default=None,
        metavar="K",
        help="score candidates by inner K-fold cross-validation (out-of-fold MAE; log loss for classifiers); the "
        "chosen one's K models form an ensemble (without it, candidates are scored on one validation split, cheaper)",
    )


def selection(args: argparse.Namespace, spec: TrainSpec) -> tuple[dict[str, Candidate] | None, Scheme | None]:
    """The candidates and scheme the selection options name; ``(None, None)``: the spec alone. An explicit
    ``--readout`` (flag or ``--config``) is kept: that readout alone, against the forest guard.

    Raises:
        ValueError: ``--no-select`` with ``--candidates`` or ``--inner-folds`` (one spec, or a choice: not both).
    """
    if getattr(args, "select_by_default", False) and not args.select:
        if args.candidates is not None or args.inner_folds is not None:
            raise ValueError("--no-select trains the one spec given, --candidates and --inner-folds choose among "
                             "several: drop one or the other")  # fmt: skip
        return None, None
    if args.candidates is not None:
        try:  # each candidate as it changes this run's spec
            candidates = candidate_specs(spec, read_candidates(args.candidates), forests=True)
        except ValueError as exc:
            message = str(exc)
            named = message if message.startswith(str(args.candidates)) else f"{args.candidates}: {message}"
            raise ValueError(named) from None
    elif args.select or args.inner_folds is not None:
        # a readout named in --config counts as chosen, the default's name too ({"readout": "extensive"})
        given = args.readout or (read_json(args.config).get("readout") if args.config else None)
        candidates = default_candidates(spec, given)
    else:
        return None, None
    scheme = InnerKFold(args.inner_folds, spec.seed) if args.inner_folds is not None else None
    return candidates, scheme
