"""The checkpoint directory (one place knows its format): safetensors + JSON + SHA256SUMS, MatGL-compatible.

A checkpoint directory holds

- ``model.json``: MatGL's header (``@class``, ``@module``, ``@model_version``), ``kwargs`` (the constructor
  config, without the fitted state below) and ``metadata`` (format version, package / MatGL / torch versions,
  descriptor set and version, target names and units);
- ``weights.safetensors``: the state dict;
- ``descriptor_transform.json`` (hybrids) and ``target_normalization.json``: the fitted imputer/scaler and target
  mean/std, one file each (ensembles keep them per member inside ``kwargs``);
- any records (``training.json``, ``model_card.md``);
- ``model.pt`` and ``state.pt``: MatGL's own files, which ``matgl.load_model(dir)`` needs to find the folder (empty
  for matgl-hybrid's models, whose weights are stored once; MatGL's content for a bare MatGL model); for
  matgl-hybrid's models it then calls the class's ``load`` (:class:`VerifiedCheckpointMixIn`), i.e.
  :func:`load_checkpoint`. MatGL imports the module that ``model.json`` names (``@module``) *before* that, so
  ``matgl.load_model`` is only for folders you trust (see docs/upstream/matgl-load-model-imports-module.md);
- ``SHA256SUMS``: the sha256 of every other file. Loading verifies it first, names any file that differs, and
  refuses a checkpoint whose manifest lacks a file the loader reads (``metadata["files"]`` lists them).

Nothing here is unpickled by :func:`load_checkpoint`: weights come from safetensors, everything else from JSON; it
imports nothing the folder names before the hashes and the class allowlist are checked, and it checks the sizes the
JSON asks for (:func:`check_config`) before building anything.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib.metadata
import inspect
import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import matgl
import matgl.utils.io
import torch
from matgl.models._core import MatGLModel
from matgl.utils.io import IOMixIn
from pymatgen.core.periodic_table import Element
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from matgl_hybrid.files import atomic_write_text, check_output_dir, current_umask, make_temp_dir, read_json
from matgl_hybrid.version import __version__ as PACKAGE_VERSION

#: Version of the checkpoint layout written here; a larger one comes from a newer matgl-hybrid, a smaller one is
#: converted by :func:`migrate_checkpoint`. Format 2 lists every file it wrote in ``metadata["files"]``, and the
#: loader requires each of them in the manifest; format 3 has no weights for MatGL's readout and head, which
#: hybrid models do not use.
FORMAT_VERSION = 3
MANIFEST = "SHA256SUMS"
#: Constructor arguments stored in their own JSON files rather than in model.json's kwargs.
SEPARATE_STATE = {
    "descriptor_transform.json": ("descriptor_transform",),
    "target_normalization.json": ("target_names", "target_units", "target_mean", "target_std"),
}
#: Entry-point group of the classes a checkpoint may name: each entry point is named ``<@module>.<@class>`` exactly
#: as a header gives them and loads that class (pyproject.toml registers matgl-hybrid's models and MatGL's three
#: backbones). Nothing outside it is imported.
MODEL_CLASSES = "matgl_hybrid.model_classes"
#: The node type of a self-supervised encoder that stands for a masked atom: the one entry of a checkpoint's
#: ``element_types`` that is not an element symbol.
MASK_TOKEN = "Mask"
#: MatGL's own two files, by which ``matgl.load_model`` recognises a model folder. matgl-hybrid's models keep them
#: empty (their weights are in ``weights.safetensors`` only); a bare MatGL model keeps MatGL's content, which
#: MatGL's loader reads.
MATGL_MARKERS = ("model.pt", "state.pt")
#: Files every checkpoint has: the header, the weights, and MatGL's two markers.
BASE_FILES = ("model.json", "weights.safetensors", *MATGL_MARKERS)
#: Prefix of the folder a save assembles its files in, inside the destination.
_SAVING_PREFIX = ".saving."
#: A save's list of the files it replaces (the earlier manifest's and its own), written before the manifest is
#: removed and removed once the new one is written: the files of a save that was interrupted stay known as ours.
_REPLACING = f"{_SAVING_PREFIX}files"
#: Names a checkpoint's own files take, which records, texts and figures may not.
RESERVED_FILES = frozenset({*BASE_FILES, MANIFEST, *SEPARATE_STATE})
#: Floating-point types a checkpoint's weights may be stored in (``metadata["dtype"]``; float32 when absent).
WEIGHT_DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16
}
#: Bounds on what a checkpoint's ``kwargs`` may ask to build, far above any real model: any number (a width, a
#: count), the entries of a list of numbers (layer widths), and a cutoff in Å.
MAX_NUMBER = 65536
MAX_LAYERS = 16
MAX_CUTOFF = 20.0
#: Keys of the fitted state (data, not architecture: its size is that of the file), which :func:`check_config` skips.
_FITTED_STATE = frozenset(k for keys in SEPARATE_STATE.values() for k in keys)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, tampered, or from an incompatible version."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_saved_model(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a checkpoint written by :func:`save_checkpoint` (manifest and header)."""
    path = Path(path)
    return (path / MANIFEST).is_file() and (path / "model.json").is_file()


