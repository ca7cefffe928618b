"""The Matbench protocol on any data: seeded 5-fold splits, resumable per-fold records, their summary."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import numpy as np
from sklearn.metrics import mean_absolute_error
from tqdm.auto import tqdm

from matgl_hybrid.data import StructureData
from matgl_hybrid.data.splits import kfold_splits
from matgl_hybrid.training.fold_store import FoldStore

#: ``train_and_predict(train, test, fold) -> (predictions (n_test,), params)``.
TrainAndPredict = Callable[[StructureData, StructureData, int], tuple[np.ndarray, dict[str, Any]]]


def cross_validate(
    data: StructureData,
    train_and_predict: TrainAndPredict,
    store: FoldStore,
    folds: Iterable[int] = range(5),
    desc: str = "cross-validation",
    progress: bool = True,
    saved: Callable[[int], None] | None = None,
    stratified: bool = False,
) -> dict[int, dict[str, Any]]:
    """Run the Matbench protocol on ``data`` (``stratified``: folds stratified by its class labels, as Matbench's
    classification tasks); finished folds found in ``store`` are not redone; ``saved(fold)`` is
    called once a fold's record is written (e.g. to remove what its training kept for a resume).
    ``train_and_predict(train, test, fold)`` returns the test predictions and the fold's ``params``; a
    ``train_seconds`` there (the training's, with the sessions it resumed from) is the record's ``train_seconds``
    when longer than this call's wall time.

    Returns:
        The records of all requested folds, by fold number.
    """
    if data.targets is None:
        raise ValueError("cross-validation needs targets")
    splits = kfold_splits(len(data), copies=data.structure_keys(), classes=data.targets if stratified else None)
    folds = list(folds)
    finished = {fold for fold in folds if store.has(fold)}  # a fold of another run is refused before any training
    if finished and progress:
        tqdm.write(f"resuming: fold(s) {', '.join(map(str, sorted(finished)))} reused from {store.directory}")
    bar = tqdm(folds, desc=desc, unit="fold", disable=not progress)
    for fold in bar:
        if fold in finished:
            continue
        train, test = data.subset(splits[fold][0]), data.subset(splits[fold][1])
        start = time.perf_counter()
        predicted, params = train_and_predict(train, test, fold)
        # the training's own seconds, with those of sessions it resumed from, where it says them
        seconds = max(time.perf_counter() - start, params.pop("train_seconds", 0.0))
        predicted = np.asarray(predicted, dtype=float)
        if bad := [i for i, p in zip(test.ids, predicted, strict=True) if not np.isfinite(p)]:
            shown = ", ".join(map(repr, bad[:3])) + (" …" if len(bad) > 3 else "")
            warnings.warn(f"fold {fold}: {len(bad)} predictions are not finite ({shown}): its score is NaN",
                          stacklevel=2)  # fmt: skip
        store.save(
            fold,
            {
                "mae": float(mean_absolute_error(test.targets, predicted)) if np.isfinite(predicted).all() else np.nan,
                "train_seconds": seconds,
                "n_train": len(train),
                "n_test": len(test),
                "params": params,
                "ids": list(test.ids),
                "y_true": test.targets.tolist(),
                "y_pred": predicted.tolist(),
            },
        )
        if saved is not None:
            saved(fold)
        bar.set_postfix(last_mae=f"{store.load(fold)['mae']:.4g}")
    return {fold: store.load(fold) for fold in folds}


def summarize(records: dict[int, dict[str, Any]], metric: str = "mae") -> dict[str, Any]:
    """``{"fold_<metric>": [...], "<metric>_mean", "<metric>_std", "train_seconds", "folds_done"}`` of fold records."""
    values = [records[f][metric] for f in sorted(records)]
    return {
        f"fold_{metric}": values,
        f"{metric}_mean": float(np.mean(values)),
        f"{metric}_std": float(np.std(values)),
        "train_seconds": float(np.mean([records[f]["train_seconds"] for f in records])),
        "folds_done": len(values),
    }


def pooled_parity(records: dict[int, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """All held-out (y_true, y_pred) of the finished folds."""
    y = np.concatenate([r["y_true"] for r in records.values()])
    p = np.concatenate([r["y_pred"] for r in records.values()])
    return y, p


def other_versions(records: Mapping[Hashable, Mapping[str, Any]], installed: list[str]) -> list[Hashable]:
    """The keys of the fold ``records`` trained under other package versions than ``installed`` (their
    ``params.requirements``; a record without any, written before they were kept, is not counted)."""
    return [key for key, record in records.items() if record["params"].get("requirements") not in (None, installed)]
