"""Label-free pretraining of a MatGL encoder (masked atoms or contrastive views), with Lightning."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from matgl.config import DEFAULT_ELEMENTS
from matgl.models._core import MatGLModel
from matplotlib.figure import Figure

from matgl_hybrid.checkpoint import save_checkpoint
from matgl_hybrid.data import structure_key
from matgl_hybrid.data.splits import split_indices
from matgl_hybrid.figures import learning_curves, panels, png
from matgl_hybrid.graphs import bond_lengths, build_dataset, has_edges, make_loader, swapped_attributes
from matgl_hybrid.inference import entry_ids
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.models.encoders import build_encoder
from matgl_hybrid.ssl.contrastive import ContrastivePretraining, collate_pairs, split_views
from matgl_hybrid.ssl.corpus import pretraining_corpus
from matgl_hybrid.ssl.pretext import PRETEXT_VERSION, PretextHeads, PretextModule, choose_atoms, periodic_labels
from matgl_hybrid.training.fit import (
    check_accelerator,
    fit_or_raise_interrupted,
    lightning_trainer,
    resolved_accelerator,
)
from matgl_hybrid.training.modules import History


class MaskedPretraining(PretextModule):
    """An encoder and :class:`PretextHeads`, trained to recover masked atoms and hidden bonds.

    Each step masks ``mask_fraction`` of the batch's atoms (their node type becomes the mask token) and hides as
    many others (every bond that touches one leaves the graph, in both directions), encodes the batch and sums the
    cross-entropies of the masked atoms' group and period and of the hidden bonds' length bins. The encoder never
    sees a length it is asked for: neither the bond nor, for M3GNet, an angle at a shared neighbour that would give it.
    """

    def __init__(
        self,
        model: MatGLModel,
        backbone: str = "megnet",
        mask_fraction: float = 0.15,
        n_bins: int = 40,
        lr: float = 1e-3,
    ):
        super().__init__(model, backbone, lr)
        self.heads = PretextHeads(get_backbone(backbone).node_dim(model), n_bins)
        groups, periods = periodic_labels(model.element_types)
        self.register_buffer("groups", groups, persistent=False)
        self.register_buffer("periods", periods, persistent=False)
        self.cutoff, self.mask_fraction = model.cutoff, mask_fraction

    def losses(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Mask, hide, encode and score one batch ``(g, lattice, state_attr, labels)``; the batch is left as it came."""
        g, lattice, state_attr, _ = batch
        device = g.node_type.device
        masked, hidden = (atoms.to(device) for atoms in choose_atoms(g.num_nodes, self.mask_fraction, generator))
        is_hidden = torch.zeros(g.num_nodes, dtype=torch.bool, device=device)
        is_hidden[hidden] = True
        touching = is_hidden[g.edge_index[0]] | is_hidden[g.edge_index[1]]
        with torch.no_grad():
            hidden_lengths = bond_lengths(g, lattice)[touching]
        seen = ~touching
        graph_seen = {"edge_index": g.edge_index[:, seen], "pbc_offset": g.pbc_offset[seen], "pbc_offshift": None}
        node_type = g.node_type.index_fill(0, masked, self.mask_index)
        with swapped_attributes(g, node_type=node_type, **graph_seen):
            node_feat = self(g=g, lat=lattice, state_attr=state_attr)
        losses = self.heads.losses(
            node_feat,
            masked,
            g.node_type[masked],
            g.edge_index[:, touching],
            hidden_lengths,
            self.cutoff,
            self.groups,
            self.periods,
        )
        losses["total"] = sum(losses.values())
        return losses

    def batch_size(self, batch: Any) -> int:
        return int(batch[0].num_graphs)


