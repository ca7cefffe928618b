"""Pretrained checkpoints: a registry of named models, and loading from a folder, a URL or Hugging Face, verified.

``load_pretrained(source)`` accepts a registered name (``list_pretrained()``), a local checkpoint directory, a
``file://`` or ``https://`` URL of a checkpoint directory (its ``SHA256SUMS`` lists the files to fetch), or
``hf://owner/repo[/subfolder]``. Downloads land in ``$MATGL_HYBRID_CACHE/pretrained/`` through a temporary
folder and an atomic rename, each file checked against the manifest; a cached copy is reused while the remote
``SHA256SUMS`` is unchanged (or cannot be reached: then with a warning), and replaced when it changed. Loading
verifies the manifest again and never unpickles anything (see :mod:`matgl_hybrid.checkpoint`). Plain ``http://``
is refused: a manifest that travels unencrypted can be altered with the files it lists.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import shutil
import time
import urllib.parse
import urllib.request
import warnings
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


#: Size limits of what a download reads: a checkpoint's SHA256SUMS, and any one of its files (bytes).
MAX_MANIFEST_BYTES = 1 << 16
MAX_DOWNLOAD_BYTES = 1 << 31
#: Age (s) after which a download's temporary folder, left by a killed process, is removed from the cache.
STALE_DOWNLOAD_SECONDS = 24 * 3600


def pretrained_cache_dir() -> Path:
    """Where downloaded checkpoints are kept: ``$MATGL_HYBRID_CACHE/pretrained``."""
    return cache_root() / "pretrained"


def resolve(source: str | Path) -> Path:
    """A verified local checkpoint directory for a name, a path or a URL (downloading when needed); a registered
    name's ``SHA256SUMS`` is checked against the registry's pinned sha256 (its files against it, as always), so a
    folder or download whose files were replaced with a consistent manifest is refused. A registered name is the
    registered checkpoint even where the working directory holds a folder of that name (give it as ``./name``)."""
    text = str(source)
    registry = list_pretrained()
    path = Path(text).expanduser()
    if path.is_dir() and text not in registry:  # a folder of a registered name is given as ./name
        verify(path)
        return path
    if text in registry:
        location = registry[text]["source"]
        package = location.startswith("package:")
        shipped = REGISTRY_FILE.parent / location.removeprefix("package:")
        if package and not shipped.is_dir():
            raise CheckpointError(f"{text}: its shipped folder {shipped} is missing: reinstall matgl-hybrid")
        pinned = registry[text].get("manifest_sha256")
        folder = resolve(shipped) if package else _resolve_source(location, pinned)
        if pinned is not None:
            check_pinned(folder / MANIFEST, pinned, f"the registered {text}'s")
        return folder
    if text.startswith(("file://", "https://", "http://", "hf://")):
        return _resolve_source(text)
    known = ", ".join(sorted(registry)) or "none registered"
    raise UnknownNameError(f"unknown checkpoint {text!r}: not a directory, URL or registered name (known: {known})")


def _resolve_source(text: str, pinned: str | None = None) -> Path:
    """The verified local copy of a folder, ``file://``, ``https://`` or ``hf://`` checkpoint source."""
    if text.startswith(("file://", "https://", "http://")):
        return download(text, pinned=pinned)
    if text.startswith("hf://"):
        return _from_hugging_face(text.removeprefix("hf://"))
    return resolve(text)


def load_pretrained(source: str | Path) -> MatGLModel:
    """Load a checkpoint by name, path or URL (``file://``, ``https://``, ``hf://owner/repo``)."""
    return load_checkpoint(resolve(source))


