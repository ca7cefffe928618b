"""Options several commands share, and the help formatter; imports nothing heavy at module level."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from matgl_hybrid.files import check_output_file, check_paths_distinct
from matgl_hybrid.paths import descriptor_cache_dir

CACHE_DIR_HELP = (
    "descriptor cache folder (default: descriptors/ under $MATGL_HYBRID_CACHE, else $XDG_CACHE_HOME/matgl-hybrid, "
    "else ~/.cache/matgl-hybrid)"
)
DATA_HELP = "record file (.json.gz), folder of CIF/POSCAR, or CSV"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, or says it is required (unless the help already names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)"
        if action.default is None:
            return f"{text} (default: none)"
        if action.default is False and action.nargs == 0:
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def add_cache_options(p: argparse.ArgumentParser, no_cache: bool = True) -> None:
    """``--cache-dir`` and (unless ``no_cache`` is False) ``--no-cache``."""
    p.add_argument("--cache-dir", type=Path, default=None, help=CACHE_DIR_HELP)
    if no_cache:
        p.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")


def cache(args: argparse.Namespace) -> Path | None:
    """The descriptor cache folder the options name; None with ``--no-cache``."""
    return None if getattr(args, "no_cache", False) else (args.cache_dir or descriptor_cache_dir())


def add_overwrite_option(p: argparse.ArgumentParser, what: str = "replace an existing output file") -> None:
    """``--overwrite``: without it, a command refuses to replace a file (or model) that is already there."""
    p.add_argument("--overwrite", action="store_true", help=what)


def check_outputs(args: argparse.Namespace, outputs: dict[str, Path | None], inputs: dict[str, object]) -> None:
    """Before any work: each output file can be written, replaces nothing without ``--overwrite``, and is neither
    an input nor another output (``{"--flag": path}``; None entries are left out)."""
    given = {flag: Path(path) for flag, path in outputs.items() if path is not None}
    check_paths_distinct(given, {flag: path for flag, path in inputs.items() if path is not None})
    for path in given.values():
        check_output_file(path, overwrite=args.overwrite)


def first_skipped(skipped: Sequence) -> str:
    """The first three skipped entries with their reasons, for a one-line message."""
    return "; ".join(f"{e.id}: {e.reason}" for e in skipped[:3]) + (" …" if len(skipped) > 3 else "")


def add_data_options(p: argparse.ArgumentParser) -> None:
    """``--data``, ``--target`` (both required) and ``--skip-invalid``, for training commands."""
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--target", required=True, help="target to learn")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out invalid entries and structures with no neighbour pair within the cutoff, listing them "
        "(default: stop at the first, naming it)",
    )


def add_prediction_options(p: argparse.ArgumentParser) -> None:
    """Cache, batch size, workers and ``--skip-invalid``, for commands that predict."""
    add_cache_options(p)
    p.add_argument("--batch-size", type=int, default=64, help="structures per batch (default: 64)")
    p.add_argument("--n-jobs", type=int, default=-1, help="descriptor workers (-1: all cores)")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="predict the valid entries and list the others in <out>.skipped.csv (default: stop at the first)",
    )
    add_overwrite_option(p, "replace an existing --out file (and its .skipped.csv)")
