"""``migrate``: convert a checkpoint of an older matgl-hybrid into this version's format, in a new folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from matgl_hybrid.checkpoint import FORMAT_VERSION, migrate_checkpoint
from matgl_hybrid.cli.options import add_overwrite_option


def cmd_migrate(args: argparse.Namespace) -> int:
    """Convert a checkpoint of an older matgl-hybrid into this version's format, in a new folder."""
    migrate_checkpoint(args.source, args.out, overwrite=args.overwrite)
    print(f"wrote {args.source} in checkpoint format {FORMAT_VERSION} to {args.out}")
    return 0


def migrate_options(p: argparse.ArgumentParser) -> None:
    """The options of ``migrate``."""
    p.add_argument("source", type=Path, help="the old checkpoint folder (left as it is)")
    p.add_argument("--out", required=True, type=Path, help="folder of the converted checkpoint")
    add_overwrite_option(
        p,
        "replace a saved model already at --out (or write beside the files of a non-empty folder; nothing else is "
        "deleted)",
    )
    p.set_defaults(func=cmd_migrate)
