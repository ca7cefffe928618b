"""The ``matgl-hybrid`` command line: parse arguments, call the package API, print or write the result."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from matgl_hybrid import data, inference
from matgl_hybrid.checkpoint import (
    FORMAT_VERSION,
    check_model_dir,
    load_checkpoint,
    migrate_checkpoint,
    read_header,
    save_checkpoint,
)
from matgl_hybrid.demo import DEMO_CHECKPOINT, MODEL, PLOT, TABLE, run_demo
from matgl_hybrid.descriptors import NAMED_SETS, DescriptorCache, archive_values, featurize, import_archive
from matgl_hybrid.descriptors.summary import describe_descriptors
from matgl_hybrid.evaluation import run_cv
from matgl_hybrid.evaluation.matbench import MatbenchRun, read_candidates, validate_folder, validate_submission
from matgl_hybrid.files import atomic_write_text, check_output_dir, check_output_file
from matgl_hybrid.graphs import drop_unconnected
from matgl_hybrid.inference import split_predictable
from matgl_hybrid.layers import FUSIONS, READOUTS
from matgl_hybrid.models import HybridEnsemble
from matgl_hybrid.models.backbones import BACKBONES
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.pretrained import list_pretrained, resolve
from matgl_hybrid.probe import (
    descriptor_importance,
    embed,
    probe,
    untrained_models,
    write_importance_report,
    write_probe_report,
)
from matgl_hybrid.ssl import pretrain
from matgl_hybrid.ssl.corpus import pretraining_corpus
from matgl_hybrid.training import FitResult, TrainSpec, train
from matgl_hybrid.training.spec import LOSSES
from matgl_hybrid.version import __version__


def _add_featurize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--descriptors", default="gong28", help="descriptor set, e.g. gong28, composition, gong28+lattice")
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (-1: all cores)")
    _add_cache_options(p)


def _featurize(args: argparse.Namespace, dataset: data.StructureData) -> pd.DataFrame:
    return featurize(dataset.structures, args.descriptors, n_jobs=args.n_jobs, cache_dir=_cache(args), ids=dataset.ids)


def cmd_featurize(args: argparse.Namespace) -> int:
    """Compute descriptors of a dataset and write them as CSV (``id`` then one column per descriptor)."""
    check_output_file(args.out)
    if args.archive:  # checked before the work
        check_output_file(args.archive)
        if args.no_cache:
            raise ValueError("--archive writes the cached values: it cannot be used with --no-cache")
    dataset = data.load(args.data, target=args.target)
    frame = _featurize(args, dataset)
    frame.insert(0, "id", dataset.ids)
    if dataset.targets is not None:
        frame[dataset.target_name] = dataset.targets
    atomic_write_text(args.out, frame.to_csv(index=False))
    print(f"wrote {len(frame)} rows x {frame.shape[1] - 1} columns to {args.out}")
    if args.archive:
        n = archive_values(dataset.structures, args.descriptors, _cache(args), args.archive)
        print(f"archived the {args.descriptors} values of {n} structures in {args.archive}")
    if args.summary:
        if dataset.targets is None:
            raise ValueError("--summary ranks descriptors by their correlation with the target: give --target")
        summary = describe_descriptors(frame.drop(columns=["id", dataset.target_name]), dataset.targets)
        with pd.option_context("display.width", 200, "display.max_rows", 200, "display.float_format", "{:.4g}".format):
            print(summary)
    return 0


def cmd_cache_import(args: argparse.Namespace) -> int:
    """Add the values of archives written by ``featurize --archive`` to the descriptor cache."""
    cache = args.cache_dir or descriptor_cache_dir()
    for archive in args.archives:
        n = import_archive(DescriptorCache(cache), archive)
        print(f"imported the values of {n} structures from {archive} into {cache}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: plain MEGNet against the recommended hybrid on the embedded de Jong set, then next steps."""
    result = run_demo(
        args.out,
        max_epochs=args.max_epochs,
        n_structures=args.n_structures,
        seed=args.seed,
        n_jobs=args.n_jobs,
        cache_dir=_cache(args),
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
        "  matgl-hybrid matbench --tasks matbench_jdft2d --data-dir DIR                       # a Matbench task\n"
        f"  matgl-hybrid probe --model {result.out / MODEL} --data DATA --out probe       "
        "# what the embeddings encode"
    )
    return 0


