"""``demo``: plain MEGNet against the recommended hybrid on the embedded de Jong set, then the next steps."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from matgl_hybrid.cli.options import add_cache_options, cache
from matgl_hybrid.demo import DEMO_CHECKPOINT, MODEL, PLOT, TABLE, run_demo


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: plain MEGNet against the recommended hybrid on the embedded de Jong set, then next steps."""
    result = run_demo(
        args.out,
        max_epochs=args.max_epochs,
        n_structures=args.n_structures,
        seed=args.seed,
        n_jobs=args.n_jobs,
        cache_dir=cache(args),
    )
    print()
    print(result.table())
    print()
    print(result.verdict)
    print(f"\nshipped checkpoint {DEMO_CHECKPOINT} (trained on Materials Project binaries):")
    for name, predicted, measured in result.examples:
        print(f"  {name:20s} K_VRH {predicted:6.1f} GPa   (measured about {measured:.0f} GPa)")
    print(f"\nwrote {result.out / TABLE}, {result.out / PLOT} and the trained hybrid in {result.out / MODEL}")
    print(
        "\nnext:\n"
        "  matgl-hybrid train --data my_structures.json.gz --target my_property --out my_model   # your own data\n"
        "  matgl-hybrid matbench --tasks matbench_jdft2d --algorithm MyHybrid --data-dir DIR  # a Matbench task\n"
        f"  matgl-hybrid probe --model {shlex.quote(str(result.out / MODEL))} --data DATA --out probe       "
        "# what the embeddings encode"
    )
    return 0


def demo_options(p: argparse.ArgumentParser) -> None:
    """The options of ``demo``."""
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo"),
        help="folder of the table, parity plot and trained model (an earlier demo's files there are replaced)",
    )
    p.add_argument("--max-epochs", type=int, default=10, help="training budget of each model")
    p.add_argument("--seed", type=int, default=0, help="seed of the 80/20 test split")
    p.add_argument(
        "--n-structures",
        type=int,
        default=None,
        help="only the first N structures (at least 10), for a quick try (default: all 1181)",
    )
    p.add_argument("--n-jobs", type=int, default=-1, help="descriptor workers (-1: all cores)")
    add_cache_options(p)
    p.set_defaults(func=cmd_demo)