def download(url: str, cache: Path | None = None, pinned: str | None = None) -> Path:
    """Fetch the checkpoint directory at ``url`` into the cache, checking every file against its ``SHA256SUMS``.

    A verified cached copy is reused while the remote ``SHA256SUMS`` has the same bytes, and also (with a warning)
    when it cannot be fetched, offline say; a changed manifest downloads the new files and replaces the copy. A
    cached copy whose ``SHA256SUMS`` has the ``pinned`` sha256 (a registry's) is used without asking the remote.
    """
    base = url.rstrip("/")
    if urllib.parse.urlsplit(base).scheme.lower() == "http":
        raise CheckpointError(
            f"{base}: plain http:// is refused (its {MANIFEST} could be altered in transit): use https://"
        )
    target = (cache or pretrained_cache_dir()) / hashlib.sha256(base.encode()).hexdigest()[:16]
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_downloads(target.parent)
    cached = _verified_or_none(target)
    if cached is not None and pinned is not None and hashlib.sha256(cached).hexdigest() == pinned:
        return target
    try:
        raw = _fetch(f"{base}/{MANIFEST}", MAX_MANIFEST_BYTES)
    except CheckpointError as exc:
        if cached is None or "cannot download" not in str(exc):
            raise
        warnings.warn(f"using the cached copy of {base} ({target}): {exc}", stacklevel=2)
        return target
    if cached is not None and cached == raw:
        return target
    try:
        manifest = raw.decode()
    except UnicodeDecodeError:
        raise CheckpointError(f"{base}/{MANIFEST} is not a UTF-8 text file") from None
    listed = parse_manifest(manifest, f"{base}/{MANIFEST}")
    if "model.json" not in listed:  # a folder that could never load: refused before its files are fetched
        raise CheckpointError(f"{base}/{MANIFEST} lists no model.json: not a matgl-hybrid checkpoint folder")
    try:
        tmp = make_temp_dir(target.parent, ".download.")
    except OSError as exc:  # a read-only cache (site-wide, in a container image)
        if cached is None:
            raise CheckpointError(f"cannot download {base} into the cache {target.parent}: {exc}") from exc
        warnings.warn(f"{base} changed, but the cache {target.parent} is not writable: using its copy", stacklevel=2)
        return target
    try:
        (tmp / MANIFEST).write_bytes(raw)  # the bytes a pinned sha256 was taken of
        for name, digest in listed.items():
            (tmp / name).write_bytes(_fetch(f"{base}/{urllib.parse.quote(name)}", MAX_DOWNLOAD_BYTES))
            actual = sha256_file(tmp / name)
            if actual != digest:
                raise CheckpointError(
                    f"{base}/{name} is corrupted or was modified: sha256 {actual}, {MANIFEST} says {digest}"
                )
        if _verified_or_none(target) == raw:  # another process put this version there meanwhile: keep its copy
            return target
        if target.exists():  # an outdated or broken copy: set aside, then removed
            _set_aside(target)
        try:
            tmp.rename(target)
        except OSError as exc:  # another process put its copy there first: keep it if it is this version
            if _verified_or_none(target) != raw:
                raise CheckpointError(f"cannot replace the cached copy {target} of {base}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _verified_or_none(folder: Path) -> bytes | None:
    """The ``SHA256SUMS`` bytes of a cached copy whose files all verify; ``None`` when absent or broken."""
    if not folder.is_dir():
        return None
    try:
        verify(folder)
    except CheckpointError:
        return None
    return (folder / MANIFEST).read_bytes()


def _set_aside(folder: Path) -> None:
    """Move a cache entry out of the way under a temporary name, then remove it."""
    aside = make_temp_dir(folder.parent, ".stale.")
    with contextlib.suppress(OSError):
        folder.rename(aside / "entry")
    shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_downloads(cache: Path) -> None:
    """Remove temporary ``.download.``/``.stale.`` folders older than :data:`STALE_DOWNLOAD_SECONDS` (a killed
    process's); younger ones may belong to a download still running."""
    cutoff = time.time() - STALE_DOWNLOAD_SECONDS
    for entry in cache.iterdir():
        if entry.name.startswith((".download.", ".stale.")) and entry.is_dir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)


def _fetch(url: str, limit: int) -> bytes:
    """The content at ``url``, read in chunks up to ``limit`` bytes (more is refused as not a checkpoint file)."""
    content = bytearray()
    try:
        with _OPENER.open(url, timeout=60) as response:  # file:// and https:// (redirects to https only)
            while chunk := response.read(min(1 << 20, limit + 1 - len(content))):
                content += chunk
                if len(content) > limit:
                    raise CheckpointError(f"{url} is larger than {limit} bytes: refused as not a checkpoint file")
    except (OSError, http.client.HTTPException, ValueError) as exc:  # a dropped connection, a malformed URL
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"cannot download {url}: {exc}") from exc
    return bytes(content)


class _HttpsRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follows an ``https://`` download's redirects only to ``https://`` (urllib's own also follows to ``http://``,
    where the manifest could be altered in transit)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() != "https":
            raise CheckpointError(f"{req.full_url} redirects to {newurl}: only https:// is followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpsRedirectsOnly)


def _from_hugging_face(spec: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # an optional dependency
        raise CheckpointError("hf:// checkpoints need huggingface_hub: pip install huggingface_hub") from exc
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