#: The training flags: flag -> (type, meaning). Their defaults are ``TrainSpec()``'s (the recommended recipe), shown in
#: ``--help``; a flag not given keeps the ``--config`` file's value, else that default.
_SPEC_FLAGS: dict[str, tuple[type, str]] = {
    "backbone": (str, "graph network"),
    "readout": (
        str,
        "pooling of node features into one vector per structure; native: the backbone's own readout and head, "
        "as MatGL ships it (no descriptors)",
    ),
    "descriptors": (
        str,
        f"descriptor set fused into the readout: {', '.join(NAMED_SETS)}, ssl:<encoder>:<layers> or "
        "sim:chgnet[:full], several joined with '+' (e.g. gong28+composition); none: the plain backbone",
    ),
    "fusion": (str, "how the descriptors join the readout"),
    "cutoff": (float, "graph cutoff radius (Å)"),
    "max_epochs": (int, "most training epochs"),
    "batch_size": (int, "structures per batch"),
    "lr": (float, "learning rate (cosine decay to lr × decay_alpha)"),
    "loss": (str, "training loss"),
    "val_fraction": (float, "fraction of the training data held out for early stopping"),
    "patience": (int, "epochs without a better validation MAE before training stops"),
    "seed": (int, "seed of the validation split and of the initialisation"),
    "accelerator": (str, "Lightning accelerator: auto (a GPU when present), cpu, gpu, …"),
    "n_jobs": (int, "descriptor workers (-1: all cores)"),
    "elements": (
        str,
        "elements the model accepts: training (those of the training data) or all (MatGL's 89); a list of "
        "symbols: in --config",
    ),
}
#: The allowed values of the training flags that have a fixed set of them.
_SPEC_CHOICES = {"backbone": list(BACKBONES), "readout": [*READOUTS, "native"], "fusion": list(FUSIONS), "loss": LOSSES}
#: Flags whose TrainSpec field has another name (the flags keep their 0.1 names).
_FLAG_FIELDS = {"descriptors": "descriptor_set", "elements": "element_types"}


def train_spec(args: argparse.Namespace) -> TrainSpec:
    """Defaults, then the ``--config`` JSON file, then the flags given on the command line."""
    values = TrainSpec.from_json(args.config).to_dict() if args.config else {}
    for flag in _SPEC_FLAGS:
        if (value := getattr(args, flag)) is not None:
            values[_FLAG_FIELDS.get(flag, flag)] = value
    if args.devices is not None:
        values["devices"] = int(args.devices) if args.devices.isdigit() else args.devices
    return TrainSpec.from_dict(values)


def _first_skipped(skipped: Sequence[data.SkippedEntry]) -> str:
    """The first three skipped entries with their reasons, for a one-line message."""
    return "; ".join(f"{e.id}: {e.reason}" for e in skipped[:3]) + (" …" if len(skipped) > 3 else "")


def _training_data(args: argparse.Namespace, spec: TrainSpec) -> data.StructureData:
    """``--data``/``--target``; with ``--skip-invalid``, without the invalid entries and those whose graph has no
    edges within the model's cutoff (listed on the screen)."""
    dataset = data.load(args.data, target=args.target, skip_invalid=args.skip_invalid)
    if not args.skip_invalid:
        return dataset
    dataset = drop_unconnected(dataset, spec.cutoff)
    if not len(dataset):
        raise ValueError(f"{args.data}: no valid entry to train on ({len(dataset.skipped)} skipped)")
    if skipped := dataset.skipped:
        shown = _first_skipped(skipped)
        print(f"skipped {len(skipped)} of {len(skipped) + len(dataset)} entries ({shown})")
    return dataset


