"""The checkpoint directory (one place knows its format): safetensors + JSON + SHA256SUMS, MatGL-compatible.

A checkpoint directory holds

- ``model.json``: MatGL's header (``@class``, ``@module``, ``@model_version``), ``kwargs`` (the constructor
  config, without the fitted state below) and ``metadata`` (format version, package / MatGL / torch versions,
  descriptor set and version, target names and units);
- ``weights.safetensors``: the state dict;
- ``descriptor_transform.json`` (hybrids) and ``target_normalization.json``: the fitted imputer/scaler and target
  mean/std, one file each (ensembles keep them per member inside ``kwargs``);
- any records (``training.json``, ``model_card.md``);
- ``model.pt`` and ``state.pt``: MatGL's own files, so that ``matgl.load_model(dir)`` works too (MatGL reads them
  with ``torch.load(weights_only=True)``; matgl-hybrid's loader never reads them);
- ``SHA256SUMS``: the sha256 of every other file. Loading verifies it first and names any file that differs.

Nothing here is unpickled by :func:`load_model`: weights come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import matgl
import torch
from matgl.models._core import MatGLModel
from safetensors.torch import load_file, save_file

from matgl_hybrid.version import __version__ as PACKAGE_VERSION

#: Version of the checkpoint layout written here; a larger one comes from a newer matgl-hybrid.
FORMAT_VERSION = 1
MANIFEST = "SHA256SUMS"
#: Constructor arguments stored in their own JSON files rather than in model.json's kwargs.
SEPARATE_STATE = {
    "descriptor_transform.json": ("descriptor_transform",),
    "target_normalization.json": ("target_names", "target_units", "target_mean", "target_std"),
}
#: Modules whose classes a checkpoint may name (no import of arbitrary modules).
ALLOWED_MODULES = ("matgl_hybrid.models", "matgl.models")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, tampered, or from an incompatible version."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    model: MatGLModel, out_dir: str | Path, records: dict[str, Any] | None = None, texts: dict[str, str] | None = None
) -> Path:
    """Write ``model`` as a checkpoint directory at ``out_dir`` (replacing one that is there).

    Args:
        model: a matgl-hybrid model (``HybridModel``, ``HybridEnsemble``).
        records: extra JSON files, ``{name: value}`` -> ``<name>.json``.
        texts: extra text files, ``{file name: text}`` (e.g. ``model_card.md``).

    The directory is assembled next to its destination and renamed into place: an interrupted save never
    leaves a half-written checkpoint.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save(tmp)  # MatGL's files: model.pt, state.pt, model.json (rewritten below)
        kwargs = dict(model._init_args)
        for name, keys in SEPARATE_STATE.items():
            if all(k in kwargs for k in keys) and any(kwargs[k] is not None for k in keys):
                _write_json(tmp / name, {k: kwargs.pop(k) for k in keys})
        header = {
            "@class": type(model).__name__,
            "@module": type(model).__module__,
            "@model_version": getattr(model, "__version__", 0),
            "kwargs": kwargs,
            "metadata": {
                "format_version": FORMAT_VERSION,
                "matgl_hybrid_version": PACKAGE_VERSION,
                "matgl_version": matgl.__version__,
                "torch_version": torch.__version__,
                "descriptor_set": getattr(model, "descriptor_set", None),
                "descriptor_version": getattr(model, "descriptor_version", None),
                "target_names": list(getattr(model, "target_names", ()) or ()),
                "target_units": getattr(model, "target_units", None),
            },
        }
        _write_json(tmp / "model.json", header)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "weights.safetensors"))
        for name, value in (records or {}).items():
            _write_json(tmp / f"{name}.json", value)
        for name, text in (texts or {}).items():
            (tmp / name).write_text(text)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        (tmp / MANIFEST).write_text("".join(f"{sha256_file(tmp / f)}  {f}\n" for f in files))
        if out_dir.exists():
            if not (out_dir / "model.json").exists() and any(out_dir.iterdir()):
                raise FileExistsError(f"{out_dir} exists and is not a saved model: refusing to replace it")
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def verify(path: str | Path) -> dict[str, str]:
    """Check every file against ``SHA256SUMS``; returns ``{file: sha256}``.

    Raises:
        CheckpointError: no manifest, a listed file missing, or a file whose bytes differ (named, with hashes).
    """
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise CheckpointError(f"{path} has no {MANIFEST}: not a matgl-hybrid checkpoint, or an incomplete copy")
    expected = {}
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if not name or len(digest) != 64 or "/" in name or name.startswith("."):
            raise CheckpointError(f"{manifest} is malformed: {line!r}")
        expected[name] = digest
    for name, digest in expected.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is listed in {MANIFEST} but missing")
        actual = sha256_file(file)
        if actual != digest:
            raise CheckpointError(f"{file} is corrupted or was modified: sha256 {actual}, {MANIFEST} says {digest}")
    return expected


def read_header(path: str | Path) -> dict[str, Any]:
    """``model.json`` of a verified checkpoint, refusing formats newer than this installation reads."""
    header = json.loads((Path(path) / "model.json").read_text())
    metadata = header.get("metadata") or {}
    version = metadata.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}/model.json has no format_version: not a matgl-hybrid checkpoint")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by matgl-hybrid {metadata.get('matgl_hybrid_version')} in checkpoint format "
            f"{version}; this installation ({PACKAGE_VERSION}) reads format {FORMAT_VERSION} or older: "
            "upgrade matgl-hybrid (pip install -U matgl-hybrid)"
        )
    return header


def load_model(path: str | Path) -> MatGLModel:
    """Load a checkpoint directory without unpickling anything: verify hashes, read JSON, load safetensors."""
    path = Path(path)
    if not (path / "model.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved model (no model.json)")
    verify(path)
    header = read_header(path)
    module, name = header["@module"], header["@class"]
    if not module.startswith(ALLOWED_MODULES):
        raise CheckpointError(f"{path}/model.json names class {module}.{name}, which is not a matgl-hybrid model")
    cls = getattr(importlib.import_module(module), name)
    kwargs = dict(header["kwargs"])
    for file in SEPARATE_STATE:
        if (path / file).is_file():
            kwargs.update(json.loads((path / file).read_text()))
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot rebuild {name} from {path}/model.json: {exc}") from exc
    state = load_file(str(path / "weights.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}/weights.safetensors does not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval()


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON")