def _files_of_ours(path: Path) -> set[str]:
    """The files in ``path`` that saves of this package wrote: those its manifest lists (and the manifest), and
    those a save that was interrupted recorded."""
    ours: set[str] = set()
    if is_saved_model(path):
        ours |= {*parse_manifest(read_text(path / MANIFEST), path / MANIFEST), MANIFEST}
    if (path / _REPLACING).is_file():
        ours |= {name for name in read_text(path / _REPLACING).splitlines() if SAFE_FILE_NAME.fullmatch(name)}
    return ours


def check_model_dir(
    path: str | Path,
    overwrite: bool = False,
    allow: Iterable[str | Path] = (),
    *,
    writes: Iterable[str] = (),
    replace_model: bool = True,
) -> Path:
    """Check, before any work, that a model can be saved at ``path`` without touching anything else there.

    Args:
        path: the checkpoint folder to be.
        overwrite: also accept a non-empty folder that holds no saved model (the model's files are written beside
            what is there; nothing is deleted), and a saved model even when ``replace_model`` is False.
        allow: paths inside ``path`` that may be there, with the entries holding them (e.g. a
            ``--checkpoint-dir`` anywhere inside it).
        writes: names of the files the save adds to the checkpoint's own (records, texts, figures).
        replace_model: accept a folder holding a saved model (replaced by the save) without ``overwrite``.

    Raises:
        FileExistsError: ``path`` holds files and no saved model, and ``overwrite`` is False; or a saved model that
            ``replace_model`` and ``overwrite`` do not allow replacing; or a file that no saved model there wrote
            with the name of one the save writes (the user's, never replaced).
        NotADirectoryError, PermissionError: ``path`` cannot be a writable folder.
    """
    path = check_output_dir(path)
    if not path.is_dir():
        return path
    ours = _files_of_ours(path)
    if is_saved_model(path) and not (replace_model or overwrite):
        raise FileExistsError(f"{path} already holds a saved model: choose another folder, or replace it (--overwrite)")
    if not ours and not overwrite:
        allowed = {Path(a).resolve() for a in allow}  # an entry holding one (m/ckpt of m/ckpt/run1) is allowed too
        foreign = sorted(
            p.name
            for p in path.iterdir()
            if not any(p.resolve() == a or p.resolve() in a.parents for a in allowed)
            and not p.name.startswith((_SAVING_PREFIX, ".matgl-hybrid-write-check."))
        )
        if foreign:
            shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
            raise FileExistsError(
                f"{path} is not empty ({shown}) and holds no saved model: choose another folder, or overwrite "
                "(--overwrite) to write the model's files beside what is there (nothing is deleted)"
            )
    if theirs := sorted(f for f in {*RESERVED_FILES, *writes} if f not in ours and (path / f).exists()):
        raise FileExistsError(
            f"{path} holds {', '.join(theirs)}, which no saved model there wrote, and the model would write files of "
            "those names: move them away or save elsewhere; nothing was changed"
        )
    return path