def cmd_train(args: argparse.Namespace) -> int:
    """Train a hybrid model (or an ensemble of ``--ensemble K``) and save it, with a model card, to ``--out``."""
    spec = train_spec(args)
    if not 0 <= args.test_fraction < 1:
        raise ValueError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    if args.ensemble < 1:
        raise ValueError(f"--ensemble must be >= 1, got {args.ensemble}")
    ckpt_dirs = [args.checkpoint_dir] if args.checkpoint_dir else []
    check_model_dir(args.out, overwrite=args.overwrite, allow=ckpt_dirs)
    for folder in ckpt_dirs:
        check_output_dir(folder)
    dataset = _training_data(args, spec)
    if args.log10_target:
        dataset = data.log10_targets(dataset)

    def report(k: int, result: FitResult) -> None:
        if result.global_rank == 0:
            print(
                f"member {k + 1}/{args.ensemble}: best validation MAE {result.best_val_mae:.4g} "
                f"at epoch {result.best_epoch} ({result.seconds:.0f} s)"
            )

    trained = train(
        dataset,
        spec,
        ensemble=args.ensemble,
        test_fraction=args.test_fraction,
        test_seed=args.test_seed,
        target_units=args.units,
        cache_dir=_cache(args),
        checkpoint_dir=args.checkpoint_dir,
        on_member=report,
    )
    if trained.global_rank != 0:  # under DDP the other processes trained the same model: one writes it
        return 0
    source = {
        "data": str(args.data),
        "target": args.target,
        "target_transform": "log10" if args.log10_target else None,
        "skipped_entries": [vars(e) for e in dataset.skipped],
    }
    command = shlex.join(["matgl-hybrid", *args.argv])
    trained.save(args.out, source=source, command=command, overwrite=args.overwrite, allow=ckpt_dirs)
    if trained.test is not None:
        print(f"held-out test split ({len(trained.test)} structures): MAE {trained.record['test']['mae']:.4g}")
    print(f"saved {type(trained.model).__name__} with its model card to {args.out}")
    return 0


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
        cache_dir=_cache(args),
        n_jobs=args.n_jobs,
        return_std=True,
    )
    frame = pd.DataFrame({"id": dataset.ids, "prediction": mean})
    if isinstance(model, HybridEnsemble):
        frame["std"] = std
    atomic_write_text(args.out, frame.to_csv(index=False))
    print(f"wrote {len(frame)} predictions to {args.out}")
    if args.skip_invalid:  # written even when empty, so that a listing of an earlier run is never left stale
        listing = args.out.with_name(args.out.name + ".skipped.csv")
        atomic_write_text(
            listing, pd.DataFrame([vars(e) for e in skipped], columns=["id", "reason"]).to_csv(index=False)
        )
        shown = _first_skipped(skipped)
        print(f"skipped {len(skipped)} invalid entries ({shown or 'none'}); listed in {listing}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict a dataset with a saved model; CSV columns ``id,prediction`` (+ ``std`` for an ensemble)."""
    check_output_file(args.out)
    return predict_to_csv(load_checkpoint(args.model), args)


def cmd_cv(args: argparse.Namespace) -> int:
    """Matbench protocol (5-fold KFold, seed 18012019) on any dataset, with a report."""
    spec = train_spec(args)
    check_output_dir(args.out)
    summary = run_cv(_training_data(args, spec), spec, args.out, _cache(args))
    print(f"MAE {summary['mae_mean']:.4g} ± {summary['mae_std']:.2g} over 5 folds; report: {args.out / 'cv.md'}")
    return 0


def cmd_matbench(args: argparse.Namespace) -> int:
    """Run Matbench v0.1 tasks on the published folds and write a submission folder."""
    out = args.out or Path("matbench_submissions") / f"matbench_v0.1_{args.algorithm}"
    run = MatbenchRun(
        tasks=args.tasks.split(","),
        spec=train_spec(args),
        candidates=read_candidates(args.candidates) if args.candidates else {},
        out=out,
        algorithm=args.algorithm,
        authors=args.authors,
        data_dir=args.data_dir,
        download=not args.no_download,
        cache_dir=_cache(args),
        allow_unofficial_data=args.allow_unofficial_data,
        data_provenance=args.data_provenance,
    )
    run.run()
    problems = validate_submission(out)
    print(f"wrote {out}; " + ("valid submission" if not problems else "not yet valid: " + "; ".join(problems)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a submission folder, or every folder of a ``matbench_submissions/``; exit 1 when any fails."""
    found = validate_folder(args.folder)
    for name, problems in found.items():
        print(f"{name}: " + ("valid" if not problems else "; ".join(problems)))
    if not found:
        print(f"{args.folder}: no submission folders (matbench_v0.1_<algorithm>/) found")
    return 0 if found and not any(found.values()) else 1


def cmd_probe(args: argparse.Namespace) -> int:
    """Probe frozen embeddings for every descriptor of a set; table (CSV, markdown) and heat map."""
    if (args.model is None) == (args.backbone is None):
        raise ValueError("give --model DIR (a trained model) or --backbone NAME (a fresh one), one of the two")
    check_output_dir(args.out)
    dataset = data.load(args.data)
    cache = _cache(args)
    descriptors = featurize(dataset.structures, args.descriptors, n_jobs=args.n_jobs, cache_dir=cache, ids=dataset.ids)
    if args.model:
        models = {args.model.name: load_checkpoint(args.model)}
    else:
        models = untrained_models(args.backbone, args.readouts.split(","), args.seed)
    embeddings = {
        name: embed(m, dataset.structures, dataset.ids, args.tap, cache_dir=cache, n_jobs=args.n_jobs)
        for name, m in models.items()
    }
    table = probe(embeddings, descriptors, probes=args.probes.split(","))
    matrix = write_probe_report(table, args.out, str(args.data), len(dataset), args.tap)
    print(matrix.to_string(float_format="{:.3f}".format))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Permutation importance of each descriptor input of a trained hybrid on held-out data."""
    check_output_dir(args.out)
    model = load_checkpoint(args.model)
    dataset = data.load(args.data, target=args.target)
    table = descriptor_importance(
        model, dataset.structures, dataset.targets, dataset.ids, _cache(args), n_repeats=args.repeats
    )
    write_importance_report(table, args.out, str(args.model), str(args.data), len(dataset), args.repeats)
    print(table.to_string(index=False))
    return 0


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
        check_output_file(args.out)
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


def cmd_migrate(args: argparse.Namespace) -> int:
    """Convert a checkpoint of an older matgl-hybrid into this version's format, in a new folder."""
    check_model_dir(args.out)
    migrate_checkpoint(args.source, args.out)
    print(f"wrote {args.source} in checkpoint format {FORMAT_VERSION} to {args.out}")
    return 0


_CACHE_DIR_HELP = (
    "descriptor cache folder (default: descriptors/ under $MATGL_HYBRID_CACHE, else ~/.cache/matgl-hybrid)"
)


def _add_cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path, default=None, help=_CACHE_DIR_HELP)
    p.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="record file (.json.gz), folder of CIF/POSCAR, or CSV")
    p.add_argument("--target", required=True, help="target to learn")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out invalid entries and structures with no neighbour pair within the cutoff, listing them "
        "(default: stop at the first, naming it)",
    )


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="JSON file of TrainSpec fields; flags given here override it (default: none, the defaults below)",
    )
    p.add_argument("--devices", default=None, help="Lightning devices, e.g. 1, 4 (default: auto)")
    recipe = TrainSpec()
    for name, (kind, meaning) in _SPEC_FLAGS.items():
        default = getattr(recipe, _FLAG_FIELDS.get(name, name))
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            choices=_SPEC_CHOICES.get(name),
            help=f"{meaning} (default: {'none' if default is None else default})",
        )
    _add_cache_options(p)


