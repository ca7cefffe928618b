"""Per-layer atom embeddings NE0 … NEk of a (pretrained) encoder, and material representations from them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matgl.models._core import MatGLModel

from matgl_hybrid.graphs import attach_positions, build_dataset, make_loader
from matgl_hybrid.ssl.pretext import MASK_TOKEN


def layer_keys(encoder: MatGLModel) -> list[str]:
    """``feature_dict`` keys of NE0 (the initial embedding) and NE1 … NEk (after each block)."""
    return ["embedding", *sorted((k for k in encoder.feature_dict if k.startswith("gc_")), key=lambda k: int(k[3:]))]


def node_embeddings(
    encoder: MatGLModel, structures: Sequence, layers: Sequence[int], batch_size: int = 64
) -> list[np.ndarray]:
    """Concatenated NE vectors of the chosen ``layers`` for every atom: one (n_atoms, D) array per structure.

    Works for encoders whose ``feature_dict`` holds node features per layer (MEGNet, M3GNet).
    """
    ids = [str(i) for i in range(len(structures))]
    dataset = build_dataset(list(structures), encoder.element_types, encoder.cutoff, ids)
    device = next(encoder.parameters()).device
    encoder.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for g, lattice, state_attr, _ in make_loader(dataset, batch_size):
            g, lattice, state_attr = g.to(device), lattice.to(device), state_attr.to(device)
            attach_positions(g, lattice)
            encoder(g, state_attr=state_attr)
            keys = layer_keys(encoder)
            missing = [i for i in layers if i >= len(keys)]
            if missing:
                raise ValueError(f"layers {missing} do not exist: the encoder has NE0 … NE{len(keys) - 1}")
            feats = torch.cat([encoder.feature_dict[keys[i]]["node_feat"] for i in layers], dim=-1).cpu().numpy()
            counts = torch.bincount(g.batch, minlength=g.num_graphs).tolist()
            out += np.split(feats, np.cumsum(counts)[:-1])
    return out


def material_embeddings(
    encoder: MatGLModel, structures: Sequence, layers: Sequence[int], pool: str = "sum"
) -> np.ndarray:
    """One vector per structure: the sum (the paper's choice) or mean of its atoms' NE vectors: (n, D)."""
    if pool not in ("sum", "mean"):
        raise ValueError(f"pool must be 'sum' or 'mean', got {pool!r}")
    per_atom = node_embeddings(encoder, structures, layers)
    return np.stack([a.sum(axis=0) if pool == "sum" else a.mean(axis=0) for a in per_atom])


def embedding_width(encoder: MatGLModel, layers: Sequence[int]) -> int:
    """Width D of the concatenated NE vectors of ``layers`` (measured on a one-atom crystal)."""
    from pymatgen.core import Lattice, Structure

    element = next(e for e in encoder.element_types if e != MASK_TOKEN)
    probe = Structure(Lattice.cubic(3.0), [element], [[0, 0, 0]])
    return node_embeddings(encoder, [probe], layers)[0].shape[1]
