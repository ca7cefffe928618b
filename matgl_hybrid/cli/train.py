"""``train`` (a model, or an ensemble, with its card) and ``cv`` (the Matbench protocol on any dataset)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from matgl_hybrid.cli.options import add_data_options, add_overwrite_option
from matgl_hybrid.cli.options import cache as cache_of
from matgl_hybrid.cli.spec import add_selection_options, add_spec_options, print_skipped, selection, train_spec
from matgl_hybrid.evaluation import run_cv
from matgl_hybrid.files import check_output_dir, check_paths_distinct
from matgl_hybrid.training import FitResult, InnerKFold, load_training_data, smallest_cutoff, train_file


def cmd_train(args: argparse.Namespace) -> int:
    """Train a hybrid model (or an ensemble of ``--ensemble K``) and save it, with a model card, to ``--out``."""

    def report(k: int, result: FitResult) -> None:
        if result.global_rank == 0:
            print(
                f"member {k + 1}/{members}: best validation MAE {result.best_val_mae:.4g} at epoch "
                f"{result.best_epoch + 1} of {result.epochs_run} ({result.seconds:.0f} s)"  # 1-based, as the card
            )

    names = ("skip_invalid", "log10_target", "units", "ensemble", "test_fraction", "test_seed", "checkpoint_dir")
    options = {name: getattr(args, name) for name in (*names, "overwrite")}
    command = shlex.join(["matgl-hybrid", *args.argv])
    spec = train_spec(args)
    candidates, scheme = selection(args, spec)
    members = max(args.ensemble, scheme.k if candidates and isinstance(scheme, InnerKFold) else 1)  # one per fold
    trained = train_file(
        args.data, args.target, args.out, spec, cache_dir=cache_of(args), command=command,
        on_data=print_skipped, on_member=report, candidates=candidates, scheme=scheme, **options,
    )  # fmt: skip
    if trained.global_rank == 0:  # under DDP the other processes trained the same model; one wrote it
        if chosen := trained.record.get("selection"):
            print(chosen["summary"])
        if trained.test is not None:
            test = trained.record["test"]
            score = f"ROC-AUC {test['rocauc']:.4g}" if "rocauc" in test else f"MAE {test['mae']:.4g}"
            print(f"held-out test split ({len(trained.test)} structures): {score}")
        print(f"saved {type(trained.model).__name__} with its model card to {args.out}")
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    """Matbench protocol (5-fold KFold, seed 18012019) on any dataset, with a report."""
    spec = train_spec(args)
    check_paths_distinct({"--out": args.out}, {"--data": args.data})
    check_output_dir(args.out)
    candidates, scheme = selection(args, spec)
    dataset = load_training_data(args.data, args.target, smallest_cutoff(spec, candidates), args.skip_invalid)
    print_skipped(dataset)
    summary = run_cv(dataset, spec, args.out, cache_of(args), units=args.units, candidates=candidates, scheme=scheme,
                     command=shlex.join(["matgl-hybrid", *args.argv]))  # fmt: skip
    metric, label = ("rocauc", "ROC-AUC") if "rocauc_mean" in summary else ("mae", "MAE")
    print(f"{label} {summary[f'{metric}_mean']:.4g} ± {summary[f'{metric}_std']:.2g} over 5 folds; report: "
          f"{args.out / 'cv.md'}")  # fmt: skip
    return 0


def cv_options(p: argparse.ArgumentParser) -> None:
    """The options of ``cv``."""
    add_data_options(p)
    p.add_argument("--out", required=True, type=Path, help="output folder (resumable: finished folds are kept)")
    p.add_argument("--units", default=None, help="units of the target, for the report (default: known targets' own)")
    add_spec_options(p)
    add_selection_options(p, by_default=False)
    p.set_defaults(func=cmd_cv)


def train_options(p: argparse.ArgumentParser) -> None:
    """The options of ``train``."""
    add_data_options(p)
    p.add_argument("--out", required=True, type=Path, help="directory of the saved model")
    p.add_argument("--ensemble", type=int, default=1, help="train K members with seeds seed..seed+K-1")
    p.add_argument("--log10-target", action="store_true", help="learn log10 of the target (non-positive dropped)")
    p.add_argument(
        "--units", default=None, help="units of the (transformed) target, stored with the model (default: a known "
        "target's own, e.g. GPa for K_VRH, log10 GPa with --log10-target)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.0, help="hold out this fraction as a test split, scored in the card"
    )
    p.add_argument("--test-seed", type=int, default=0, help="seed of the held-out test split")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="Lightning checkpoints; rerunning with the same data and settings resumes from them",
    )
    add_overwrite_option(
        p, "replace a model saved in --out, or write into a non-empty --out that holds none (its files stay)"
    )
    add_spec_options(p)
    add_selection_options(p, by_default=True)
    p.set_defaults(func=cmd_train)
