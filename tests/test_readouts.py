"""Readouts as PyG aggregations: shapes, gradients, intensive vs extensive, the extensive math, empty graphs."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.nn.aggr import Aggregation

from matgl_hybrid.layers import READOUTS, make_readout

PARAMETER_FREE = ("mean", "sum", "max", "extensive")


def _batch(n_nodes: tuple[int, ...] = (3, 5), dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(sum(n_nodes), dim, requires_grad=True)
    batch = torch.cat([torch.full((n,), i) for i, n in enumerate(n_nodes)])
    return x, batch


@pytest.mark.parametrize("name", sorted(READOUTS))
def test_readout_is_an_aggregation_with_shapes_and_gradients(name):
    x, batch = _batch()
    readout = make_readout(name, 6)
    assert isinstance(readout, Aggregation)
    out = readout(x, batch, dim_size=2)
    assert out.shape == (2, readout.out_dim)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(READOUTS))
def test_dim_size_defaults_from_the_index_and_ptr_matches_index(name):
    x, batch = _batch()
    readout = make_readout(name, 6)
    out = readout(x, batch, dim_size=2)
    torch.testing.assert_close(readout(x, batch), out)
    if name != "set2set":  # PyG's Set2Set needs an index
        torch.testing.assert_close(readout(x, ptr=torch.tensor([0, 3, 8])), out)


@pytest.mark.parametrize(("name", "out_dim"), [("attention", 6), ("set2set", 12)])
def test_learned_readouts_have_their_out_dim(name, out_dim):
    readout = make_readout(name, 6)
    assert readout.out_dim == out_dim
    assert len(list(readout.parameters())) > 0


@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_parameter_free_readouts_keep_an_empty_state_dict(name):
    assert make_readout(name, 6).state_dict() == {}


def test_mean_readout_cannot_count_atoms_but_sum_and_extensive_can():
    # The same local environment repeated: a 1-atom and a 4-atom cell of one crystal, constant node features.
    x = torch.ones(5, 4)
    batch = torch.tensor([0, 1, 1, 1, 1])
    mean = make_readout("mean", 4)(x, batch, dim_size=2)
    assert torch.equal(mean[0], mean[1])  # mean pooling sees no difference
    total = make_readout("sum", 4)(x, batch, dim_size=2)
    assert torch.equal(total[1], 4 * total[0])
    extensive = make_readout("extensive", 4)(x, batch, dim_size=2)
    assert extensive[1, -1] == pytest.approx(math.log(4))
    assert extensive[0, -1] == pytest.approx(0.0)


def test_supercell_mean_and_max_are_equal_and_sum_doubles():
    # Graph 0: a cell; graph 1: the same node set twice (a 2× supercell).
    torch.manual_seed(0)
    cell = torch.randn(3, 5)
    x = torch.cat([cell, cell, cell])
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1])
    mean = make_readout("mean", 5)(x, batch, dim_size=2)
    torch.testing.assert_close(mean[1], mean[0])
    maximum = make_readout("max", 5)(x, batch, dim_size=2)
    torch.testing.assert_close(maximum[1], maximum[0])
    total = make_readout("sum", 5)(x, batch, dim_size=2)
    torch.testing.assert_close(total[1], 2 * total[0])


def test_extensive_is_mean_sum_and_log_atom_count():
    x, batch = _batch(n_nodes=(2, 7, 4), dim=3)
    x = x.detach()
    out = make_readout("extensive", 3)(x, batch, dim_size=3)
    rows = []
    for i in range(3):
        nodes = x[batch == i]
        rows.append(torch.cat([nodes.mean(0), nodes.sum(0), torch.tensor([math.log(len(nodes))])]))
    torch.testing.assert_close(out, torch.stack(rows))


@pytest.mark.parametrize("name", sorted(READOUTS))
def test_empty_graph(name):
    # Graph 1 has no nodes (dim_size > max index + 1): as before the rewrite, pooled columns are zeros, finite for
    # all readouts, and extensive's log(n_atoms) is log(0) = -inf (a crystal always has at least one atom).
    x, _ = _batch(n_nodes=(5,), dim=4)
    batch = torch.tensor([0, 0, 2, 2, 2])
    readout = make_readout(name, 4)
    out = readout(x, batch, dim_size=3)
    assert out.shape == (3, readout.out_dim)
    assert torch.isfinite(out[[0, 2]]).all()
    if name == "extensive":
        assert torch.equal(out[1, :-1], torch.zeros(8))
        assert out[1, -1] == -math.inf
    elif name == "set2set":
        assert torch.isfinite(out[1]).all()
        assert torch.equal(out[1, 4:], torch.zeros(4))  # attention part r is empty; the LSTM query q is not
    else:
        assert torch.equal(out[1], torch.zeros(4))


def test_unknown_readout_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown readout 'median'; choose from \['attention', 'extensive'"):
        make_readout("median", 4)


def test_a_target_normalization_of_another_length_than_the_targets_is_refused():
    from matgl_hybrid.layers.targets import make_output

    with pytest.raises(ValueError, match="target_mean has 1 values for 3 targets"):
        make_output("regression", 3, [0.0], [1.0, 1.0, 1.0])
