"""On-disk descriptor cache: one JSON file per structure, keyed by a hash of the structure, written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

#: A cached group result: ``{"values": [float, ...], "error": str | None}``.
Entry = dict[str, Any]


def structure_key(structure: Structure) -> str:
    """sha256 of the lattice, species and fractional coordinates: equal keys mean identical structures."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.array([site.specie.Z for site in structure], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
