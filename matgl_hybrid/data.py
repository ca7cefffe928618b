"""Loading and validation of crystal structures and their regression targets."""

from __future__ import annotations

import gzip
import json
import math
import numbers
import os
import warnings
import zlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms
from pymatgen.core import DummySpecies, Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from matgl_hybrid.datasets import DE_JONG_2015_PATH

StrPath = str | os.PathLike[str]

# Files with these suffixes in a structure folder are never read as structures.
_NOT_STRUCTURE_SUFFIXES = frozenset({".csv", ".md", ".txt"})
_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz"})


class InvalidStructureError(ValueError):
    """An entry (structure or target) that cannot be used; ``id`` and ``reason`` say which and why."""

    def __init__(self, id: str, reason: str) -> None:
        super().__init__(id, reason)
        self.id = id
        self.reason = reason

    def __str__(self) -> str:
        return f"entry {self.id!r}: {self.reason}"


@dataclass(frozen=True)
class SkippedEntry:
    """An entry dropped by ``skip_invalid=True``, with the reason it was invalid."""

    id: str
    reason: str


@dataclass
class StructureData:
    """Validated structures with their ids and, optionally, one float64 target per structure."""

    structures: list[Structure]
    targets: np.ndarray | None
    ids: list[str]
    target_name: str | None = None
    skipped: list[SkippedEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.structures):
            raise ValueError(f"{len(self.structures)} structures but {len(self.ids)} ids")
        if self.targets is not None:
            self.targets = np.asarray(self.targets, dtype=np.float64)
            if self.targets.shape != (len(self.structures),):
                raise ValueError(f"targets must have shape ({len(self.structures)},), got {self.targets.shape}")

    def __len__(self) -> int:
        return len(self.structures)

    def subset(self, indices: Sequence[int]) -> StructureData:
        """Return the entries at ``indices``, in that order (``skipped`` is kept as is)."""
        index = np.asarray(indices)
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {index.dtype}")
        positions = [int(i) for i in index.reshape(-1)]
        return StructureData(
            structures=[self.structures[i] for i in positions],
            targets=None if self.targets is None else self.targets[positions],
            ids=[self.ids[i] for i in positions],
            target_name=self.target_name,
            skipped=list(self.skipped),
        )


@dataclass(frozen=True)
class _Missing:
    """Stands in for an absent structure or target; ``reason`` says why it is absent."""

    reason: str


def validate_structure(
    structure: Structure,
    id: str,
    allowed_elements: Collection[str] | None = None,
    min_distance: float = 0.5,
) -> None:
    """Raise InvalidStructureError unless ``structure`` is ordered, made of known elements and has no overlaps."""
    if not isinstance(structure, Structure):
        raise InvalidStructureError(id, f"expected a pymatgen Structure, got {type(structure).__name__}")
    if len(structure) == 0:
        raise InvalidStructureError(id, "structure is empty (0 sites)")
    if not (np.isfinite(structure.lattice.matrix).all() and structure.volume > 1e-6):
        raise InvalidStructureError(id, f"lattice is degenerate or not finite (volume {structure.volume:.3g} Å³)")
    if not np.isfinite(structure.frac_coords).all():
        raise InvalidStructureError(id, "atomic coordinates are not finite")

    symbols = set()
    for i, site in enumerate(structure):
        if not site.is_ordered:
            raise InvalidStructureError(id, f"site {i} is disordered or partially occupied ({site.species_string})")
        species = next(iter(site.species))
        element = getattr(species, "element", species)
        if isinstance(species, DummySpecies) or not isinstance(element, Element):
            raise InvalidStructureError(id, f"site {i} holds {species}, which is not a chemical element")
        symbols.add(element.symbol)

    if allowed_elements is not None:
        unknown = sorted(symbols - {str(e) for e in allowed_elements})
        if unknown:
            raise InvalidStructureError(
                id, f"element(s) {', '.join(unknown)} unknown to the model (not in allowed_elements)"
            )

    if min_distance > 0:
        centers, neighbors, images, distances = structure.get_neighbor_list(r=min_distance)
        if len(distances) and distances.min() < min_distance:
            k = int(np.argmin(distances))
            image_note = " (periodic images)" if np.any(images[k]) else ""
            raise InvalidStructureError(
                id,
                f"overlapping atoms: sites {centers[k]} and {neighbors[k]}{image_note} are "
                f"{distances[k]:.3f} Å apart, less than min_distance={min_distance} Å",
            )


