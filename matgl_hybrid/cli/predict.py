"""``predict`` (a dataset with a saved model) and ``pretrained`` (list, describe, fetch or use shipped models)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from matgl_hybrid import data, inference
from matgl_hybrid.checkpoint import load_checkpoint, read_header
from matgl_hybrid.cli.options import DATA_HELP, add_prediction_options, cache, check_outputs, first_skipped
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.inference import split_predictable
from matgl_hybrid.models import HybridEnsemble
from matgl_hybrid.pretrained import list_pretrained, resolve


def _skipped_listing(out: Path) -> Path:
    """Where ``--skip-invalid`` lists the entries left out of ``out``."""
    return out.with_name(out.name + ".skipped.csv")


def check_prediction_outputs(args: argparse.Namespace) -> None:
    """Before loading anything: ``--out`` (and its skipped listing) can be written and destroy no input."""
    outputs = {"--out": args.out, "the skipped listing": _skipped_listing(args.out) if args.skip_invalid else None}
    check_outputs(args, outputs, {"--data": args.data})


def predict_to_csv(model, args: argparse.Namespace) -> int:
    """Predict ``args.data`` with ``model`` into the CSV ``args.out`` (``id,prediction`` + ``std`` for an ensemble).

    With ``--skip-invalid``, entries the model cannot predict (unreadable, invalid, unknown elements, no edges
    within the cutoff) are left out, listed on the screen and in ``<out>.skipped.csv`` (``id,reason``).
    """
    dataset = data.load(args.data, skip_invalid=args.skip_invalid)
    skipped = list(dataset.skipped)
    if args.skip_invalid:
        try:
            dataset, skipped = split_predictable(model, dataset)
        except ValueError as exc:
            raise ValueError(f"{args.data}: {exc}") from None
    mean, std = inference.predict(
        model,
        dataset.structures,
        dataset.ids,
        batch_size=args.batch_size,
        cache_dir=cache(args),
        n_jobs=args.n_jobs,
        return_std=True,
    )
    frame = pd.DataFrame({"id": dataset.ids, "prediction": mean})
    if isinstance(model, HybridEnsemble):
        frame["std"] = std
    atomic_write_text(args.out, frame.to_csv(index=False))
    print(f"wrote {len(frame)} predictions to {args.out}")
    if args.skip_invalid:  # written even when empty, so that a listing of an earlier run is never left stale
        listing = _skipped_listing(args.out)
        atomic_write_text(
            listing, pd.DataFrame([vars(e) for e in skipped], columns=["id", "reason"]).to_csv(index=False)
        )
        print(f"skipped {len(skipped)} invalid entries ({first_skipped(skipped) or 'none'}); listed in {listing}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict a dataset with a saved model; CSV columns ``id,prediction`` (+ ``std`` for an ensemble)."""
    check_prediction_outputs(args)
    return predict_to_csv(load_checkpoint(args.model), args)


def cmd_pretrained(args: argparse.Namespace) -> int:
    """List, describe, download or use the registered checkpoints (or any path / URL)."""
    if args.action != "predict" and (args.data or args.out):
        raise ValueError(f"--data and --out are options of 'pretrained predict', not of 'pretrained {args.action}'")
    if args.action == "list":
        models = list_pretrained()
        for name, entry in models.items():
            score = ""
            if metrics := entry.get("metrics"):
                score = f" [held-out MAE {metrics['mae']:.4g} {entry.get('units', '')}, n = {metrics['n']}]"
            print(f"{name}: {entry.get('description', '')}{score}")
        if not models:
            print("no checkpoints are registered in this version; load_pretrained takes a path or URL too")
        return 0
    if args.source is None:
        raise ValueError(f"pretrained {args.action} needs a checkpoint name, path or URL")
    if args.action == "predict":
        if not (args.data and args.out):
            raise ValueError("pretrained predict needs --data FILE and --out CSV")
        check_prediction_outputs(args)
    path = resolve(args.source)
    if args.action == "info":
        print(json.dumps(read_header(path)["metadata"], indent=1))
        card = path / "model_card.md"
        print(card.read_text() if card.exists() else f"(no model card in {path})")
    elif args.action == "download":
        print(path)
    else:
        return predict_to_csv(load_checkpoint(path), args)
    return 0


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
