"""On-disk descriptor cache: one JSON file per structure, keyed by a hash of the structure, written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from matgl_hybrid.files import atomic_write_text

#: A cached group result: ``{"values": [float, ...], "error": str | None}``.
Entry = dict[str, Any]


def structure_key(structure: Structure) -> str:
    """sha256 of the lattice, species and fractional coordinates: equal keys mean identical structures."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.array([site.specie.Z for site in structure], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    return h.hexdigest()


class DescriptorCache:
    """Group results per structure under ``directory/<key[:2]>/<key>.json``.

    Each file maps a group's cache key (name, version) to its entry, so sets that share groups share entries.
    A corrupt or unreadable file counts as a miss and is rewritten.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Entry]:
        """All cached group entries of the structure with this key (empty when none)."""
        try:
            return json.loads(self._path(key).read_text())
        except (FileNotFoundError, ValueError, OSError):
            return {}

    def put(self, key: str, entries: dict[str, Entry]) -> None:
        """Add ``entries`` to the structure's file (merging with what is there), atomically."""
        merged = {**self.get(key), **entries}
        atomic_write_text(self._path(key), json.dumps(merged))
