"""Descriptors from a pretrained universal interatomic potential: CHGNet 0.3.0, whose weights ship in the chgnet wheel.

One CHGNet pass per structure (energy and magnetic moments, no forces) gives four groups:

- ``chgnet_crystal``: the 64-d crystal feature, CHGNet 0.3.0's sum over atoms of its last-layer atom features
  (``mlp_first``: a sum, so per cell: a supercell of the same crystal gives a multiple of it);
- ``chgnet_atoms``: the mean over atoms of the 64-d atom features before the last layer;
- ``chgnet_energy``: the predicted energy per atom (eV/atom) — close to a formation-energy label, so the
  ``chgnet_noenergy`` set leaves it out;
- ``chgnet_magmom``: the mean absolute predicted magnetic moment (μB).

Leakage: CHGNet was trained on MPtrj, the relaxation trajectories of nearly all Materials Project structures. It has
seen the structures (not the labels) of MP-derived tasks.

The weights are read with ``torch.load(weights_only=True)`` (no code runs). A group's key is what changes its values,
as for the matminer groups: its version names the chgnet model and the sha256 of its weights file, and the key adds
:func:`values_digest`, CHGNet's values on one reference structure rounded to 0.01 (the installed chgnet's code). Not
the installed chgnet version: a release that computes the same values with the same weights keeps every model. Not
the values to 8 digits either: CHGNet computes in float32, whose last digits differ between a CPU and a GPU (or two
CPUs), and a model trained on one must predict on the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matgl.ext.pymatgen import Structure2Graph

from matgl_hybrid.descriptors.groups import GROUP_VERSION, FeatureGroup, StructureContext, reference_structures
from matgl_hybrid.potentials import load_potential, shipped_potentials, weights_sha256

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: The CHGNet weights used: the universal potential of chgnet 0.4.x's wheel (MPtrj, BSD-style licence).
CHGNET_MODEL = "0.3.0"
#: ``pip install`` line that provides them.
CHGNET_REQUIREMENT = "chgnet==0.4.2"
WIDTH = 64


def chgnet_weights() -> Path:
    """The weights file of :data:`CHGNET_MODEL` inside the installed chgnet package."""
    spec = importlib.util.find_spec("chgnet")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the chgnet descriptor sets need chgnet: pip install {CHGNET_REQUIREMENT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "pretrained" / CHGNET_MODEL
    files = sorted(folder.glob("*.pth.tar"))
    if not files:
        raise FileNotFoundError(f"no CHGNet {CHGNET_MODEL} weights in {folder}: pip install {CHGNET_REQUIREMENT}")
    return files[0]


@cache
def weights_digest() -> str:
    """sha256 (12 hex digits) of the weights file."""
    return weights_reference()["sha256"][:12]


@cache
def chgnet_model() -> Any:
    """The pretrained CHGNet, loaded once per process (on the GPU when there is one), in eval mode."""
    from chgnet.model import CHGNet  # imported on first use: a heavy import, and an optional dependency

    state = torch.load(chgnet_weights(), map_location="cpu", weights_only=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its parameter count
        model = CHGNet.from_dict(state["model"])
    return model.to(device).eval()


def _prediction(ctx: StructureContext) -> dict[str, np.ndarray]:
    """CHGNet's energy, magnetic moments, atom and crystal features of ``ctx.structure`` (computed once)."""

    def predict(structure) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return chgnet_model().predict_structure(
                structure, task="em", return_atom_feas=True, return_crystal_feas=True
            )

    return ctx.shared("chgnet", predict)


@cache
def weights_reference() -> dict[str, str]:
    """What a model using CHGNet's groups references: the model, the package shipping its weights, their sha256."""
    digest = hashlib.sha256(chgnet_weights().read_bytes()).hexdigest()
    return {"model": f"CHGNet {CHGNET_MODEL}", "package": CHGNET_REQUIREMENT, "sha256": digest}


def reference_values() -> list[float]:
    """What :func:`values_digest` rounds: CHGNet's energy per atom, mean absolute magnetic moment and the norms of the
    crystal and mean atom features of the first reference structure (:func:`~.groups.reference_structures`)."""
    p = chgnet_model().predict_structure(
        reference_structures()[0], task="em", return_atom_feas=True, return_crystal_feas=True
    )
    summary = [np.ravel(p["e"])[0], np.abs(p["m"]).mean(), np.linalg.norm(p["crystal_fea"])]
    return [float(v) for v in (*summary, np.linalg.norm(p["atom_fea"].mean(axis=0)))]


