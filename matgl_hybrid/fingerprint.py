"""Fingerprints of what produced a result (data, target, settings, descriptor version), checked before it is reused.

Resumable work (cross-validation folds, Lightning checkpoints) is reused only when the fingerprint stored with it
equals the one of the run that wants it; otherwise the run stops and names what differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matgl_hybrid.data import StructureData
from matgl_hybrid.data.identity import structure_key

#: Settings that change where or how visibly a run computes, not what it computes.
RUNTIME_FIELDS = frozenset({"progress", "n_jobs", "accelerator", "devices"})


class FingerprintMismatch(ValueError):
    """Stored work was produced by another run (other data, target, settings or descriptor version)."""


def data_digest(datasets: Sequence[StructureData]) -> str:
    """sha256 (16 hex digits) of the ids, structures and targets of ``datasets``, in order."""
    digest = hashlib.sha256()
    for data in datasets:
        digest.update(json.dumps([len(data), data.target_name, list(data.ids)]).encode())
        for structure in data.structures:
            digest.update(structure_key(structure).encode())
        if data.targets is not None:
            digest.update(data.targets.tobytes())
    return digest.hexdigest()[:16]


def without_runtime_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings without :data:`RUNTIME_FIELDS`: what a fingerprint keeps of them."""
    return {k: v for k, v in spec.items() if k not in RUNTIME_FIELDS}


def run_fingerprint(
    datasets: Sequence[StructureData], spec: Mapping[str, Any], descriptor_version: str | None, **extra: Any
) -> dict[str, Any]:
    """What determines a run's result, as JSON values.

    Args:
        datasets: the data the run sees (e.g. the whole dataset of a cross-validation, or train and validation).
        spec: the training settings (``TrainSpec.to_dict()``); :data:`RUNTIME_FIELDS` are left out.
        descriptor_version: the descriptor set's version, or None without descriptors.
        extra: anything else that determines the result (e.g. the Matbench task).
    """
    value = {
        "data": data_digest(datasets),
        "n_structures": [len(d) for d in datasets],
        "target": datasets[0].target_name if datasets else None,
        "spec": without_runtime_fields(spec),
        "descriptor_version": descriptor_version,
        **encoder_digest(spec.get("node_embeddings")),
        **copies_marker(datasets),
        **extra,
    }
    return json.loads(json.dumps(value))  # tuples become lists, as they are when read back


def copies_marker(datasets: Sequence[StructureData]) -> dict[str, str]:
    """``{"copies": "together"}`` when a dataset holds copies of one structure (equal keys under several ids): its
    splits are drawn with the copies on one side since 2026-12-05, so work split the old way is another run's;
    nothing without copies, so fingerprints of other runs are as they were."""
    has_copies = any(len(set(keys := data.structure_keys())) < len(keys) for data in datasets)
    return {"copies": "together"} if has_copies else {}


def encoder_digest(node_embeddings: str | None) -> dict[str, str]:
    """``{"encoder": sha256 of its SHA256SUMS}`` for a NEGNN's ``path:layers`` (an encoder pretrained again into the
    same folder is another run); nothing without one, so fingerprints of other runs are as they were."""
    if not node_embeddings:
        return {}
    manifest = Path(str(node_embeddings).rpartition(":")[0]).expanduser() / "SHA256SUMS"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else "missing"
    return {"encoder": digest}


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (``key: there, here``)."""
    found = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += [f"{key}.{d}" for d in differences(old, new)]
        elif old != new:
            label = "data (ids, structures or targets)" if key == "data" else key
            found.append(f"{label}: {old!r} there, {new!r} here" if key != "data" else f"{label} differ")
    return found


def check_fingerprint(stored: Mapping[str, Any] | None, current: Mapping[str, Any], source: Path, hint: str) -> None:
    """Raise :class:`FingerprintMismatch` unless ``stored`` (read from ``source``) equals ``current``.

    Args:
        hint: what the user can do (e.g. "use another --out"), appended to the message.
    """
    if stored is None:
        raise FingerprintMismatch(f"{source} carries no fingerprint of the run that produced it: {hint}")
    found = differences(stored, current)
    if found:
        shown = "; ".join(found[:4]) + (f"; and {len(found) - 4} more" if len(found) > 4 else "")
        raise FingerprintMismatch(f"{source} was produced by another run ({shown}): {hint}")