def _add_prediction_options(p: argparse.ArgumentParser) -> None:
    _add_cache_options(p)
    p.add_argument("--batch-size", type=int, default=64, help="structures per batch (default: 64)")
    p.add_argument("--n-jobs", type=int, default=-1, help="descriptor workers (-1: all cores)")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="predict the valid entries and list the others in <out>.skipped.csv (default: stop at the first)",
    )


def _cache(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else (args.cache_dir or descriptor_cache_dir())


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, or says it is required (unless the help already names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)"
        if action.default is None:
            return f"{text} (default: none)"
        if action.default is False and action.nargs == 0:
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def _command(sub: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand, listed with its one-line ``summary`` in ``matgl-hybrid --help``."""
    return sub.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".", formatter_class=_HelpFormatter
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all subcommands."""
    parser = argparse.ArgumentParser(
        prog="matgl-hybrid",
        description="Hybrid graph networks for materials: fuse descriptors and universal-potential knowledge into "
        "MatGL models. Run `matgl-hybrid COMMAND --help` for the options of a command.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"matgl-hybrid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    p = _command(sub, "demo", "the main job: plain MEGNet vs the recommended hybrid on the embedded de Jong set")
    p.add_argument("--out", type=Path, default=Path("demo"), help="folder of the table, parity plot and trained model")
    p.add_argument("--max-epochs", type=int, default=10, help="training budget of each model")
    p.add_argument("--seed", type=int, default=0, help="seed of the 80/20 test split")
    p.add_argument(
        "--n-structures",
        type=int,
        default=None,
        help="only the first N structures, for a quick try (default: all 1181)",
    )
    p.add_argument("--n-jobs", type=int, default=-1, help="descriptor workers (-1: all cores)")
    _add_cache_options(p)
    p.set_defaults(func=cmd_demo)

    p = _command(sub, "featurize", "compute descriptors of a dataset and write a CSV")
    p.add_argument("--data", required=True, help="record file (.json.gz), folder of CIF/POSCAR, or CSV")
    p.add_argument("--target", default=None, help="target column to carry into the CSV")
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    p.add_argument(
        "--summary", action="store_true", help="print each descriptor's range and rank correlation with the target"
    )
    p.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="also write the cached values to this gzipped archive, for `cache-import` on another machine "
        "(e.g. simulations run on a GPU)",
    )
    _add_featurize_options(p)
    p.set_defaults(func=cmd_featurize)

    p = _command(sub, "cache-import", "add descriptor values archived by `featurize --archive` to the cache")
    p.add_argument("archives", nargs="+", type=Path, help="archive files (.json.gz)")
    p.add_argument("--cache-dir", type=Path, default=None, help=_CACHE_DIR_HELP)
    p.set_defaults(func=cmd_cache_import)

    p = _command(sub, "train", "train a hybrid (or plain, --descriptors none) model")
    _add_data_options(p)
    p.add_argument("--out", required=True, type=Path, help="directory of the saved model")
    p.add_argument("--ensemble", type=int, default=1, help="train K members with seeds seed..seed+K-1")
    p.add_argument("--log10-target", action="store_true", help="learn log10 of the target (non-positive dropped)")
    p.add_argument("--units", default=None, help="units of the (transformed) target, stored with the model")
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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write the model into a non-empty --out that holds no model (its files stay; nothing is deleted)",
    )
    _add_spec_options(p)
    p.set_defaults(func=cmd_train)

    p = _command(sub, "cv", "Matbench protocol (5-fold, seed 18012019) on any dataset, with a report")
    _add_data_options(p)
    p.add_argument("--out", required=True, type=Path, help="output folder (resumable: finished folds are kept)")
    _add_spec_options(p)
    p.set_defaults(func=cmd_cv)

    p = _command(sub, "matbench", "run Matbench v0.1 tasks and write a leaderboard submission folder")
    p.add_argument("--tasks", required=True, help="comma-separated task names, e.g. matbench_jdft2d,matbench_phonons")
    p.add_argument("--algorithm", default="MatGLHybrid", help="leaderboard name, 5-15 characters")
    p.add_argument("--authors", default="matgl-hybrid developers", help="info.json's authors")
    p.add_argument("--out", type=Path, default=None, help="default: matbench_submissions/matbench_v0.1_<algorithm>")
    p.add_argument("--data-dir", type=Path, default=None, help="folder of the dataset files (sets MATMINER_DATA)")
    p.add_argument("--no-download", action="store_true", help="fail with instructions instead of downloading")
    p.add_argument(
        "--allow-unofficial-data",
        action="store_true",
        help="accept dataset files whose sha256 differs from matminer's (files you vouch for, e.g. reconstructions); "
        "info.json and the report then give each file's sha256 and call it reconstructed (default: refuse them)",
    )
    p.add_argument("--data-provenance", default="", help="where such files come from, recorded with them")
    p.add_argument(
        "--candidates",
        type=Path,
        default=None,
        help='JSON file {"name": {spec field: value}}: per fold, train each candidate (the spec so changed) and '
        "record the one with the lowest inner-validation MAE",
    )
    _add_spec_options(p)
    p.set_defaults(func=cmd_matbench)

    p = _command(sub, "probe", "how well frozen embeddings encode each descriptor (R²)")
    p.add_argument("--model", type=Path, default=None, help="a saved model directory")
    p.add_argument("--backbone", default=None, help="or a freshly initialised backbone (megnet, m3gnet, tensornet)")
    p.add_argument("--readouts", default="mean,sum,extensive", help="readouts of the fresh backbone")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed of the fresh backbone")
    p.add_argument("--data", required=True, help="record file (.json.gz), folder of CIF/POSCAR, or CSV")
    p.add_argument("--tap", default="graph", choices=["graph", "fused"], help="embedding after readout or fusion")
    p.add_argument("--probes", default="ridge,mlp", help="probe models: ridge and/or mlp")
    p.add_argument("--out", required=True, type=Path, help="folder of the probe report (md, json, png)")
    _add_featurize_options(p)
    p.set_defaults(func=cmd_probe)

    p = _command(sub, "explain", "permutation importance of a hybrid's descriptor inputs")
    p.add_argument("--model", required=True, type=Path, help="directory of a trained hybrid model")
    p.add_argument("--data", required=True, help="held-out data with targets")
    p.add_argument("--target", required=True, help="target of --data to score against")
    p.add_argument("--repeats", type=int, default=3, help="permutations per descriptor group")
    p.add_argument("--out", required=True, type=Path, help="folder of the importance report (md, json, png)")
    _add_cache_options(p)
    p.set_defaults(func=cmd_explain)

    p = _command(sub, "pretrained", "registered checkpoints: list, info, download, predict")
    p.add_argument("action", choices=["list", "info", "download", "predict"])
    p.add_argument("source", nargs="?", default=None, help="a registered name, a checkpoint folder or a URL")
    p.add_argument("--data", default=None, help="structures to predict (predict)")
    p.add_argument("--out", type=Path, default=None, help="output CSV (predict)")
    _add_prediction_options(p)
    p.set_defaults(func=cmd_pretrained)

    p = _command(sub, "pretrain", "self-supervised masked-atom pretraining of an encoder (no labels)")
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

    p = _command(sub, "validate", "check a submission folder (or a folder of them) like the leaderboard does")
    p.add_argument("folder", type=Path)
    p.set_defaults(func=cmd_validate)

    p = _command(sub, "migrate", "convert a checkpoint of an older matgl-hybrid into this version's format")
    p.add_argument("source", type=Path, help="the old checkpoint folder (left as it is)")
    p.add_argument("--out", required=True, type=Path, help="folder of the converted checkpoint")
    p.set_defaults(func=cmd_migrate)

    p = _command(sub, "predict", "predict a dataset with a saved model")
    p.add_argument("--model", required=True, type=Path, help="directory written by train")
    p.add_argument("--data", required=True, help="record file (.json.gz), folder of CIF/POSCAR, or CSV")
    p.add_argument("--out", required=True, type=Path, help="output CSV (id,prediction[,std])")
    _add_prediction_options(p)
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``matgl-hybrid``; errors in the user's input print one line and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded by train in the model card
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # bad input (InvalidStructureError, CheckpointError, …), files; bugs propagate
        print(f"matgl-hybrid {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
