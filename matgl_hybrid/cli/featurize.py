"""``featurize`` (descriptors of a dataset as CSV) and ``cache-import`` (archived values into the cache)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from matgl_hybrid.cli.options import (
    DATA_HELP,
    add_cache_options,
    add_overwrite_option,
    cache,
    check_outputs,
)
from matgl_hybrid.descriptors import DescriptorCache, featurize_file, import_archive


def add_featurize_options(p: argparse.ArgumentParser) -> None:
    """``--descriptors``, ``--n-jobs`` and the cache options."""
    p.add_argument("--descriptors", default="gong28", help="descriptor set, e.g. gong28, composition, gong28+lattice")
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (-1: all cores)")
    add_cache_options(p)


def cmd_featurize(args: argparse.Namespace) -> int:
    """Compute descriptors of a dataset and write them as CSV (``id`` then one column per descriptor)."""
    check_outputs(args, {"--out": args.out, "--archive": args.archive}, {"--data": args.data})
    table = featurize_file(
        args.data,
        args.descriptors,
        target=args.target,
        out=args.out,
        archive=args.archive,
        summary=args.summary,
        cache_dir=cache(args),
        n_jobs=args.n_jobs,
    )
    print(f"wrote {len(table.frame)} rows x {table.frame.shape[1] - 1} columns to {args.out}")
    if table.archived is not None:
        print(f"archived the {args.descriptors} values of {table.archived} structures in {args.archive}")
    if table.summary is not None:
        with pd.option_context("display.width", 200, "display.max_rows", 200, "display.float_format", "{:.4g}".format):
            print(table.summary)
    return 0


def cmd_cache_import(args: argparse.Namespace) -> int:
    """Add the values of archives written by ``featurize --archive`` to the descriptor cache."""
    folder = cache(args)
    for archive in args.archives:
        n = import_archive(DescriptorCache(folder), archive)
        print(f"read the values of {n} structures from {archive} into {folder} (values cached there before are kept)")
    return 0


def cache_import_options(p: argparse.ArgumentParser) -> None:
    """The options of ``cache-import``."""
    p.add_argument("archives", nargs="+", type=Path, help="archive files (.json.gz)")
    add_cache_options(p, no_cache=False)
    p.set_defaults(func=cmd_cache_import)


def featurize_options(p: argparse.ArgumentParser) -> None:
    """The options of ``featurize``."""
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--target", default=None, help="target column to carry into the CSV")
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    p.add_argument(
        "--summary",
        action="store_true",
        help="print each descriptor's range, NaN count and Spearman rank correlation with the target",
    )
    p.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="also write the cached values to this gzipped archive, for `cache-import` on another machine "
        "(e.g. simulations run on a GPU)",
    )
    add_overwrite_option(p, "replace an existing --out or --archive file")
    add_featurize_options(p)
    p.set_defaults(func=cmd_featurize)
