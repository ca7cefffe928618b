"""Pretrained checkpoints: a registry of named models, and loading from a folder, a URL or Hugging Face, verified.

``load_pretrained(source)`` accepts a registered name (``list_pretrained()``), a local checkpoint directory, a
``file://`` or ``https://`` URL of a checkpoint directory (its ``SHA256SUMS`` lists the files to fetch), or
``hf://owner/repo[/subfolder]``. Downloads land in ``$MATGL_HYBRID_CACHE/pretrained/`` through a temporary
folder and an atomic rename, each file checked against the manifest; loading verifies the manifest again and
never unpickles anything (see :mod:`matgl_hybrid.checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from matgl.models._core import MatGLModel

from matgl_hybrid.checkpoint import (
    MANIFEST,
    CheckpointError,
    check_pinned,
    load_checkpoint,
    parse_manifest,
    sha256_file,
    verify,
)
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.files import make_temp_dir
from matgl_hybrid.paths import cache_root

REGISTRY_FILE = Path(__file__).with_name("pretrained_models") / "registry.json"


def list_pretrained() -> dict[str, dict[str, Any]]:
    """The registered checkpoints: ``{name: {"description", "source", "target", "units", "metrics", …}}``."""
    if not REGISTRY_FILE.is_file():
        return {}
    return json.loads(REGISTRY_FILE.read_text())["models"]


def pretrained_cache_dir() -> Path:
    """Where downloaded checkpoints are kept: ``$MATGL_HYBRID_CACHE/pretrained``."""
    return cache_root() / "pretrained"


def resolve(source: str | Path) -> Path:
    """A verified local checkpoint directory for a name, a path or a URL (downloading when needed); a registered
    name's ``SHA256SUMS`` is checked against the registry's pinned sha256 (its files against it, as always), so a
    folder or download whose files were replaced with a consistent manifest is refused."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        verify(path)
        return path
    registry = list_pretrained()
    if text in registry:
        location = registry[text]["source"]
        package = location.startswith("package:")
        folder = resolve(REGISTRY_FILE.parent / location.removeprefix("package:") if package else location)
        if (pinned := registry[text].get("manifest_sha256")) is not None:
            check_pinned(folder / MANIFEST, pinned, f"the registered {text}'s")
        return folder
    if text.startswith(("file://", "https://", "http://")):
        return download(text)
    if text.startswith("hf://"):
        return _from_hugging_face(text.removeprefix("hf://"))
    known = ", ".join(sorted(registry)) or "none registered"
    raise UnknownNameError(f"unknown checkpoint {text!r}: not a directory, URL or registered name (known: {known})")


def load_pretrained(source: str | Path) -> MatGLModel:
    """Load a checkpoint by name, path or URL (``file://``, ``https://``, ``hf://owner/repo``)."""
    return load_checkpoint(resolve(source))


def download(url: str, cache: Path | None = None) -> Path:
    """Fetch the checkpoint directory at ``url`` into the cache (reusing a verified copy), checking every file."""
    base = url.rstrip("/")
    target = (cache or pretrained_cache_dir()) / hashlib.sha256(base.encode()).hexdigest()[:16]
    if target.is_dir():
        try:
            verify(target)
            return target
        except CheckpointError:
            shutil.rmtree(target)
    manifest = _fetch(f"{base}/{MANIFEST}").decode()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, ".download.")
    try:
        (tmp / MANIFEST).write_text(manifest)
        for name, digest in parse_manifest(manifest, f"{base}/{MANIFEST}").items():
            (tmp / name).write_bytes(_fetch(f"{base}/{name}"))
            actual = sha256_file(tmp / name)
            if actual != digest:
                raise CheckpointError(
                    f"{base}/{name} is corrupted or was modified: sha256 {actual}, {MANIFEST} says {digest}"
                )
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # file:// and https:// by design
            return response.read()
    except OSError as exc:
        raise CheckpointError(f"cannot download {url}: {exc}") from exc


def _from_hugging_face(spec: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # an optional dependency
        raise ImportError("hf:// checkpoints need huggingface_hub: pip install huggingface_hub") from exc
    parts = spec.split("/")
    repo, subfolder = "/".join(parts[:2]), "/".join(parts[2:])
    folder = Path(
        snapshot_download(
            repo, cache_dir=str(pretrained_cache_dir() / "hf"), allow_patterns=[f"{subfolder}/*"] if subfolder else None
        )
    )
    path = folder / subfolder if subfolder else folder
    verify(path)
    return path