def validate_target(value: Any, id: str, target_name: str) -> float:
    """Return ``value`` as a finite float or raise InvalidStructureError (None, NaN, inf, non-numeric)."""
    if value is None or value is pd.NA:
        raise InvalidStructureError(id, f"target {target_name!r} is missing")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InvalidStructureError(id, f"target {target_name!r} is not a number: {value!r}")
    number = float(value)
    if math.isnan(number):
        raise InvalidStructureError(id, f"target {target_name!r} is NaN")
    if math.isinf(number):
        raise InvalidStructureError(id, f"target {target_name!r} is infinite ({number})")
    return number


def as_structure(obj: Any, id: str = "?") -> Structure:
    """Convert a Structure, ase Atoms, as_dict() dict, JSON/CIF/POSCAR string or file path to a Structure."""
    if isinstance(obj, _Missing):
        raise InvalidStructureError(id, obj.reason)
    if isinstance(obj, Structure):
        return obj
    try:
        if isinstance(obj, Atoms):
            return AseAtomsAdaptor.get_structure(obj)
        if isinstance(obj, dict):
            return Structure.from_dict(obj)
        if isinstance(obj, str):
            text = obj.lstrip()
            fmt = "json" if text.startswith("{") else "cif" if "_cell_length_a" in text else "poscar"
            return Structure.from_str(obj, fmt=fmt)
        if isinstance(obj, Path):
            return Structure.from_file(obj)
    except Exception as exc:
        raise InvalidStructureError(id, f"cannot read structure: {type(exc).__name__}: {exc}") from exc
    raise InvalidStructureError(id, f"expected a Structure, ase Atoms, dict or string, got {type(obj).__name__}")


def _collect(
    entries: Iterable[tuple[str, Any, Any]],
    target_name: str | None,
    *,
    skip_invalid: bool,
    allowed_elements: Collection[str] | None,
) -> StructureData:
    """Validate ``(id, raw structure, raw target)`` entries into StructureData, skipping or raising on bad ones."""
    ids: list[str] = []
    structures: list[Structure] = []
    targets: list[float] = []
    skipped: list[SkippedEntry] = []
    seen: set[str] = set()
    for entry_id, raw_structure, raw_target in entries:
        if entry_id in seen:
            raise ValueError(f"duplicate id {entry_id!r}")
        seen.add(entry_id)
        try:
            if isinstance(raw_target, _Missing):
                raise InvalidStructureError(entry_id, raw_target.reason)
            value = None if target_name is None else validate_target(raw_target, entry_id, target_name)
            structure = as_structure(raw_structure, entry_id)
            validate_structure(structure, entry_id, allowed_elements)
        except InvalidStructureError as exc:
            if not skip_invalid:
                raise
            skipped.append(SkippedEntry(entry_id, exc.reason))
            continue
        ids.append(entry_id)
        structures.append(structure)
        if value is not None:
            targets.append(value)

    if skipped:
        first = skipped[0]
        summary = f"{len(skipped)} of {len(seen)} entries are invalid"
        if not structures:
            raise ValueError(f"no valid entries: {summary}; first: {first.id!r}: {first.reason}")
        warnings.warn(
            f"skipped {summary} (listed in .skipped); first: {first.id!r}: {first.reason}", UserWarning, stacklevel=3
        )
    if not structures:
        raise ValueError("no entries to load")
    return StructureData(
        structures=structures,
        targets=None if target_name is None else np.asarray(targets, dtype=np.float64),
        ids=ids,
        target_name=target_name,
        skipped=skipped,
    )


def load_records(
    path: StrPath,
    target: str | None = None,
    *,
    skip_invalid: bool = False,
    allowed_elements: Collection[str] | None = None,
    limit: int | None = None,
) -> StructureData:
    """Load a (gzipped) JSON list of ``{"id", "formula", "structure", <targets>}`` records."""
    raw = Path(path).read_bytes()
    if not raw.strip():
        raise ValueError(f"{path} is empty: expected a JSON list of records")
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        records = json.loads(raw)
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or damaged gzip file
        raise ValueError(f"{path} is not a readable gzip file (truncated or damaged?): {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON (truncated or damaged?): {exc}") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        records = records[:limit]

    def entries() -> Iterable[tuple[str, Any, Any]]:
        for i, record in enumerate(records):
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError(f"{path}: record {i} is not a dict with an 'id' key")
            structure = record.get("structure", _Missing("record has no 'structure' key"))
            value = None if target is None else record.get(target)
            if target is not None and target not in record:
                value = _Missing(f"record has no target {target!r}; available keys: {', '.join(record)}")
            yield str(record["id"]), structure, value

    return _collect(entries(), target, skip_invalid=skip_invalid, allowed_elements=allowed_elements)


