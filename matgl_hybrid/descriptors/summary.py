"""A summary table of computed descriptors: their range, missing values and rank correlation with a target."""

from __future__ import annotations

import numpy as np
import pandas as pd


def describe_descriptors(frame: pd.DataFrame, target: np.ndarray, label: str = "log10 target") -> pd.DataFrame:
    """Per descriptor: mean, std, min, max over the structures with a positive target, the NaN count over all, and the
    Spearman correlation with log10 of the target (``label``), strongest first.

    Args:
        frame: (n, D) descriptors as :func:`~matgl_hybrid.descriptors.featurize` returns them.
        target: (n,) target values; non-positive ones are left out of the statistics.
    """
    positive = np.asarray(target) > 0
    kept = frame[positive].reset_index(drop=True)
    summary = kept.describe().T[["mean", "std", "min", "max"]]
    summary["NaN"] = frame.isna().sum()
    summary[f"spearman {label}"] = kept.corrwith(pd.Series(np.log10(np.asarray(target)[positive])), method="spearman")
    return summary.sort_values(f"spearman {label}", key=np.abs, ascending=False)
