"""Learned descriptor sets: material representations from a pretrained encoder (``ssl:<checkpoint>:<layers>``)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from matgl_hybrid.descriptors.groups import FeatureGroup, StructureContext


@lru_cache(maxsize=4)
def _encoder(path: str):
    from matgl_hybrid.checkpoint import load_model

    return load_model(path)


def ssl_group(checkpoint: str | Path, layers: tuple[int, ...], pool: str = "sum") -> FeatureGroup:
    """A group whose features are the ``pool`` over atoms of the encoder's NE vectors of ``layers``.

    The group's version is the hash of the checkpoint's manifest, so a different encoder never reuses cached values.
    """
    from matgl_hybrid.ssl.embeddings import embedding_width

    path = str(Path(checkpoint).expanduser().resolve())
    manifest = Path(path) / "SHA256SUMS"
    if not manifest.is_file():
        raise FileNotFoundError(f"ssl descriptors: {path} is not a saved encoder (no SHA256SUMS); see `pretrain`")
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    width = embedding_width(_encoder(path), layers)
    tag = "".join(map(str, layers))
    return FeatureGroup(
        name=f"ssl-{digest}-NE{tag}-{pool}",
        labels=tuple(f"ssl_NE{tag}_{pool}_{i}" for i in range(width)),
        compute=lambda ctx: _values(path, layers, pool, ctx),
        version=f"1-{digest}",
        check_values=False,  # the checkpoint's hash pins the values
    )


def _values(path: str, layers: tuple[int, ...], pool: str, ctx: StructureContext) -> list[float]:
    from matgl_hybrid.ssl.embeddings import material_embeddings

    return material_embeddings(_encoder(path), [ctx.structure], layers, pool)[0].tolist()