def save_checkpoint(
    model: MatGLModel,
    out_dir: str | Path,
    records: dict[str, Any] | None = None,
    texts: dict[str, str] | None = None,
    *,
    figures: dict[str, bytes] | None = None,
    overwrite: bool = False,
    allow: Iterable[str | Path] = (),
) -> Path:
    """Write ``model`` as a checkpoint directory at ``out_dir``.

    Args:
        model: a matgl-hybrid model (``HybridModel``, ``HybridEnsemble``) or a MatGL backbone.
        records: extra JSON files, ``{name: value}`` -> ``<name>.json``.
        texts: extra text files, ``{file name: text}`` (e.g. ``model_card.md``).
        figures: extra image files, ``{file name: PNG bytes}`` (the card's figure), hash-checked as every file.
        overwrite: see :func:`check_model_dir`, which is called first.
        allow: see :func:`check_model_dir`.

    Saving over an earlier checkpoint replaces the files that checkpoint's manifest lists and nothing else: files
    and folders of the user's (predictions, a checkpoint folder) stay, and a file of the user's with the name of
    one the model writes (e.g. their own ``model_card.md``) is refused (``FileExistsError``), not replaced. The
    files are assembled in a hidden folder inside ``out_dir`` and renamed into place; the manifest is removed first
    and written last, so an interrupted save leaves a folder that the loader refuses, never one that loads wrong, and
    a hidden list of the files it was writing, by which saving there again (no ``overwrite`` needed) finishes it.
    """
    if clash := sorted(set(texts or {}) & set(figures or {})):
        raise ValueError(f"{out_dir}: {', '.join(clash)} given both as a text and as a figure")
    extra = [*(f"{name}.json" for name in records or {}), *(texts or {}), *(figures or {})]
    if bad := [name for name in extra if not SAFE_FILE_NAME.fullmatch(name) or name in RESERVED_FILES]:
        raise ValueError(
            f"{out_dir}: cannot save a file named {', '.join(map(repr, bad))} with the model: a plain name (letters, "
            f"digits, '.', '_', '-', spaces) that is none of the checkpoint's own ({', '.join(sorted(RESERVED_FILES))})"
        )
    out_dir = check_model_dir(out_dir, overwrite, allow, writes=extra)
    had_model = is_saved_model(out_dir)
    ours = _files_of_ours(out_dir)
    previous = ours - {MANIFEST}
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = "the earlier model there is unchanged" if had_model else "nothing was written there"
    tmp = make_temp_dir(out_dir, _SAVING_PREFIX)
    try:
        try:
            files, manifest = _assemble(model, tmp, records or {}, {**(texts or {}), **(figures or {})})
        except (OSError, RuntimeError, SafetensorError) as exc:  # a full disk, as os, torch and safetensors say it
            raise _not_saved(out_dir, exc, kept) from exc
        theirs = sorted(f for f in (*files, MANIFEST) if f not in ours and (out_dir / f).exists())
        if theirs:  # created since check_model_dir looked (while the files were assembled): the user's, not ours
            raise FileExistsError(
                f"{out_dir} holds {', '.join(theirs)}, which no saved model there wrote, and this model would write "
                "files of those names: move them away or save elsewhere; nothing was changed"
            )
        try:
            atomic_write_text(out_dir / _REPLACING, "".join(f"{f}\n" for f in sorted(ours | {*files, MANIFEST})))
        except OSError as exc:
            raise _not_saved(out_dir, exc, kept) from exc
        try:
            (out_dir / MANIFEST).unlink(missing_ok=True)  # until the new manifest lands, the folder does not load
            for f in files:
                os.replace(tmp / f, out_dir / f)
            for f in sorted(previous - set(files)):  # files of the earlier checkpoint that this one does not have
                (out_dir / f).unlink(missing_ok=True)
            atomic_write_text(out_dir / MANIFEST, manifest)
        except OSError as exc:
            raise _not_saved(out_dir, exc, "it now holds an incomplete model, which does not load: save again") from exc
        with contextlib.suppress(OSError):  # saved: the list only lets a later save finish an interrupted one
            (out_dir / _REPLACING).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _assemble(
    model: MatGLModel, tmp: Path, records: dict[str, Any], texts: dict[str, str | bytes]
) -> tuple[list[str], str]:
    """Write the checkpoint's files into ``tmp`` (``texts``: text or bytes by file name); returns their names and the
    manifest's text."""
    if isinstance(model, VerifiedCheckpointMixIn):
        # matgl.load_model finds a folder by model.pt and state.pt, then calls the class's load, which reads
        # weights.safetensors: the two files are empty markers, so the weights are stored once.
        for marker in MATGL_MARKERS:
            (tmp / marker).write_bytes(b"")
    else:  # MatGL's own classes (an SSL encoder) load through MatGL's loader, which reads state.pt and model.pt
        IOMixIn.save(model, tmp)
    kwargs = dict(model._init_args)
    for name, keys in SEPARATE_STATE.items():
        if all(k in kwargs for k in keys) and any(kwargs[k] is not None for k in keys):
            _write_json(tmp / name, {k: kwargs.pop(k) for k in keys})
    save_file(portable_state(model.state_dict()), str(tmp / "weights.safetensors"))
    for name, value in records.items():
        _write_json(tmp / f"{name}.json", value)
    for name, content in texts.items():
        (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    files = sorted({p.name for p in tmp.iterdir() if p.is_file()} | {"model.json"})
    header = {
        "@class": type(model).__name__,
        "@module": type(model).__module__,
        "@model_version": getattr(model, "__version__", 0),
        "kwargs": kwargs,
        "metadata": {
            "format_version": FORMAT_VERSION,
            "files": files,
            "matgl_hybrid_version": PACKAGE_VERSION,
            "matgl_version": matgl.__version__,
            "torch_version": torch.__version__,
            "matminer_version": importlib.metadata.version("matminer"),
            "pymatgen_version": importlib.metadata.version("pymatgen"),
            "descriptor_set": getattr(model, "descriptor_set", None),
            "descriptor_version": getattr(model, "descriptor_version", None),
            "target_names": list(getattr(model, "target_names", ()) or ()),
            "target_units": getattr(model, "target_units", None),
            "dtype": str(weight_dtype(model)).removeprefix("torch."),
        },
    }
    _write_json(tmp / "model.json", header)
    for f in files:
        (tmp / f).chmod(0o666 & ~current_umask())
    return files, "".join(f"{sha256_file(tmp / f)}  {f}\n" for f in files)


def weight_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating-point type of ``model``'s weights (that of its first floating parameter; float32 if none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _not_saved(out_dir: Path, exc: BaseException, state: str) -> OSError:
    """The one-line error of a save that failed while writing (``exc``), saying what ``out_dir`` now holds."""
    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}
    reason = reasons.get(getattr(exc, "errno", None)) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return OSError(f"cannot save the model in {out_dir} ({reason}); {state}")


