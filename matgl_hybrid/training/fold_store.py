"""``FoldStore``: one fingerprinted JSON record per finished fold, written atomically, so that long work resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matgl_hybrid.files import atomic_write_text, read_json
from matgl_hybrid.fingerprint import check_fingerprint
from matgl_hybrid.training.spec import upgrade_fingerprint


class FoldStore:
    """One JSON file per finished fold (``<directory>/fold<k>.json``), written atomically.

    A record holds at least ``mae`` (None for classification), ``train_seconds``, ``ids``, ``y_true`` (None when
    the test targets are hidden), ``y_pred`` and ``params``. A crash loses at most the fold in progress.

    With a ``fingerprint`` (:func:`~matgl_hybrid.fingerprint.run_fingerprint`), every record saved carries it and
    a finished fold is reused only when its fingerprint is equal: a fold of another run (other data, target,
    settings or descriptor version) raises :class:`~matgl_hybrid.fingerprint.FingerprintMismatch`.
    """

    HINT = "use another output folder, or move the old folds away to start over"

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any] | None = None):
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def path(self, fold: int) -> Path:
        """The record file of fold ``fold``: ``<directory>/fold<fold>.json``."""
        return self.directory / f"fold{fold}.json"

    def has(self, fold: int) -> bool:
        """Whether the fold is finished; with a fingerprint, raises if it was finished by another run."""
        if not self.path(fold).is_file():
            return False
        if self.fingerprint is not None:
            stored = upgrade_fingerprint(self.load(fold).get("fingerprint"))
            check_fingerprint(stored, self.fingerprint, self.path(fold), self.HINT)
        return True

    def load(self, fold: int) -> dict[str, Any]:
        """The record of a finished fold as saved; its fingerprint is checked by :meth:`has`, not here."""
        return read_json(self.path(fold))

    def save(self, fold: int, record: dict[str, Any]) -> None:
        """Write the record of a finished fold atomically, with the store's fingerprint added when it has one."""
        if self.fingerprint is not None:
            record = {**record, "fingerprint": self.fingerprint}
        atomic_write_text(self.path(fold), json.dumps(record))

    def records(self) -> dict[int, dict[str, Any]]:
        """All finished folds, by fold number."""
        return {int(p.stem[4:]): read_json(p) for p in sorted(self.directory.glob("fold*.json"))}
