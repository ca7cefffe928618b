"""``probe`` (what frozen embeddings encode) and ``explain`` (which descriptor inputs a hybrid relies on)."""

from __future__ import annotations

import argparse
from pathlib import Path

from matgl_hybrid.cli.featurize import add_featurize_options
from matgl_hybrid.cli.options import DATA_HELP, add_cache_options, add_overwrite_option, cache, check_outputs
from matgl_hybrid.files import check_output_dir
from matgl_hybrid.probe import IMPORTANCE_REPORT, PROBE_REPORT, run_explain, run_probe

#: The readouts a fresh backbone is probed through unless ``--readouts`` names others.
FRESH_READOUTS = "mean,sum,extensive"


def check_report(args: argparse.Namespace, files: tuple[str, ...]) -> None:
    """Before any work: the report's files in ``--out`` can be written, replace an earlier report only with
    ``--overwrite``, and are none of the inputs."""
    check_output_dir(args.out)
    inputs = {"--data": args.data, "--model": args.model}
    check_outputs(args, {f"--out's {name}": args.out / name for name in files}, inputs)


def cmd_probe(args: argparse.Namespace) -> int:
    """Probe frozen embeddings for every descriptor of a set; table (CSV, markdown) and heat map."""
    if args.model is not None and (args.readouts is not None or args.seed is not None):
        raise ValueError("--readouts and --seed set up a fresh --backbone: a saved --model has its own readout")
    check_report(args, PROBE_REPORT)
    matrix = run_probe(
        args.data,
        args.out,
        model=args.model,
        backbone=args.backbone,
        readouts=(args.readouts or FRESH_READOUTS).split(","),
        seed=args.seed or 0,
        tap=args.tap,
        probes=args.probes.split(","),
        descriptor_set=args.descriptors,
        cache_dir=cache(args),
        n_jobs=args.n_jobs,
    )
    print(matrix.to_string(float_format="{:.3f}".format))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Permutation importance of each descriptor input of a trained hybrid on held-out data."""
    check_report(args, IMPORTANCE_REPORT)
    table = run_explain(args.model, args.data, args.target, args.out, repeats=args.repeats, cache_dir=cache(args))
    print(table.to_string(index=False))
    return 0


def explain_options(p: argparse.ArgumentParser) -> None:
    """The options of ``explain``."""
    p.add_argument("--model", required=True, type=Path, help="directory of a trained hybrid model")
    p.add_argument("--data", required=True, help="held-out data with targets")
    p.add_argument("--target", required=True, help="target of --data to score against")
    p.add_argument("--repeats", type=int, default=3, help="permutations per descriptor group")
    p.add_argument("--out", required=True, type=Path, help="folder of the importance report (csv, md, png)")
    add_overwrite_option(p, "replace an earlier importance report in --out")
    add_cache_options(p)
    p.set_defaults(func=cmd_explain)


def probe_options(p: argparse.ArgumentParser) -> None:
    """The options of ``probe``."""
    p.add_argument("--model", type=Path, default=None, help="a saved model directory")
    p.add_argument("--backbone", default=None, help="or a freshly initialised backbone (megnet, m3gnet, tensornet)")
    p.add_argument("--readouts", default=None, help=f"readouts of the fresh backbone (default {FRESH_READOUTS})")
    p.add_argument("--seed", type=int, default=None, help="initialisation seed of the fresh backbone (default 0)")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--tap", default="graph", choices=["graph", "fused"], help="embedding after readout or fusion")
    p.add_argument("--probes", default="ridge,mlp", help="probe models: ridge and/or mlp")
    p.add_argument("--out", required=True, type=Path, help="folder of the probe report (csv, md, png)")
    add_overwrite_option(p, "replace an earlier probe report in --out")
    add_featurize_options(p)
    p.set_defaults(func=cmd_probe)
