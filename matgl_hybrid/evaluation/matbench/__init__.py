"""Matbench v0.1 on the published folds, and leaderboard-ready submission folders.

``datasets`` (the dataset files, checked against matminer's sha256), ``candidates`` (the record of the model chosen
per fold), ``runner`` (:class:`MatbenchRun`: per fold, one spec, or candidates chosen on an inner validation split
or by inner K-fold with the selection engine, whose K models then predict as an ensemble), ``submission``
(``results.json.gz``, ``info.json``, ``run_matbench.py``), ``rules`` (the leaderboard's checks of a folder),
``report`` (scores beside the leaderboard).
"""

from matgl_hybrid.descriptors.sets import describe_descriptor_set
from matgl_hybrid.evaluation.matbench.datasets import (
    DatasetFile,
    DatasetFileError,
    dataset_file,
    load_task,
    verify_dataset_file,
)
from matgl_hybrid.evaluation.matbench.report import (
    LEADERBOARD_FILE,
    load_leaderboard,
    score_lines,
    write_matbench_report,
)
from matgl_hybrid.evaluation.matbench.rules import (
    check_submission_names,
    validate_folder,
    validate_submission,
    validate_submissions,
)
from matgl_hybrid.evaluation.matbench.runner import MatbenchRun, fold_data, rerun_submission
from matgl_hybrid.evaluation.matbench.submission import (
    CITATIONS,
    REQUIREMENTS,
    read_results,
    requirements,
    write_results,
)
from matgl_hybrid.training.candidates import CANDIDATE_NAME, check_candidate_name, read_candidates

__all__ = [
    "CANDIDATE_NAME",
    "CITATIONS",
    "LEADERBOARD_FILE",
    "REQUIREMENTS",
    "DatasetFile",
    "DatasetFileError",
    "MatbenchRun",
    "check_candidate_name",
    "check_submission_names",
    "dataset_file",
    "describe_descriptor_set",
    "fold_data",
    "load_leaderboard",
    "load_task",
    "read_candidates",
    "read_results",
    "requirements",
    "rerun_submission",
    "score_lines",
    "validate_folder",
    "validate_submission",
    "validate_submissions",
    "verify_dataset_file",
    "write_matbench_report",
    "write_results",
]
