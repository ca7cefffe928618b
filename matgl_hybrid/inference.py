"""The prediction path: structures -> validate -> descriptors (cache) -> graphs -> batches -> forward.

Every caller that runs a trained network over structures goes through here: ``HybridModel.predict`` and
``predict_structure``, ``HybridEnsemble.predict``, the probe's embeddings and permutation importance, and the
per-layer atom embeddings of self-supervised encoders. Positions are attached by MatGL's own
``ModelLightningModule.forward`` (fractional coordinates × lattice), as in training.

A model is used through what MatGL models and matgl-hybrid's models have: ``element_types``, ``cutoff``,
``descriptor_set`` / ``descriptor_version`` / ``descriptor_names`` (hybrids), ``members`` (ensembles) and
``feature_dict`` (per-layer features after a forward pass).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ase import Atoms
from matgl.graph.data import MGLDataset
from matgl.utils.training import ModelLightningModule
from pymatgen.core import Element, Lattice, Structure
from torch import nn

from matgl_hybrid.checkpoint import weight_dtype
from matgl_hybrid.data import (
    InvalidStructureError,
    SkippedEntry,
    StructureData,
    as_structure,
    input_paths,
    load,
    validate_structure,
)
from matgl_hybrid.descriptors import featurize, get_descriptor_set
from matgl_hybrid.descriptors.sets import DescriptorSet
from matgl_hybrid.errors import NonFinitePredictions
from matgl_hybrid.files import atomic_write_text, check_paths_distinct
from matgl_hybrid.graphs import build_dataset, has_edges, make_loader, no_edges_error


def entry_ids(n: int, ids: Sequence[Any] | None = None) -> list[str]:
    """``ids`` as strings, or ``"0" … "n-1"`` when None; the names used in error messages."""
    if ids is None:
        return [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} structures")
    return [str(i) for i in ids]


def check_structure(model: nn.Module, structure: Any, id: str) -> Structure:
    """``structure`` as a pymatgen Structure, if ``model`` can predict it; else :class:`InvalidStructureError`.

    It must be valid (:func:`~matgl_hybrid.data.validate_structure`), made of elements the model knows, and have
    at least one neighbour pair within the model's cutoff.
    """
    structure = as_structure(structure, id)
    validate_structure(structure, id, allowed_elements=model.element_types)
    if not has_edges(structure, model.cutoff):
        raise no_edges_error(id, model.cutoff)
    return structure


def split_predictable(model: nn.Module, dataset: StructureData) -> tuple[StructureData, list[SkippedEntry]]:
    """The entries of ``dataset`` that ``model`` can predict, and the others with the reason (see
    :func:`check_structure`); ``dataset.skipped`` (entries that did not load) come first in the list.

    Raises:
        ValueError: the model can predict none of them.
    """
    keep, skipped = [], list(dataset.skipped)
    for i, (structure, entry_id) in enumerate(zip(dataset.structures, dataset.ids, strict=True)):
        try:
            check_structure(model, structure, entry_id)
            keep.append(i)
        except InvalidStructureError as exc:
            skipped.append(SkippedEntry(entry_id, exc.reason))
    if not keep:
        first = skipped[-1]
        raise ValueError(
            f"the model can predict none of the {len(dataset)} entries (e.g. {first.id!r}: {first.reason})"
        )
    return dataset.subset(keep), skipped


def recorded_keys(model: nn.Module) -> dict[str, str] | None:
    """The keys (``name@version[:values digest]``) of the descriptor groups ``model`` was trained with, as its
    constructor arguments record them (``descriptor_keys``; an ensemble's in its members'); None if they do not."""
    first = getattr(model, "members", [model])[0]
    keys = getattr(first, "_init_args", {}).get("descriptor_keys")
    return keys if isinstance(keys, dict) else None


def group_differences(dset: DescriptorSet, recorded: dict[str, str]) -> list[str]:
    """What differs between the groups of ``dset`` as this installation computes them and their ``recorded`` keys:
    per group, its weights (the sha256 a group of pretrained weights references), its definition (its version) or
    its values (the digest of its values on the reference structures)."""
    found = []
    for group in dset.groups:
        old, new = recorded.get(group.name), group.key
        if old is None:
            found.append(f"group {group.name} is not among the model's")
        elif old.startswith(f"{group.name}@{group.version}"):
            if old != new:
                found.append(
                    f"group {group.name} gives other values (the model's digest {old.rpartition(':')[2]}, this "
                    f"installation's {new.rpartition(':')[2]})"
                )
        elif group.weights is not None and group.weights()["sha256"][:12] not in old:
            found.append(
                f"group {group.name} is computed with other weights ({group.weights()['model']} sha256 "
                f"{group.weights()['sha256'][:12]} here; the model's key: {old})"
            )
        else:
            found.append(f"group {group.name} has another definition (version {group.version}; the model's key: {old})")
    return found


def model_descriptors(
    model: nn.Module,
    structures: Sequence[Structure],
    ids: Sequence[str],
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
) -> np.ndarray | None:
    """The raw descriptors (n, D) a hybrid model takes (NaN where a featurizer failed); None without descriptors.

    Raises:
        ValueError: this installation computes another version of the model's descriptor set (its values would
            not mean what the model learned); the message names the groups that differ when the model records its
            groups' keys (:func:`recorded_keys`).
    """
    name = getattr(model, "descriptor_set", None)
    if name is None:
        return None
    dset = get_descriptor_set(name)
    if model.descriptor_version not in (dset.version, dset.legacy_version):
        recorded = recorded_keys(model)
        if recorded is None:
            what = "the model records no key per group (trained before matgl-hybrid did): which differs is unknown"
        else:
            what = "; ".join(group_differences(dset, recorded)) or "the same groups, other columns"
        raise ValueError(
            f"the model was trained with descriptor set {name!r} version {model.descriptor_version}, but this "
            f"installation computes version {dset.version}: {what}; its descriptors would not mean what the model "
            "learned: retrain it with this installation"
        )
    frame = featurize(structures, dset, n_jobs=n_jobs, cache_dir=cache_dir, ids=ids, progress=False)
    if tuple(frame.columns) != tuple(model.descriptor_names):
        raise ValueError(f"descriptor set {name!r} gives other columns than the model was trained on")
    return frame.to_numpy(dtype=np.float64)


@dataclass
class PreparedData:
    """Validated structures of one model's input, as graphs carrying their raw descriptors."""

    ids: list[str]
    structures: list[Structure]
    descriptors: np.ndarray | None
    dataset: MGLDataset


