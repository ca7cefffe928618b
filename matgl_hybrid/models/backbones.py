"""Backbone adapters: build a MatGL model and read its final node (and state) features from a graph batch."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from matgl.models import M3GNet, MEGNet, TensorNet
from matgl.models._core import MatGLModel


def _arg(model: MatGLModel, name: str) -> Any:
    """A constructor argument of a MatGL model: as given, else the signature's default."""
    if name in model._init_args:
        return model._init_args[name]
    return inspect.signature(type(model).__init__).parameters[name].default


def _from_feature_dict(model: MatGLModel, g: Any, state_attr: torch.Tensor | None, state: bool):
    model(g, state_attr=state_attr)
    last = model.feature_dict[f"gc_{_arg(model, 'nblocks')}"]
    return last["node_feat"], (last["state_feat"] if state else None)


def _tensornet_features(model: MatGLModel, g: Any, state_attr: torch.Tensor | None):
    return model.forward_features(g, state_attr=state_attr)["readout"], None


@dataclass(frozen=True)
class Backbone:
    """How to build one MatGL architecture and where its final features are.

    Attributes:
        cls: the MatGL model class.
        node_dim: ``node_dim(model) -> F``, width of the final node features.
        state_dim: ``state_dim(model) -> Fs``, width of the final state vector (0: none).
        features: ``features(model, g, state_attr) -> (node (N, F), state (B, Fs) or None)``.
    """

    cls: type[MatGLModel]
    node_dim: Callable[[MatGLModel], int]
    state_dim: Callable[[MatGLModel], int]
    features: Callable[[MatGLModel, Any, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]


def _megnet_state(m: MatGLModel) -> bool:
    return bool(_arg(m, "include_state"))


BACKBONES: dict[str, Backbone] = {
    "megnet": Backbone(
        MEGNet,
        node_dim=lambda m: _arg(m, "hidden_layer_sizes_conv")[-1],
        state_dim=lambda m: _arg(m, "hidden_layer_sizes_conv")[-1] if _megnet_state(m) else 0,
        features=lambda m, g, s: _from_feature_dict(m, g, s, _megnet_state(m)),
    ),
    "m3gnet": Backbone(
        M3GNet,
        node_dim=lambda m: _arg(m, "dim_node_embedding"),
        state_dim=lambda m: 0,
        features=lambda m, g, s: _from_feature_dict(m, g, s, False),
    ),
    "tensornet": Backbone(
        TensorNet,
        node_dim=lambda m: _arg(m, "units"),
        state_dim=lambda m: 0,
        features=_tensornet_features,
    ),
}


def get_backbone(name: str) -> Backbone:
    """The adapter of backbone ``name`` (``megnet``, ``m3gnet`` or ``tensornet``)."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}") from None
