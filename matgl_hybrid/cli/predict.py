"""``predict`` (a dataset with a saved model) and ``pretrained`` (list, describe, fetch or use shipped models)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from matgl_hybrid.checkpoint import load_checkpoint, read_header, read_text, verify
from matgl_hybrid.cli.options import DATA_HELP, add_prediction_options, cache, check_outputs, first_skipped
from matgl_hybrid.inference import predict_file, prediction_outputs
from matgl_hybrid.pretrained import list_pretrained, resolve

if TYPE_CHECKING:
    from torch import nn


def check_prediction_outputs(args: argparse.Namespace) -> None:
    """Before loading anything: ``--out`` (and its skipped listing) can be written and destroy no input."""
    outputs = prediction_outputs(args.out, args.skip_invalid)  # an earlier run's listing is replaced too
    check_outputs(args, {"--out" if key == "out" else f"the {key}": path for key, path in outputs.items()},
                  {"--data": args.data})  # fmt: skip


def predict_to_csv(model: nn.Module, args: argparse.Namespace) -> int:
    """Predict ``--data`` with ``model`` into ``--out`` (:func:`~matgl_hybrid.inference.predict_file`) and say so."""
    options = {"batch_size": args.batch_size, "cache_dir": cache(args), "n_jobs": args.n_jobs}
    result = predict_file(model, args.data, args.out, skip_invalid=args.skip_invalid, **options)
    print(f"wrote {len(result.frame)} predictions of {result.quantity} to {args.out}")
    if result.listing is not None and args.skip_invalid:
        shown = first_skipped(result.skipped) or "none"
        print(f"skipped {len(result.skipped)} invalid entries ({shown}); listed in {result.listing}")
    elif result.listing is not None:
        print(f"emptied {result.listing}, an earlier run's listing of skipped entries (none skipped now)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict a dataset with a saved model; CSV columns ``id,prediction`` (+ ``std`` for an ensemble)."""
    check_prediction_outputs(args)
    return predict_to_csv(load_checkpoint(args.model), args)


def _list_pretrained() -> None:
    """One line per registered checkpoint, with its held-out MAE."""
    models = list_pretrained()
    for name, entry in models.items():
        score = ""
        if metrics := entry.get("metrics"):
            score = f" [held-out MAE {metrics['mae']:.4g} {entry.get('units', '')}, n = {metrics['n']}]"
        print(f"{name}: {entry.get('description', '')}{score}")
    if not models:
        print("no checkpoints are registered in this version; load_pretrained takes a path or URL too")


def _show_info(path: Path) -> None:
    """A checkpoint's metadata and its model card, verified (a card the manifest does not list is not shown)."""
    listed = verify(path)
    print(json.dumps(read_header(path)["metadata"], indent=1))
    card = "model_card.md"
    print(read_text(path / card) if card in listed else f"(no model card in {path})")


def cmd_pretrained(args: argparse.Namespace) -> int:
    """List, describe, download or use the registered checkpoints (or any path / URL)."""
    given = ["--data"] * bool(args.data) + ["--out"] * bool(args.out) + _prediction_options_given(args)
    if args.action != "predict" and given:
        raise ValueError(f"{', '.join(given)}: options of 'pretrained predict', not of 'pretrained {args.action}' "
                         "(a download goes to $MATGL_HYBRID_CACHE/pretrained, not to --cache-dir)")  # fmt: skip
    if args.action == "list":
        _list_pretrained()
        return 0
    if args.source is None:
        raise ValueError(
            f"pretrained {args.action} needs a checkpoint name, path or URL (names: matgl-hybrid pretrained list)"
        )
    if args.action == "predict":
        if not (args.data and args.out):
            raise ValueError("pretrained predict needs --data FILE and --out CSV")
        check_prediction_outputs(args)
    path = resolve(args.source)
    if args.action == "predict":
        return predict_to_csv(load_checkpoint(path), args)
    if args.action == "info":
        _show_info(path)
    else:  # download: the local folder it is in
        print(path)
    return 0


def _prediction_options_given(args: argparse.Namespace) -> list[str]:
    """The prediction options (``add_prediction_options``) given other values than their defaults, as flags."""
    defaults = argparse.ArgumentParser()
    add_prediction_options(defaults)
    return [f"--{dest.replace('_', '-')}" for dest, value in vars(defaults.parse_args([])).items()
            if getattr(args, dest) != value]  # fmt: skip


def pretrained_options(p: argparse.ArgumentParser) -> None:
    """The options of ``pretrained``."""
    p.add_argument("action", choices=["list", "info", "download", "predict"])
    p.add_argument("source", nargs="?", default=None, help="a registered name, a checkpoint folder or a URL")
    p.add_argument("--data", default=None, help="structures to predict (predict)")
    p.add_argument("--out", type=Path, default=None, help="output CSV (predict)")
    add_prediction_options(p)
    p.set_defaults(func=cmd_pretrained)


def predict_options(p: argparse.ArgumentParser) -> None:
    """The options of ``predict``."""
    p.add_argument("--model", required=True, type=Path, help="directory written by train")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", required=True, type=Path, help="output CSV (id,prediction[,std])")
    add_prediction_options(p)
    p.set_defaults(func=cmd_predict)
