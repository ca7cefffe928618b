"""Label-free pretraining of a MatGL encoder on the masked-atom pretext task, with Lightning."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from matgl.config import DEFAULT_ELEMENTS
from matgl.graph._compute import compute_pair_vector_and_distance
from matgl.models._core import MatGLModel
from torch.utils.data import DataLoader

from matgl_hybrid.graphs import attach_positions, build_dataset, has_edges, make_loader
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.splits import split_indices
from matgl_hybrid.ssl.pretext import MASK_TOKEN, PretextHeads, build_encoder, choose_masked, periodic_labels


class MaskedPretraining(L.LightningModule):
    """A MatGL backbone (the encoder) and :class:`PretextHeads`, trained to recover masked atoms.

    Each step masks ``mask_fraction`` of the batch's atoms (their node type becomes the mask token), encodes the
    batch and sums the cross-entropies of group, period and edge-distance-bin predictions.
    """

    def __init__(
        self,
        backbone: str = "megnet",
        element_types: Sequence[str] = DEFAULT_ELEMENTS,
        cutoff: float = 5.0,
        backbone_kwargs: dict[str, Any] | None = None,
        mask_fraction: float = 0.15,
        n_bins: int = 40,
        lr: float = 1e-3,
    ):
        super().__init__()
        self.backbone_name = backbone
        self.encoder: MatGLModel = build_encoder(backbone, element_types, cutoff, backbone_kwargs)
        self.heads = PretextHeads(get_backbone(backbone).node_dim(self.encoder), n_bins)
        groups, periods = periodic_labels(self.encoder.element_types)
        self.register_buffer("groups", groups, persistent=False)
        self.register_buffer("periods", periods, persistent=False)
        self.mask_index = self.encoder.element_types.index(MASK_TOKEN)
        self.cutoff, self.mask_fraction, self.lr = cutoff, mask_fraction, lr

    def pretext_losses(self, batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Mask, encode and score one batch ``(g, lattice, state_attr, labels)``."""
        g, lattice, state_attr, _ = batch
        attach_positions(g, lattice)
        masked = choose_masked(g.num_nodes, self.mask_fraction, generator).to(g.node_type.device)
        original = g.node_type
        true_types = original[masked]
        g.node_type = original.index_fill(0, masked, self.mask_index)
        try:
            node_feat, _ = get_backbone(self.backbone_name).features(self.encoder, g, state_attr)
        finally:
            g.node_type = original  # the batch is left as it came
        _, bond_dist = compute_pair_vector_and_distance(g.pos, g.edge_index, g.pbc_offshift)
        losses = self.heads.losses(
            node_feat, masked, true_types, g.edge_index, bond_dist, self.cutoff, self.groups, self.periods
        )
        losses["total"] = sum(losses.values())
        return losses

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        losses = self.pretext_losses(batch)
        self.log_dict({f"train_{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=int(batch[0].num_graphs))
        return losses["total"]

    def validation_step(self, batch, batch_idx: int) -> None:
        generator = torch.Generator().manual_seed(batch_idx)  # the same masks every epoch: comparable losses
        losses = self.pretext_losses(batch, generator)
        self.log_dict({f"val_{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=int(batch[0].num_graphs))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def pretrain(
    structures: Sequence,
    backbone: str = "megnet",
    backbone_kwargs: dict[str, Any] | None = None,
    cutoff: float = 5.0,
    max_epochs: int = 50,
    batch_size: int = 32,
    lr: float = 1e-3,
    val_fraction: float = 0.05,
    seed: int = 0,
    accelerator: str = "auto",
    progress: bool = True,
    task: str = "masked",
) -> L.LightningModule:
    """Pretrain an encoder on ``structures`` without labels; returns the module (``.encoder`` is the MatGL model).

    Structures with no neighbour pair within ``cutoff`` are left out with a warning; ``module.n_structures`` is the
    number used.

    Args:
        task: ``masked`` (group, period and distance bins of masked atoms) or ``contrastive`` (NT-Xent between
            an original and a random-supercell view, 10–20 % of nodes and edges masked in each).
    """
    from matgl_hybrid.ssl.contrastive import ContrastivePretraining, collate_pairs, split_views

    usable = [s for s in structures if has_edges(s, cutoff)]
    if len(usable) < len(structures):
        warnings.warn(
            f"{len(structures) - len(usable)} structures with no neighbour pair within {cutoff} Å left out",
            stacklevel=2,
        )
    structures = usable
    L.seed_everything(seed, verbose=False)
    generator = torch.Generator().manual_seed(seed)
    if task == "masked":
        module = MaskedPretraining(backbone, DEFAULT_ELEMENTS, cutoff, backbone_kwargs, lr=lr)
        ids = [str(i) for i in range(len(structures))]
        train_idx, val_idx = split_indices(len(structures), val_fraction, seed)
        elements = module.encoder.element_types
        train = build_dataset([structures[i] for i in train_idx], elements, cutoff, [ids[i] for i in train_idx])
        val = build_dataset([structures[i] for i in val_idx], elements, cutoff, [ids[i] for i in val_idx])
        loaders = make_loader(train, batch_size, shuffle=True, generator=generator), make_loader(val, batch_size)
    elif task == "contrastive":
        module = ContrastivePretraining(backbone, DEFAULT_ELEMENTS, cutoff, backbone_kwargs, lr=lr)
        train, val = split_views(structures, cutoff, module.encoder.element_types, val_fraction, seed)
        loaders = (
            DataLoader(train, batch_size, shuffle=True, collate_fn=collate_pairs, generator=generator, drop_last=True),
            DataLoader(val, batch_size, collate_fn=collate_pairs),
        )
    else:
        raise ValueError(f"task must be 'masked' or 'contrastive', got {task!r}")
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, *loaders)
    module.n_structures = len(structures)  # the corpus actually used, after the filter above
    return module.eval()
