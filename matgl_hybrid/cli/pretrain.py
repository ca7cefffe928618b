"""``pretrain``: label-free (masked-atom or contrastive) pretraining of an encoder."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from matgl_hybrid.checkpoint import check_model_dir, save_checkpoint
from matgl_hybrid.models.backbones import BACKBONES
from matgl_hybrid.ssl import pretrain
from matgl_hybrid.ssl.corpus import pretraining_corpus


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Label-free pretraining of an encoder on the union of the given datasets, minus the ``--exclude`` ones."""
    check_model_dir(args.out)
    corpus = pretraining_corpus(args.data, args.exclude or ())
    print(
        f"pretraining on {len(corpus.structures)} structures from {len(args.data)} file(s), "
        f"{corpus.n_excluded} excluded"
    )
    options = ("backbone", "cutoff", "max_epochs", "batch_size", "lr", "seed", "accelerator", "task")
    module = pretrain(corpus.structures, **{name: getattr(args, name) for name in options})
    record = {
        "data": [str(d) for d in args.data],
        "exclude": [str(d) for d in args.exclude or []],
        "n_excluded": corpus.n_excluded,
        "n_structures": module.n_structures,
        "task": args.task,
        "max_epochs": args.max_epochs,
        "command": shlex.join(["matgl-hybrid", *args.argv]),
    }
    save_checkpoint(module.encoder, args.out, {"pretraining": record})
    print(f"saved the encoder to {args.out}")
    return 0


def pretrain_options(p: argparse.ArgumentParser) -> None:
    """The options of ``pretrain``."""
    p.add_argument("--data", nargs="+", required=True, help="one or more record files / folders (their union)")
    p.add_argument("--backbone", default="megnet", choices=list(BACKBONES), help="encoder to pretrain")
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
    p.set_defaults(func=cmd_pretrain)
