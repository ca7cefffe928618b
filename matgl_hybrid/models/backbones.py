"""Backbone adapters: build a MatGL model, drop the readout and head a hybrid does not use, read its node features."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from matgl.models import M3GNet, MEGNet, TensorNet
from matgl.models._core import MatGLModel
from torch import nn


def _arg(model: MatGLModel, name: str) -> Any:
    """A constructor argument of a MatGL model: as given, else the signature's default."""
    if name in model._init_args:
        return model._init_args[name]
    return inspect.signature(type(model).__init__).parameters[name].default


def num_graphs(g: Any) -> int:
    """Number of graphs B in a batch (1 for a single graph)."""
    return int(getattr(g, "num_graphs", None) or 1)


def _no_state(node_feat: torch.Tensor, g: Any) -> torch.Tensor:
    """The state of a backbone without one: (B, 0)."""
    return node_feat.new_zeros((num_graphs(g), 0))


def _from_feature_dict(
    model: MatGLModel, g: Any, state_attr: torch.Tensor | None, state: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    model(g, state_attr=state_attr)
    last = model.feature_dict[f"gc_{_arg(model, 'nblocks')}"]
    return last["node_feat"], (last["state_feat"] if state else _no_state(last["node_feat"], g))


def _tensornet_features(
    model: MatGLModel, g: Any, state_attr: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    node_feat = model.forward_features(g, state_attr=state_attr)["readout"]
    return node_feat, _no_state(node_feat, g)


class SkippedHead(nn.Module):
    """Stands in for a MatGL readout or output head that a hybrid model replaces: no weights, almost no work.

    Called as the module it replaces (``(x)``, ``(x, batch)`` or ``(x, batch, num_graphs=B)``), it returns zeros of
    width 1, (B, 1) or (N, 1), so that the backbone's forward completes and fills ``feature_dict``; nothing reads
    them.
    """

    def forward(
        self, x: torch.Tensor, batch: torch.Tensor | None = None, num_graphs: int | None = None, **kwargs
    ) -> torch.Tensor:
        if batch is None:
            return x.new_zeros((*x.shape[:-1], 1))
        rows = num_graphs if num_graphs is not None else int(batch.max()) + 1 if batch.numel() else 0
        return x.new_zeros((rows, 1))


@dataclass(frozen=True)
class Backbone:
    """How to build one MatGL architecture and where its final features are.

    Attributes:
        cls: the MatGL model class.
        node_dim: ``node_dim(model) -> F``, width of the final node features.
        state_dim: ``state_dim(model) -> Fs``, width of the final state vector (0: none).
        features: ``features(model, g, state_attr) -> (node (N, F), state (B, Fs))``, Fs = 0 without a state.
        head: names of the model's modules after the node features (its readout and output head), which a hybrid
            replaces by :class:`SkippedHead`.
        potential: the shipped pretrained potential (:mod:`matgl_hybrid.potentials`) whose architecture, elements,
            cutoff and initial weights the backbone takes; None: built from ``backbone_kwargs``, randomly initialised.
    """

    cls: type[MatGLModel]
    node_dim: Callable[[MatGLModel], int]
    state_dim: Callable[[MatGLModel], int]
    features: Callable[[MatGLModel, Any, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]
    head: tuple[str, ...]
    potential: str | None = None

    def drop_head(self, model: MatGLModel) -> MatGLModel:
        """Replace the readout and output head of ``model`` (in place) by :class:`SkippedHead`; returns it."""
        for name in self.head:
            setattr(model, name, SkippedHead())
        return model


def _megnet_state(m: MatGLModel) -> bool:
    return bool(_arg(m, "include_state"))


BACKBONES: dict[str, Backbone] = {
    "megnet": Backbone(
        MEGNet,
        node_dim=lambda m: _arg(m, "hidden_layer_sizes_conv")[-1],
        state_dim=lambda m: _arg(m, "hidden_layer_sizes_conv")[-1] if _megnet_state(m) else 0,
        features=lambda m, g, s: _from_feature_dict(m, g, s, _megnet_state(m)),
        head=("node_s2s", "edge_s2s", "output_proj"),
    ),
    "m3gnet": Backbone(
        M3GNet,
        node_dim=lambda m: _arg(m, "dim_node_embedding"),
        state_dim=lambda m: 0,
        features=lambda m, g, s: _from_feature_dict(m, g, s, False),
        head=("readout", "final_layer"),
    ),
    "tensornet": Backbone(
        TensorNet,
        node_dim=lambda m: _arg(m, "units"),
        state_dim=lambda m: 0,
        features=_tensornet_features,
        head=("readout", "final_layer"),
    ),
}
#: MatGL's universal potentials as pretrained backbones, fine-tuned inside the hybrid.
BACKBONES["tensornet-matpes-pbe"] = replace(BACKBONES["tensornet"], potential="TensorNet-MatPES-PBE-v2025.1-PES")
BACKBONES["m3gnet-matpes-pbe"] = replace(BACKBONES["m3gnet"], potential="M3GNet-MatPES-PBE-v2025.1-PES")


def get_backbone(name: str) -> Backbone:
    """The adapter of backbone ``name`` (``megnet``, ``m3gnet``, ``tensornet``, or a pretrained one such as
    ``tensornet-matpes-pbe``)."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}") from None


class NodeFeatures(nn.Module):
    """A MatGL backbone as a node-feature extractor: ``forward(g, state_attr) -> (N, F)`` final node features."""

    def __init__(self, backbone: str, model: MatGLModel):
        super().__init__()
        self.backbone = backbone
        self.model = model

    def forward(self, g: Any, state_attr: torch.Tensor | None = None) -> torch.Tensor:
        return get_backbone(self.backbone).features(self.model, g, state_attr)[0]