#: The file names a manifest may list: plain names in one folder (no separator, drive, stream or leading dot).
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._ -]*")


def parse_manifest(text: str, source: str | Path) -> dict[str, str]:
    """``{file: sha256}`` of a ``SHA256SUMS`` text (read from ``source``, named in errors), as ``sha256sum`` writes
    it: ``<hash>  <name>`` per line (``<hash> *<name>`` in binary mode; hashes in either case; blank lines skipped)."""
    expected = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, name = line[:64].lower(), line[64:].removeprefix("  ").removeprefix(" *")
        if not re.fullmatch("[0-9a-f]{64}", digest) or not SAFE_FILE_NAME.fullmatch(name):  # no path, drive, stream
            raise CheckpointError(f"{source} is malformed: {line!r} (expected '<sha256>  <file name>', as sha256sum "
                                  "writes it)")  # fmt: skip
        expected[name] = digest
    return expected


def check_pinned(file: Path, pinned: str, what: str, actual: str | None = None) -> None:
    """Raise a :class:`CheckpointError` naming ``file`` unless its sha256 (``actual``, if already computed) is the
    ``pinned`` one of a registry; ``what`` says what the file must be (e.g. "the shipped potential X's")."""
    actual = actual or sha256_file(file)
    if actual != pinned:
        raise CheckpointError(f"{file} is not {what}: sha256 {actual}, the registry pins {pinned}")


