"""``matgl-hybrid cv``: the Matbench protocol for a training spec on any dataset, resumable, with a report."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from matgl_hybrid.data import StructureData, target_units
from matgl_hybrid.data.splits import MATBENCH_SEED
from matgl_hybrid.descriptors import get_descriptor_set
from matgl_hybrid.evaluation.folds import FoldStore, cross_validate, other_versions, pooled_parity, summarize
from matgl_hybrid.evaluation.matbench.submission import requirements
from matgl_hybrid.evaluation.report import write_report
from matgl_hybrid.files import atomic_write_text, check_output_dir, read_json
from matgl_hybrid.fingerprint import encoder_digest, run_fingerprint, without_runtime_fields
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.training import Candidate, TrainSpec, ValidationSplit, device_name, fit, select
from matgl_hybrid.training.candidates import describe_candidate
from matgl_hybrid.training.datamodule import check_embedded, model_elements
from matgl_hybrid.training.selection import Scheme, check_has_network, is_classifier, predictions_or_nan

#: The report files ``run_cv`` writes into its folder (replaced by a rerun).
REPORT_FILES = ("cv.json", "cv.md", "cv.png", "cv_predictions.csv")


def check_own_reports(out: Path) -> None:
    """Refuse, before any work, a folder where a report file of ``cv`` would replace one that no ``cv`` wrote: a
    rerun replaces its own report (its ``cv.json`` is a summary of folds), never a user's file of the same name.

    Raises:
        FileExistsError: naming the file.
    """
    present = [out / name for name in REPORT_FILES if (out / name).exists()]
    if not present:
        return
    try:
        summary = read_json(out / "cv.json") if (out / "cv.json").is_file() else None
    except (OSError, ValueError):
        summary = None
    if not (isinstance(summary, dict) and "spec" in summary and "folds_done" in summary):
        raise FileExistsError(f"{present[0]} is not a report of an earlier `cv` in {out}, which cv would replace: "
                              "give another --out (or move the file)")  # fmt: skip


def run_cv(
    data: StructureData,
    spec: TrainSpec,
    out: str | Path,
    cache_dir: str | Path | None = None,
    units: str | None = None,
    candidates: Mapping[str, Candidate] | None = None,
    scheme: Scheme | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Matbench protocol for a :class:`~matgl_hybrid.training.TrainSpec` on any dataset (``matgl-hybrid cv``).

    ``cache_dir``: descriptor cache folder (None: no cache); ``command``: the command line, recorded. Each fold
    trains with the spec's seed + fold and MatGL's default elements (a test fold may hold elements its training
    part lacks), resumable from its Lightning checkpoints in ``<out>/checkpoints/fold<k>/`` until its record is
    written (the checkpoints are then removed). With ``candidates``,
    each fold chooses among them on
    its training part alone (:func:`~matgl_hybrid.training.select` with ``scheme``, default a validation split of
    ``spec.val_fraction``; resumable in ``<out>/selection/fold<k>/``) and predicts its test part with the chosen
    graph network; the fold record's ``params`` name the choice and every inner score.

    Writes ``<out>/folds/fold<k>.json`` (resumable: a finished fold is reused only when it was produced from the
    same data, target, settings and descriptor version), ``<out>/cv.json`` (the summary, with the command, device
    and package versions), ``<out>/cv_predictions.csv`` (every out-of-fold prediction: ``id, fold, y_true,
    y_pred``) and ``<out>/cv.{md,png}``.
    """
    out = check_output_dir(out)
    check_own_reports(out)
    spec.validate()
    version = get_descriptor_set(spec.descriptor_set).version if spec.descriptor_set else None
    chosen_among = (
        {"candidates": {n: without_runtime_fields(describe_candidate(c)) for n, c in candidates.items()},
         "descriptor_versions": {n: get_descriptor_set(c.descriptor_set).version for n, c in candidates.items()
                                 if c.descriptor_set},  # finished folds reused only with the same values
         "encoders": {n: encoder_digest(c.node_embeddings) for n, c in candidates.items()
                      if getattr(c, "node_embeddings", None)},  # and the same NEGNN encoders
         "scheme": (scheme or ValidationSplit(spec.val_fraction, spec.seed)).to_dict()}
        if candidates
        else {}
    )  # fmt: skip
    classifier = is_classifier([spec, *(candidates or {}).values()])
    folds = {"folds": "stratified"} if classifier else {}  # a classifier's folds keep its class balance
    store = FoldStore(out / "folds", run_fingerprint([data], spec.to_dict(), version, **chosen_among, **folds))

    def for_fold(candidate: Candidate, fold: int) -> Candidate:
        # Test folds may hold elements the training folds lack: embed all of MatGL's default elements.
        if isinstance(candidate, TrainSpec):
            return dataclasses.replace(candidate, seed=candidate.seed + fold, element_types="all")
        return candidate

    if given := sorted({str(c.element_types) for c in [spec, *(candidates or {}).values()]  # a list of elements
                        if isinstance(c, TrainSpec) and c.element_types not in ("all", "training")}):  # fmt: skip
        warnings.warn(f"cv embeds all of MatGL's elements in every fold (a test fold may hold elements its training "
                      f"part lacks): element_types {', '.join(given)} is not used", stacklevel=2)  # fmt: skip
    check_has_network(candidates, "cv")  # before any featurizing
    for name, candidate in (candidates or {"": spec}).items():  # before fold 0 trains, not when it predicts
        if isinstance(candidate, TrainSpec):
            try:
                check_embedded(model_elements(for_fold(candidate, 0), data.structures), data,
                               get_backbone(candidate.backbone).potential)  # fmt: skip
            except ValueError as exc:
                raise ValueError(f"candidate {name!r}: {exc}" if name else str(exc)) from None

    def checkpoints(fold: int) -> Path:
        """Where fold ``fold`` keeps its Lightning checkpoints until its record is written."""
        return out / "checkpoints" / f"fold{fold}"

    installed = requirements()["python"]  # recorded with each fold: a resumed run may span package upgrades

    def train_and_predict(train: StructureData, test: StructureData, fold: int):
        if not candidates:
            result = fit(train, spec=for_fold(spec, fold), cache_dir=cache_dir, checkpoint_dir=checkpoints(fold))
            predicted = predictions_or_nan(result.model, test, cache_dir)
            return predicted, {"best_val_mae": result.best_val_mae, "best_epoch": result.best_epoch,
                               "device": device_name(spec.accelerator), "history": result.history,
                               "processes": result.processes,
                               "train_seconds": result.seconds, "requirements": installed}  # fmt: skip
        fold_scheme = scheme or ValidationSplit(spec.val_fraction, spec.seed + fold)
        fold_candidates = {name: for_fold(c, fold) for name, c in candidates.items()}
        selection = select(train, fold_candidates, fold_scheme, directory=out / "selection" / f"fold{fold}",
                           cache_dir=cache_dir, progress=spec.progress)  # fmt: skip
        predicted = predictions_or_nan(selection.model, test, cache_dir)
        seconds = sum(r["seconds"] for records in selection.folds.values() for r in records)  # earlier sessions too
        return predicted, {"candidate": selection.model_name, "chosen": selection.chosen,
                           "inner_mae": selection.maes, "summary": selection.summary(),
                           "device": "; ".join(sorted({device_name(spec.accelerator), *selection.devices()})),
                           "processes": max((f.processes for f in selection.fits), default=1),
                           "train_seconds": seconds, "requirements": installed}  # fmt: skip

    def forget_checkpoints(fold: int) -> None:
        """A finished fold's record is its result (its learning curve in ``params["history"]``): the checkpoints
        fit wrote for a resume go, and nothing else (a folder without fit's ``fingerprint.json`` is not ours)."""
        if (checkpoints(fold) / "fingerprint.json").is_file():
            shutil.rmtree(checkpoints(fold), ignore_errors=True)
        with contextlib.suppress(OSError):
            (out / "checkpoints").rmdir()  # when empty

    records = cross_validate(data, train_and_predict, store, desc=f"cv {data.target_name}",
                             saved=None if candidates else forget_checkpoints, stratified=classifier)  # fmt: skip
    y, p = pooled_parity(records)
    metric = "rocauc" if classifier else "mae"  # the MAE of probabilities would reward pushing them to 0 or 1
    if classifier:
        records = {f: {**r, "rocauc": _rocauc(r)} for f, r in records.items()}
    summary = {**summarize(records, metric), "mad": float(np.mean(np.abs(y - y.mean()))), "spec": spec.to_dict()}
    if classifier and np.isfinite(summary["fold_rocauc"]).any():  # over the folds where it is defined
        summary |= {"rocauc_mean": float(np.nanmean(summary["fold_rocauc"])),
                    "rocauc_std": float(np.nanstd(summary["fold_rocauc"]))}  # fmt: skip
    devices = sorted({str(r["params"]["device"]) for r in records.values() if "device" in r.get("params", {})})
    summary |= {"command": command, "device": ", ".join(devices) or device_name(spec.accelerator),
                "requirements": installed}  # fmt: skip
    if older := other_versions(dict(sorted(records.items())), installed):  # folds of earlier sessions
        summary["requirements_per_fold"] = {f: r["params"].get("requirements") for f, r in sorted(records.items())}
        warnings.warn(f"cv: folds {', '.join(map(str, older))} ran under other package versions than these (cv.json's "
                      "requirements_per_fold lists each fold's)", stacklevel=2)  # fmt: skip
    processes = {f: r["params"]["processes"] for f, r in sorted(records.items()) if "processes" in r["params"]}
    if len(set(processes.values())) > 1:  # a resumed run on another machine: the global batch differed
        summary["processes_per_fold"] = processes
        warnings.warn(f"cv: the folds trained on different numbers of processes ({processes}; the batch size is per "
                      "process): their scores are not of one training setup", stacklevel=2)  # fmt: skip
    if data.skipped:  # entries left out on loading (--skip-invalid): named, so that nobody wonders
        summary["skipped_entries"] = [vars(e) for e in data.skipped]
    atomic_write_text(out / "cv.json", json.dumps(summary, indent=1) + "\n")
    rows = [(i, f, t, q) for f, r in sorted(records.items()) for i, t, q in zip(r["ids"], r["y_true"], r["y_pred"],
                                                                               strict=True)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["id", "fold", "y_true", "y_pred"])
    atomic_write_text(out / "cv_predictions.csv", table.to_csv(index=False))
    name = data.target_name or "target"
    units = units or target_units(name)
    label = f"{spec.backbone}, {spec.readout} readout" if not candidates else f"chosen among {', '.join(candidates)}"
    model_note = (
        f"Model: {spec.backbone} backbone, {spec.readout} readout, descriptors {spec.descriptor_set or 'none'} "
        f"({spec.fusion})."
        if not candidates
        else "Model chosen in each fold on its training part alone: "
        + "; ".join(f"fold {f}: {r['params']['summary']}" for f, r in sorted(records.items()))
        + "."
    )
    write_report(
        out / "cv",
        f"Cross-validation of {name} (Matbench protocol)",
        {name: {label: summary}},
        {name: units},
        None if classifier else {name: (label, y, p)},
        notes=[
            model_note,
            f"5-fold {'StratifiedKFold' if classifier else 'KFold'}(shuffle=True, random_state={MATBENCH_SEED}) over "
            "the dataset order (copies of one "
            f"structure under several ids in one fold), {len(data)} entries."
            + (f" {len(data.skipped)} entries left out (ids and reasons in cv.json)." if data.skipped else "")
            + " Each fold trains with seed + fold and all of MatGL's default elements (a pretrained potential's own);"
            " every out-of-fold prediction is in cv_predictions.csv; package versions in cv.json."
            + (" ROC-AUC over the folds where it is defined (both classes in the test part)." if classifier else ""),
            *([f"Command: `{command}`."] if command else []),
        ],
        metrics={name: metric},
    )
    return summary


def _rocauc(record: dict[str, Any]) -> float:
    """ROC-AUC of a classifier's fold record (its predicted probabilities of class 1); NaN when the fold's test part
    holds one class only, or a probability is not finite."""
    y, p = np.asarray(record["y_true"]), np.asarray(record["y_pred"], dtype=float)
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 and np.isfinite(p).all() else float("nan")
