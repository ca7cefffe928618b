"""On-disk descriptor cache: one JSON file per structure, keyed by a hash of the structure, written atomically."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import math
import re
import warnings
import zlib
from collections.abc import Collection, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pymatgen.core import Structure

from matgl_hybrid.data.identity import structure_key
from matgl_hybrid.descriptors.groups import GROUPS, FeatureGroup
from matgl_hybrid.descriptors.simulation import SIM_GROUPS
from matgl_hybrid.descriptors.uip import UIP_GROUPS
from matgl_hybrid.files import atomic_write_bytes, atomic_write_text, check_output_dir

#: A cached group result: ``{"values": [float, ...], "error": str | None}``.
Entry = dict[str, Any]
#: Format of the archives of :func:`export_archive`.
ARCHIVE_FORMAT = 1
#: Most bytes an archive may expand to when decompressed (a gzip bomb of a few MB expands to GBs): more is refused.
MAX_ARCHIVE_BYTES = 2 * 1024**3
#: The lock file of each folder of structure files: writers of the same structure's file take turns.
LOCK_FILE = ".lock"
#: A structure key: the sha256 of :func:`structure_key`.
STRUCTURE_KEY = re.compile("[0-9a-f]{64}")
#: A group key (:attr:`FeatureGroup.key`): ``name@version``, then ``:`` and a 12-hex value digest where there is one.
GROUP_KEY = re.compile(r"([^@\x00-\x1f]+@[^@:\s]+)(?::[0-9a-f]{12})?")


class Bounds(NamedTuple):
    """A plausible range of a feature's values: ``low`` (included unless ``low_open``) to ``high`` (included)."""

    low: float
    high: float = math.inf
    low_open: bool = False
    whole: bool = False  # a count: whole numbers only

    def admits(self, value: float) -> bool:
        """Whether ``value`` is in the range (NaN, a failed featurizer, always is)."""
        above = value > self.low if self.low_open else value >= self.low
        return math.isnan(value) or (above and value <= self.high and (not self.whole or value.is_integer()))

    def __str__(self) -> str:
        text = f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if math.isinf(self.high) else ']'}"
        return f"a whole number in {text}" if self.whole else f"in {text}"


_POSITIVE = Bounds(0.0, low_open=True)
_NON_NEGATIVE = Bounds(0.0)
#: Plausible ranges of the values of the bank's own groups, by feature label: an imported value outside is refused.
VALUE_BOUNDS: dict[str, Bounds] = {
    "natoms": Bounds(1, whole=True),
    "spacegroup_num": Bounds(1, 230, whole=True),
    "crystal_system_int": Bounds(1, 7, whole=True),
    "density": Bounds(0.0, 1e3, low_open=True),  # g/cm³; osmium, the densest element, is 22.6
    "alpha": Bounds(0.0, 180.0, low_open=True),
    "beta": Bounds(0.0, 180.0, low_open=True),
    "gamma": Bounds(0.0, 180.0, low_open=True),
    "mean Average bond angle": Bounds(0.0, math.pi),  # radians
    **dict.fromkeys(("vpa", "volume", "packing fraction", "a", "b", "c", "mean Average bond length"), _POSITIVE),
    **dict.fromkeys(
        (
            "std_dev Average bond length",
            "std_dev Average bond angle",
            "mean CN_VoronoiNN",
            "std_dev CN_VoronoiNN",
            "structural complexity per atom",
            "structural complexity per cell",
            "mean absolute deviation in relative bond length",
            "max relative bond length",
            "min relative bond length",
            "maximum neighbor distance variation",
            "range neighbor distance variation",
            "mean neighbor distance variation",
            "avg_dev neighbor distance variation",
            "mean absolute deviation in relative cell size",
            "chgnet_mean_abs_magmom",
        ),
        _NON_NEGATIVE,
    ),
}


