"""Training from a data file to a saved model with its card: what ``matgl-hybrid train`` does (the command passes
``candidates=default_candidates(spec)`` unless ``--no-select``; without ``candidates`` one spec trains)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from matgl_hybrid import data
from matgl_hybrid.checkpoint import check_model_dir
from matgl_hybrid.files import check_output_dir, check_paths_distinct, same_path
from matgl_hybrid.graphs import drop_unconnected
from matgl_hybrid.training.candidates import Candidate
from matgl_hybrid.training.fit import FitResult
from matgl_hybrid.training.selection import Scheme
from matgl_hybrid.training.spec import TrainSpec
from matgl_hybrid.training.train import TrainedModel, train


def smallest_cutoff(spec: TrainSpec, candidates: Mapping[str, Candidate] | None = None) -> float:
    """The smallest graph cutoff (Å) of ``spec`` and the graph-network ``candidates``: a structure connected at it
    is connected for every model a run trains."""
    return min([spec.cutoff, *(c.cutoff for c in (candidates or {}).values() if isinstance(c, TrainSpec))])


def load_training_data(
    source: str | Path, target: str, cutoff: float, skip_invalid: bool = False
) -> data.StructureData:
    """``source``'s structures with ``target``; with ``skip_invalid``, without the invalid entries and those whose
    graph has no edges within ``cutoff`` (Å), each listed in ``skipped``.

    Raises:
        ValueError: an invalid entry or a graph without edges (without ``skip_invalid``; checked here, before any
            training: in a cross-validation's test fold it would fail only after that fold trained), or none left
            to train on.
    """
    dataset = data.load(source, target=target, skip_invalid=skip_invalid)
    connected = drop_unconnected(dataset, cutoff)
    if not skip_invalid:
        if unconnected := connected.skipped[len(dataset.skipped) :]:
            shown = ", ".join(repr(e.id) for e in unconnected[:3]) + (" …" if len(unconnected) > 3 else "")
            raise ValueError(
                f"{source}: {len(unconnected)} structures ({shown}) have no atom with a neighbour within the cutoff "
                f"of {cutoff} Å (the graph has no edges): --skip-invalid leaves them out"
            )
        return dataset
    dataset = connected
    if not len(dataset):
        raise ValueError(f"{source}: no valid entry to train on ({len(dataset.skipped)} skipped)")
    return dataset


def train_file(
    source: str | Path,
    target: str,
    out: str | Path,
    spec: TrainSpec | None = None,
    *,
    skip_invalid: bool = False,
    log10_target: bool = False,
    units: str | None = None,
    ensemble: int = 1,
    test_fraction: float = 0.0,
    test_seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    command: str | None = None,
    on_data: Callable[[data.StructureData], Any] | None = None,
    on_member: Callable[[int, FitResult], None] | None = None,
    candidates: Mapping[str, Candidate] | None = None,
    scheme: Scheme | None = None,
) -> TrainedModel:
    """Train on ``target`` of ``source`` (see :func:`train`) and save the model with ``training.json`` and its card
    in ``out``, recording where the data came from and ``command``; the test split, if any, is scored in the card.

    Output paths are checked before any work: ``out`` may not be ``source``, and it must be a new or empty folder
    unless ``overwrite`` (which also replaces an earlier model there; a ``checkpoint_dir`` inside it is allowed); a
    file of the user's named as one the model writes is refused (:func:`~matgl_hybrid.checkpoint.check_model_dir`).

    Args:
        log10_target: learn log10 of the target (non-positive entries dropped, listed in ``skipped``).
        units: units of the (transformed) target, stored with the model (default: a known target's own).
        on_data: called with the dataset once it is loaded (e.g. to report the skipped entries).
        on_member: called as ``on_member(k, result)`` after member ``k`` is trained.
        candidates: choose among these first (see :func:`train`); None: ``spec`` alone.
        scheme: the selection's scheme (see :func:`train`).
    """
    spec = spec or TrainSpec()
    if checkpoint_dir is not None and same_path(checkpoint_dir, out):  # its member_*/ and selection/ are no model's
        raise ValueError(f"--checkpoint-dir {checkpoint_dir} is --out: give a folder of its own "
                         f"(e.g. {Path(out) / 'checkpoints'})")
    allow = [checkpoint_dir] if checkpoint_dir else []
    check_paths_distinct({"--out": out}, {"--data": source})
    check_model_dir(out, overwrite=overwrite, allow=allow, writes=TrainedModel.FILES, replace_model=overwrite)
    if checkpoint_dir is not None:
        check_output_dir(checkpoint_dir)
    if log10_target and spec.task_type == "classification":
        raise ValueError("log10_target takes the log10 of a regression target, not of a classifier's 0/1 labels")
    dataset = load_training_data(source, target, smallest_cutoff(spec, candidates), skip_invalid)
    if log10_target:
        dataset = data.log10_targets(dataset)
    if on_data is not None:
        on_data(dataset)
    trained = train(
        dataset,
        spec,
        ensemble=ensemble,
        test_fraction=test_fraction,
        test_seed=test_seed,
        target_units=units or data.target_units(dataset.target_name),
        cache_dir=cache_dir,
        checkpoint_dir=checkpoint_dir,
        on_member=on_member,
        candidates=candidates,
        scheme=scheme,
    )
    provenance = {
        "data": str(source),
        "target": target,
        "target_transform": "log10" if log10_target else None,
        "skipped_entries": [vars(e) for e in dataset.skipped],
    }
    trained.save(out, source=provenance, command=command, overwrite=overwrite, allow=allow)
    return trained
