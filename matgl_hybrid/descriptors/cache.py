"""On-disk descriptor cache: one JSON file per structure, keyed by a hash of the structure, written atomically."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from matgl_hybrid.files import atomic_write_bytes, atomic_write_text

#: A cached group result: ``{"values": [float, ...], "error": str | None}``.
Entry = dict[str, Any]
#: Format of the archives of :func:`export_archive`.
ARCHIVE_FORMAT = 1


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


def export_archive(
    cache: DescriptorCache, structures: Iterable[Structure], group_keys: Collection[str], path: str | Path
) -> int:
    """Write the entries of ``group_keys`` that ``cache`` holds for ``structures`` to ``path`` (gzipped JSON, atomic).

    An archive carries computed values to another machine or session (simulations run on a GPU, models trained
    on a laptop); its entries are keyed by structure and group key (name and definition version), so an import
    serves them only where they are valid. Returns the number of structures written (those with any entry).
    """
    entries = {}
    for structure in structures:
        key = structure_key(structure)
        cached = cache.get(key)
        if kept := {g: cached[g] for g in group_keys if g in cached}:
            entries[key] = kept
    payload = json.dumps({"format": ARCHIVE_FORMAT, "entries": entries}, sort_keys=True)
    atomic_write_bytes(path, gzip.compress(payload.encode(), mtime=0))
    return len(entries)


def import_archive(cache: DescriptorCache, path: str | Path) -> int:
    """Add the entries of an archive of :func:`export_archive` to ``cache``; returns the number of structures.

    Values already cached here are kept (an archived one replaces only a recorded failure).

    Raises:
        ValueError: ``path`` is not such an archive (one line naming it); nothing is written then.
    """
    try:
        payload = json.loads(gzip.decompress(Path(path).read_bytes()))
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ValueError(f"{path} is not a descriptor cache archive (gzipped JSON): {exc}") from None
    entries = payload.get("entries") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != ARCHIVE_FORMAT or not isinstance(entries, dict):
        raise ValueError(f"{path} is not a descriptor cache archive of format {ARCHIVE_FORMAT}")
    for key, groups in entries.items():
        valid = isinstance(groups, dict) and all(map(_is_entry, groups.values()))
        if not (re.fullmatch("[0-9a-f]{64}", key) and valid):
            raise ValueError(f"{path}: malformed entry for structure {key[:70]!r}")
    for key, groups in entries.items():
        local = cache.get(key)
        if new := {g: entry for g, entry in groups.items() if g not in local or local[g].get("error") is not None}:
            cache.put(key, new)  # local values stay; an archived value replaces only a local failure
    return len(entries)


def _is_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("values"), list)
        and all(type(v) in (int, float) for v in entry["values"])
        and (entry.get("error") is None or isinstance(entry["error"], str))
    )