def prepare(
    model: nn.Module,
    structures: Sequence,
    ids: Sequence[Any] | None = None,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
) -> PreparedData:
    """Validate ``structures`` (pymatgen or ASE) for ``model``, compute its descriptors and build the graphs.

    Raises:
        InvalidStructureError: an invalid structure, an element the model does not know, or no neighbour
            within the cutoff; the message names the entry.
        ValueError: one structure rather than a sequence of them, or none.
    """
    if isinstance(structures, Structure | Atoms):  # len() would count its atoms
        raise ValueError("predict takes a list of structures: [structure], or predict_structure(structure)")
    if not len(structures):
        raise ValueError("no structure to predict")
    ids = entry_ids(len(structures), ids)
    structures = [check_structure(model, s, i) for s, i in zip(structures, ids, strict=True)]
    warn_untrained_elements(model, structures, ids)
    descriptors = model_descriptors(model, structures, ids, cache_dir, n_jobs)
    dataset = build_dataset(structures, model.element_types, model.cutoff, ids, descriptors)
    return PreparedData(ids, structures, descriptors, dataset)


def warn_untrained_elements(model: nn.Module, structures: Sequence[Structure], ids: Sequence[str]) -> None:
    """Warn, naming them, about structures with elements the model embeds but none of its training structures
    held (a model built with ``element_types="all"``): their embeddings kept their random initial values, so such a
    prediction is an extrapolation. Silent for a model that did not record its training elements."""
    recorded = [getattr(m, "trained_elements", None) for m in getattr(model, "members", [model])]
    if any(r is None for r in recorded):
        return
    trained = set().union(*recorded)  # an ensemble's members may each have trained on part of the data
    unseen = [(i, sorted({e.symbol for e in s.elements} - trained)) for s, i in zip(structures, ids, strict=True)]
    unseen = [(i, elements) for i, elements in unseen if elements]
    if unseen:
        elements = sorted({e for _, found in unseen for e in found})
        first = ", ".join(repr(i) for i, _ in unseen[:3]) + (" …" if len(unseen) > 3 else "")
        warnings.warn(
            f"{len(unseen)} of {len(ids)} structures ({first}) hold {', '.join(elements)}, in none of the model's "
            "training structures: their embeddings never trained, the predictions are extrapolations",
            stacklevel=3,
        )