class DescriptorCache:
    """Group results per structure under ``directory/<key[:2]>/<key>.json``.

    Each file maps a group's cache key (name, version) to its entry, so sets that share groups share entries.
    A corrupt or unreadable file, or entry, counts as a miss and is rewritten.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Entry]:
        """The well-formed cached group entries of the structure with this key (empty when none)."""
        try:
            stored = json.loads(self._path(key).read_text())
        except (ValueError, OSError, RecursionError):  # missing, unreadable, not UTF-8, not JSON, nested too deep
            return {}
        if not isinstance(stored, dict):
            return {}
        return {group: entry for group, entry in stored.items() if _is_entry(entry)}

    def put(self, key: str, entries: dict[str, Entry]) -> None:
        """Add ``entries`` to the structure's file, atomically, under a lock of its folder: what the file holds is
        kept (another writer's groups too, and entries this version does not read, and values where the entry to
        add is a failure); a corrupt file is replaced."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent / LOCK_FILE):
            try:
                stored = json.loads(path.read_text())
            except (ValueError, OSError, RecursionError):
                stored = {}
            stored = stored if isinstance(stored, dict) else {}
            # a failure does not replace values another writer stored meanwhile (DDP ranks, an archive's import)
            kept = {k: e for k, e in entries.items() if not (_has_values(stored.get(k)) and not _has_values(e))}
            atomic_write_text(path, json.dumps({**stored, **kept}))

    def check_writable(self) -> None:
        """Raise, before any work, a one-line OSError naming the folder unless entries can be written in it."""
        try:
            check_output_dir(self.directory)
        except OSError as exc:
            raise type(exc)(
                f"cannot write the descriptor cache folder {self.directory}: {exc}; give another folder with "
                "--cache-dir, or compute without a cache with --no-cache (cache_dir=None in Python)"
            ) from None


