"""Contrastive pretext task (Kong et al. 2022): two augmented views per crystal, NT-Xent on pooled embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from matgl.config import DEFAULT_ELEMENTS
from pymatgen.core import Structure
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from matgl_hybrid.graphs import attach_positions, build_dataset, collate_fn_graph
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.splits import split_indices
from matgl_hybrid.ssl.pretext import MASK_TOKEN, build_encoder


def random_supercell(structure: Structure, rng: np.random.Generator, max_atoms: int = 64) -> Structure:
    """A view of the same crystal: the cell doubled along one random axis (kept when it stays ≤ ``max_atoms``)."""
    if 2 * len(structure) > max_atoms:
        return structure.copy()
    scaling = [1, 1, 1]
    scaling[int(rng.integers(3))] = 2
    return structure.make_supercell(scaling, in_place=False)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalized-temperature cross-entropy of two views (B, D): each view's partner is its positive."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, targets)


class PairedViews(Dataset):
    """Items ``(view 1 item, view 2 item)`` of two MGLDatasets aligned by index."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, index: int):
        return self.first[index], self.second[index]


def collate_pairs(items):
    """MatGL's collate applied to each view."""
    first, second = zip(*items, strict=True)
    return collate_fn_graph(list(first)), collate_fn_graph(list(second))


class ContrastivePretraining(L.LightningModule):
    """Encoder + projection head trained with NT-Xent on two views with 10–20 % of nodes and edges masked."""

    def __init__(
        self,
        backbone: str = "megnet",
        element_types: Sequence[str] = DEFAULT_ELEMENTS,
        cutoff: float = 5.0,
        backbone_kwargs: dict[str, Any] | None = None,
        temperature: float = 0.1,
        mask_range: tuple[float, float] = (0.1, 0.2),
        projection_dim: int = 64,
        lr: float = 1e-3,
    ):
        super().__init__()
        self.backbone_name = backbone
        self.encoder = build_encoder(backbone, element_types, cutoff, backbone_kwargs)
        width = get_backbone(backbone).node_dim(self.encoder)
        self.projection = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, projection_dim))
        self.mask_index = self.encoder.element_types.index(MASK_TOKEN)
        self.temperature, self.mask_range, self.lr = temperature, mask_range, lr

    def embed_view(self, batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mask nodes and drop edges of one view (in place: a fresh batch), encode, mean-pool, project: (B, P)."""
        g, lattice, state_attr, _ = batch
        low, high = self.mask_range
        fraction = low + (high - low) * float(torch.rand(1, generator=generator))
        device = g.edge_index.device
        keep = (torch.rand(g.edge_index.shape[1], generator=generator) >= fraction).to(device)
        g.edge_index, g.pbc_offset = g.edge_index[:, keep], g.pbc_offset[keep]
        nodes = (torch.rand(g.num_nodes, generator=generator) < fraction).to(device)
        g.node_type = torch.where(nodes, torch.full_like(g.node_type, self.mask_index), g.node_type)
        attach_positions(g, lattice)
        node_feat, _ = get_backbone(self.backbone_name).features(self.encoder, g, state_attr)
        pooled = torch.zeros(g.num_graphs, node_feat.shape[1], device=node_feat.device).index_add_(
            0, g.batch, node_feat
        )
        pooled = pooled / torch.bincount(g.batch, minlength=g.num_graphs).unsqueeze(-1)
        return self.projection(pooled)

    def loss(self, pair, generator: torch.Generator | None = None) -> torch.Tensor:
        first, second = pair
        return nt_xent(self.embed_view(first, generator), self.embed_view(second, generator), self.temperature)

    def training_step(self, pair, batch_idx: int) -> torch.Tensor:
        loss = self.loss(pair)
        self.log("train_nt_xent", loss, prog_bar=True, batch_size=int(pair[0][0].num_graphs))
        return loss

    def validation_step(self, pair, batch_idx: int) -> None:
        loss = self.loss(pair, torch.Generator().manual_seed(batch_idx))
        self.log("val_nt_xent", loss, prog_bar=True, batch_size=int(pair[0][0].num_graphs))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def paired_views(structures: Sequence[Structure], cutoff: float, element_types: Sequence[str], seed: int = 0):
    """Dataset of (original, random-supercell) graph pairs for contrastive training."""
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in range(len(structures))]
    first = build_dataset(list(structures), element_types, cutoff, ids)
    second = build_dataset([random_supercell(s, rng) for s in structures], element_types, cutoff, ids)
    return PairedViews(first, second)


def split_views(structures: Sequence[Structure], cutoff: float, element_types, val_fraction: float, seed: int):
    """Train and validation :class:`PairedViews`."""
    train_idx, val_idx = split_indices(len(structures), val_fraction, seed)
    return (
        paired_views([structures[i] for i in train_idx], cutoff, element_types, seed),
        paired_views([structures[i] for i in val_idx], cutoff, element_types, seed + 1),
    )
