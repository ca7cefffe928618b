"""The ``matgl-hybrid`` command line: parse arguments, call the package API, print or write the result.

One module per command group; each adds its commands' options (``add_parsers``) and runs them. Only the module of
the command being run is imported, so ``matgl-hybrid --version`` and ``--help`` answer without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from matgl_hybrid.cli.options import HelpFormatter
from matgl_hybrid.errors import TrainingInterrupted
from matgl_hybrid.version import __version__

#: Each command: the module of its group (under ``matgl_hybrid.cli``) and the one line ``--help`` lists.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: plain MEGNet vs the recommended hybrid on the embedded de Jong set"),
    "featurize": ("featurize", "compute descriptors of a dataset and write a CSV"),
    "cache-import": ("featurize", "add descriptor values archived by `featurize --archive` to the cache"),
    "train": ("train", "train a hybrid (or plain, --descriptors none) model"),
    "cv": ("train", "Matbench protocol (5-fold, seed 18012019) on any dataset, with a report"),
    "matbench": ("matbench", "run Matbench v0.1 tasks and write a leaderboard submission folder"),
    "probe": ("probe", "how well frozen embeddings encode each descriptor (R²)"),
    "explain": ("probe", "permutation importance of a hybrid's descriptor inputs"),
    "pretrained": ("predict", "registered checkpoints: list, info, download, predict"),
    "pretrain": ("pretrain", "self-supervised masked-atom pretraining of an encoder (no labels)"),
    "validate": ("matbench", "check a submission folder (or a folder of them) like the leaderboard does"),
    "migrate": ("migrate", "convert a checkpoint of an older matgl-hybrid into this version's format"),
    "predict": ("predict", "predict a dataset with a saved model"),
}
#: Exit status of a command stopped by SIGTERM or Ctrl-C (128 + SIGTERM), as a shell reports a killed process.
EXIT_INTERRUPTED = 143


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; the options of ``commands`` only (default: all), the others listed by name."""
    parser = argparse.ArgumentParser(
        prog="matgl-hybrid",
        description="Hybrid graph networks for materials: fuse descriptors and universal-potential knowledge into "
        "MatGL models. Run `matgl-hybrid COMMAND --help` for the options of a command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"matgl-hybrid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    wanted = set(COMMANDS if commands is None else commands)
    for name, (module, summary) in COMMANDS.items():
        p = sub.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + ".", formatter_class=HelpFormatter
        )
        if name in wanted:
            group = importlib.import_module(f"matgl_hybrid.cli.{module}")
            group.add_arguments(name, p)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``matgl-hybrid``; errors in the user's input print one line and exit 2.

    A command stopped by SIGTERM or Ctrl-C exits with :data:`EXIT_INTERRUPTED`, saying what can be resumed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    args.argv = argv  # recorded by train in the model card
    try:
        return args.func(args)
    except TrainingInterrupted as exc:
        print(f"matgl-hybrid {args.command}: interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as exc:  # bad input (InvalidStructureError, CheckpointError, …), files; bugs propagate
        print(f"matgl-hybrid {args.command}: error: {exc}", file=sys.stderr)
        return 2