@cache
def values_digest() -> str:
    """sha256 (12 hex digits) of :func:`reference_values` to 0.01, once per process; ``not-installed`` without chgnet.

    0.01 is far above float32's differences between devices (~1e-5 here) and below any change of the potential's
    code that matters; each value is at least 1e-3 from a rounding boundary (a test checks it).
    """
    try:
        with torch.no_grad():
            values = reference_values()
    except (ModuleNotFoundError, FileNotFoundError):
        return "not-installed"
    return hashlib.sha256(json.dumps([f"{v:.2f}" for v in values]).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PotentialGroup(FeatureGroup):
    """A group computed by a pretrained potential: keyed by its version (the weights' digest) and ``values_digest()``,
    the potential's values on a reference structure rounded to 0.01 (see :func:`values_digest`)."""

    values_digest: Callable[[], str] = field(default=lambda: "", repr=False, compare=False)

    @property
    def key(self) -> str:
        """``name@version:values_digest``, the matminer groups' format with the potential's own digest."""
        return f"{self.name}@{self.version}:{self.values_digest()}"


def _group(name: str, labels: tuple[str, ...], values) -> PotentialGroup:
    return PotentialGroup(
        name,
        labels,
        lambda ctx: values(_prediction(ctx)),
        version=_version(),
        check_values=False,  # float32: the 8-digit value digest would differ between devices (module docstring)
        requires=chgnet_weights,
        weights=weights_reference,
        values_digest=lambda: values_digest(),  # looked up at call time (tests replace it)
    )


def _version() -> str:
    """The groups' definition version: the bank's, the model name and the weights' digest."""
    try:
        digest = weights_digest()
    except (ModuleNotFoundError, FileNotFoundError):
        digest = "not-installed"
    return f"{GROUP_VERSION}-chgnet{CHGNET_MODEL}-{digest}"


UIP_GROUPS: dict[str, FeatureGroup] = {
    g.name: g
    for g in (
        _group("chgnet_crystal", tuple(f"chgnet_crystal_{i}" for i in range(WIDTH)), lambda p: p["crystal_fea"]),
        _group(
            "chgnet_atoms", tuple(f"chgnet_atom_mean_{i}" for i in range(WIDTH)), lambda p: p["atom_fea"].mean(axis=0)
        ),
        _group("chgnet_energy", ("chgnet_energy_per_atom",), lambda p: [float(np.ravel(p["e"])[0])]),
        _group("chgnet_magmom", ("chgnet_mean_abs_magmom",), lambda p: [float(np.abs(p["m"]).mean())]),
    )
}


#: MatGL's universal potential whose frozen per-atom features make the ``tensornet_matpes`` set (shipped in the
#: package, :mod:`matgl_hybrid.potentials`); its last layer's 128 features per atom, pooled by mean, max and std.
MATPES_POTENTIAL = "TensorNet-MatPES-PBE-v2025.1-PES"
MATPES_WIDTH = 128


@cache
def matpes_potential() -> Any:
    """The shipped TensorNet-MatPES potential, loaded (verified) once per process, in eval mode."""
    return load_potential(MATPES_POTENTIAL)


#: Held by whatever runs a forward pass of a potential loaded once per process (features, simulations): the pass
#: leaves its per-atom features in the model's one ``feature_dict``, which another thread's pass (Dask workers run
#: tasks on several threads) would replace before they are read.
POTENTIAL_LOCK = threading.RLock()


def matpes_atom_features(structure: Structure) -> np.ndarray:
    """(N, 128) per-atom features of the potential's last layer (its ``readout`` input) for one structure.

    The graph is built as MatGL's ``predict_structure`` builds it, then moved to the model's device (with MatGL's
    GPU kernels installed its graph builder works on CUDA, while the potential loads on the CPU)."""
    model = matpes_potential().model
    device = next(model.parameters()).device
    graph, lattice, state = Structure2Graph(element_types=model.element_types, cutoff=model.cutoff).get_graph(
        structure
    )
    graph, lattice = graph.to(device), lattice.to(device)
    graph.pbc_offshift = torch.matmul(graph.pbc_offset, lattice[0])
    graph.pos = graph.frac_coords @ lattice[0]
    with POTENTIAL_LOCK, torch.no_grad():
        model(g=graph, state_attr=torch.as_tensor(state, device=device))
        return model.feature_dict["readout"].detach().cpu().numpy().astype(float)


def _pooled(features: np.ndarray) -> list[float]:
    return [*features.mean(axis=0), *features.max(axis=0), *features.std(axis=0)]


@cache
def matpes_reference() -> dict[str, str]:
    """What a model using the ``tensornet_matpes`` group references: the potential and its weights' sha256."""
    sha = weights_sha256(MATPES_POTENTIAL)
    return {"model": MATPES_POTENTIAL, "package": "matgl-hybrid (matgl_hybrid/potentials, BSD-3 MatGL)", "sha256": sha}


@cache
def matpes_values_digest() -> str:
    """sha256 (12 hex digits) of the pooled features' norms on the first reference structure, to 0.01."""
    features = matpes_atom_features(reference_structures()[0])
    values = [np.linalg.norm(features.mean(axis=0)), np.linalg.norm(features.max(axis=0))]
    return hashlib.sha256(json.dumps([f"{v:.2f}" for v in values]).encode()).hexdigest()[:12]


MATPES_GROUP = PotentialGroup(
    "tensornet_matpes",
    tuple(f"tensornet_matpes_{stat}_{i}" for stat in ("mean", "max", "std") for i in range(MATPES_WIDTH)),
    lambda ctx: _pooled(ctx.shared("tensornet_matpes", matpes_atom_features)),
    # the shipped weights' pinned sha256 (load_potential refuses others); the key adds the values' digest
    version=f"{GROUP_VERSION}-{MATPES_POTENTIAL}-{shipped_potentials()[MATPES_POTENTIAL].weights_sha256[:12]}",
    check_values=False,
    weights=matpes_reference,
    values_digest=matpes_values_digest,
)
UIP_GROUPS[MATPES_GROUP.name] = MATPES_GROUP
