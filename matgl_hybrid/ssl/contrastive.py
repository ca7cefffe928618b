"""Contrastive pretext task (Kong et al. 2022): two augmented views per crystal, NT-Xent on pooled embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matgl.models._core import MatGLModel
from pymatgen.core import Structure
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from torch_geometric.utils import scatter

from matgl_hybrid.data import structure_key
from matgl_hybrid.data.splits import split_indices
from matgl_hybrid.graphs import build_dataset, collate_fn_graph, has_edges
from matgl_hybrid.inference import entry_ids
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.ssl.pretext import PretextModule

if TYPE_CHECKING:
    from matgl.graph.data import MGLDataset


def displaced(structure: Structure, rng: np.random.Generator, sigma: float = 0.05) -> Structure:
    """A view of the same crystal: every atom moved by a random Cartesian displacement, normal with ``sigma`` Å per
    axis (thermal-vibration scale); lattice, species and site properties kept.

    (A supercell is no view for mean-pooled MEGNet or M3GNet embeddings: it gives exactly the original's.)
    """
    coords = structure.cart_coords + rng.normal(0.0, sigma, size=(len(structure), 3))
    return Structure(
        structure.lattice,
        structure.species_and_occu,
        coords,
        coords_are_cartesian=True,
        site_properties=structure.site_properties,
    )


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

    def __init__(self, first: MGLDataset, second: MGLDataset) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.first[index], self.second[index]


def collate_pairs(items: Sequence[tuple[Any, Any]]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """MatGL's collate applied to each view."""
    first, second = zip(*items, strict=True)
    return collate_fn_graph(list(first)), collate_fn_graph(list(second))


class ContrastivePretraining(PretextModule):
    """Encoder + projection head trained with NT-Xent on two views with 10–20 % of nodes and edges masked."""

    min_batch_size = 2

    def __init__(
        self,
        model: MatGLModel,
        backbone: str = "megnet",
        temperature: float = 0.1,
        mask_range: tuple[float, float] = (0.1, 0.2),
        projection_dim: int = 64,
        lr: float = 1e-3,
    ):
        super().__init__(model, backbone, lr)
        width = get_backbone(backbone).node_dim(model)
        self.projection = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, projection_dim))
        self.temperature, self.mask_range = temperature, mask_range

    def embed_view(self, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mask nodes and drop edges of one view (in place: a fresh batch), encode, mean-pool, project: (B, P)."""
        g, lattice, state_attr, _ = batch
        low, high = self.mask_range
        fraction = low + (high - low) * float(torch.rand(1, generator=generator))
        device = g.edge_index.device
        keep = (torch.rand(g.edge_index.shape[1], generator=generator) >= fraction).to(device)
        g.edge_index, g.pbc_offset = g.edge_index[:, keep], g.pbc_offset[keep]
        nodes = (torch.rand(g.num_nodes, generator=generator) < fraction).to(device)
        g.node_type = torch.where(nodes, torch.full_like(g.node_type, self.mask_index), g.node_type)
        node_feat = self(g=g, lat=lattice, state_attr=state_attr)
        return self.projection(scatter(node_feat, g.batch, dim=0, dim_size=g.num_graphs, reduce="mean"))

    def losses(self, pair: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        first, second = pair
        loss = nt_xent(self.embed_view(first, generator), self.embed_view(second, generator), self.temperature)
        return {"nt_xent": loss, "total": loss}

    def batch_size(self, pair: Any) -> int:
        return int(pair[0][0].num_graphs)


def paired_views(
    structures: Sequence[Structure], cutoff: float, element_types: Sequence[str], seed: int = 0
) -> PairedViews:
    """Dataset of (original, displaced) graph pairs for contrastive training (:func:`displaced`, seeded). A
    displacement that pushes every neighbour pair of a structure past the cutoff (possible when its only pairs lie
    just inside it) is drawn again, and after a few tries the structure is its own second view."""
    rng = np.random.default_rng(seed)
    ids = entry_ids(len(structures))
    first = build_dataset(list(structures), element_types, cutoff, ids)
    second = build_dataset([_displaced_with_edges(s, rng, cutoff) for s in structures], element_types, cutoff, ids)
    return PairedViews(first, second)


def _displaced_with_edges(structure: Structure, rng: np.random.Generator, cutoff: float, tries: int = 5) -> Structure:
    """:func:`displaced` ``structure`` whose graph keeps an edge within ``cutoff``; ``structure`` itself when none of
    ``tries`` draws does."""
    for _ in range(tries):
        if has_edges(candidate := displaced(structure, rng), cutoff):
            return candidate
    return structure


def split_views(
    structures: Sequence[Structure], cutoff: float, element_types: Sequence[str], val_fraction: float, seed: int
) -> tuple[PairedViews, PairedViews]:
    """Train and validation :class:`PairedViews`."""
    # copies of one structure on one side (in one batch they would also be each other's negatives less often)
    train_idx, val_idx = split_indices(len(structures), val_fraction, seed, [structure_key(s) for s in structures])
    return (
        paired_views([structures[i] for i in train_idx], cutoff, element_types, seed),
        paired_views([structures[i] for i in val_idx], cutoff, element_types, seed + 1),
    )
