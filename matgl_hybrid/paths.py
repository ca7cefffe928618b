"""Where matgl-hybrid keeps files of its own: the cache root (``MATGL_HYBRID_CACHE``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$MATGL_HYBRID_CACHE``, else ``$XDG_CACHE_HOME/matgl-hybrid``, else ``~/.cache/matgl-hybrid``."""
    if env := os.environ.get("MATGL_HYBRID_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "matgl-hybrid"


def descriptor_cache_dir() -> Path:
    """Default directory of the descriptor cache."""
    return cache_root() / "descriptors"
