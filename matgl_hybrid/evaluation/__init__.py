"""Evaluation: the Matbench protocol on any data (``folds``, ``cv``), Matbench itself (``matbench``), reports."""

from matgl_hybrid.evaluation.cv import run_cv
from matgl_hybrid.evaluation.folds import FoldStore, TrainAndPredict, cross_validate, pooled_parity, summarize
from matgl_hybrid.evaluation.report import write_report

__all__ = ["FoldStore", "TrainAndPredict", "cross_validate", "pooled_parity", "run_cv", "summarize", "write_report"]