def verify(path: str | Path, required: Iterable[str] = ("model.json",)) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS`` against its hash; returns ``{file: sha256}``.

    Raises:
        CheckpointError: no manifest, no entry for a ``required`` file, a listed file missing, or a file whose bytes
            differ (named, with hashes). :func:`load_checkpoint` also requires an entry for every file it reads.
    """
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise CheckpointError(f"{path} has no {MANIFEST}: not a matgl-hybrid checkpoint, or an incomplete copy")
    expected = parse_manifest(read_text(manifest), manifest)
    for name in required:
        if name not in expected:
            raise CheckpointError(f"{manifest} has no entry for {name}: the folder cannot be verified")
    for name, digest in expected.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is listed in {MANIFEST} but missing")
        actual = sha256_file(file)
        if actual != digest:
            raise CheckpointError(f"{file} is corrupted or was modified: sha256 {actual}, {MANIFEST} says {digest}")
    return expected


def read_header(path: str | Path, migrating: bool = False) -> dict[str, Any]:
    """``model.json`` of a verified checkpoint in this installation's format (any older one when ``migrating``).

    Raises:
        CheckpointError: ``model.json`` (named) is not UTF-8 JSON of the expected shape (objects ``kwargs`` and
            ``metadata``, a list of file names ``metadata.files``), or it is in another format.
    """
    file = Path(path) / "model.json"
    header = read_object(file)
    for key in ("kwargs", "metadata"):
        if not isinstance(header.get(key), dict):
            raise CheckpointError(f"{file}: {key} must be a JSON object, not {_json_type(header.get(key))}")
    metadata = header["metadata"]
    files = metadata.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise CheckpointError(f"{file}: metadata.files must be a list of file names")
    version = metadata.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}/model.json has no format_version: not a matgl-hybrid checkpoint")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by matgl-hybrid {metadata.get('matgl_hybrid_version')} in checkpoint format "
            f"{version}; this installation ({PACKAGE_VERSION}) reads format {FORMAT_VERSION} or older: "
            "upgrade matgl-hybrid (pip install -U matgl-hybrid)"
        )
    if version < FORMAT_VERSION and not migrating:
        raise CheckpointError(
            f"{path} is in checkpoint format {version} (matgl-hybrid {metadata.get('matgl_hybrid_version')}); this "
            f"installation reads format {FORMAT_VERSION}: convert it once with `matgl-hybrid migrate {path} "
            "--out NEW_FOLDER` (the same predictions; only weights the model never used are left out)"
        )
    return header


def required_files(header: dict[str, Any]) -> list[str]:
    """The files a checkpoint must have, each with a manifest entry, as its (verified) header says."""
    metadata = header["metadata"]
    if metadata["format_version"] >= 2:
        return sorted(set(metadata.get("files") or ()) | set(BASE_FILES))
    # Format 1 did not list its files: its separate state files are there whenever their keys left the kwargs.
    required = set(BASE_FILES)
    if header.get("@class") == "HybridModel":
        required |= {f for f, keys in SEPARATE_STATE.items() if not any(k in header["kwargs"] for k in keys)}
    return sorted(required)


@functools.cache
def allowed_classes() -> dict[str, EntryPoint]:
    """``{"<module>.<class>": entry point}`` of the classes a checkpoint may name (:data:`MODEL_CLASSES`); read
    once per process."""
    return {ep.name: ep for ep in entry_points(group=MODEL_CLASSES)}


def model_class(header: dict[str, Any], path: Path) -> type[MatGLModel]:
    """The class a header names, if it is one of :func:`allowed_classes` (exact module and name)."""
    qualified = f"{header.get('@module')}.{header.get('@class')}"
    entry = allowed_classes().get(qualified)
    if entry is None:
        raise CheckpointError(f"{path}/model.json names class {qualified}, which is not a matgl-hybrid model")
    return entry.load()


def read_object(file: Path) -> dict[str, Any]:
    """The JSON object in a checkpoint's ``file``; anything else raises a :class:`CheckpointError` naming it."""
    value = _read_json(file)
    if not isinstance(value, dict):
        raise CheckpointError(f"{file} must hold a JSON object, not {_json_type(value)}")
    return value


def _read_json(file: Path) -> Any:
    """The JSON value in a checkpoint's ``file``; one that is not UTF-8 JSON raises a CheckpointError naming it."""
    try:
        return read_json(file)
    except ValueError as exc:  # not UTF-8, or not JSON: the message names the file
        raise CheckpointError(str(exc)) from None


