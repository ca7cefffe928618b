"""Feature groups: the unit of computation, caching and error reporting of the descriptor bank.

A group computes a fixed list of named features of one structure. Groups that wrap a matminer featurizer
return exactly its values; the Voronoi groups return matminer's values from one shared tessellation
(:mod:`matgl_hybrid.descriptors.voronoi`) instead of one tessellation per site and featurizer. A group is also the
unit of failure (a group that raises gives NaN for all its features), so features that can fail on their own are
groups of their own (e.g. the packing fraction, which needs atomic radii, apart from density and volume per atom).

A group's cache key is its name, the version of its definition (:data:`GROUP_VERSION`) and a digest of its values
on a few reference structures shipped with the package, computed once per process: an upgrade of matminer or
pymatgen that leaves the values alone changes nothing (saved models keep predicting, the cache stays valid); one
that changes them changes the key, so that stale cached values are never mixed with new ones and a model trained
on other values is refused.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
from matminer.featurizers.base import BaseFeaturizer
from matminer.featurizers.composition import ElementProperty
from matminer.featurizers.structure import (
    DensityFeatures,
    GlobalSymmetryFeatures,
    StructuralComplexity,
)
from matminer.featurizers.utils.stats import PropertyStats
from pymatgen.core import Structure

from matgl_hybrid.descriptors.voronoi import SiteFaces, analyse

#: Bump when a group's definition changes: it is part of every cache key.
GROUP_VERSION = "3"
#: Structures every group is computed on to detect a change of values (a library upgrade), with their sources.
REFERENCE_STRUCTURES = Path(__file__).with_name("reference_structures.json")


class StructureContext:
    """One structure plus the analyses its groups share (computed lazily, at most once)."""

    def __init__(self, structure: Structure):
        self.structure = structure
        self._shared: dict[str, tuple[Any, Exception | None]] = {}

    def shared(self, name: str, compute: Callable[[Structure], Any]) -> Any:
        """``compute(structure)``, computed once per structure for all the groups that ask for ``name``.

        A failure is shared too: every group asking for ``name`` after it gets the same exception, without
        computing again (a relaxation that did not converge is not run once per group).
        """
        if name not in self._shared:
            try:
                self._shared[name] = (compute(self.structure), None)
            except Exception as exc:
                self._shared[name] = (None, exc)
        value, failure = self._shared[name]
        if failure is not None:
            raise failure
        return value

    @cached_property
    def voronoi(self) -> list[SiteFaces]:
        """Voronoi faces of every site (matminer's ``VoronoiNN()`` settings)."""
        return analyse(self.structure)


@dataclass(frozen=True)
class FeatureGroup:
    """A named list of features computed together from one structure.

    Attributes:
        name: unique name, used in cache keys and error reports.
        labels: feature names, exactly as matminer labels them.
        compute: ``compute(context) -> sequence of len(labels) floats``.
        version: the version of the group's definition; change it whenever the definition changes.
        check_values: add the digest of the values on the reference structures to the key (:func:`value_digest`);
            off for groups whose version already pins their values (a learned encoder's weights hash).
        requires: called when a set with this group is resolved; raises (one clear line) when what the group needs
            is not installed, before any structure is featurized.
        weights: for a group computed by pretrained weights that ship elsewhere (a universal potential's):
            ``weights() -> {"model", "package", "sha256"}``, what a model trained on the group references (by name
            and digest) instead of embedding.
    """

    name: str
    labels: tuple[str, ...]
    compute: Callable[[StructureContext], Sequence[float]] = field(repr=False, compare=False)
    version: str = GROUP_VERSION
    check_values: bool = True
    requires: Callable[[], object] | None = field(default=None, repr=False, compare=False)
    weights: Callable[[], dict[str, str]] | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Cache key of this group's values: name, definition version and (by default) the value digest."""
        key = f"{self.name}@{self.version}"
        return f"{key}:{value_digest(self)}" if self.check_values else key


@cache
def reference_structures() -> tuple[Structure, ...]:
    """The structures of :data:`REFERENCE_STRUCTURES` (five small crystals, one with no packing fraction)."""
    return tuple(Structure.from_dict(entry["structure"]) for entry in json.loads(REFERENCE_STRUCTURES.read_text()))


#: Failures that say nothing about the structure (a time budget hit on a busy machine, memory, a package or file
#: missing where the group ran, e.g. on a Dask worker, a shipped potential that does not verify there): computed
#: again by the next call rather than served from the cache; any other recorded failure is final for its version.
TRANSIENT_ERRORS = ("TimeoutError", "MemoryError", "OutOfMemoryError", "ImportError", "ModuleNotFoundError",
                    "CheckpointError",
                    "FileNotFoundError", "PermissionError", "OSError", "ConnectionError", "BrokenPipeError",
                    "AcceleratorError", "ConnectionResetError", "ConnectionAbortedError", "ConnectionRefusedError",
                    "BlockingIOError", "InterruptedError")  # fmt: skip
#: Words of a failure's message that mark it transient whatever its type (torch raises RuntimeError for a busy or
#: lost GPU and for running out of its memory, on the CPU "DefaultCPUAllocator: can't allocate memory").
TRANSIENT_WORDS = ("out of memory", "cuda", "no space left on device", "allocate memory")


def is_transient(error: str) -> bool:
    """Whether a recorded failure (``"<Type>: <message>"``) says nothing of the structure (:data:`TRANSIENT_ERRORS`,
    :data:`TRANSIENT_WORDS`): computed again by the next call rather than served from the cache."""
    kind, _, message = error.partition(":")
    return kind in TRANSIENT_ERRORS or any(word in message.lower() for word in TRANSIENT_WORDS)


@cache
def value_digest(group: FeatureGroup) -> str:
    """sha256 (12 hex digits) of ``group``'s values on the reference structures, to 8 significant digits.

    A structure on which the group raises contributes the exception's type, unless the failure is transient
    (:data:`TRANSIENT_ERRORS`): that is raised, since it says nothing of the group's values and would put them under
    a key of its own. Computed once per process.
    """
    parts = []
    for structure in reference_structures():
        try:
            parts.append(",".join(f"{float(v):.8g}" for v in group.compute(StructureContext(structure))))
        except Exception as exc:  # a failure is part of the behaviour being fingerprinted
            if is_transient(f"{type(exc).__name__}: {exc}"):
                raise
            parts.append(f"raises {type(exc).__name__}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _site_stats(values: Sequence[float]) -> list[float]:
    """``SiteStatsFingerprint(stats=("mean", "std_dev"))`` of per-site values."""
    return [PropertyStats.mean(values), PropertyStats.std_dev(values)]


def _bonded_sites(ctx: StructureContext) -> Iterator[tuple[SiteFaces, np.ndarray, np.ndarray]]:
    """Per site: its Voronoi faces, the mask of faces that are bonds (positive solid angle) and their weights."""
    for faces in ctx.voronoi:
        mask, weights = faces.neighbours("solid_angle")
        if not mask.any():
            raise IndexError("Input structure has no bonds.")
        yield faces, mask, weights


def _bond_lengths(ctx: StructureContext) -> list[float]:
    """SiteStatsFingerprint(AverageBondLength(VoronoiNN())): solid-angle weighted mean bond length (Å)."""
    return _site_stats(
        [PropertyStats.mean(np.linalg.norm(f.vectors[mask], axis=1), w) for f, mask, w in _bonded_sites(ctx)]
    )


def _bond_angles(ctx: StructureContext) -> list[float]:
    """SiteStatsFingerprint(AverageBondAngle(VoronoiNN())): mean over neighbours of the smallest bond angle (rad)."""
    per_site = []
    for faces, mask, _ in _bonded_sites(ctx):
        v = faces.vectors[mask]
        norms = np.linalg.norm(v, axis=1)
        cos = (v @ v.T) / np.outer(norms, norms)
        cos = np.where(np.abs(cos) > 1, np.round(cos, 5), cos)  # matminer rounds when arccos would be NaN
        angles = np.arccos(cos)
        np.fill_diagonal(angles, np.nan)
        with warnings.catch_warnings():  # a site with one neighbour has no angle: NaN, as in matminer
            warnings.simplefilter("ignore", RuntimeWarning)
            per_site.append(PropertyStats.mean(np.nanmin(angles, axis=1)))
    return _site_stats(per_site)


def _coordination(ctx: StructureContext) -> list[float]:
    """SiteStatsFingerprint(CoordinationNumber(VoronoiNN())): number of Voronoi faces with a positive solid angle."""
    return _site_stats([int(faces.neighbours("solid_angle")[0].sum()) for faces in ctx.voronoi])


HETEROGENEITY_STATS = ("maximum", "range", "mean", "avg_dev")


def _heterogeneity(ctx: StructureContext) -> list[float]:
    """StructuralHeterogeneity(weight="area", stats=HETEROGENEITY_STATS), from the shared tessellation.

    Equal to matminer's values for the same structure with every site wrapped into the unit cell. For a site
    with a fractional coordinate outside [0, 1) (exactly 1.0, or -5e-18 after an ASE round trip), matminer's
    all-sites tessellation wraps the centre but places its neighbours relative to the unwrapped site, and then
    raises "No Voronoi neighbors found" or describes the wrong cells (3 % of de Jong's structures, 5 % of
    flla's). These values, like the crystal, do not depend on how a site's coordinates are written.
    """
    n = len(ctx.voronoi)
    mean_bond_lengths, bond_length_var, cell_volumes = np.zeros(n), np.zeros(n), np.zeros(n)
    for i, faces in enumerate(ctx.voronoi):
        mask, weights = faces.neighbours("area")
        lengths = faces.face_dist[mask] * 2
        mean_bond_lengths[i] = PropertyStats.mean(lengths, weights)
        bond_length_var[i] = PropertyStats.avg_dev(lengths, weights) / mean_bond_lengths[i]
        cell_volumes[i] = sum(faces.volume[mask].tolist())
    mean_bond_lengths /= mean_bond_lengths.mean()
    features = [PropertyStats.avg_dev(mean_bond_lengths), mean_bond_lengths.max(), mean_bond_lengths.min()]
    features += [PropertyStats.calc_stat(bond_length_var, stat) for stat in HETEROGENEITY_STATS]
    features.append(PropertyStats.avg_dev(cell_volumes) / np.mean(cell_volumes))
    return features


def matminer_group(featurizer: BaseFeaturizer, name: str | None = None, on: str = "structure") -> FeatureGroup:
    """Wrap a matminer featurizer as a group; its values are matminer's own.

    Args:
        featurizer: a matminer structure or composition featurizer.
        name: group name; defaults to the class name plus a hash of its parameters.
        on: "structure" or "composition" (what ``featurizer.featurize`` takes).
    """
    if on not in ("structure", "composition"):
        raise ValueError(f"on must be 'structure' or 'composition', got {on!r}")
    labels = tuple(featurizer.feature_labels())
    # the labels too: a featurizer fitted on other data (PartialRadialDistributionFunction on other elements) has
    # the same parameters, and values that mean other things
    params = json.dumps({"params": _canonical(featurizer.get_params(deep=False)), "labels": labels}, sort_keys=True)
    digest = hashlib.sha256(params.encode()).hexdigest()[:10]
    if on == "structure":

        def compute(ctx: StructureContext) -> Sequence[float]:
            return featurizer.featurize(ctx.structure)
    else:

        def compute(ctx: StructureContext) -> Sequence[float]:
            return featurizer.featurize(ctx.structure.composition)

    return FeatureGroup(
        name=name or f"{type(featurizer).__name__}-{digest}",
        labels=labels,
        compute=compute,
    )


def _canonical(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON values, the same in every process: objects by class and state, recursively (not by
    ``repr``, which can hold a memory address, as MagpieData's, or leave settings out, as ``VoronoiNN(tol=0.5)``'s);
    an object's ``*_dir`` and ``*_path`` attributes are left out (where a package's data was installed, as
    MagpieData's ``data_dir``, is no setting: with it no other environment would find the values)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = [_canonical(v, depth + 1) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if isinstance(value, dict):
        return {str(k): _canonical(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    state = value.get_params(deep=False) if hasattr(value, "get_params") else getattr(value, "__dict__", None)
    if state is None or depth > 8:  # a builtin without state, or nesting too deep to be settings
        return name
    return {
        "@class": name,
        **{str(k): _canonical(v, depth + 1) for k, v in sorted(state.items(), key=lambda kv: str(kv[0]))
           if not str(k).endswith(("_dir", "_path"))},
    }  # fmt: skip


def group_for_featurizer(featurizer: BaseFeaturizer) -> FeatureGroup:
    """A group for a user-given matminer featurizer (structure or composition featurizer)."""
    # by the matminer classes it derives from (SiteStatsFingerprint lives in matminer.featurizers.structure.sites)
    modules = [cls.__module__ for cls in type(featurizer).__mro__]
    if any(m.startswith("matminer.featurizers.composition") for m in modules):
        return matminer_group(featurizer, on="composition")
    if any(m.startswith("matminer.featurizers.site") for m in modules):
        raise TypeError(
            f"{type(featurizer).__name__} is a site featurizer; wrap it in "
            "matminer.featurizers.structure.SiteStatsFingerprint to get structure-level values"
        )
    return matminer_group(featurizer, on="structure")


_SITE_STATS = ("mean", "std_dev")

GROUPS: dict[str, FeatureGroup] = {
    g.name: g
    for g in (
        matminer_group(
            GlobalSymmetryFeatures(desired_features=["spacegroup_num", "crystal_system_int"]), name="symmetry"
        ),
        matminer_group(StructuralComplexity(), name="complexity"),
        FeatureGroup(
            "heterogeneity",
            (
                "mean absolute deviation in relative bond length",
                "max relative bond length",
                "min relative bond length",
                *(f"{stat} neighbor distance variation" for stat in HETEROGENEITY_STATS),
                "mean absolute deviation in relative cell size",
            ),
            _heterogeneity,
        ),
        FeatureGroup("bond_length", tuple(f"{s} Average bond length" for s in _SITE_STATS), _bond_lengths),
        FeatureGroup("bond_angle", tuple(f"{s} Average bond angle" for s in _SITE_STATS), _bond_angles),
        FeatureGroup("coordination", tuple(f"{s} CN_VoronoiNN" for s in _SITE_STATS), _coordination),
        matminer_group(DensityFeatures(desired_features=["density", "vpa"]), name="density"),
        matminer_group(DensityFeatures(desired_features=["packing fraction"]), name="packing_fraction"),
        FeatureGroup(
            "lattice",
            ("a", "b", "c", "alpha", "beta", "gamma"),
            lambda ctx: [*ctx.structure.lattice.abc, *ctx.structure.lattice.angles],
        ),
        FeatureGroup("volume", ("volume",), lambda ctx: [ctx.structure.volume]),
        FeatureGroup("natoms", ("natoms",), lambda ctx: [len(ctx.structure)]),
        matminer_group(ElementProperty.from_preset("magpie"), name="magpie", on="composition"),
    )
}