#: The backbones an encoder can be pretrained as (their layers' node features are what NE0…NEk embed).
PRETRAINABLE = ("megnet", "m3gnet")


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
    trainer_kwargs: dict[str, Any] | None = None,
) -> PretextModule:
    """Pretrain an encoder on ``structures`` without labels; returns the module (``.encoder`` is the MatGL model).

    Structures with no neighbour pair within ``cutoff`` are left out with a warning; ``module.n_structures`` is the
    number used.

    Args:
        task: ``masked`` (group and period of masked atoms, length bins of hidden bonds) or ``contrastive``
            (NT-Xent between an original and a displaced view, atoms moved by 0.05 Å per axis, 10–20 % of nodes and
            edges masked in each).
        trainer_kwargs: Lightning ``Trainer`` arguments merged over these (e.g. a logger, callbacks, precision).
    """
    if task not in ("masked", "contrastive"):
        raise ValueError(f"task must be 'masked' or 'contrastive', got {task!r}")
    if backbone not in PRETRAINABLE:
        raise ValueError(
            f"pretraining takes a {' or '.join(PRETRAINABLE)} encoder, not {backbone!r} (TensorNet's layers hold no "
            "node features to embed with; a pretrained potential is fine-tuned with train --backbone instead)"
        )
    if task == "contrastive" and batch_size < 2:
        raise ValueError("contrastive pretraining needs batch_size >= 2: a batch of one has no negative pair")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1 or not cutoff > 0:
        raise ValueError(f"pretraining needs max_epochs >= 1 and a cutoff > 0 Å, got {max_epochs!r}, {cutoff!r}")
    if "max_epochs" in (trainer_kwargs or {}):
        raise ValueError("trainer_kwargs: give max_epochs as pretrain's own argument (it is recorded)")
    check_accelerator(accelerator)
    usable = [s for s in structures if has_edges(s, cutoff)]
    if len(usable) < len(structures):
        warnings.warn(
            f"{len(structures) - len(usable)} structures with no neighbour pair within {cutoff} Å left out",
            stacklevel=2,
        )
    structures = usable
    L.seed_everything(seed, verbose=False)
    generator = torch.Generator().manual_seed(seed)
    encoder = build_encoder(backbone, DEFAULT_ELEMENTS, cutoff, backbone_kwargs)
    elements = encoder.element_types
    if task == "masked":
        module: PretextModule = MaskedPretraining(encoder, backbone, lr=lr)
        ids = entry_ids(len(structures))
        # copies of one structure (one crystal from two databases) on one side: the validation loss stays honest
        train_idx, val_idx = split_indices(len(structures), val_fraction, seed, [structure_key(s) for s in structures])
        train = build_dataset([structures[i] for i in train_idx], elements, cutoff, [ids[i] for i in train_idx])
        val = build_dataset([structures[i] for i in val_idx], elements, cutoff, [ids[i] for i in val_idx])
        loaders = make_loader(train, batch_size, shuffle=True, generator=generator), make_loader(val, batch_size)
    else:
        module = ContrastivePretraining(encoder, backbone, lr=lr)
        train, val = split_views(structures, cutoff, elements, val_fraction, seed)
        if len(train) < batch_size:  # its full batches only: none, and nothing would be learned
            raise ValueError(
                f"contrastive pretraining on {len(train)} training structures with batch_size {batch_size} has no "
                "full batch: give more structures or a smaller batch size"
            )
        loaders = (
            make_loader(train, batch_size, shuffle=True, generator=generator, drop_last=True, collate_fn=collate_pairs),
            make_loader(val, batch_size, collate_fn=collate_pairs),
        )
    settings = {
        "max_epochs": max_epochs,
        "accelerator": resolved_accelerator(accelerator),
        # one device: Lightning's "auto" takes every GPU with DDP, whose reduction fails on the encoder's unused
        # head, and every rank would save the encoder (``trainer_kwargs`` may still ask for more)
        "devices": 1,
        "enable_progress_bar": progress,
    }
    quiet = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False, "num_sanity_val_steps": 0}
    history = History(endings=("total", "group", "period", "distance", "nt_xent"))  # the pretext losses per epoch
    trainer_kwargs = dict(trainer_kwargs or {})
    extra = trainer_kwargs.pop("callbacks", None) or []
    callbacks = [history, *([extra] if isinstance(extra, L.Callback) else extra)]
    trainer = lightning_trainer(**{**settings, **quiet, **trainer_kwargs}, callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        fit_or_raise_interrupted(
            trainer,
            module,
            lambda: ": pretraining keeps no checkpoints, a rerun starts over",
            train_dataloaders=loaders[0],
            val_dataloaders=loaders[1],
        )
    module.n_structures = len(structures)  # the corpus actually used, after the filter above
    module.history = [{k: v for k, v in row.items() if k == "epoch" or k.startswith("val_")} for row in history.rows]
    return module.eval()


#: The settings of :func:`pretrain` a pretraining record holds, with their defaults.
SETTINGS_RECORDED = {
    name: parameter.default
    for name, parameter in inspect.signature(pretrain).parameters.items()
    if name in ("backbone", "backbone_kwargs", "cutoff", "batch_size", "lr", "val_fraction", "seed")
}


#: The figure saved beside a pretrained encoder.
PRETRAINING_FIGURE = "pretraining.png"


@dataclass
class PretrainingResult:
    """A pretrained encoder and the record of how it was made (data, exclusions, task, epochs, command)."""

    encoder: MatGLModel
    record: dict[str, Any] = field(default_factory=dict)

    #: The files :meth:`save` may write beside the checkpoint's own.
    FILES = ("pretraining.json", PRETRAINING_FIGURE)

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the encoder as a checkpoint folder with ``pretraining.json`` (the record) and, when the record has
        a history, :data:`PRETRAINING_FIGURE` (its validation losses per epoch); ``overwrite``: see
        :func:`~matgl_hybrid.checkpoint.check_model_dir`."""
        history = self.record.get("history") or []
        validated = any(k.startswith("val_") for row in history for k in row)
        figure = pretraining_figure(history, self.record.get("task", "masked")) if validated else None
        figures = {PRETRAINING_FIGURE: png(figure)} if figure is not None else {}
        return save_checkpoint(self.encoder, out, {"pretraining": self.record}, figures=figures, overwrite=overwrite)




def pretraining_figure(history: Sequence[dict[str, float]], task: str) -> Figure:
    """Each pretext loss on the validation structures per epoch (``history``: rows of ``epoch`` and ``val_<loss>``;
    cross-entropies in nats, NT-Xent for ``contrastive``)."""
    fig, (ax,) = panels(1, size=(5.2, 4.0))
    names = list(dict.fromkeys(k for row in history for k in row if k.startswith("val_")))  # validated epochs only
    if task == "contrastive":  # its total is its one loss, NT-Xent: drawn once
        names = [k for k in names if k != "val_total"]
    curves = {
        k[len("val_") :]: ([r["epoch"] + 1 for r in history if k in r], [r[k] for r in history if k in r])
        for k in names
    }
    learning_curves(ax, curves, quantity="validation loss", title=f"{task} pretraining")
    return fig


def pretrain_datasets(
    sources: Sequence,
    exclude: Sequence = (),
    *,
    command: str | None = None,
    log: Callable[[str], Any] = print,
    **options: Any,
) -> PretrainingResult:
    """Pretrain an encoder on the union of ``sources`` minus the structures of ``exclude`` (by id and by material,
    :func:`~matgl_hybrid.ssl.corpus.pretraining_corpus`); ``options`` are :func:`pretrain`'s.

    Args:
        sources, exclude: anything :func:`matgl_hybrid.data.load` reads (record files, folders, CSV).
        command: the command line that ran it, kept in the record.
        log: where the size of the corpus is reported.
    """
    check_accelerator(options.get("accelerator", "auto"))  # before the corpus is read
    corpus = pretraining_corpus(sources, exclude)
    log(f"pretraining on {len(corpus.structures)} structures from {len(sources)} file(s), {corpus.n_excluded} excluded")
    module = pretrain(corpus.structures, **options)
    record = {
        "data": [str(d) for d in sources],
        "exclude": [str(d) for d in exclude],
        "n_excluded": corpus.n_excluded,
        "n_structures": module.n_structures,
        "task": options.get("task", "masked"),
        "pretext_version": PRETEXT_VERSION,
        "max_epochs": options.get("max_epochs", 50),
        # what else determines the encoder (pretrain's defaults where not given): reproducible from Python too
        **{name: options.get(name, SETTINGS_RECORDED[name]) for name in SETTINGS_RECORDED},
        "command": command,
        "history": module.history,
    }
    return PretrainingResult(module.encoder, record)
