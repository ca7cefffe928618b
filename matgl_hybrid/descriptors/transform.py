"""DescriptorTransform: impute missing values, standardize and clip to the training range, fitted on training data,
saved as JSON."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from matgl_hybrid.files import atomic_write_text, read_json

_LEARNED = ("feature_names_in_", "n_features_in_", "median_", "mean_", "scale_")


class TransformNotFittedError(NotFittedError, RuntimeError):
    """A :class:`DescriptorTransform` used before ``fit``: scikit-learn's ``NotFittedError`` (so ``ValueError`` and
    ``AttributeError`` too) and, as before this class existed, a ``RuntimeError``."""


class DescriptorTransform(TransformerMixin, BaseEstimator):
    """Median imputation, standardization, then clipping to the training range: a scikit-learn transformer.

    Parameters: ``clip`` (default True): clip each standardized column to the range it spans on the training rows,
    so a value a model never saw in training cannot drive it far outside what it learned. A column constant in
    training then always gives 0 (without clipping, a BatchNorm that saw only that constant divides a new value by
    the square root of its epsilon: one such column sent two of 234 heat capacities to 20 000 J/K/mol instead of
    138). A random forest's predictions do not change (its thresholds lie inside the training range).

    Learned state (set by :meth:`fit` or :meth:`from_dict`): ``feature_names_in_`` (D,), ``n_features_in_`` (D),
    ``median_`` (D,), ``mean_`` (D,), ``scale_`` (D,) and, with ``clip``, ``lower_`` and ``upper_`` (D,), the
    standardized training minimum and maximum; all computed after imputation on the training rows only. Every
    non-finite value (NaN, ±inf) counts as missing, in ``fit`` as in ``transform``. A column with no finite training
    value is imputed with 0 (with a warning); a constant column gets scale 1; the scale is the population standard
    deviation. A state saved without bounds (matgl-hybrid before 0.5) loads with ``clip=False``: its predictions
    stay what they were, but for the columns constant in training (:func:`constant_in_training`), which give the
    value every training row gave whatever they hold, as clipping would: a new value there reached a BatchNorm that
    had seen one value and came out hundreds of standard deviations away.

    Unlike scikit-learn's estimators, a transform fitted on an array without column names (numpy) still sets
    ``feature_names_in_``: to ``x0 … x{D-1}``, the names :meth:`get_feature_names_out` then returns and
    :meth:`to_dict` saves. A DataFrame given to :meth:`transform` must have the fitted columns in the fitted order; an
    array only the right number of columns.
    """

    def __init__(self, clip: bool = True):
        self.clip = clip

    def fit(self, X: pd.DataFrame | np.ndarray, y: Any = None) -> DescriptorTransform:
        """Learn medians, means, scales (and the clipping bounds) from training descriptors ``X`` (n, D)."""
        values, names = _as_array(X)
        values = np.where(np.isfinite(values), values, np.nan)  # inf is as missing as NaN
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            median = np.nanmedian(values, axis=0)
        empty = np.isnan(median)
        if empty.any():
            warnings.warn(
                f"descriptor columns with no value in the training data, imputed with 0: "
                f"{[names[i] for i in np.flatnonzero(empty)]}",
                stacklevel=2,
            )
        self.median_ = np.where(empty, 0.0, median)
        filled = np.where(np.isnan(values), self.median_, values)
        constant = np.ptp(filled, axis=0) == 0  # its mean can round off its value, its std off 0 (0.3: 5.6e-17)
        self.mean_ = np.where(constant, self.median_, filled.mean(axis=0))
        std = filled.std(axis=0)
        self.scale_ = np.where(constant | (std == 0), 1.0, std)
        if self.clip:
            standardized = (filled - self.mean_) / self.scale_
            self.lower_, self.upper_ = standardized.min(axis=0), standardized.max(axis=0)
        self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = len(names)
        return self

    def transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Impute, standardize (and clip) ``X`` (n, D) -> float32-safe float64 array (n, D), no NaN."""
        self._check_fitted()
        values, names = _as_array(X)
        if isinstance(X, pd.DataFrame) and list(names) != list(self.feature_names_in_):
            raise ValueError(
                f"descriptor columns differ from those the transform was fitted on: expected "
                f"{list(self.feature_names_in_)[:5]}… ({len(self.feature_names_in_)}), got {list(names)[:5]}… "
                f"({len(names)})"
            )
        if values.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} descriptor columns, got {values.shape[1]}")
        values = np.where(np.isfinite(values), values, self.median_)
        standardized = (values - self.mean_) / self.scale_
        if self.clip:
            return np.clip(standardized, self.lower_, self.upper_)
        trained = (self.median_ - self.mean_) / self.scale_  # what every training row of a constant column gave
        return np.where(constant_in_training(self.median_, self.mean_, self.scale_), trained, standardized)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output columns: ``feature_names_in_`` (a transform keeps its columns), an object array of str."""
        self._check_fitted()
        if input_features is not None and [str(n) for n in input_features] != list(self.feature_names_in_):
            raise ValueError("input_features differ from the feature_names_in_ the transform was fitted on")
        return self.feature_names_in_.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; floats round-trip exactly. ``lower`` and ``upper`` only with ``clip``."""
        self._check_fitted()
        state = {
            "feature_names": [str(n) for n in self.feature_names_in_],
            "median": self.median_.tolist(),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
        }
        if self.clip:
            state |= {"lower": self.lower_.tolist(), "upper": self.upper_.tolist()}
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DescriptorTransform:
        """Restore a transform saved with :meth:`to_dict` (``clip`` when it holds bounds)."""
        version = state.get("format_version", 1)  # 0.1 wrote format_version 1; the checkpoint format covers it now
        if version != 1:
            raise ValueError(f"DescriptorTransform format_version {version!r} is not one this installation reads")
        t = cls(clip="lower" in state or "upper" in state)
        arrays = ("median", "mean", "scale", "lower", "upper") if t.clip else ("median", "mean", "scale")
        if missing := [k for k in ("feature_names", *arrays) if k not in state]:
            raise ValueError(f"corrupt DescriptorTransform state: no {', '.join(missing)}")
        t.feature_names_in_ = np.array(state["feature_names"], dtype=object)
        for key in arrays:
            setattr(t, f"{key}_", np.array(state[key], dtype=float))
        if any(len(getattr(t, f"{key}_")) != len(t.feature_names_in_) for key in arrays):
            raise ValueError("corrupt DescriptorTransform state: arrays of different lengths")
        t.n_features_in_ = len(t.feature_names_in_)
        return t

    def save(self, path: str | Path) -> None:
        """Write the state as JSON (atomically)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> DescriptorTransform:
        """Read a transform written by :meth:`save`."""
        return cls.from_dict(read_json(path))

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN (and ±inf) are imputed, not refused
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"allow_nan": True}

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self, _LEARNED)
        except NotFittedError as error:
            raise TransformNotFittedError(
                "DescriptorTransform is not fitted: call fit() on training descriptors first"
            ) from error


def constant_in_training(median: Any, mean: Any, scale: Any) -> Any:
    """Which columns were constant on the training rows, from a transform's state (D,) -> bool (D,): scale 1 (the
    scale of a constant column) with the mean at the median, or, in states fitted before 0.2, a scale that is the
    float rounding of a constant's mean (a column of 0.3s: std 5.6e-17). numpy arrays or torch tensors.

    A varying column whose population standard deviation is exactly 1 and whose mean is exactly its median reads
    as constant too: only a state with bounds (``clip``) tells them apart."""
    return ((scale == 1.0) & (abs(mean - median) <= 1e-9 * abs(median) + 1e-12)) | (scale <= 1e-12 * abs(mean))


def _as_array(X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, list[str]]:
    if isinstance(X, pd.DataFrame):
        return X.to_numpy(dtype=float), [str(c) for c in X.columns]
    values = np.asarray(X, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"descriptors must be 2-d (n_structures, n_descriptors), got shape {values.shape}")
    return values, [f"x{i}" for i in range(values.shape[1])]