def read_csv(path: StrPath, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` whose errors (empty, truncated or malformed file) name the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable CSV file: {str(exc).splitlines()[0]}") from None


def _uncompressed_name(path: Path) -> Path:
    """Return the file name without a compression suffix (``mp-1.cif.gz`` -> ``mp-1.cif``)."""
    return Path(path.stem if path.suffix.lower() in _COMPRESSION_SUFFIXES else path.name)


def _structure_files(folder: Path) -> list[Path]:
    """Return the visible files of ``folder`` that may hold structures, sorted by name."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and _uncompressed_name(path).suffix.lower() not in _NOT_STRUCTURE_SUFFIXES
    )


def load_folder(
    folder: StrPath,
    targets_csv: StrPath | None = None,
    target: str | None = None,
    *,
    skip_invalid: bool = False,
    allowed_elements: Collection[str] | None = None,
) -> StructureData:
    """Load structure files (CIF, POSCAR, ...) from ``folder``; ids are file stems.

    With ``targets_csv`` (columns ``id`` and ``target``, default name "target"), the CSV gives the entries and
    their order; without it every structure file is loaded in name order, with no targets.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a directory")
    files = _structure_files(folder)
    if targets_csv is None:
        if target is not None:
            raise ValueError(f"target {target!r} asked but no targets_csv given")
        entries: Iterable[tuple[str, Any, Any]] = ((_uncompressed_name(p).stem, p, None) for p in files)
        return _collect(entries, None, skip_invalid=skip_invalid, allowed_elements=allowed_elements)

    column = target or "target"
    table = read_csv(targets_csv, dtype={"id": str})
    missing = [c for c in ("id", column) if c not in table.columns]
    if missing:
        raise ValueError(
            f"targets CSV {targets_csv} lacks column(s) {', '.join(missing)} (columns: {', '.join(table.columns)})"
        )
    by_id: dict[str, list[Path]] = {}
    for path in files:
        by_id.setdefault(_uncompressed_name(path).stem, []).append(path)

    def structure_for(entry_id: str) -> Path | _Missing:
        paths = by_id.get(entry_id, [])
        if len(paths) == 1:
            return paths[0]
        if not paths:
            return _Missing(f"id is in {Path(targets_csv).name} but {folder} has no structure file named {entry_id}.*")
        return _Missing(f"several structure files for this id: {', '.join(p.name for p in paths)}")

    entries = ((str(i), structure_for(str(i)), v) for i, v in zip(table["id"], table[column], strict=True))
    return _collect(entries, column, skip_invalid=skip_invalid, allowed_elements=allowed_elements)


def from_dataframe(
    df: pd.DataFrame,
    target: str | None = None,
    *,
    structure_column: str = "structure",
    id_column: str | None = None,
    skip_invalid: bool = False,
    allowed_elements: Collection[str] | None = None,
) -> StructureData:
    """Load a matminer/Matbench-style DataFrame; structures may be Structures, as_dict() dicts or JSON/CIF strings."""
    for name, role in ((structure_column, "structure"), (target, "target"), (id_column, "id")):
        if name is not None and name not in df.columns:
            raise ValueError(f"DataFrame has no {role} column {name!r} (columns: {', '.join(map(str, df.columns))})")
    ids = df.index if id_column is None else df[id_column]
    values = df[target] if target is not None else [None] * len(df)
    entries = zip((str(i) for i in ids), df[structure_column], values, strict=True)
    return _collect(entries, target, skip_invalid=skip_invalid, allowed_elements=allowed_elements)


def from_structures(
    structures: Iterable[Structure | Atoms],
    targets: Iterable[float] | None = None,
    ids: Iterable[Any] | None = None,
    *,
    skip_invalid: bool = False,
    allowed_elements: Collection[str] | None = None,
    target_name: str | None = None,
) -> StructureData:
    """Load a list of pymatgen Structures or ase Atoms; ids default to "0", "1", ...; target_name to "target"."""
    if isinstance(structures, Structure | Atoms):
        raise TypeError("from_structures takes a list of structures, not a single structure")
    structures = list(structures)
    id_list = [str(i) for i in range(len(structures))] if ids is None else [str(i) for i in ids]
    if len(id_list) != len(structures):
        raise ValueError(f"{len(structures)} structures but {len(id_list)} ids")
    if targets is None:
        if target_name is not None:
            raise ValueError(f"target_name {target_name!r} given without targets")
        values: list[Any] = [None] * len(structures)
    else:
        values = list(targets)
        if len(values) != len(structures):
            raise ValueError(f"{len(structures)} structures but {len(values)} targets")
        target_name = target_name or "target"
    entries = zip(id_list, structures, values, strict=True)
    return _collect(entries, target_name, skip_invalid=skip_invalid, allowed_elements=allowed_elements)


def load(source: Any, target: str | None = None, **kwargs: Any) -> StructureData:
    """Load ``source`` with the matching loader: StructureData, DataFrame, folder, .json(.gz), .csv or list.

    A StructureData is returned as is (checked against ``allowed_elements`` when given; other options are moot).
    A folder uses ``targets_csv`` if given, else (with a target) its only CSV file; without a target it loads every
    structure file.
    """
    if isinstance(source, StructureData):
        if target is not None and target != source.target_name:
            raise ValueError(f"asked for target {target!r} but the StructureData holds {source.target_name!r}")
        if kwargs.get("allowed_elements") is not None:
            for structure, entry_id in zip(source.structures, source.ids, strict=True):
                validate_structure(structure, entry_id, kwargs["allowed_elements"])
        return source
    if isinstance(source, pd.DataFrame):
        return from_dataframe(source, target, **kwargs)
    if isinstance(source, list | tuple):
        return from_structures(source, target_name=target, **kwargs)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            f"cannot load {type(source).__name__}; expected StructureData, DataFrame, path or list of structures"
        )

    path = Path(source)
    if path.is_dir():
        if kwargs.get("targets_csv") is None and target is not None:  # without a target, every structure file
            csvs = sorted(path.glob("*.csv"))
            if len(csvs) == 1:
                kwargs["targets_csv"] = csvs[0]
            elif len(csvs) > 1 and target is not None:
                raise ValueError(f"{path} holds {len(csvs)} CSV files; say which with targets_csv=")
        return load_folder(path, target=target, **kwargs)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    name = path.name.lower()
    if name.endswith((".json", ".json.gz")):
        return load_records(path, target, **kwargs)
    if name.endswith((".csv", ".csv.gz")):
        id_column = kwargs.get("id_column") or "id"
        df = read_csv(path, dtype={id_column: str})
        if "structure_column" not in kwargs:
            columns = [c for c in ("structure", "cif") if c in df.columns]
            if not columns:
                raise ValueError(f"{path} has no 'structure' or 'cif' column; for a table of targets load its folder")
            kwargs["structure_column"] = columns[0]
        if "id_column" not in kwargs and "id" in df.columns:
            kwargs["id_column"] = "id"
        return from_dataframe(df, target, **kwargs)
    raise ValueError(f"cannot load {path}: expected a folder, .json, .json.gz or .csv file")


def material_key(structure: Structure, symprec: float = 0.1) -> tuple[str, int, int]:
    """(reduced formula, sites in the primitive cell, space-group number): one material across databases.

    The primitive cell makes a conventional cell or a supercell of a crystal match its primitive copy elsewhere. Used
    to keep evaluation structures out of a pretraining corpus even when they come with other ids.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
        number, sites = analyzer.get_space_group_number(), len(analyzer.find_primitive())
    except Exception:  # spglib gives up on a few distorted cells: compare formula and cell size only
        number, sites = 0, len(structure)
    return structure.composition.reduced_formula, sites, number


def log10_targets(dataset: StructureData) -> StructureData:
    """The entries with a positive target, their target replaced by its log10 (as Matbench's ``log_kvrh``).

    Dropped entries (target ≤ 0) are added to ``skipped`` with a warning; the target is renamed ``log10_<name>``.
    """
    if dataset.targets is None:
        raise ValueError("log10_targets needs a dataset with targets")
    positive = dataset.targets > 0
    result = dataset.subset(np.flatnonzero(positive))
    ids = zip(dataset.ids, positive, strict=True)
    dropped = [SkippedEntry(i, "target ≤ 0 has no log10") for i, ok in ids if not ok]
    if dropped:
        shown = ", ".join(e.id for e in dropped[:5]) + (" …" if len(dropped) > 5 else "")
        warnings.warn(f"dropped {len(dropped)} entries whose target is not positive: {shown}", stacklevel=2)
    result.targets = np.log10(result.targets)
    result.target_name = f"log10_{dataset.target_name or 'target'}"
    result.skipped = [*dataset.skipped, *dropped]
    return result


def load_demo(target: str | None = "K_VRH") -> StructureData:
    """Load the embedded de Jong et al. 2015 elasticity set (1181 structures, CC-BY 4.0; K_VRH/G_VRH in GPa)."""
    if not DE_JONG_2015_PATH.is_file():
        raise FileNotFoundError(f"{DE_JONG_2015_PATH} is missing; rebuild it with scripts/build_demo_dataset.py")
    return load_records(DE_JONG_2015_PATH, target)
