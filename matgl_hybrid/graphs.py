"""Graph datasets: MatGL graphs of the structures with each graph's descriptor vector attached as ``g.descriptor``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from matgl.ext.pymatgen import Structure2Graph
from matgl.graph._compute import compute_pair_vector_and_distance
from matgl.graph.data import MGLDataset, collate_fn_graph
from pymatgen.core import Structure
from torch.utils.data import DataLoader, Sampler

from matgl_hybrid.data import InvalidStructureError, SkippedEntry, StructureData
from matgl_hybrid.quiet import quiet_pyg

__all__ = [
    "bond_lengths",
    "build_dataset",
    "collate_fn_graph",
    "drop_unconnected",
    "has_edges",
    "make_loader",
    "no_edges_error",
    "set_descriptors",
    "swapped_attributes",
]


def build_dataset(
    structures: Sequence[Structure],
    element_types: Sequence[str],
    cutoff: float,
    ids: Sequence[str],
    descriptors: np.ndarray | None = None,
    targets: np.ndarray | None = None,
) -> MGLDataset:
    """An ``MGLDataset`` of the structures' graphs, each carrying ``descriptor`` (1, D) when descriptors are given.

    Args:
        structures: validated structures.
        element_types: the model's element list (node type order).
        cutoff: graph cutoff radius (Å).
        ids: structure ids, named in errors.
        descriptors: (n, D) raw descriptor values (NaN where a featurizer failed), or None.
        targets: (n,) or (n, T) target values in their units; zeros when None (prediction).

    Raises:
        InvalidStructureError: a structure has no neighbour pair within ``cutoff`` (an empty graph).
    """
    targets = np.zeros(len(structures)) if targets is None else np.asarray(targets, dtype=float)
    # MGLDataset makes a folder even when it caches nothing; PyG prints "Processing... Done!" for it
    with tempfile.TemporaryDirectory() as root, quiet_pyg():
        dataset = MGLDataset(
            structures=list(structures),
            labels={"y": targets.tolist()},
            converter=Structure2Graph(element_types=tuple(element_types), cutoff=cutoff),
            save_cache=False,
            root=root,
        )
    for graph, structure_id in zip(dataset.graphs, ids, strict=True):
        if graph.edge_index.shape[1] == 0:
            raise no_edges_error(structure_id, cutoff)
    if descriptors is not None:
        set_descriptors(dataset, descriptors)
    return dataset


def set_descriptors(dataset: MGLDataset, descriptors: np.ndarray) -> None:
    """Attach row ``i`` of ``descriptors`` (n, D), raw values (NaN allowed), to graph ``i`` as ``descriptor`` (1, D)."""
    values = torch.as_tensor(np.asarray(descriptors, dtype=np.float64))  # float64: the model standardizes them
    for graph, row in zip(dataset.graphs, values, strict=True):
        graph.descriptor = row.unsqueeze(0)


def has_edges(structure: Structure, cutoff: float) -> bool:
    """Whether any atom of ``structure`` has a neighbour within ``cutoff`` (Å), i.e. its graph is not empty."""
    return len(structure.get_neighbor_list(cutoff)[0]) > 0


def no_edges_error(structure_id: str, cutoff: float) -> InvalidStructureError:
    """The error of a structure whose graph at ``cutoff`` (Å) has no edges (no graph network can read it)."""
    return InvalidStructureError(
        structure_id, f"no atom has a neighbour within the cutoff of {cutoff} Å: the graph has no edges"
    )


def drop_unconnected(data: StructureData, cutoff: float) -> StructureData:
    """``data`` without the structures whose graph at ``cutoff`` (Å) has no edges; they are added to ``skipped``.

    Returns ``data`` itself when every graph has edges.
    """
    keep, skipped = [], list(data.skipped)
    for i, (structure, structure_id) in enumerate(zip(data.structures, data.ids, strict=True)):
        if has_edges(structure, cutoff):
            keep.append(i)
        else:
            skipped.append(SkippedEntry(structure_id, no_edges_error(structure_id, cutoff).reason))
    if len(keep) == len(data):
        return data
    connected = data.subset(keep)
    connected.skipped = skipped
    return connected


def make_loader(
    dataset,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    collate_fn: Callable = collate_fn_graph,
) -> DataLoader:
    """A DataLoader that batches with MatGL's ``collate_fn_graph`` -> ``(g, lattice, state_attr, labels)`` (or with
    ``collate_fn``, e.g. pairs of views)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_fn,
        generator=generator,
        drop_last=drop_last,
        sampler=sampler,
    )


@contextmanager
def swapped_attributes(g: Any, **values: Any) -> Iterator[None]:
    """Run a forward pass with some of ``g``'s attributes replaced (masked atoms' node types, another encoder's
    types, a graph without some bonds; None removes one for the pass); after it, each is as it was, and one ``g``
    lacked is removed again, so that what the pass wrote, such as MatGL's ``pbc_offshift``, does not outlive it."""
    missing = object()
    originals = {name: getattr(g, name, missing) for name in values}
    for name, value in values.items():
        setattr(g, name, value)
    try:
        yield
    finally:
        for name, original in originals.items():
            if original is missing:
                if hasattr(g, name):
                    delattr(g, name)
            else:
                setattr(g, name, original)


def bond_lengths(g: Any, lattice: torch.Tensor) -> torch.Tensor:
    """Length (Å) of every edge of ``g``, (E,), from its fractional coordinates, periodic image offsets and the
    lattices (B, 3, 3) or (3, 3), as MatGL's Lightning module places atoms before a forward pass."""
    lattice = lattice.unsqueeze(0) if lattice.dim() == 2 else lattice
    batch = getattr(g, "batch", None)
    if batch is None:
        batch = torch.zeros(g.num_nodes, dtype=torch.long, device=g.frac_coords.device)
    pos = (g.frac_coords.unsqueeze(-1) * lattice[batch]).sum(dim=1)
    offshift = (g.pbc_offset.unsqueeze(-1) * lattice[batch[g.edge_index[0]]]).sum(dim=1)
    return compute_pair_vector_and_distance(pos, g.edge_index, offshift)[1]
