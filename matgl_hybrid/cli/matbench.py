"""``matbench`` (tasks on the published folds, a submission folder) and ``validate`` (check such folders)."""

from __future__ import annotations

import argparse
from pathlib import Path

from matgl_hybrid.cli.options import cache
from matgl_hybrid.cli.spec import add_spec_options, train_spec
from matgl_hybrid.evaluation.matbench import (
    MatbenchRun,
    check_submission_names,
    read_candidates,
    score_lines,
    validate_folder,
    validate_submission,
)


def cmd_matbench(args: argparse.Namespace) -> int:
    """Run Matbench v0.1 tasks on the published folds and write a submission folder."""
    out = args.out or Path("matbench_submissions") / f"matbench_v0.1_{args.algorithm}"
    check_submission_names(out, args.algorithm, args.authors)
    candidates = read_candidates(args.candidates) if args.candidates else {}
    if forests := [name for name, c in candidates.items() if c.get("model") == "random_forest"]:
        raise ValueError(f"{args.candidates}: matbench takes graph-network candidates only; {', '.join(forests)} "
                         "is a random forest (train and cv take it)")  # fmt: skip
    run = MatbenchRun(
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
        spec=train_spec(args),
        candidates=candidates,
        inner_folds=args.inner_folds,
        out=out,
        algorithm=args.algorithm,
        authors=args.authors,
        data_dir=args.data_dir,
        download=not args.no_download,
        cache_dir=cache(args),
        allow_unofficial_data=args.allow_unofficial_data,
        data_provenance=args.data_provenance,
        protocol=args.protocol,
    )
    benchmark = run.run()
    for line in score_lines(benchmark):
        print(line)
    problems = validate_submission(out)
    print(f"wrote {out} (report: {out / 'report.md'}); "
          + ("valid submission" if not problems else "not yet valid: " + "; ".join(problems)))  # fmt: skip
    return 0 if not problems else 1


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a submission folder, or every folder of a ``matbench_submissions/``; exit 1 when any fails."""
    found = validate_folder(args.folder)
    for name, problems in found.items():
        print(f"{name}: " + ("valid" if not problems else "; ".join(problems)))
    if not found:
        print(f"{args.folder}: no submission folders (matbench_v0.1_<algorithm>/) found")
    return 0 if found and not any(found.values()) else 1


def validate_options(p: argparse.ArgumentParser) -> None:
    """The options of ``validate``."""
    p.add_argument("folder", type=Path)
    p.set_defaults(func=cmd_validate)


def matbench_options(p: argparse.ArgumentParser) -> None:
    """The options of ``matbench``."""
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
        "record the one with the lowest inner-validation MAE (log loss for a classifier)",
    )
    p.add_argument(
        "--inner-folds",
        type=int,
        default=None,
        metavar="K",
        help="choose per fold by inner K-fold cross-validation on the training fold (the selection engine); the "
        "chosen candidate's K models, an ensemble, predict the test fold (default: one inner validation split)",
    )
    p.add_argument(
        "--protocol",
        default="",
        help="where the candidates and selection rule were registered before any test fold was scored (e.g. "
        "'protocol.md @ <commit>'): info.json, the report and run_matbench.py say so",
    )
    add_spec_options(p)
    p.set_defaults(func=cmd_matbench)