def read_text(file: Path) -> str:
    """The UTF-8 text of a checkpoint's ``file``; other bytes raise a :class:`CheckpointError` naming it."""
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(file, exc) from None


def _not_utf8(file: Path, exc: UnicodeDecodeError) -> CheckpointError:
    return CheckpointError(f"{file} is not UTF-8 text (byte {exc.start}: {exc.reason})")


def check_config(kwargs: dict[str, Any], file: Path) -> None:
    """Check the constructor arguments read from ``file`` before anything is built from them.

    At any depth (ensemble members, a NEGNN's encoder): every number must be finite and at most
    :data:`MAX_NUMBER` in size, a list of numbers (layer widths) at most :data:`MAX_LAYERS` long, a ``…cutoff`` in
    (0, :data:`MAX_CUTOFF`] Å, and ``element_types`` a list of distinct element symbols. The fitted state (the
    descriptor transform, the target normalization) is data, the size of its file, and is not checked here.

    Raises:
        CheckpointError: naming ``file`` and the field (e.g. ``kwargs.head_hidden[0]``).
    """
    _check_value(kwargs, "kwargs", file)


def _check_value(value: Any, field: str, file: Path) -> None:
    """:func:`check_config` of ``value``, found at ``field`` of ``file``."""
    name = field.rpartition(".")[2]
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _FITTED_STATE:
                _check_value(item, f"{field}.{key}", file)
    elif isinstance(value, list) and name == "element_types":
        symbols = [v for v in value if isinstance(v, str) and (Element.is_valid_symbol(v) or v == MASK_TOKEN)]
        if not value or len(symbols) < len(value) or len(set(symbols)) < len(symbols):
            raise CheckpointError(f"{file}: {field} must be a list of distinct element symbols")
    elif isinstance(value, list):
        if len(value) > MAX_LAYERS and all(isinstance(v, int | float) for v in value):
            raise CheckpointError(f"{file}: {field} has {len(value)} entries; at most {MAX_LAYERS} are allowed")
        for i, item in enumerate(value):
            _check_value(item, f"{field}[{i}]", file)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if name.endswith("cutoff") and not 0 < value <= MAX_CUTOFF:
            raise CheckpointError(f"{file}: {field} = {value!r} Å is out of range (0, {MAX_CUTOFF}]")
        if not abs(value) <= MAX_NUMBER:  # also NaN
            raise CheckpointError(f"{file}: {field} = {value!r} is out of range (at most {MAX_NUMBER} in size)")


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def load_checkpoint(path: str | Path) -> MatGLModel:
    """Load a checkpoint directory without unpickling anything: verify hashes, read JSON, load safetensors.

    Raises:
        CheckpointError: a file it reads without a manifest entry, a file whose hash differs, another format than
            this installation's (an older one says how to migrate it), a class outside :func:`allowed_classes`, or
            weights that do not fit.
    """
    model, _ = _read_checkpoint(Path(path), migrating=False)
    return model


