"""Fine-tuning a pretrained backbone: its architecture and weights from a shipped potential, freezing, layer-wise
learning rates, AdamW with warm-up then cosine decay, a moving average of the weights.

A spec whose ``backbone`` is pretrained (``tensornet-matpes-pbe``, ``m3gnet-matpes-pbe``: see
:data:`~matgl_hybrid.models.backbones.BACKBONES`) builds the potential's graph network (its elements, cutoff and
architecture), loads its weights, and trains it with this package's readouts, fusion and head on top. The saved
model holds the fine-tuned weights and references the pretrained ones by name and sha256.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn

from matgl_hybrid import potentials
from matgl_hybrid.models import HybridModel
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.training.spec import TrainSpec

#: Architecture arguments the hybrid does not take from a potential: its element list and cutoff are the model's own
#: arguments, its dtype the default.
_OWN_ARGS = ("element_types", "cutoff", "dtype")


def pretrained_name(spec: TrainSpec) -> str | None:
    """The shipped potential a spec's backbone starts from (None: trained from random initialisation)."""
    return get_backbone(spec.backbone).potential


def pretrained_architecture(spec: TrainSpec) -> tuple[tuple[str, ...], float, dict[str, Any]]:
    """``(element_types, cutoff, backbone_kwargs)`` of a pretrained backbone: the potential's own.

    Raises:
        ValueError: ``spec.backbone_kwargs`` or ``spec.cutoff`` that would change the pretrained architecture.
    """
    name = pretrained_name(spec)
    args = potentials.architecture_args(potentials.potential_config(name))
    if spec.backbone_kwargs:
        raise ValueError(f"backbone {spec.backbone} is pretrained: its architecture is {name}'s, backbone_kwargs "
                         f"{sorted(spec.backbone_kwargs)} cannot change it")  # fmt: skip
    if spec.cutoff != args["cutoff"]:
        raise ValueError(f"backbone {spec.backbone} was pretrained with a {args['cutoff']} Å cutoff, not {spec.cutoff}")
    return tuple(args["element_types"]), float(args["cutoff"]), {k: v for k, v in args.items() if k not in _OWN_ARGS}


def pretrained_reference(spec: TrainSpec) -> dict[str, str]:
    """What a model fine-tuned from a pretrained backbone records of it: name, weights sha256, licence, leakage."""
    name = pretrained_name(spec)
    info = potentials.shipped_potentials()[name]
    return {"name": name, "sha256": potentials.weights_sha256(name), "licence": info.licence, "leakage": info.leakage}


def load_pretrained_weights(model: HybridModel, spec: TrainSpec) -> dict[str, str]:
    """Load the potential's weights into ``model.backbone`` (the readout and head it replaces are left out);
    returns ``{"name", "sha256"}`` of the weights loaded.

    Raises:
        ValueError: a backbone weight the potential does not have, or of another shape.
    """
    name = pretrained_name(spec)
    weights = potentials.backbone_weights(name)
    head = get_backbone(spec.backbone).head
    weights = {k: v for k, v in weights.items() if k.split(".")[0] not in head}
    missing, unexpected = model.backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{name}'s weights do not fit backbone {spec.backbone}: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")  # fmt: skip
    return {"name": name, "sha256": potentials.weights_sha256(name)}


def backbone_blocks(model: HybridModel) -> list[nn.Module]:
    """The backbone's modules from input to output, those with parameters: its children in order, a ``ModuleList``
    (the interaction blocks) expanded into its blocks; the first is the embedding, or a fixed basis
    before it that holds a parameter (MatGL's Gaussian centres). A module shared by other blocks (TensorNet's one
    activation, trainable as ``softexp``) is not a block of its own.

    ``ModuleList`` children of equal length are stacks run in alternation (M3GNet's three-body interactions and graph
    layers: ``three_body_interactions[i]`` then ``graph_layers[i]``): their ``i``-th modules form block ``i``,
    placed where the first of them is. MatGL's own readout and head (kept by a ``readout="native"`` model) are not
    blocks: they train at the head's learning rate.
    """
    head = get_backbone(model.backbone_name).head
    children = [child for name, child in model.backbone.named_children() if name not in head]
    stacks = [c for c in children if isinstance(c, nn.ModuleList)]
    blocks: list[nn.Module] = []
    for child in children:
        if not isinstance(child, nn.ModuleList):
            blocks.append(child)
            continue
        parallel = [s for s in stacks if len(s) == len(child)]
        if parallel[0] is child:
            blocks.extend(nn.ModuleList(layers) for layers in zip(*parallel, strict=True))
    owners: dict[int, int] = {}
    for block in blocks:
        for p in block.parameters():
            owners[id(p)] = owners.get(id(p), 0) + 1
    return [b for b in blocks if any(True for _ in b.parameters()) and any(owners[id(p)] == 1 for p in b.parameters())]


def freeze(model: HybridModel, what: str) -> None:
    """Freeze ``"backbone"`` (every backbone weight) or ``"embedding"`` (its first block with a trainable weight: a
    fixed basis before it, such as MatGL's Gaussian centres, does not count); ``"none"``: nothing."""
    blocks = backbone_blocks(model)
    trainable = [b for b in blocks if any(p.requires_grad for p in b.parameters())]
    frozen = {"none": [], "embedding": trainable[:1], "backbone": blocks}[what]
    for block in frozen:
        block.requires_grad_(False)


