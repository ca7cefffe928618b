"""The saved-model directory: MatGL's files (read by ``matgl.load_model``) and our JSON records, saved atomically."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import matgl
from matgl.models._core import MatGLModel


def save_model(model: MatGLModel, out_dir: str | Path, records: dict[str, Any] | None = None) -> Path:
    """Save ``model`` to ``out_dir`` with MatGL's ``save`` plus one ``<name>.json`` per entry of ``records``.

    The directory is written next to its destination and renamed into place, so an interrupted save never
    leaves a half-written model; an existing model directory at ``out_dir`` is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save(tmp)
        for name, value in (records or {}).items():
            (tmp / f"{name}.json").write_text(json.dumps(value, indent=1, default=str) + "\n")
        if out_dir.exists():
            if not (out_dir / "model.json").exists() and any(out_dir.iterdir()):
                raise FileExistsError(f"{out_dir} exists and is not a saved model: refusing to replace it")
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def load_model(path: str | Path) -> MatGLModel:
    """Load a saved model with MatGL's loader, with a clear error for a missing or foreign directory.

    MatGL wraps every failure in a generic message; the cause (e.g. a newer checkpoint format) is re-raised
    here as it is.
    """
    path = Path(path)
    if not (path / "model.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved model (no model.json)")
    try:
        return matgl.load_model(path)
    except (RuntimeError, ValueError) as exc:
        cause = exc.__cause__
        if isinstance(cause, (ValueError, KeyError, TypeError)):
            raise type(cause)(f"cannot load {path}: {cause}") from exc
        raise