def migrate_checkpoint(path: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a checkpoint of an older format into this installation's, at ``out_dir`` (``path`` is kept).

    The model is rebuilt from its verified JSON and weights; weights of modules the current model no longer has
    (MatGL's readout and output head, which a hybrid never used) are left out, every other weight must fit. The
    records and texts of the old folder (training record, model card) are carried over.

    Args:
        overwrite: replace a saved model already at ``out_dir``, or write beside the files of a non-empty folder
            that holds none (as ``train --overwrite``; nothing else there is deleted). Without it both are refused,
            before any work.

    Raises:
        CheckpointError: see :func:`load_checkpoint`; also when weights other than those of dropped modules do not
            fit, or a record or text file is not UTF-8 (named).
        FileExistsError: ``out_dir`` holds a saved model or other files, and ``overwrite`` is False.
    """
    path = Path(path)
    if Path(out_dir).resolve() == path.resolve():
        raise CheckpointError(f"{path}: migrate into another folder (--out), the old checkpoint is kept as it is")
    check_model_dir(out_dir, overwrite, replace_model=False)
    model, _ = _read_checkpoint(path, migrating=True)
    extra = [f for f in verify(path) if f not in {*BASE_FILES, *SEPARATE_STATE}]
    records = {f[: -len(".json")]: _read_json(path / f) for f in extra if f.endswith(".json")}
    figures = {f: (path / f).read_bytes() for f in extra if f.endswith(".png")}  # verified above, carried as they are
    texts = {f: read_text(path / f) for f in extra if not f.endswith((".json", ".png"))}
    return save_checkpoint(model, out_dir, records, texts, figures=figures, overwrite=overwrite)


def _read_checkpoint(path: Path, migrating: bool) -> tuple[MatGLModel, dict[str, Any]]:
    """The model of a verified checkpoint folder, and its header."""
    if not (path / "model.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved model (no model.json)")
    listed = verify(path)
    header = read_header(path, migrating)
    unlisted = [f for f in required_files(header) if f not in listed]
    if unlisted:
        raise CheckpointError(
            f"{path}/{MANIFEST} has no entry for {', '.join(unlisted)}: the checkpoint cannot be verified "
            "(an incomplete or edited copy)"
        )
    cls = model_class(header, path)
    kwargs = dict(header["kwargs"])
    for legacy in ("format_version", "package_version"):  # format 1 froze these into HybridModel's arguments
        kwargs.pop(legacy, None)
    check_config(kwargs, path / "model.json")
    for file, keys in SEPARATE_STATE.items():
        if (path / file).is_file() and file in listed:
            state = read_object(path / file)
            if unknown := sorted(set(state) - set(keys)):
                raise CheckpointError(f"{path / file} holds {', '.join(unknown)}; it may hold only {', '.join(keys)}")
            kwargs.update(state)
    dtype = header.get("metadata", {}).get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in WEIGHT_DTYPES:
        raise CheckpointError(f"{path}/model.json: weights of type {dtype!r}; known: {', '.join(WEIGHT_DTYPES)}")
    _check_size(cls, kwargs, path)
    try:
        model = cls(**kwargs).to(WEIGHT_DTYPES[dtype])  # the type it was saved in, before its weights are copied in
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:  # RuntimeError: torch refusing a size
        raise CheckpointError(f"cannot rebuild {cls.__name__} from {path}/model.json: {exc}") from exc
    try:
        state = load_file(str(path / "weights.safetensors"))
        if migrating:
            state = {k: v for k, v in state.items() if not _dropped(model, k)}
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (RuntimeError, SafetensorError) as exc:  # a size mismatch, a damaged header
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
        raise CheckpointError(f"{path}/weights.safetensors does not fit {cls.__name__}: {first}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}/weights.safetensors does not fit {cls.__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    # The files were read after they were hashed: hashed again, they must be the same (a save into the folder while
    # it loaded could otherwise give the old configuration with the new weights).
    if verify(path) != listed:
        raise CheckpointError(f"{path} changed while it was loaded (a model saved into it meanwhile?): load it again")
    return model.eval(), header


#: The fused name of TensorNet's three distance projections in MatGL's GPU (Warp) embedding, and its plain layout.
FUSED_DISTANCE_PROJ = "tensor_embedding.distance_proj."


def portable_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights as saved: contiguous, one tensor of its own per name, TensorNet's embedding in MatGL's plain
    layout. A module used in several places (one trainable ``softexp`` activation repeated through MatGL's
    ``MLP``) lists one tensor under several names, which safetensors refuses; MatGL's GPU (Warp) embedding fuses
    ``distance_proj1/2/3`` into one ``distance_proj`` (converting the plain names back when it loads), so a model
    saved where it is installed would not load where it is not.

    Args:
        state: a ``state_dict``: name -> tensor.
    """
    portable, storages = {}, set()
    for name, tensor in state.items():
        tensor = tensor.detach()
        if FUSED_DISTANCE_PROJ in name and name.rsplit(".", 1)[-1] in ("weight", "bias"):
            stem, kind = name.rsplit(".", 1)
            for i, part in enumerate(tensor.chunk(3, dim=0), start=1):
                portable[f"{stem}{i}.{kind}"] = part.clone().contiguous()
            continue
        storage = tensor.untyped_storage().data_ptr()
        portable[name] = tensor.clone().contiguous() if storage in storages else tensor.contiguous()
        storages.add(storage)
    return portable


def _check_size(cls: type, kwargs: dict[str, Any], path: Path) -> None:
    """Refuse a ``model.json`` that asks for more weights than ``weights.safetensors`` holds, before they are
    allocated: each number of an untrusted configuration is bounded (:func:`check_config`), not their product (16
    layers of 65536 units: 15 × 17 GB). The model is built on the meta device (no memory) and its weights counted
    against the file's header; a near miss is left to the loading below, which names the weights that differ."""
    try:
        with torch.device("meta"):
            asked = sum(t.numel() for t in cls(**kwargs).state_dict().values())
    except Exception:  # a constructor that needs real values: the build below checks it as before
        return
    try:
        with safe_open(str(path / "weights.safetensors"), "pt") as weights:
            held = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path}/weights.safetensors cannot be read: {exc}") from None
    if asked > 2 * held + 1_000_000:
        raise CheckpointError(f"{path}/model.json asks for {asked:,} weights, {path}/weights.safetensors holds "
                              f"{held:,}: they do not belong together")  # fmt: skip


def _dropped(model: torch.nn.Module, key: str) -> bool:
    """Whether weight ``key`` of an older checkpoint belongs to a module that ``model`` holds without weights."""
    module, parts = model, key.split(".")[:-1]
    for part in parts:
        child = getattr(module, part, None)
        if not isinstance(child, torch.nn.Module):
            return False
        module = child
        if not any(True for _ in module.parameters()) and not any(True for _ in module.buffers()):
            return True
    return False


def load_model(path: str | Path) -> MatGLModel:
    """Deprecated name of :func:`load_checkpoint` (it loads a checkpoint folder, verified)."""
    warnings.warn("matgl_hybrid load_model is now load_checkpoint", DeprecationWarning, stacklevel=2)
    return load_checkpoint(path)


def save_model(model: MatGLModel, out_dir: str | Path, *args: Any, **kwargs: Any) -> Path:
    """Deprecated name of :func:`save_checkpoint`."""
    warnings.warn("matgl_hybrid save_model is now save_checkpoint", DeprecationWarning, stacklevel=2)
    return save_checkpoint(model, out_dir, *args, **kwargs)


class VerifiedCheckpointMixIn:
    """MatGL's ``save`` / ``load`` of a model class, as :func:`save_checkpoint` / :func:`load_checkpoint`.

    ``model.save(dir)`` writes a full checkpoint (hashes, JSON, safetensors), and ``cls.load(dir)`` goes through
    every check of :func:`load_checkpoint`. ``matgl.load_model(dir)`` calls ``cls.load`` only after importing the
    module that ``model.json`` names: it is safe for folders you trust, not for untrusted ones (see
    docs/upstream/matgl-load-model-imports-module.md).
    """

    def save(self, path: str | Path = ".", metadata: dict | None = None, makedirs: bool = True) -> None:
        """Write the model as a checkpoint folder at ``path`` (:func:`save_checkpoint`; ``metadata`` is ignored)."""
        save_checkpoint(self, path)

    @classmethod
    def load(cls, path: str | Path | dict, **kwargs: Any) -> MatGLModel:
        """Load a checkpoint folder, or MatGL's ``{"model.json": path, …}``, verified like :func:`load_checkpoint`.

        ``matgl.load_model`` replaces any error by its own "Bad serialized model … clear your cache" (the reason only
        in ``__cause__``), so when called from it, the reason is also given as a warning, one line.
        """
        folder = Path(path["model.json"]).parent if isinstance(path, dict) else Path(path)
        try:
            model = load_checkpoint(folder)
            if not isinstance(model, cls):
                raise CheckpointError(f"{folder} holds a {type(model).__name__}, not a {cls.__name__}")
        except Exception as exc:
            caller = inspect.currentframe().f_back
            if caller is not None and caller.f_code is matgl.utils.io.load_model.__code__:
                warnings.warn(
                    f"matgl.load_model refused {folder}: {exc} (clearing MatGL's cache does not help)", stacklevel=3
                )
            raise
        return model


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON")
