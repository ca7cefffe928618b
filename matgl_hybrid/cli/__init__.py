"""The ``matgl-hybrid`` command line: parse arguments, call the package API, print or write the result.

One module per command group; each command has a function that adds its options to its parser (and the function
that runs it). They are registered as entry points (group ``matgl_hybrid.commands`` in pyproject.toml), and only
the command being run is loaded, so ``matgl-hybrid --version`` and ``--help`` answer without importing torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from matgl_hybrid.cli.options import HelpFormatter
from matgl_hybrid.errors import TrainingInterrupted
from matgl_hybrid.version import __version__

#: Each command and the one line ``--help`` lists (its options: the entry point of the same name).
COMMANDS: dict[str, str] = {
    "demo": "the main job: plain MEGNet vs the recommended hybrid on the embedded de Jong set",
    "featurize": "compute descriptors of a dataset and write a CSV",
    "cache-import": "add descriptor values archived by `featurize --archive` to the cache",
    "train": "train a hybrid (or plain, --descriptors none) model",
    "cv": "Matbench protocol (5-fold, seed 18012019) on any dataset, with a report",
    "matbench": "run Matbench v0.1 tasks and write a leaderboard submission folder",
    "probe": "how well frozen embeddings encode each descriptor (R²)",
    "explain": "permutation importance of a hybrid's descriptor inputs",
    "pretrained": "registered checkpoints: list, info, download, predict",
    "pretrain": "self-supervised pretraining of an encoder, masked-atom or contrastive (no labels)",
    "validate": "check a submission folder (or a folder of them) like the leaderboard does",
    "migrate": "convert a checkpoint of an older matgl-hybrid into this version's format",
    "predict": "predict a dataset with a saved model",
}
#: The entry-point group of the commands' option functions.
ENTRY_POINTS = "matgl_hybrid.commands"
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
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="let the libraries' own messages through (PyG's, Lightning's device lines and tips); default: hidden",
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    wanted = set(COMMANDS if commands is None else commands)
    options = {ep.name: ep for ep in entry_points(group=ENTRY_POINTS) if ep.name in wanted}
    if missing := sorted(wanted - options.keys()):
        raise RuntimeError(
            f"no entry point for the command(s) {missing}: reinstall matgl-hybrid (pip install --force-reinstall "
            "matgl-hybrid; in a checkout, pip install -e .)"
        )
    for name, summary in COMMANDS.items():
        p = sub.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + ".", formatter_class=HelpFormatter
        )
        if name in wanted:
            options[name].load()(p)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


#: Exceptions of running out of memory, by name (torch's on a GPU, joblib's when the OOM killer ends a worker): the
#: command line imports neither to catch them.
OUT_OF_MEMORY = ("OutOfMemoryError", "TerminatedWorkerError")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``matgl-hybrid``; errors in the user's input print one line and exit 2.

    A command stopped by SIGTERM or Ctrl-C exits with :data:`EXIT_INTERRUPTED`, saying what can be resumed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    args.argv = argv  # recorded by train in the model card
    if args.verbose:
        os.environ["MATGL_HYBRID_VERBOSE"] = "1"
    formatted = warnings.formatwarning
    warnings.formatwarning = _one_line(args.command)
    try:
        return args.func(args)
    except TrainingInterrupted as exc:
        print(f"matgl-hybrid {args.command}: interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # outside training (featurizing, predicting): the cache keeps every finished chunk
        print(f"matgl-hybrid {args.command}: interrupted; no output was half-written, and the "
              "descriptor values computed so far stay in the cache (when one is used)", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as exc:  # bad input (InvalidStructureError, CheckpointError, …), files; bugs propagate
        print(f"matgl-hybrid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional package a command needs, named with how to install it
        if "pip install" not in str(exc):
            raise
        print(f"matgl-hybrid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # out of memory: what the machine lacks, not a bug (torch's, joblib's worker killed)
        if not isinstance(exc, MemoryError) and type(exc).__name__ not in OUT_OF_MEMORY:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"matgl-hybrid {args.command}: error: out of memory ({type(exc).__name__}: {first}): a smaller "
              "--batch-size or fewer --n-jobs", file=sys.stderr)  # fmt: skip
        return 2
    finally:
        warnings.formatwarning = formatted


def _one_line(command: str) -> Callable[..., str]:
    """``warnings.formatwarning`` for a command: ``matgl-hybrid <command>: warning: <message>`` (the category's name
    for other than a ``UserWarning``), one line, not Python's two (the warning's source file and line, and the line
    of code that raised it)."""

    def format_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
        kind = "warning" if category is UserWarning else category.__name__  # a library's FutureWarning says so
        return f"matgl-hybrid {command}: {kind}: {' '.join(str(message).split())}\n"

    return format_warning
