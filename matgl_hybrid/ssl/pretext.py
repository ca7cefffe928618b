"""Pretext tasks of self-supervised learning (Kong et al. 2022): the Lightning module they share, and the labels and
heads of the predictive task (mask atoms, predict their group and period; hide bonds, predict their length bins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matgl.models._core import MatGLModel
from matgl.utils.training import ModelLightningModule
from pymatgen.core import Element
from torch import nn
from torch.nn import functional as F

from matgl_hybrid.models.backbones import NodeFeatures
from matgl_hybrid.models.encoders import MASK_TOKEN

N_GROUPS = 18
N_PERIODS = 7
#: Version of the pretext tasks, kept in every pretraining record. 1 (before 2026-12-05): the masked task's encoder
#: saw the bonds whose length bins it predicted, the contrastive views were a crystal and its supercell. 2: those
#: bonds are taken out of the graph it sees; the second view is the crystal with its atoms displaced.
PRETEXT_VERSION = 2


def periodic_labels(element_types: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Group (0–17) and period (0–6) class of every element type; the mask token gets -1 (ignored)."""
    groups, periods = [], []
    for symbol in element_types:
        if symbol == MASK_TOKEN:
            groups.append(-1)
            periods.append(-1)
            continue
        element = Element(symbol)
        groups.append(element.group - 1)  # f-block elements are in group 3, as pymatgen places them
        periods.append(element.row - 1)
    return torch.tensor(groups), torch.tensor(periods)


def choose_atoms(
    num_nodes: int, fraction: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random sets of ``round(fraction × N)`` atoms of a batch: the masked ones (at least one) and the
    hidden ones (as many as the atoms left allow), whose bonds the encoder does not see. Shapes: (M,), (H,)."""
    count = max(1, round(fraction * num_nodes))
    order = torch.randperm(num_nodes, generator=generator)
    return order[:count], order[count : 2 * count]


def distance_bins(distances: torch.Tensor, cutoff: float, n_bins: int = 40) -> torch.Tensor:
    """Bin index (0 … n_bins-1) of each distance on a uniform grid from 0 to ``cutoff`` (Å)."""
    return (distances / cutoff * n_bins).long().clamp(0, n_bins - 1)


class PretextHeads(nn.Module):
    """Classifiers on final node features: group and period of a masked atom, and the length bin of a hidden bond
    from its two atoms.

    Shapes: node features (N, F) -> group logits (M, 18), period logits (M, 7) for the M masked atoms; bond logits
    (E_h, n_bins) for the E_h hidden bonds.
    """

    def __init__(self, node_dim: int, n_bins: int = 40, hidden: int = 64):
        super().__init__()
        self.group = nn.Sequential(nn.Linear(node_dim, hidden), nn.SiLU(), nn.Linear(hidden, N_GROUPS))
        self.period = nn.Sequential(nn.Linear(node_dim, hidden), nn.SiLU(), nn.Linear(hidden, N_PERIODS))
        self.distance = nn.Sequential(nn.Linear(2 * node_dim, hidden), nn.SiLU(), nn.Linear(hidden, n_bins))
        self.n_bins = n_bins

    def losses(
        self,
        node_feat: torch.Tensor,
        masked: torch.Tensor,
        true_types: torch.Tensor,
        hidden_bonds: torch.Tensor,
        hidden_lengths: torch.Tensor,
        cutoff: float,
        groups: torch.Tensor,
        periods: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Cross-entropy of the three predictions; ``true_types`` (M,) are the masked atoms' real node types,
        ``hidden_bonds`` (2, E_h) the bonds left out of the encoder's graph and ``hidden_lengths`` (E_h,) their
        lengths in Å. With no hidden bond there is no distance loss (an empty mean is NaN, a zero would pull the
        recorded mean down): the dict holds ``group`` and ``period`` only."""
        losses = {
            "group": F.cross_entropy(self.group(node_feat[masked]), groups[true_types]),
            "period": F.cross_entropy(self.period(node_feat[masked]), periods[true_types]),
        }
        if hidden_lengths.numel():
            pair = torch.cat([node_feat[hidden_bonds[0]], node_feat[hidden_bonds[1]]], dim=-1)
            bins = distance_bins(hidden_lengths, cutoff, self.n_bins)
            losses["distance"] = F.cross_entropy(self.distance(pair), bins)
        return losses


class PretextModule(ModelLightningModule):
    """MatGL's ``ModelLightningModule`` around an encoder's node features, trained on a label-free pretext task.

    ``self(g=g, lat=lattice, state_attr=state_attr)`` gives the encoder's final node features (N, F), positions
    attached by MatGL; subclasses define :meth:`losses` (a dict with ``total``) and :meth:`batch_size`. The learning
    rate is constant.
    """

    def __init__(self, model: MatGLModel, backbone: str, lr: float = 1e-3):
        """``model``: the encoder (:func:`~matgl_hybrid.models.encoders.build_encoder`) of kind ``backbone``."""
        super().__init__(model=NodeFeatures(backbone, model), lr=lr, decay_alpha=1.0)
        self.mask_index = model.element_types.index(MASK_TOKEN)

    @property
    def encoder(self) -> MatGLModel:
        """The MatGL encoder being pretrained."""
        return self.model.model

    def losses(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The pretext losses of one batch, ``total`` among them."""
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        """Number of structures in ``batch``."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train_{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=self.batch_size(batch))
        return losses["total"]

    #: The fewest structures a batch needs for its losses to mean anything (a contrastive batch of one has no
    #: negative pair: its NT-Xent is exactly 0); smaller validation batches are left out of the validation loss.
    min_batch_size = 1

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if self.batch_size(batch) < self.min_batch_size:
            return
        losses = self.losses(batch, torch.Generator().manual_seed(batch_idx))  # the same masks every epoch
        self.log_dict({f"val_{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=self.batch_size(batch))
