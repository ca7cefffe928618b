"""Candidates: models trained in every fold, the one with the lowest inner-validation MAE recorded.

A candidate is ``{name: TrainSpec field changes}`` applied to a run's spec; its name names the folder
``folds/<task>/<name>/``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from matgl_hybrid.training import TrainSpec

#: A candidate's name, which names its folder ``folds/<task>/<name>/``: no path separator, no leading dot.
CANDIDATE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")

#: The JSON values that each type annotation of a TrainSpec field accepts (a part not listed accepts any).
_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
    "tuple[int, ...]": (list,),
    "list[str]": (list,),
    "dict[str, Any]": (dict,),
}


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


def _json_kind_accepts(annotation: str, value: Any) -> bool:
    """Whether a JSON ``value`` fits a TrainSpec field annotated ``annotation`` (a bool is no number)."""
    parts = annotation.split(" | ")
    if isinstance(value, bool):
        return "bool" in parts
    return any(isinstance(value, _JSON_KINDS.get(part, object)) for part in parts)


def check_candidate_name(name: Any) -> None:
    """Raise ValueError unless ``name`` matches :data:`CANDIDATE_NAME` (it becomes a folder name)."""
    if not isinstance(name, str) or not CANDIDATE_NAME.fullmatch(name):
        raise ValueError(
            f"candidate name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.' (it names a folder)"
        )


def read_candidates(path: str | Path) -> dict[str, dict[str, Any]]:
    """Candidates for :attr:`MatbenchRun.candidates` from a JSON file: ``{"name": {TrainSpec field: value}}``.

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
        if unknown := sorted(set(changes) - set(annotations)):
            raise ValueError(f"{path}: candidate {name!r} has unknown TrainSpec fields {unknown}")
        wrong = [
            f"{k}={v!r} ({annotations[k]})" for k, v in changes.items() if not _json_kind_accepts(annotations[k], v)
        ]
        if wrong:
            raise ValueError(f"{path}: candidate {name!r} has values of the wrong type: {', '.join(wrong)}")
        try:
            TrainSpec(**changes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: candidate {name!r}: {exc}") from None
    return values


def candidate_specs(spec: TrainSpec, candidates: Mapping[str, Mapping[str, Any]]) -> dict[str, TrainSpec]:
    """Each candidate's spec (``spec`` changed by its entry); ``{"": spec}`` without any.

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


def check_recorded_candidates(folder: Path, candidates: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a run into ``folder`` with other candidates than it records (its ``candidates.json``; a folder with
    ``results.json.gz`` but no ``candidates.json`` records none): the run would choose again and rewrite the
    recorded results and candidates.

    Raises:
        ValueError: one line naming the folder and the candidates that differ.
    """
    recorded_file = folder / "candidates.json"
    if recorded_file.is_file():
        recorded = read_candidates(recorded_file)
    elif (folder / "results.json.gz").is_file():
        recorded = {}
    else:
        return
    current = json.loads(json.dumps({name: dict(changes) for name, changes in candidates.items()}))
    differ = sorted(n for n in recorded.keys() | current.keys() if recorded.get(n) != current.get(n))
    if differ:

        def described(found: Mapping[str, Any]) -> str:
            return f"candidates {', '.join(found)}" if found else "no candidates"

        raise ValueError(
            f"{folder} records {described(recorded)}, this run has {described(current)} (differing: "
            f"{', '.join(differ)}): it would choose again and rewrite the folder's results; give another --out"
        )


def choose(records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The fold record of the candidate with the lowest inner-validation MAE (the first on a tie), its ``params``
    naming the choice and every candidate's inner-validation MAE, its ``train_seconds`` those of all; the record
    itself without candidates (``{"": record}``)."""
    if list(records) == [""]:
        return records[""]
    maes = {name: r["params"]["best_val_mae"] for name, r in records.items()}
    chosen = min(maes, key=lambda name: (maes[name] is None or not np.isfinite(maes[name]), maes[name] or 0.0))
    record = records[chosen]
    return {
        **record,
        "train_seconds": sum(r["train_seconds"] for r in records.values()),
        "params": {**record["params"], "candidate": chosen, "inner_val_mae": maes},
    }
