"""Loaders: every supported source (record files, structure folders + CSV, DataFrames, lists) to StructureData.

Each loader turns its source into ``(id, raw structure, raw target)`` entries and hands them to one validating
collector, so every source is checked the same way (:mod:`matgl_hybrid.data.validation`) and ``skip_invalid``
means the same everywhere. :func:`load` picks the loader from the source.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import re
import warnings
import zlib
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms
from monty.io import zopen
from pymatgen.core import Structure

from matgl_hybrid.data.identity import structure_key
from matgl_hybrid.data.structure_data import StructureData
from matgl_hybrid.data.validation import (
    InvalidStructureError,
    SkippedEntry,
    _Missing,
    as_structure,
    validate_structure,
    validate_target,
)
from matgl_hybrid.datasets import DE_JONG_2015_PATH

StrPath = str | os.PathLike[str]

# Files with these suffixes in a structure folder are never read as structures.
_NOT_STRUCTURE_SUFFIXES = frozenset({".csv", ".md", ".txt"})
_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz"})


#: A count inside a reader's warning ("8 fractional coordinates rounded"): dropped so that one message covers every
#: entry that raised it.
_COUNT = re.compile(r"(?<![\w.])\d+ ")


def _entry_id(raw: Any, where: str) -> str:
    """An entry's id as text (an integer id as its digits).

    Raises:
        ValueError: the id is missing (None, NaN, blank) or has spaces around it (it would not match the same id
            elsewhere: a targets file, a prediction), naming ``where`` the entry is.
    """
    if (pd.api.types.is_scalar(raw) and pd.isna(raw)) or not str(raw).strip():  # None, NaN of any kind, NaT
        raise ValueError(f"{where}: the id is missing (None, NaN or blank): give every entry an id")
    text = str(raw)
    if text != text.strip():
        raise ValueError(f"{where}: the id {text!r} has spaces around it; remove them")
    return text


def _collect(
    entries: Iterable[tuple[str, Any, Any]],
    target_name: str | None,
    *,
    skip_invalid: bool,
    allowed_elements: Collection[str] | None,
    source: StrPath | None = None,
) -> StructureData:
    """Validate ``(id, raw structure, raw target)`` entries into StructureData, skipping or raising on bad ones.

    ``source``: the file or folder the entries come from, named in the error on a duplicate id.
    """
    ids: list[str] = []
    structures: list[Structure] = []
    targets: list[float] = []
    skipped: list[SkippedEntry] = []
    seen: set[str] = set()
    noted: dict[tuple[type[Warning], str], list[str]] = {}  # a reader's warning -> the entries that raised it
    for entry_id, raw_structure, raw_target in entries:
        if entry_id in seen:
            raise ValueError(f"{source}: duplicate id {entry_id!r}" if source else f"duplicate id {entry_id!r}")
        seen.add(entry_id)
        try:
            if isinstance(raw_target, _Missing):
                raise InvalidStructureError(entry_id, raw_target.reason)
            value = None if target_name is None else validate_target(raw_target, entry_id, target_name)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                structure = as_structure(raw_structure, entry_id)
            for warning in caught:
                noted.setdefault((warning.category, _COUNT.sub("", str(warning.message))), []).append(entry_id)
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

    for (category, message), noting in noted.items():  # once per kind, not once per file
        shown = ", ".join(repr(i) for i in noting[:3]) + (", …" if len(noting) > 3 else "")
        where = f"{source}: " if source else ""
        warnings.warn(f"{where}{len(noting)} entries ({shown}): {message}", category, stacklevel=3)
    if skipped:
        first = skipped[0]
        summary = f"{len(skipped)} of {len(seen)} entries are invalid"
        if not structures:
            where = f"{source}: " if source else ""
            raise ValueError(f"{where}no valid entries: {summary}; first: {first.id!r}: {first.reason}")
        warnings.warn(
            f"skipped {summary} (listed in .skipped); first: {first.id!r}: {first.reason}", UserWarning, stacklevel=3
        )
    if not structures:
        raise ValueError(f"{source}: no entries to load" if source else "no entries to load")
    if target_name is not None:
        _warn_copies(ids, structures, targets, source)
    return StructureData(
        structures=structures,
        targets=None if target_name is None else np.asarray(targets, dtype=np.float64),
        ids=ids,
        target_name=target_name,
        skipped=skipped,
    )


def _warn_copies(ids: list[str], structures: list[Structure], targets: list[float], source: StrPath | None) -> None:
    """Warn once when identical structures (equal :func:`~matgl_hybrid.data.identity.structure_key`) come under
    several ids of a training set: a train/test split or a cross-validation can put copies on both sides."""
    first: dict[str, int] = {}
    copies = [(first.setdefault(structure_key(s), i), i) for i, s in enumerate(structures)]
    copies = [(j, i) for j, i in copies if j != i]
    if not copies:
        return
    differing = sum(targets[i] != targets[j] for j, i in copies)
    shown = ", ".join(f"{ids[i]!r} = {ids[j]!r}" for j, i in copies[:3]) + (" …" if len(copies) > 3 else "")
    where = f"{source}: " if source else ""
    warnings.warn(
        f"{where}{len(copies)} entries are the same structure as an earlier one ({shown}), {differing} of them with "
        "another target: this package's splits keep copies together, others (Matbench's folds, yours) can score what "
        "was trained on; keep one of each",
        UserWarning,
        stacklevel=4,
    )


def load_records(
    path: StrPath,
    target: str | None = None,
    *,
    skip_invalid: bool = False,
    allowed_elements: Collection[str] | None = None,
    limit: int | None = None,
) -> StructureData:
    """Load a (gzipped) JSON list of ``{"id", "formula", "structure", <targets>}`` records (or JSON Lines: one
    record per line), or a matminer DataFrame file (``store_dataframe_as_json``, e.g. a Matbench dataset; see
    :func:`_from_matminer_json`)."""
    raw = Path(path).read_bytes()
    if not raw.strip():
        raise ValueError(f"{path} is empty: expected a JSON list of records")
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        records = _json_or_lines(raw)
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or damaged gzip file
        raise ValueError(f"{path} is not a readable gzip file (truncated or damaged?): {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON (truncated or damaged?): {exc}") from None
    if isinstance(records, dict) and set(records) == {"index", "columns", "data"}:
        return _from_matminer_json(records, path, target, skip_invalid, allowed_elements, limit)
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
            yield _entry_id(record["id"], f"{path}: record {i}"), structure, value

    return _collect(entries(), target, skip_invalid=skip_invalid, allowed_elements=allowed_elements, source=path)


def _from_matminer_json(
    table: dict[str, list[Any]],
    path: StrPath,
    target: str | None,
    skip_invalid: bool,
    allowed_elements: Collection[str] | None,
    limit: int | None,
) -> StructureData:
    """A DataFrame file of matminer's ``store_dataframe_as_json`` (``orient="split"``: index, columns, data).

    Its structure column is ``structure``. A Matbench dataset file (``matbench_<task>.json[.gz]``) gets Matbench's
    own ids (``mb-<task>-<row + 1>``, zero-padded as ``matbench.data_ops.load`` does); any other file its index.
    """
    if not table["index"]:
        raise ValueError(f"{path} holds an empty table")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    try:
        df = pd.DataFrame(table["data"], index=table["index"], columns=table["columns"]).iloc[:limit]
        name = _uncompressed_name(Path(path)).stem
        if name.startswith("matbench_"):
            width = math.floor(math.log(len(table["index"]), 10)) + 1  # exactly as matbench computes it
            prefix = name.replace("matbench", "mb").replace("_", "-")
            df.index = [f"{prefix}-{int(i) + 1:0{width}d}" for i in df.index]
        return from_dataframe(df, target, skip_invalid=skip_invalid, allowed_elements=allowed_elements)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _json_or_lines(raw: bytes) -> Any:
    """The JSON document in ``raw``, or the list of records of a JSON Lines file (one object per line)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        lines = [line for line in raw.splitlines() if line.strip()]
        if not exc.msg.startswith("Extra data") or len(lines) < 2:
            raise
        try:
            records = [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            raise exc from None
        if not all(isinstance(r, dict) for r in records):
            raise
        return records


#: Byte-order marks of UTF-16 text (a spreadsheet's "Unicode text" export).
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_csv(path: StrPath, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` whose errors (empty, truncated or malformed file, not UTF-8) name the file; UTF-16 text
    with its byte-order mark is read as such."""
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError:
        with zopen(path, "rb") as handle:
            utf16 = handle.read(2) in UTF16_BOMS
        if utf16 and "encoding" not in kwargs:
            return read_csv(path, encoding="utf-16", **kwargs)
        raise ValueError(f"{path} is not UTF-8 text: save it as CSV UTF-8") from None
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # zlib: a damaged .csv.gz
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable CSV file: {str(exc).splitlines()[0]}") from None


def _csv_numbers(column: pd.Series, path: StrPath) -> list[Any]:
    """The cells of a CSV target column as numbers, each on its own: a text cell stands for its row alone.

    One text cell makes pandas read the whole column as text; here each cell that parses is a number again and any
    other becomes a :class:`_Missing` naming its text and row, so that only its row is invalid.
    """
    values: list[Any] = []
    for row, cell in enumerate(column, start=1):
        if isinstance(cell, str):
            try:
                cell = float(cell)
            except ValueError:
                cell = _Missing(f"target {column.name!r} is not a number: {cell!r} (data row {row} of {path})")
        values.append(cell)
    return values


def _uncompressed_name(path: Path) -> Path:
    """Return the file name without a compression suffix (``mp-1.cif.gz`` -> ``mp-1.cif``)."""
    return Path(path.stem if path.suffix.lower() in _COMPRESSION_SUFFIXES else path.name)


def _structure_files(folder: Path) -> list[Path]:
    """Return the visible files of ``folder`` that may hold structures, sorted by name (as text, the same on every
    system: Windows compares paths without case)."""
    return sorted(
        (
            path
            for path in folder.iterdir()
            if path.is_file()
            and not path.name.startswith(".")
            and _uncompressed_name(path).suffix.lower() not in _NOT_STRUCTURE_SUFFIXES
        ),
        key=lambda path: path.name,
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
    by_id: dict[str, list[Path]] = {}
    for path in files:
        by_id.setdefault(_uncompressed_name(path).stem, []).append(path)
    if targets_csv is None:
        if target is not None:
            raise ValueError(f"target {target!r} asked but no targets_csv given for {folder}")
        if shared := next(((i, paths) for i, paths in by_id.items() if len(paths) > 1), None):
            raise ValueError(
                f"{folder}: {', '.join(p.name for p in shared[1])} have the same id {shared[0]!r} (ids are file "
                "names without their extension): rename them, e.g. Li2O.POSCAR for POSCAR.Li2O"
            )
        entries: Iterable[tuple[str, Any, Any]] = ((_uncompressed_name(p).stem, p, None) for p in files)
        return _collect(entries, None, skip_invalid=skip_invalid, allowed_elements=allowed_elements, source=folder)

    column = target or "target"
    table = read_csv(targets_csv, dtype={"id": str})
    missing = [c for c in ("id", column) if c not in table.columns]
    if missing:
        raise ValueError(
            f"targets CSV {targets_csv} lacks column(s) {', '.join(missing)} (columns: {', '.join(table.columns)})"
        )

    def structure_for(entry_id: str) -> Path | _Missing:
        paths = by_id.get(entry_id, [])
        if len(paths) == 1:
            return paths[0]
        if not paths:
            return _Missing(f"id is in {Path(targets_csv).name} but {folder} has no structure file named {entry_id}.* "
                            "(ids are file names without their extension)")
        return _Missing(f"several structure files for this id: {', '.join(p.name for p in paths)}")

    values = _csv_numbers(table[column], targets_csv)
    ids = [_entry_id(i, f"{targets_csv}: data row {row}") for row, i in enumerate(table["id"], 1)]
    if unlisted := sorted(set(by_id) - set(ids)):  # a typo in an id would drop its structure without a word
        shown = ", ".join(unlisted[:3]) + (" …" if len(unlisted) > 3 else "")
        warnings.warn(
            f"{folder}: {len(unlisted)} structure files have no row in {Path(targets_csv).name} and are left out "
            f"({shown})",
            UserWarning,
            stacklevel=2,
        )
    entries = ((i, structure_for(i), v) for i, v in zip(ids, values, strict=True))
    return _collect(entries, column, skip_invalid=skip_invalid, allowed_elements=allowed_elements, source=targets_csv)


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
    entries = _frame_entries(df, target, structure_column, id_column)
    return _collect(entries, target, skip_invalid=skip_invalid, allowed_elements=allowed_elements)


def _frame_entries(
    df: pd.DataFrame, target: str | None, structure_column: str, id_column: str | None, csv: StrPath | None = None
) -> Iterable[tuple[str, Any, Any]]:
    """The ``(id, structure, target)`` entries of a DataFrame, or of the CSV file ``csv`` it was read from (named
    in the errors; its target cells are numbers cell by cell, see :func:`_csv_numbers`)."""
    for name, role in ((structure_column, "structure"), (target, "target"), (id_column, "id")):
        if name is not None and name not in df.columns:
            where = csv or "DataFrame"
            raise ValueError(f"{where} has no {role} column {name!r} (columns: {', '.join(map(str, df.columns))})")
    ids = df.index if id_column is None else df[id_column]
    if target is None:
        values: Iterable[Any] = [None] * len(df)
    else:
        values = df[target] if csv is None else _csv_numbers(df[target], csv)
    where = f"{csv}: data row" if csv is not None else "DataFrame row"
    ids = [_entry_id(i, f"{where} {row}") for row, i in enumerate(ids, 1 if csv is not None else 0)]
    return zip(ids, df[structure_column], values, strict=True)


def _load_csv(
    path: Path,
    target: str | None,
    *,
    structure_column: str | None = None,
    id_column: str | None = None,
    skip_invalid: bool = False,
    allowed_elements: Collection[str] | None = None,
) -> StructureData:
    """A CSV file of structures (column ``structure_column``, else ``structure`` or ``cif``), ids (``id_column``,
    else ``id`` if present, else row numbers) and targets."""
    df = read_csv(path, dtype={id_column or "id": str})
    if structure_column is None:
        columns = [c for c in ("structure", "cif") if c in df.columns]
        if not columns:
            raise ValueError(f"{path} has no 'structure' or 'cif' column; for a table of targets load its folder")
        structure_column = columns[0]
    if id_column is None and "id" in df.columns:
        id_column = "id"
    entries = _frame_entries(df, target, structure_column, id_column, csv=path)
    return _collect(entries, target, skip_invalid=skip_invalid, allowed_elements=allowed_elements, source=path)


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
    id_list = (
        [str(i) for i in range(len(structures))]
        if ids is None
        else [_entry_id(i, f"structure {k}") for k, i in enumerate(ids)]
    )
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


def _targets_csv(folder: Path, target: str) -> Path:
    """The targets CSV of ``folder`` for ``target``: its only ``.csv`` file, else its only CSV of another case or
    gzipped (``.CSV``, ``.csv.gz``)."""
    csvs = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and _uncompressed_name(p).suffix.lower() == ".csv"
    )  # not macOS's ._ files
    if not csvs:
        raise ValueError(f"{folder} has no CSV file of targets (columns id,{target}) beside its structure files")
    if len(plain := [p for p in csvs if p.suffix == ".csv"]) == 1:
        return plain[0]  # as before other cases and .csv.gz were taken: beside a NOTES.CSV or raw.csv.gz
    if len(csvs) > 1:
        names = ", ".join(p.name for p in csvs[:4]) + (" …" if len(csvs) > 4 else "")
        raise ValueError(f"{folder} holds {len(csvs)} CSV files ({names}): leave only the targets' there, or "
                         "say which with load(..., targets_csv=) in Python")  # fmt: skip
    return csvs[0]


def input_paths(flag: str, source: Any, target: str | None = None) -> dict[str, Path]:
    """``{flag: source}`` and the files :func:`load` reads in a folder ``source`` (its structure files and, with a
    ``target``, its targets CSV), each named for an error message: what an output must not replace. Empty for data
    in memory."""
    if not isinstance(source, str | os.PathLike):
        return {}
    path = Path(source)
    paths = {flag: path}
    if path.is_dir():
        paths |= {f"{flag}'s structure file {p.name}": p for p in _structure_files(path)}
        if target is not None:
            with contextlib.suppress(ValueError):  # no single CSV: load says so
                paths[f"{flag}'s targets CSV"] = _targets_csv(path, target)
    return paths


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
            kwargs["targets_csv"] = _targets_csv(path, target)
        return load_folder(path, target=target, **kwargs)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    name = path.name.lower()
    if name.endswith((".json", ".json.gz")):
        return load_records(path, target, **kwargs)
    if name.endswith((".csv", ".csv.gz")):
        return _load_csv(path, target, **kwargs)
    raise ValueError(f"cannot load {path}: expected a folder, .json, .json.gz or .csv file")


def load_demo(target: str | None = "K_VRH") -> StructureData:
    """Load the embedded de Jong et al. 2015 elasticity set (1181 structures, CC-BY 4.0; K_VRH/G_VRH in GPa)."""
    if not DE_JONG_2015_PATH.is_file():
        raise FileNotFoundError(f"{DE_JONG_2015_PATH} is missing; rebuild it with scripts/build_demo_dataset.py")
    return load_records(DE_JONG_2015_PATH, target)
