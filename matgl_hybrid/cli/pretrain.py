"""``pretrain``: label-free (masked-atom or contrastive) pretraining of an encoder."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from matgl_hybrid.checkpoint import check_model_dir
from matgl_hybrid.cli.options import add_overwrite_option
from matgl_hybrid.files import check_paths_distinct
from matgl_hybrid.ssl import pretrain_datasets
from matgl_hybrid.ssl.pretrain import PRETRAINABLE, PretrainingResult


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Label-free pretraining of an encoder on the union of the given datasets, minus the ``--exclude`` ones."""
    inputs = {f"--data {path}": path for path in args.data} | {f"--exclude {path}": path for path in args.exclude or ()}
    check_paths_distinct({"--out": args.out}, inputs)  # the encoder's files among the structure files: not loadable
    check_model_dir(args.out, args.overwrite, writes=PretrainingResult.FILES, replace_model=args.overwrite)
    options = ("backbone", "cutoff", "max_epochs", "batch_size", "lr", "seed", "accelerator", "task")
    command = shlex.join(["matgl-hybrid", *args.argv])
    result = pretrain_datasets(args.data, args.exclude or (), command=command, **{o: getattr(args, o) for o in options})
    result.save(args.out, overwrite=args.overwrite)
    print(f"saved the encoder to {args.out}")
    return 0


def pretrain_options(p: argparse.ArgumentParser) -> None:
    """The options of ``pretrain``."""
    p.add_argument("--data", nargs="+", required=True, help="one or more record files / folders (their union)")
    p.add_argument("--backbone", default="megnet", choices=PRETRAINABLE, help="encoder to pretrain")
    p.add_argument("--task", default="masked", choices=["masked", "contrastive"], help="pretext task")
    p.add_argument(
        "--exclude", nargs="+", default=None, help="datasets to evaluate on later: their structures are left out"
    )
    p.add_argument("--cutoff", type=float, default=5.0, help="graph cutoff (Å)")
    p.add_argument("--max-epochs", type=int, default=50, help="pretraining epochs")
    p.add_argument("--batch-size", type=int, default=32, help="structures per batch")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of masking, augmentation and initialisation")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--out", required=True, type=Path, help="directory of the saved encoder")
    add_overwrite_option(p, "replace an encoder saved in --out, or write beside other files there")
    p.set_defaults(func=cmd_pretrain)
