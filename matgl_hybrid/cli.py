"""The ``matgl-hybrid`` command line: parse arguments, call the package API, print or write the result."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from matgl_hybrid import data
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.descriptors.cache import atomic_write_text
from matgl_hybrid.paths import descriptor_cache_dir


def _add_featurize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--descriptors", default="gong28", help="descriptor set, e.g. gong28, composition, gong28+lattice")
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (-1: all cores)")
    p.add_argument("--cache-dir", type=Path, default=None, help="descriptor cache (default: $MATGL_HYBRID_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")


def _featurize(args: argparse.Namespace, dataset: data.StructureData) -> pd.DataFrame:
    cache = None if args.no_cache else (args.cache_dir or descriptor_cache_dir())
    return featurize(dataset.structures, args.descriptors, n_jobs=args.n_jobs, cache_dir=cache, ids=dataset.ids)


def cmd_featurize(args: argparse.Namespace) -> int:
    """Compute descriptors of a dataset and write them as CSV (``id`` then one column per descriptor)."""
    dataset = data.load(args.data, target=args.target)
    frame = _featurize(args, dataset)
    frame.insert(0, "id", dataset.ids)
    if dataset.targets is not None:
        frame[dataset.target_name] = dataset.targets
    atomic_write_text(args.out, frame.to_csv(index=False))
    print(f"wrote {len(frame)} rows x {frame.shape[1] - 1} columns to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Featurize the embedded de Jong et al. (2015) elastic dataset and summarise the descriptors."""
    dataset = data.load_demo("K_VRH")
    print(f"de Jong et al. 2015 elastic constants: {len(dataset)} structures, target K_VRH (GPa)")
    start = time.perf_counter()
    frame = _featurize(args, dataset)
    seconds = time.perf_counter() - start
    print(
        f"{args.descriptors}: {frame.shape[1]} descriptors in {seconds:.1f} s "
        f"({1000 * seconds / len(frame):.1f} ms/structure, n_jobs={args.n_jobs})"
    )
    errors = frame.attrs["errors"]
    print(f"featurizer failures recorded as NaN: {len(errors)}")
    positive = dataset.targets > 0
    log_k = pd.Series(np.log10(dataset.targets[positive]))
    summary = frame[positive].describe().T[["mean", "std", "min", "max"]]
    summary["NaN"] = frame.isna().sum()
    summary["spearman log10 K"] = frame[positive].reset_index(drop=True).corrwith(log_k, method="spearman")
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.float_format", "{:.4g}".format):
        print(summary.sort_values("spearman log10 K", key=np.abs, ascending=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all subcommands."""
    parser = argparse.ArgumentParser(prog="matgl-hybrid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="featurize the embedded demo dataset and print a summary")
    _add_featurize_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("featurize", help="compute descriptors of a dataset and write a CSV")
    p.add_argument("--data", required=True, help="record file (.json.gz), folder of CIF/POSCAR, or CSV")
    p.add_argument("--target", default=None, help="target column to carry into the CSV")
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    _add_featurize_options(p)
    p.set_defaults(func=cmd_featurize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``matgl-hybrid``; errors in the user's input print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (data.InvalidStructureError, KeyError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"matgl-hybrid {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