def run(
    model: nn.Module, data: PreparedData | MGLDataset, read: Callable[[Any, Any], torch.Tensor], batch_size: int = 64
) -> torch.Tensor:
    """Run ``model`` in eval mode over the batches of ``data``; ``read(output, batch graph)`` picks what to keep.
    Each module of ``model`` is left in the train or eval mode it was found in.

    Returns:
        The kept tensors of all batches, concatenated along the first axis, on the CPU.
    """
    dataset = data.dataset if isinstance(data, PreparedData) else data
    runner = ModelLightningModule(model=model)  # MatGL's forward: positions from fractional coordinates × lattice
    device, dtype = next(model.parameters()).device, weight_dtype(model)
    modes = [(m, m.training) for m in model.modules()]  # restored as found (a wrapper is born training)
    model.eval()
    kept = []
    try:
        with torch.no_grad():
            for g, lattice, state_attr, _ in make_loader(dataset, batch_size):
                # MatGL's collate gives float32: a model of another precision takes its own (as Lightning's precision
                # plugins cast a training batch), graph attributes too (float32 × bf16 would promote to float32);
                # the raw descriptors stay float64, which the model standardizes in
                g = g.to(device)
                floating = [(k, v) for k, v in g if isinstance(v, torch.Tensor) and v.is_floating_point()]
                for key, value in floating:
                    if key != "descriptor":
                        g[key] = value.to(dtype)
                lattice = lattice.to(device, dtype)
                state_attr = state_attr.to(device, dtype) if state_attr.is_floating_point() else state_attr.to(device)
                out = read(runner(g=g, lat=lattice, state_attr=state_attr), g).cpu()
                kept.append(out.float() if out.dtype in (torch.bfloat16, torch.float16) else out)  # numpy has no bf16
    finally:
        for module, training in modes:
            module.training = training
    return torch.cat(kept)


class MemberOutputs(nn.Module):
    """Every member's prediction of a batch: (K, B, T), for ensemble means and spreads (K = 1 for one model)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, g: Any, state_attr: torch.Tensor | None = None) -> torch.Tensor:
        """A batch of B graphs -> (K, B, T): each member's predictions, one row per graph."""
        return torch.stack([m(g, state_attr=state_attr).reshape(g.num_graphs, -1) for m in self.members])


def model_name(model: nn.Module) -> str:
    """``model`` in a message: its class and targets (``HybridModel of band_gap``)."""
    targets = getattr(getattr(model, "members", [model])[0], "target_names", ())
    return f"{type(model).__name__} of {', '.join(targets) or 'its target'}"


