"""Readouts: node features (N, F) + batch index (N,) -> one vector per graph (B, F')."""

from __future__ import annotations

import torch
from matgl.layers import Set2SetReadOut
from torch import nn
from torch_geometric.nn.aggr import AttentionalAggregation
from torch_geometric.utils import scatter


class PoolingReadout(nn.Module):
    """Mean, sum or max of the node features of each graph: (N, F) -> (B, F).

    Mean pooling is intensive: two cells of the same crystal (1× and 2× supercell) give the same vector, so a
    model using it cannot know how many atoms a cell has (Gong et al. 2023). Sum pooling is extensive.
    """

    def __init__(self, in_dim: int, reduce: str = "mean"):
        super().__init__()
        if reduce not in ("mean", "sum", "max"):
            raise ValueError(f"reduce must be mean, sum or max, got {reduce!r}")
        self.reduce = reduce
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        return scatter(x, batch, dim=0, dim_size=num_graphs, reduce=self.reduce)


class ExtensiveReadout(nn.Module):
    """Extensivity-aware readout: mean ⊕ sum ⊕ log(n_atoms), (N, F) -> (B, 2F + 1).

    The mean carries the intensive local chemistry, the sum and log(n_atoms) how much of it the cell holds, so the
    head can learn per-cell (extensive) as well as per-atom (intensive) properties.
    """

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = 2 * in_dim + 1

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        total = scatter(x, batch, dim=0, dim_size=num_graphs, reduce="sum")
        n_atoms = scatter(torch.ones_like(batch, dtype=x.dtype), batch, dim=0, dim_size=num_graphs, reduce="sum")
        return torch.cat([total / n_atoms.clamp(min=1).unsqueeze(-1), total, torch.log(n_atoms).unsqueeze(-1)], dim=-1)


class AttentionReadout(nn.Module):
    """Softmax-attention weighted mean of node features, (N, F) -> (B, F) (PyG ``AttentionalAggregation``)."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.aggregation = AttentionalAggregation(gate_nn=nn.Linear(in_dim, 1))
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        return self.aggregation(x, batch, dim_size=num_graphs)


class Set2SetReadout(nn.Module):
    """MatGL's ``Set2SetReadOut`` (LSTM attention, as in MEGNet), (N, F) -> (B, 2F)."""

    def __init__(self, in_dim: int, n_iters: int = 2, n_layers: int = 1):
        super().__init__()
        self.set2set = Set2SetReadOut(in_dim, n_iters=n_iters, n_layers=n_layers)
        self.out_dim = 2 * in_dim

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        return self.set2set(x, batch, dim_size=num_graphs)


READOUTS = {
    "mean": lambda d: PoolingReadout(d, "mean"),
    "sum": lambda d: PoolingReadout(d, "sum"),
    "max": lambda d: PoolingReadout(d, "max"),
    "extensive": ExtensiveReadout,
    "attention": AttentionReadout,
    "set2set": Set2SetReadout,
}


def make_readout(name: str, in_dim: int) -> nn.Module:
    """Build the readout called ``name`` (one of :data:`READOUTS`) for ``in_dim`` node features."""
    try:
        return READOUTS[name](in_dim)
    except KeyError:
        raise ValueError(f"unknown readout {name!r}; choose from {sorted(READOUTS)}") from None
