"""Descriptor encoder and the fusions of a graph vector (B, F) with encoded descriptors (B, H)."""

from __future__ import annotations

import torch
from matgl.layers import ActivationFunction
from torch import nn


def make_activation(name: str) -> nn.Module:
    """MatGL's activation called ``name`` (``softplus2``, ``swish``, ``softplus``, ``sigmoid``, ``tanh``,
    ``softexp``)."""
    try:
        return ActivationFunction[name].value()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {[a.name for a in ActivationFunction]}") from None


class DescriptorEncoder(nn.Module):
    """BatchNorm → Linear → activation, as the descriptor branch of Gong et al.'s hybrid models: (B, D) -> (B, H)."""

    def __init__(self, in_dim: int, out_dim: int, activation: str = "softplus2"):
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm1d(in_dim), nn.Linear(in_dim, out_dim), make_activation(activation))
        self.out_dim = out_dim

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Descriptors (B, D) -> encoded descriptors (B, H)."""
        return self.net(descriptors)


class ConcatFusion(nn.Module):
    """Concatenation (the paper's method): (B, F), (B, H) -> (B, F + H)."""

    def __init__(self, graph_dim: int, descriptor_dim: int):
        super().__init__()
        self.out_dim = graph_dim + descriptor_dim

    def forward(self, graph: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Graph vectors (B, F) and encoded descriptors (B, H) -> their concatenation (B, F + H)."""
        return torch.cat([graph, descriptors], dim=-1)


class GatedFusion(nn.Module):
    """A learned per-feature gate between the projected graph vector and the descriptors: -> (B, H).

    ``out = g ⊙ W_p x + (1 - g) ⊙ d`` with ``g = σ(W_g [x, d])``.
    """

    def __init__(self, graph_dim: int, descriptor_dim: int):
        super().__init__()
        self.project = nn.Linear(graph_dim, descriptor_dim)
        self.gate = nn.Linear(graph_dim + descriptor_dim, descriptor_dim)
        self.out_dim = descriptor_dim

    def forward(self, graph: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Graph vectors (B, F) and encoded descriptors (B, H) -> their gated mix (B, H)."""
        gate = torch.sigmoid(self.gate(torch.cat([graph, descriptors], dim=-1)))
        return gate * self.project(graph) + (1 - gate) * descriptors


class FiLMFusion(nn.Module):
    """FiLM: the descriptors scale and shift the graph vector, ``x ⊙ (1 + γ(d)) + β(d)``: -> (B, F)."""

    def __init__(self, graph_dim: int, descriptor_dim: int):
        super().__init__()
        self.film = nn.Linear(descriptor_dim, 2 * graph_dim)
        nn.init.zeros_(self.film.bias)  # γ = β = 0 on average: starts close to the identity on the graph vector
        self.out_dim = graph_dim

    def forward(self, graph: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Graph vectors (B, F) and encoded descriptors (B, H) -> the graph vectors scaled and shifted (B, F)."""
        gamma, beta = self.film(descriptors).chunk(2, dim=-1)
        return graph * (1 + gamma) + beta


class GraphOnly(nn.Module):
    """The fusion of a model without descriptors: the graph vector as it is, (B, F) -> (B, F); ``descriptors`` are
    ignored (None, or whatever the batch carries)."""

    def __init__(self, graph_dim: int):
        super().__init__()
        self.out_dim = graph_dim

    def forward(self, graph: torch.Tensor, descriptors: torch.Tensor | None = None) -> torch.Tensor:
        """Graph vectors (B, F) -> the same (B, F); ``descriptors`` are ignored."""
        return graph


FUSIONS = {"concat": ConcatFusion, "gate": GatedFusion, "film": FiLMFusion}


def make_fusion(name: str, graph_dim: int, descriptor_dim: int) -> nn.Module:
    """Build the fusion called ``name`` (one of :data:`FUSIONS`)."""
    try:
        return FUSIONS[name](graph_dim, descriptor_dim)
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}; choose from {sorted(FUSIONS)}") from None