def predict(
    model: nn.Module,
    structures: Sequence,
    ids: Sequence[Any] | None = None,
    *,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
    return_std: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Predictions of a model or ensemble in the target's units: (n,) for one target, (n, T) for several.

    Args:
        model: a :class:`~matgl_hybrid.models.HybridModel`, or an ensemble with ``members``.
        cache_dir: descriptor cache folder; None computes without a cache.
        return_std: also return the standard deviation over the ensemble's members (zeros for one model).

    Raises:
        InvalidStructureError: see :func:`prepare`.
        ValueError: a prediction (of any member) is not finite; the message names the model and the first ids. Or
            the model has no targets (an encoder from ``pretrain``), or ``batch_size`` is below 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:  # before featurizing
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    first = getattr(model, "members", [model])[0]
    if not getattr(first, "target_names", None):
        raise ValueError(
            f"a {type(first).__name__} without targets (a `pretrain` encoder?) predicts no property: use it through "
            "ssl:<path>:<layers> descriptors or TrainSpec.node_embeddings"
        )
    data = prepare(model, structures, ids, cache_dir, n_jobs)
    members = MemberOutputs(list(getattr(model, "members", [model])))
    outputs = run(members, data, lambda out, g: out.transpose(0, 1), batch_size).numpy().astype(np.float64)
    mean, std = outputs.mean(axis=1), outputs.std(axis=1)  # (n, K, T) -> (n, T)
    bad = [i for i, row in zip(data.ids, np.isfinite(outputs).all(axis=(1, 2)), strict=True) if not row]
    if bad:
        raise NonFinitePredictions(
            f"{model_name(model)} gave non-finite predictions for {len(bad)} of {len(data.ids)} structures (first: "
            f"{', '.join(bad[:5])}): its weights or target normalization are broken"
        )
    if mean.shape[1] == 1:
        mean, std = mean[:, 0], std[:, 0]
    return (mean, std) if return_std else mean


@dataclass
class FilePredictions:
    """What :func:`predict_file` wrote.

    Attributes:
        frame: ``id, prediction`` (+ ``std`` over an ensemble's members), one row per predicted entry; for several
            targets ``prediction_<target>`` (and ``std_<target>``) per target.
        skipped: the entries left out (``skip_invalid``), with their reasons.
        listing: the file that lists them (``<out>.skipped.csv``), when ``skip_invalid`` or an earlier run's
            listing was emptied.
        quantity: what the predictions are, in words: ``log10_K_VRH (log10 GPa)``, ``probabilities of is_metal``.
    """

    frame: pd.DataFrame
    skipped: list[SkippedEntry]
    listing: Path | None = None
    quantity: str = ""


def skipped_listing(out: str | Path) -> Path:
    """Where :func:`predict_file` lists the entries it left out of ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".skipped.csv")


def prediction_outputs(out: str | Path, skip_invalid: bool = False) -> dict[str, Path]:
    """The files :func:`predict_file` writes: ``{"out": out}``, and ``{"skipped listing": <out>.skipped.csv}`` with
    ``skip_invalid`` or where an earlier run left one (emptied then, so that it describes these predictions)."""
    listing = skipped_listing(out)
    return {"out": Path(out), **({"skipped listing": listing} if skip_invalid or listing.exists() else {})}


def predict_file(
    model: nn.Module,
    source: str | Path,
    out: str | Path,
    *,
    skip_invalid: bool = False,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
) -> FilePredictions:
    """Predict the structures of ``source`` (anything :func:`matgl_hybrid.data.load` reads) into the CSV ``out``:
    ``id,prediction`` (+ ``std`` for an ensemble), or ``prediction_<target>`` (and ``std_<target>``) per target.

    With ``skip_invalid``, entries the model cannot predict (unreadable, invalid, unknown elements, no edges within
    the cutoff) are left out and listed in ``<out>.skipped.csv`` (``id,reason``; written even when empty, and
    emptied by a run without ``skip_invalid`` where an earlier run left one, so that it never describes other
    predictions than those in ``out``).
    """
    outputs = prediction_outputs(out, skip_invalid)
    if isinstance(source, str | Path):  # writing the predictions over the input would destroy it
        check_paths_distinct(outputs, input_paths("source", source))
    dataset = load(source, skip_invalid=skip_invalid)
    skipped = list(dataset.skipped)
    if skip_invalid:
        try:
            dataset, skipped = split_predictable(model, dataset)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    try:
        mean, std = predict(
            model,
            dataset.structures,
            dataset.ids,
            batch_size=batch_size,
            cache_dir=cache_dir,
            n_jobs=n_jobs,
            return_std=True,
        )
    except InvalidStructureError as exc:  # only here can the user leave the entry out
        raise InvalidStructureError(
            exc.id, f"{exc.reason}; --skip-invalid / skip_invalid=True predicts the other entries and lists this one"
        ) from None
    frame = pd.DataFrame({"id": dataset.ids})
    names, units = model.target_names, getattr(model, "target_units", None)  # an ensemble's are its members'
    quantity = ", ".join(names) + (f" ({units})" if units else "")
    if getattr(model, "task_type", "regression") == "classification":
        quantity = f"probabilities of {quantity}"
    columns = ["prediction"] if mean.ndim == 1 else [f"prediction_{name}" for name in names]
    for k, column in enumerate(columns):  # one column per target (and its spread over an ensemble's members)
        frame[column] = mean if mean.ndim == 1 else mean[:, k]
        if hasattr(model, "members"):
            frame["std" + column.removeprefix("prediction")] = std if std.ndim == 1 else std[:, k]
    atomic_write_text(out, frame.to_csv(index=False))
    result = FilePredictions(frame, skipped, quantity=quantity)
    if "skipped listing" in outputs:
        result.listing = outputs["skipped listing"]
        listing = pd.DataFrame([vars(e) for e in skipped], columns=["id", "reason"])
        atomic_write_text(result.listing, listing.to_csv(index=False))
    return result


def embed(
    model: nn.Module,
    structures: Sequence,
    ids: Sequence[Any] | None = None,
    tap: str = "graph",
    *,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
) -> np.ndarray:
    """Graph-level vectors of a hybrid model's ``feature_dict[tap]`` (``graph``: after the readout; ``fused``:
    after descriptor fusion): (n, F)."""
    if tap not in ("graph", "fused"):
        raise ValueError(f"tap must be 'graph' or 'fused', got {tap!r}")
    data = prepare(model, structures, ids, cache_dir, n_jobs)
    vectors = run(model, data, lambda out, g: graph_features(model, g, tap), batch_size)
    return vectors.numpy().astype(np.float64)


def graph_features(model: nn.Module, g: Any, tap: str = "graph") -> torch.Tensor:
    """After a forward pass of ``model`` on batch ``g``: its per-structure vectors ``feature_dict[tap]``, (B, F).

    Raises:
        ValueError: the model has no such vector (a native backbone with an extensive head sums per-atom outputs).
    """
    if model.feature_dict.get(tap) is None:
        raise ValueError(
            f"this {type(model).__name__} has no per-structure {tap!r} vector (a native backbone with an extensive "
            "head sums per-atom outputs): embed a hybrid, or an intensive native model"
        )
    return model.feature_dict[tap].reshape(g.num_graphs, -1)


def layer_keys(encoder: nn.Module) -> list[str]:
    """``feature_dict`` keys of NE0 (the initial embedding) and NE1 … NEk (after each block) of a MatGL model."""
    return ["embedding", *sorted((k for k in encoder.feature_dict if k.startswith("gc_")), key=lambda k: int(k[3:]))]


def layer_node_features(encoder: nn.Module, layers: Sequence[int]) -> torch.Tensor:
    """After a forward pass of ``encoder``: its node features of ``layers`` (0 = NE0), concatenated: (N, D)."""
    keys = layer_keys(encoder)
    missing = [i for i in layers if not 0 <= i < len(keys)]  # -1 would silently be the last
    if missing:
        raise ValueError(f"layers {missing} do not exist: the encoder has NE0 … NE{len(keys) - 1}")
    return torch.cat([encoder.feature_dict[keys[i]]["node_feat"] for i in layers], dim=-1)


def node_embeddings(
    encoder: nn.Module, structures: Sequence, layers: Sequence[int], batch_size: int = 64
) -> list[np.ndarray]:
    """Concatenated NE vectors of ``layers`` of a MatGL encoder (MEGNet, M3GNet) for every atom: one (n_atoms, D)
    array per structure."""
    dataset = build_dataset(list(structures), encoder.element_types, encoder.cutoff, entry_ids(len(structures)))
    features = run(encoder, dataset, lambda out, g: layer_node_features(encoder, layers), batch_size).numpy()
    counts = [len(s) for s in structures]
    return np.split(features, np.cumsum(counts)[:-1])


def material_embeddings(
    encoder: nn.Module, structures: Sequence, layers: Sequence[int], pool: str = "sum"
) -> np.ndarray:
    """One vector per structure: the sum (Kong et al.'s choice) or mean of its atoms' NE vectors: (n, D)."""
    if pool not in ("sum", "mean"):
        raise ValueError(f"pool must be 'sum' or 'mean', got {pool!r}")
    per_atom = node_embeddings(encoder, structures, layers)
    return np.stack([a.sum(axis=0) if pool == "sum" else a.mean(axis=0) for a in per_atom])


def embedding_width(encoder: nn.Module, layers: Sequence[int]) -> int:
    """Width D of the concatenated NE vectors of ``layers`` (measured on a one-atom crystal)."""
    element = next(e for e in encoder.element_types if Element.is_valid_symbol(e))
    edge = min(3.0, 0.9 * float(encoder.cutoff))  # its periodic images within the cutoff (2.5 Å pretraining too)
    probe = Structure(Lattice.cubic(edge), [element], [[0, 0, 0]])
    return node_embeddings(encoder, [probe], layers)[0].shape[1]
