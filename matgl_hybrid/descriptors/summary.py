"""A summary table of computed descriptors: their range, missing values and rank correlation with a target."""

from __future__ import annotations

import numpy as np
import pandas as pd


def describe_descriptors(frame: pd.DataFrame, target: np.ndarray, label: str = "target") -> pd.DataFrame:
    """Per descriptor: mean, std, min, max and NaN count over all structures, and the Spearman rank correlation with
    the target (``label``; rank-based, so the same as with log10 of a positive target), strongest first.

    Args:
        frame: (n, D) descriptors as :func:`~matgl_hybrid.descriptors.featurize` returns them.
        target: (n,) target values, any sign.
    """
    summary = frame.describe().T[["mean", "std", "min", "max"]]
    summary["NaN"] = frame.isna().sum()
    summary[f"spearman {label}"] = frame.corrwith(pd.Series(np.asarray(target, dtype=float), index=frame.index),
                                                  method="spearman")
    return summary.sort_values(f"spearman {label}", key=np.abs, ascending=False)
