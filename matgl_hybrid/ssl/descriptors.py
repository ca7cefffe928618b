"""Learned descriptor sets: material representations from a pretrained encoder (``ssl:<checkpoint>:<layers>``).

The descriptor bank resolves names with the ``ssl:`` prefix through :func:`ssl_set` (see
``matgl_hybrid.descriptors.sets.PREFIXED_SETS``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from matgl.models import M3GNet, MEGNet
from matgl.models._core import MatGLModel

from matgl_hybrid.checkpoint import load_checkpoint
from matgl_hybrid.descriptors.groups import FeatureGroup, StructureContext
from matgl_hybrid.descriptors.sets import DescriptorSet
from matgl_hybrid.descriptors.uip import POTENTIAL_LOCK
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.inference import embedding_width, material_embeddings


@lru_cache(maxsize=4)
def _encoder(path: str, digest: str) -> MatGLModel:
    """The encoder saved at ``path`` whose manifest hashes to ``digest`` (one saved again there is another: refused,
    since its values would be cached under this one's key); a MEGNet or M3GNet, whose layers embed atoms."""
    if _manifest_digest(Path(path)) != digest:
        raise ValueError(f"ssl descriptors: the encoder at {path} was saved again since its digest {digest} was read "
                         "(a pretraining into the same folder?): its values would be another encoder's")  # fmt: skip
    encoder = load_checkpoint(path)
    if not isinstance(encoder, MEGNet | M3GNet):
        raise ValueError(f"ssl descriptors: {path} holds a {type(encoder).__name__}, not a pretrained MEGNet or M3GNet "
                         "encoder (see `pretrain`)")  # fmt: skip
    return encoder


def _manifest_digest(folder: Path) -> str:
    """sha256 (16 hex digits) of a saved encoder's manifest: it names every file's hash."""
    manifest = folder / "SHA256SUMS"
    if not manifest.is_file():
        raise FileNotFoundError(f"ssl descriptors: {folder} is not a saved encoder (no SHA256SUMS; a relative path "
                                "is read from the working directory, as when the model was trained); see `pretrain`")
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]


def ssl_set(spec: str) -> DescriptorSet:
    """``ssl:<encoder checkpoint>:<layers>[:sum|mean]`` (layers comma-separated, e.g. ``0,1,2``): the NE vectors
    summed over atoms (Kong et al.'s choice, the default: it grows with the cell) or averaged (the same for a cell
    and its supercell: for intensive properties)."""
    rest = spec.partition(":")[2]
    pool = "sum"
    if rest.endswith((":sum", ":mean")):
        rest, _, pool = rest.rpartition(":")
    path, _, layers = rest.rpartition(":")  # a path may hold ':' (C:\\…), the layers do not
    if not path or not layers or not all(x.strip().isdigit() for x in layers.split(",")):
        raise UnknownNameError(
            f"{spec!r}: write ssl:<encoder checkpoint>:<layers>[:sum|mean], e.g. ssl:encoder:0,1,2 or "
            "ssl:encoder:2:mean"
        )
    group = ssl_group(path, tuple(int(x) for x in layers.split(",")), pool)
    return DescriptorSet(spec, (group,), group.labels)


def ssl_group(checkpoint: str | Path, layers: tuple[int, ...], pool: str = "sum") -> FeatureGroup:
    """A group whose features are the ``pool`` over atoms of the encoder's NE vectors of ``layers``.

    The group's version is the hash of the checkpoint's manifest, so a different encoder never reuses cached values.
    """
    path = str(Path(checkpoint).expanduser().resolve())
    digest = _manifest_digest(Path(path))
    width = embedding_width(_encoder(path, digest), layers)
    # "012" for layers 0, 1, 2 (as names always were); with a layer of two digits "1-2" and "12" would meet
    tag = ("" if all(layer < 10 for layer in layers) else "-").join(map(str, layers))
    return FeatureGroup(
        name=f"ssl-{digest}-NE{tag}-{pool}",
        labels=tuple(f"ssl_NE{tag}_{pool}_{i}" for i in range(width)),
        compute=lambda ctx: _values(path, digest, layers, pool, ctx),
        version=f"1-{digest}",
        check_values=False,  # the checkpoint's hash pins the values
    )


def _values(path: str, digest: str, layers: tuple[int, ...], pool: str, ctx: StructureContext) -> list[float]:
    """The pooled NE vectors of ``ctx.structure``; one thread at a time: the shared encoder leaves a pass's per-atom
    features in its ``feature_dict``, where another thread's pass would replace them before they are read."""
    with POTENTIAL_LOCK:
        return material_embeddings(_encoder(path, digest), [ctx.structure], layers, pool)[0].tolist()