def _has_values(entry: Any) -> bool:
    """Whether a stored entry holds values (no recorded failure)."""
    return isinstance(entry, dict) and entry.get("error") is None and isinstance(entry.get("values"), list)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing) while the block runs; none where the platform has
    no ``fcntl`` (Windows) or the file system no ``flock`` (Lustre mounted ``noflock``, some network mounts: then
    with a warning, once; the writes stay atomic, only concurrent merges of one structure's entry may lose one)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
                raise
            _warn_no_locks(path.parent, exc.strerror)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@cache
def _warn_no_locks(folder: Path, reason: str) -> None:
    """Once per folder: say that its cache files are written without locks, and why."""
    warnings.warn(f"the descriptor cache {folder} cannot be locked ({reason}): written without locks",
                  stacklevel=4)  # fmt: skip


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

    Every entry is checked before anything is written: its keys' shapes, ``{"values": [number or null, ...],
    "error": str or null}``, values finite (or NaN), and for the groups of this version of the package their
    number and plausible ranges (:data:`VALUE_BOUNDS`). Values already cached here are kept (an archived one
    replaces only a recorded failure); where they differ from the archive's (beyond a relative 1e-6: rounding on
    another machine), a warning counts them and names the first.

    Raises:
        ValueError: ``path`` is not such an archive, is larger than :data:`MAX_ARCHIVE_BYTES` decompressed, or holds
            a bad entry (one line naming it and the first bad entry); nothing is written then.
        OSError: the cache folder cannot be written (one line naming it); nothing is written then.
    """
    try:
        payload = json.loads(_decompress(Path(path)))
    except (OSError, EOFError, ValueError, RecursionError, zlib.error) as exc:
        raise ValueError(f"{path} is not a descriptor cache archive (gzipped JSON): {exc}") from None
    entries = payload.get("entries") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != ARCHIVE_FORMAT or not isinstance(entries, dict):
        raise ValueError(f"{path} is not a descriptor cache archive of format {ARCHIVE_FORMAT}")
    for key, groups in entries.items():
        if not STRUCTURE_KEY.fullmatch(key):
            raise ValueError(f"{path}: malformed entry for structure {key[:70]!r}: not a structure key (64 hex digits)")
        if not isinstance(groups, dict):
            raise ValueError(f"{path}: malformed entry for structure {key}: not an object of group entries")
        for group, entry in groups.items():
            if problem := _entry_problem(group, entry):
                raise ValueError(f"{path}: malformed entry for structure {key}, group {group[:70]!r}: {problem}")
    if entries:
        cache.check_writable()
    differing: list[tuple[str, str]] = []
    for key, groups in entries.items():
        local = cache.get(key)
        if new := {g: entry for g, entry in groups.items() if g not in local or local[g]["error"] is not None}:
            cache.put(key, new)  # local values stay; an archived value replaces only a local failure
        differing += [  # an archived failure beside local values is no rival value (taking it would lose them)
            (key, g)
            for g, entry in groups.items()
            if g not in new and entry["error"] is None and not _same_values(local[g], entry)
        ]
    if differing:
        key, group = differing[0]
        warnings.warn(
            f"{path}: {len(differing)} archived entries differ from the values cached in {cache.directory}, which are "
            f"kept (first: structure {key}, group {group}); delete those cache files to take the archive's",
            stacklevel=2,
        )
    known = {g.name: g for g in _known_groups().values()}
    archived = {g for groups in entries.values() for g in groups}
    unread = sorted(g for g in archived if (here := _key_here(g, known)) is not None and here != g)
    if unread:
        warnings.warn(
            f"{path}: {len(unread)} archived group versions are not the ones this installation computes (first: "
            f"{unread[0]}, here {_key_here(unread[0], known)}; other package or weights versions where they were "
            "computed?): stored, but never read here",
            stacklevel=2,
        )
    return len(entries)


def _key_here(group_key: str, known: dict[str, FeatureGroup]) -> str | None:
    """The cache key this installation gives the group ``group_key`` names (None: not a group this package defines,
    or its digest cannot be computed here).

    Where the version matches, the key is computed, value digest included: the reference structures' values, once
    per process and only for groups an archive holds (a universal potential's group loads and runs it). A failure
    there only leaves the warning out: the import has been written by then."""
    name = GROUP_KEY.fullmatch(group_key)[1].partition("@")[0]
    if (group := known.get(name)) is None:
        return None
    version = f"{group.name}@{group.version}"
    if group_key.partition(":")[0] != version:
        return version
    try:
        return group.key
    except Exception:  # a potential that fails to load here: no warning rather than a failed import
        return None


def _same_values(local: Entry, archived: Entry) -> bool:
    """Whether a cached entry and an archived one hold the same values (NaN/null alike, relative 1e-6)."""
    a = np.array(local["values"], dtype=float)
    b = np.array(archived["values"], dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=0.0, equal_nan=True))


def _decompress(path: Path) -> bytearray:
    """The decompressed content of the gzip file ``path``, read in chunks up to :data:`MAX_ARCHIVE_BYTES`."""
    content = bytearray()
    with gzip.open(path, "rb") as f:
        while chunk := f.read(min(1 << 24, MAX_ARCHIVE_BYTES + 1 - len(content))):
            content += chunk
            if len(content) > MAX_ARCHIVE_BYTES:
                raise ValueError(
                    f"{path} expands to more than {MAX_ARCHIVE_BYTES} bytes when decompressed: refused as damaged "
                    "or hostile (the limit is matgl_hybrid.descriptors.cache.MAX_ARCHIVE_BYTES)"
                )
    return content


def _is_entry(entry: Any) -> bool:
    """Whether ``entry`` is ``{"values": [number or null, ...], "error": str or null}``."""
    return (
        isinstance(entry, dict)
        and entry.keys() == {"values", "error"}
        and isinstance(entry["values"], list)
        and all(v is None or type(v) in (int, float) for v in entry["values"])
        and (entry["error"] is None or isinstance(entry["error"], str))
    )


def _entry_problem(group_key: str, entry: Any) -> str | None:
    """What is wrong with the archived ``entry`` of the group ``group_key`` (None: nothing)."""
    match = GROUP_KEY.fullmatch(group_key)
    if not match:
        return "not a group key (name@version, or name@version:digest)"
    if not _is_entry(entry):
        return 'not {"values": [number or null, ...], "error": text or null}'
    values = [math.nan if v is None else _float(v) for v in entry["values"]]
    if (bad := next((i for i, v in enumerate(values) if math.isinf(v)), None)) is not None:
        return f"value {bad} is infinite (only finite numbers, or null or NaN for a missing value)"
    group = _known_groups().get(match[1])
    if group is None:  # a user's or another version's group: its labels and their ranges are not known here
        return None
    if len(values) != len(group.labels):
        return f"{len(values)} values for the {len(group.labels)} features {', '.join(group.labels)[:200]}"
    for label, value in zip(group.labels, values, strict=True):
        if (bounds := VALUE_BOUNDS.get(label)) and not bounds.admits(value):
            return f"{label} = {value!r} is not plausible: not {bounds}"
    return None


def _float(value: int | float) -> float:
    """``value`` as a float, infinite when it is an integer too large for one."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


@cache
def _known_groups() -> dict[str, FeatureGroup]:
    """The groups this version of the package defines, by ``name@version`` (their labels are known)."""
    simulated = [g for tiers in SIM_GROUPS.values() for groups in tiers.values() for g in groups]
    groups = [*GROUPS.values(), *UIP_GROUPS.values(), *simulated]
    return {f"{g.name}@{g.version}": g for g in groups}
