"""``matgl-hybrid cv``: the Matbench protocol for a training spec on any dataset, resumable, with a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from matgl_hybrid.data import StructureData, target_units
from matgl_hybrid.data.splits import MATBENCH_SEED
from matgl_hybrid.descriptors import get_descriptor_set
from matgl_hybrid.evaluation.folds import FoldStore, cross_validate, pooled_parity, summarize
from matgl_hybrid.evaluation.report import write_report
from matgl_hybrid.files import atomic_write_text, check_output_dir
from matgl_hybrid.fingerprint import run_fingerprint
from matgl_hybrid.training import TrainSpec, fit


def run_cv(
    data: StructureData,
    spec: TrainSpec,
    out: str | Path,
    cache_dir: str | Path | None = None,
    units: str | None = None,
) -> dict[str, Any]:
    """Matbench protocol for a :class:`~matgl_hybrid.training.TrainSpec` on any dataset (``matgl-hybrid cv``).

    ``cache_dir``: descriptor cache folder (None: no cache).

    Writes ``<out>/folds/fold<k>.json`` (resumable: a finished fold is reused only when it was produced from the
    same data, target, settings and descriptor version), ``<out>/cv.json`` (the summary) and ``<out>/cv.{md,png}``.
    """
    out = check_output_dir(out)
    spec.validate()
    version = get_descriptor_set(spec.descriptor_set).version if spec.descriptor_set else None
    store = FoldStore(out / "folds", run_fingerprint([data], spec.to_dict(), version))

    def train_and_predict(train: StructureData, test: StructureData, fold: int):
        # Test folds may hold elements the training folds lack: embed all of MatGL's default elements.
        fold_spec = type(spec)(**{**spec.to_dict(), "seed": spec.seed + fold, "element_types": "all"})
        result = fit(train, spec=fold_spec, cache_dir=cache_dir)
        predicted = result.model.predict(test.structures, cache_dir=cache_dir, ids=test.ids)
        return predicted, {"best_val_mae": result.best_val_mae, "best_epoch": result.best_epoch}

    records = cross_validate(data, train_and_predict, store, desc=f"cv {data.target_name}")
    y, p = pooled_parity(records)
    summary = {**summarize(records), "mad": float(np.mean(np.abs(y - y.mean()))), "spec": spec.to_dict()}
    if data.skipped:  # entries left out on loading (--skip-invalid): named, so that nobody wonders
        summary["skipped_entries"] = [vars(e) for e in data.skipped]
    atomic_write_text(out / "cv.json", json.dumps(summary, indent=1) + "\n")
    name = data.target_name or "target"
    units = units or target_units(name)
    label = f"{spec.backbone}, {spec.readout} readout"
    write_report(
        out / "cv",
        f"Cross-validation of {name} (Matbench protocol)",
        {name: {label: summary}},
        {name: units},
        {name: (label, y, p)},
        notes=[
            f"Model: {spec.backbone} backbone, {spec.readout} readout, descriptors "
            f"{spec.descriptor_set or 'none'} ({spec.fusion}).",
            f"5-fold KFold(shuffle=True, random_state={MATBENCH_SEED}) over the dataset order, {len(data)} entries."
            + (f" {len(data.skipped)} entries left out (ids and reasons in cv.json)." if data.skipped else ""),
        ],
    )
    return summary
