"""Readouts: PyG aggregations of node features (N, F) by batch index (N,) into one vector per graph (B, F').

Each readout is a :class:`torch_geometric.nn.aggr.Aggregation` called as
``readout(x, index=None, ptr=None, dim_size=None, dim=-2)`` (Set2Set needs ``index``; the package always passes
it) and exposes ``out_dim`` (F'); :func:`make_readout` resolves one by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from matgl.layers import Set2SetReadOut
from torch import nn
from torch_geometric.nn.aggr import (
    Aggregation,
    AttentionalAggregation,
    MaxAggregation,
    MeanAggregation,
    MultiAggregation,
    SumAggregation,
)


class MeanReadout(MeanAggregation):
    """Mean of the node features of each graph, (N, F) -> (B, F).

    Mean pooling is intensive: two cells of the same crystal (1× and 2× supercell) give the same vector, so a
    model using it cannot know how many atoms a cell has (Gong et al. 2023).
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim


class SumReadout(SumAggregation):
    """Sum of the node features of each graph, (N, F) -> (B, F). Sum pooling is extensive."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim


class MaxReadout(MaxAggregation):
    """Feature-wise maximum of the node features of each graph, (N, F) -> (B, F). Max pooling is intensive."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim


class ExtensiveReadout(MultiAggregation):
    """Extensivity-aware readout: mean ⊕ sum ⊕ log(n_atoms), (N, F) -> (B, 2F + 1).

    The mean carries the intensive local chemistry, the sum and log(n_atoms) how much of it the cell holds, so the
    head can learn per-cell (extensive) as well as per-atom (intensive) properties.
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__(["mean", "sum"])
        self.out_dim = 2 * in_dim + 1

    def forward(
        self,
        x: torch.Tensor,
        index: torch.Tensor | None = None,
        ptr: torch.Tensor | None = None,
        dim_size: int | None = None,
        dim: int = -2,
    ) -> torch.Tensor:
        """Node features (N, F) grouped by batch index (N,) -> mean ⊕ sum ⊕ log(n_atoms) per graph (B, 2F + 1)."""
        n_atoms = self.reduce(torch.ones_like(x[..., :1]), index, ptr, dim_size, dim, reduce="sum")
        return torch.cat([super().forward(x, index, ptr, dim_size, dim), torch.log(n_atoms)], dim=-1)


class AttentionReadout(AttentionalAggregation):
    """Softmax-attention weighted mean of node features (linear gate), (N, F) -> (B, F)."""

    def __init__(self, in_dim: int) -> None:
        super().__init__(gate_nn=nn.Linear(in_dim, 1))
        self.out_dim = in_dim


class Set2SetReadout(Set2SetReadOut):
    """MatGL's ``Set2SetReadOut`` (LSTM attention, as in MEGNet), (N, F) -> (B, 2F)."""

    def __init__(self, in_dim: int, n_iters: int = 2, n_layers: int = 1) -> None:
        super().__init__(in_dim, n_iters=n_iters, n_layers=n_layers)
        self.out_dim = 2 * in_dim


READOUTS: dict[str, Callable[[int], Aggregation]] = {
    "mean": MeanReadout,
    "sum": SumReadout,
    "max": MaxReadout,
    "extensive": ExtensiveReadout,
    "attention": AttentionReadout,
    "set2set": Set2SetReadout,
}


def make_readout(name: str, in_dim: int) -> Aggregation:
    """Build the readout called ``name`` (one of :data:`READOUTS`) for ``in_dim`` node features."""
    try:
        return READOUTS[name](in_dim)
    except KeyError:
        raise ValueError(f"unknown readout {name!r}; choose from {sorted(READOUTS)}") from None