def parameter_groups(model: HybridModel, lr: float, layer_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: block ``i`` of the backbone's ``L`` (:func:`backbone_blocks`) at
    ``lr × layer_decay^(L − i)``, so the embedding learns slowest; the readout, fusion and head at ``lr``. Frozen
    weights are left out."""
    blocks = backbone_blocks(model)
    groups, seen = [], set()
    for i, block in enumerate(blocks):  # a weight shared by blocks (an activation's) goes with the first of them
        params = [p for p in block.parameters() if p.requires_grad and id(p) not in seen]
        seen |= {id(p) for p in block.parameters()}
        if params:
            groups.append({"params": params, "lr": lr * layer_decay ** (len(blocks) - i)})
    rest = [p for p in model.parameters() if id(p) not in seen and p.requires_grad]
    groups.append({"params": rest, "lr": lr})
    return groups


def optimizer_and_schedule(
    model: HybridModel, spec: TrainSpec, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
    """AdamW over :func:`parameter_groups` with ``spec.weight_decay``, and a per-step schedule: linear warm-up over
    ``spec.warmup_epochs``, then cosine decay to ``lr × decay_alpha`` at ``max_epochs`` (Lightning's scheduler
    config, ``interval="step"``). ``steps_per_epoch``: optimizer steps an epoch (batches, fewer with gradient
    accumulation)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, spec.lr, spec.layer_decay), weight_decay=spec.weight_decay)
    warmup, total = spec.warmup_epochs * steps_per_epoch, max(1, spec.max_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return spec.decay_alpha + (1 - spec.decay_alpha) * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, {"scheduler": schedule, "interval": "step"}


def uses_finetuning_schedule(spec: TrainSpec) -> bool:
    """Whether the spec trains with :func:`optimizer_and_schedule` (``lr_schedule="cosine"``, ``freeze``,
    ``layer_decay``, ``weight_decay``, ``warmup_epochs`` or a pretrained backbone) rather than MatGL's Adam with its
    per-epoch cosine; ``gradient_clip`` and ``ema_decay`` apply to either."""
    return bool(
        spec.lr_schedule == "cosine"
        or pretrained_name(spec)
        or spec.freeze != "none"
        or spec.layer_decay != 1.0
        or spec.weight_decay
        or spec.warmup_epochs
    )


def warmup_ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """``multi_avg_fn`` of :class:`torch.optim.swa_utils.AveragedModel`, in place on the averaged tensors of one
    device and dtype: an exponential moving average whose decay ramps up, ``min(decay, (1 + n) / (10 + n))`` at the
    n-th update (as TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``). One call per device and dtype,
    so reading ``n`` from a GPU waits once per step, not once per weight tensor.

    A fixed decay of 0.999 still weighs the first weights by 0.999^N after N steps: a fine-tuning run of 1400 steps
    (100 epochs of 220 structures) would keep a quarter of its randomly initialised head. With the ramp, the
    average forgets them within a few hundred steps and reaches ``decay`` after about 10 / (1 − decay) steps.
    """

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # counters such as BatchNorm's num_batches_tracked
            torch._foreach_copy_(averaged, current)
            return
        n = float(num_averaged)
        # lerp leaves ``averaged`` exactly where the weights are equal: frozen weights stay bit-identical
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return update


class WarmupEMA(WeightAveraging):
    """Lightning weight averaging with :func:`warmup_ema_update`, updated after every optimizer step; validation
    and the saved model use the averaged weights, kept on the model's device."""

    def __init__(self, decay: float = 0.999):
        super().__init__(multi_avg_fn=warmup_ema_update(decay))
        self.decay = decay

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Give the average the model's device and dtypes: Lightning builds it in ``setup``, before the model moves
        there (it would otherwise average a GPU run on the CPU, copying every weight at every step) and before a
        ``precision="64-true"`` (or bf16/16-true) Trainer converts the model (``lerp`` refuses mixed dtypes)."""
        if self._average_model is None:
            return
        self._average_model.to(pl_module.device)
        partners = {**dict(pl_module.named_parameters()), **dict(pl_module.named_buffers())}
        averaged = self._average_model.module
        for name, tensor in [*averaged.named_parameters(), *averaged.named_buffers()]:
            partner = partners.get(name)
            if partner is not None and tensor.is_floating_point() and tensor.dtype != partner.dtype:
                tensor.data = tensor.data.to(partner.dtype)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None


def schedule_description(spec: TrainSpec) -> str:
    """The optimizer and learning-rate schedule ``spec`` trains with, in words (model cards, submissions)."""
    if uses_finetuning_schedule(spec):
        warmup = f"{spec.warmup_epochs} warm-up epochs, then " if spec.warmup_epochs else ""
        return f"AdamW, lr {spec.lr:g} ({warmup}cosine decay per step to {spec.lr * spec.decay_alpha:g})"
    return f"Adam, lr {spec.lr:g} (MatGL's cosine, stepped per epoch: near lr unless an epoch has very few batches)"
