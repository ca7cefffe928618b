"""Candidates for model selection: ``{name: changes}`` applied to a run's spec, read from JSON files or built in.

A candidate is either a graph network, ``{TrainSpec field: value}`` changing the run's spec, or the descriptors random
forest, ``{"model": "random_forest", ...}`` (:class:`~matgl_hybrid.training.baselines.DescriptorForest`'s fields).
Its name names a folder (resumable records), so it is a simple folder name.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matgl_hybrid.training.baselines import DescriptorForest
from matgl_hybrid.training.spec import TrainSpec, wrong_types

#: What a selection chooses among: a graph network's spec, or the descriptors random forest.
Candidate = TrainSpec | DescriptorForest

#: A candidate's name, which names its folder ``folds/<task>/<name>/``: no path separator, no leading dot.
CANDIDATE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")

class _DuplicateKey(ValueError):
    """A key given twice in one JSON object."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` ``object_pairs_hook`` refusing a key given twice (``json`` would keep the last one silently)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def check_candidate_name(name: Any) -> None:
    """Raise ValueError unless ``name`` matches :data:`CANDIDATE_NAME` (it becomes a folder name)."""
    if not isinstance(name, str) or not CANDIDATE_NAME.fullmatch(name):
        raise ValueError(
            f"candidate name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.' (it names a folder)"
        )


def read_candidates(path: str | Path) -> dict[str, dict[str, Any]]:
    """Candidates from a JSON file: ``{"name": {TrainSpec field: value}}``, or a forest's
    ``{"name": {"model": "random_forest", ...}}`` (for :func:`candidate_specs` and ``--candidates``).

    Raises:
        ValueError: the file is not such an object: not JSON, a name given twice, a name that is no simple folder
            name, a candidate that is no object or sets an unknown field or a value of the wrong type (one line
            naming the file and the entry).
    """
    try:
        values = json.loads(Path(path).read_text(), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ValueError(f"{path}: {exc.args[0]!r} is given twice in one object (json would keep the last)") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON (empty, truncated or damaged?): {exc}") from None
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{path}: expected a non-empty JSON object {{candidate name: {{TrainSpec field: value}}}}")
    annotations = {f.name: str(f.type) for f in dataclasses.fields(TrainSpec)}
    for name, changes in values.items():
        try:
            check_candidate_name(name)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not isinstance(changes, dict):
            raise ValueError(f"{path}: candidate {name!r} is {type(changes).__name__}, not an object of spec fields")
        if changes.get("model") == DescriptorForest.MODEL:
            try:
                forest_from(changes)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}: candidate {name!r}: {exc}") from None
            continue
        if unknown := sorted(set(changes) - set(annotations)):
            raise ValueError(f"{path}: candidate {name!r} has unknown TrainSpec fields {unknown}")
        if wrong := wrong_types(changes):
            raise ValueError(f"{path}: candidate {name!r} has values of the wrong type: {', '.join(wrong)}")
        if problems := TrainSpec.field_problems(changes):  # how they combine: once the run's spec is known
            raise ValueError(f"{path}: candidate {name!r}: invalid training settings: {'; '.join(problems)}")
    return values


def candidate_specs(
    spec: TrainSpec, candidates: Mapping[str, Mapping[str, Any]], forests: bool = False
) -> dict[str, Candidate]:
    """Each candidate's spec (``spec`` changed by its entry); ``{"": spec}`` without any. With ``forests``, an entry
    ``{"model": "random_forest", ...}`` is a :class:`DescriptorForest` (on ``spec``'s descriptor set by default).

    Raises:
        ValueError: a candidate whose name is no simple folder name (:data:`CANDIDATE_NAME`), that is no mapping,
            changes an unknown field, gives a value TrainSpec refuses, or changes the seed or the validation
            fraction (the choice must compare the candidates on one inner split; ``TrainSpec`` always has one).
    """
    if not candidates:
        return {"": spec}
    known = {f.name for f in dataclasses.fields(TrainSpec)}
    specs = {}
    for name, changes in candidates.items():
        check_candidate_name(name)
        if not isinstance(changes, Mapping):
            raise ValueError(f"candidate {name!r} is {type(changes).__name__}, not a mapping of TrainSpec fields")
        if forests and changes.get("model") == DescriptorForest.MODEL:
            specs[name] = forest_from(
                {"descriptor_set": spec.descriptor_set or FOREST_DESCRIPTORS, "n_jobs": spec.n_jobs, **changes}
            )
            continue
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"candidate {name!r}: unknown TrainSpec fields {unknown}")
        shared = sorted({"seed", "val_fraction"} & {k for k, v in changes.items() if v != getattr(spec, k)})
        if shared:
            raise ValueError(f"candidate {name!r} changes {shared}: candidates must share one inner split")
        try:
            specs[name] = dataclasses.replace(spec, **changes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"candidate {name!r}: {exc}") from None
    return specs


#: The forest's descriptor set when the graph candidates have none.
FOREST_DESCRIPTORS = "gong28+composition"
#: The readout of :func:`default_candidates`' intensive candidate: Set2Set scored a lower inner-validation MAE than
#: mean pooling on 8 of the 10 Matbench training folds where both ran (``benchmarks/results/default_selection.md``).
INTENSIVE_READOUT = "set2set"


def forest_from(entry: Mapping[str, Any]) -> DescriptorForest:
    """A :class:`DescriptorForest` from a candidates-file entry ``{"model": "random_forest", field: value}``."""
    fields = {k: v for k, v in entry.items() if k != "model"}
    known = {f.name for f in dataclasses.fields(DescriptorForest)}
    if unknown := sorted(set(fields) - known):
        raise ValueError(f"unknown random-forest fields {unknown}; known: {sorted(known)}")
    forest = DescriptorForest(**fields)
    if not isinstance(forest.descriptor_set, str) or not forest.descriptor_set:
        raise ValueError(f"a random forest needs a descriptor set, got {forest.descriptor_set!r}")
    for name in ("n_estimators", "seed"):
        value = getattr(forest, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "n_estimators" else 0):
            raise ValueError(f"random forest {name} must be an integer >= {int(name == 'n_estimators')}, got {value!r}")
    if isinstance(forest.n_jobs, bool) or not isinstance(forest.n_jobs, int) or forest.n_jobs == 0:
        raise ValueError(f"random forest n_jobs must be a non-zero integer (-1: all cores), got {forest.n_jobs!r}")
    return forest


def default_candidates(spec: TrainSpec, readout: str | None = None) -> dict[str, Candidate]:
    """What ``matgl-hybrid train`` chooses among by default: ``spec`` with the extensive readout (mean + sum + log n,
    for per-cell quantities), the same with the intensive one (:data:`INTENSIVE_READOUT`), and the descriptors random
    forest on the same descriptors as a guard. With a ``readout`` the user chose, that one alone and the guard."""
    forest = DescriptorForest(spec.descriptor_set or FOREST_DESCRIPTORS, seed=spec.seed, n_jobs=spec.n_jobs)
    if readout is not None:
        return {readout: dataclasses.replace(spec, readout=readout), "forest": forest}
    return {
        "extensive": dataclasses.replace(spec, readout="extensive"),
        "intensive": dataclasses.replace(spec, readout=INTENSIVE_READOUT),
        "forest": forest,
    }


def describe_candidate(candidate: Candidate) -> dict[str, Any]:
    """A candidate as JSON values: a forest's :meth:`~DescriptorForest.to_dict`, a spec's ``to_dict()``."""
    return json.loads(json.dumps(candidate.to_dict()))
