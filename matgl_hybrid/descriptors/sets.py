"""Named descriptor sets (``gong28``, ``composition``, ``lattice``), user descriptors, and their combination."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import matminer
import numpy as np
import pandas as pd
from matminer.featurizers.base import BaseFeaturizer

from matgl_hybrid.data import read_csv
from matgl_hybrid.descriptors.groups import GROUPS, FeatureGroup, group_for_featurizer
from matgl_hybrid.descriptors.uip import UIP_GROUPS
from matgl_hybrid.errors import UnknownNameError


@dataclass(frozen=True)
class UserDescriptors:
    """Descriptors the user already has, aligned with the structures by position or by id.

    Build with :meth:`from_csv`, :meth:`from_frame` or :meth:`from_array` (chemprop's ``--features_path``).

    Attributes:
        frame: (n, k) numeric values; its index holds ids when ``by_id``.
        by_id: align rows to structures by id (else by position).
    """

    frame: pd.DataFrame
    by_id: bool = False

    @classmethod
    def from_csv(
        cls, path: str | Path, id_column: str | None = "id", columns: Sequence[str] | None = None
    ) -> UserDescriptors:
        """Read a CSV; rows align by ``id_column`` (or by position when it is None), ids read as text (leading zeros
        kept, as the structures' loaders keep them); errors name the file."""
        frame = read_csv(path, dtype={id_column: str} if id_column is not None else None)
        try:
            return cls.from_frame(frame, columns=columns, id_column=id_column)
        except ValueError as exc:  # UnknownNameError too
            raise type(exc)(f"{path}: {exc}") from None

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, columns: Sequence[str] | None = None, id_column: str | None = None
    ) -> UserDescriptors:
        """Take ``columns`` (default: all but ``id_column``) of a DataFrame; column labels are taken as text
        (``pd.DataFrame(array)``'s 0, 1, … become "0", "1", …)."""
        frame = frame.rename(columns=str)
        if id_column is not None:
            if id_column not in frame.columns:
                raise UnknownNameError(f"id column {id_column!r} not in {list(frame.columns)}")
            frame = frame.set_index(frame[id_column].astype(str)).drop(columns=[id_column])
            if frame.index.has_duplicates:  # which row would a structure take?
                raise ValueError(f"user descriptors: duplicate id {frame.index[frame.index.duplicated()][0]!r}")
        if frame.columns.has_duplicates:
            raise ValueError(f"user descriptors: duplicate column {frame.columns[frame.columns.duplicated()][0]!r}")
        if columns is not None:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise UnknownNameError(f"user descriptor columns {missing} not in {list(frame.columns)}")
            frame = frame[list(columns)]
        bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ValueError(f"user descriptor columns must be numeric; not numeric: {bad}")
        return cls(frame.astype(float), by_id=id_column is not None)

    @classmethod
    def from_array(cls, array: np.ndarray, names: Sequence[str] | None = None) -> UserDescriptors:
        """An (n, k) array aligned by position; columns named ``user_0`` … unless ``names`` are given."""
        array = np.asarray(array, dtype=float)
        if array.ndim != 2:
            raise ValueError(f"user descriptors must be a 2-d array (n_structures, n_features), got {array.shape}")
        names = list(names) if names is not None else [f"user_{i}" for i in range(array.shape[1])]
        return cls(pd.DataFrame(array, columns=names), by_id=False)

    @property
    def labels(self) -> tuple[str, ...]:
        """Column names."""
        return tuple(str(c) for c in self.frame.columns)

    def align(self, n: int, ids: Sequence[str] | None) -> pd.DataFrame:
        """Rows for ``n`` structures (by ``ids`` when aligned by id), with a 0..n-1 index."""
        if self.by_id:
            if ids is None:
                raise ValueError("these user descriptors are keyed by id: pass ids= to featurize")
            missing = [i for i in ids if i not in self.frame.index]
            if missing:
                raise UnknownNameError(f"no user descriptors for ids {missing[:5]}{' …' if len(missing) > 5 else ''}")
            rows = self.frame.loc[list(ids)]
        else:
            if len(self.frame) != n:
                raise ValueError(f"user descriptors have {len(self.frame)} rows but there are {n} structures")
            rows = self.frame
        return rows.reset_index(drop=True)


@dataclass(frozen=True)
class DescriptorSet:
    """An ordered list of descriptor columns and the groups that compute them.

    Attributes:
        name: e.g. ``"gong28+composition"``.
        groups: feature groups to compute (each once).
        columns: output columns in order; a subset of the groups' labels plus the user columns.
        user: precomputed user descriptors appended after the computed columns.
        description: the set in words, for model descriptions (e.g. info.json of a Matbench submission).
    """

    name: str
    groups: tuple[FeatureGroup, ...]
    columns: tuple[str, ...]
    user: tuple[UserDescriptors, ...] = ()
    description: str = field(default="", compare=False)

    def __add__(self, other: DescriptorSet) -> DescriptorSet:
        """Both sets' groups (each once) and columns, in order.

        Raises:
            ValueError: a user column has the name of another column, or two groups compute a column of one name
                (either would silently take the other's place).
        """
        added = [u for u in other.user if all(u is not mine for mine in self.user)]  # the same object: once
        mine, theirs = {c for u in self.user for c in u.labels}, {c for u in added for c in u.labels}
        shared = {c for u in other.user if all(u is not a for a in added) for c in u.labels}
        # every label a group computes, shown or not (lattice's symmetry group computes spacegroup_num and shows
        # crystal_system_int): a user column of such a name would be replaced by the computed one
        computed = {c for g in self.groups for c in g.labels} | set(self.columns)
        other_computed = {c for g in other.groups for c in g.labels} | set(other.columns)
        if clash := sorted((theirs & computed) | (mine & (other_computed - shared))):
            raise ValueError(f"user descriptor column {clash[0]!r} has the name of another descriptor column: "
                             "rename it")  # fmt: skip
        groups = {g.name: g for g in (*self.groups, *other.groups)}
        made_by: dict[str, str] = {}
        for group in groups.values():
            for label in group.labels:
                if made_by.setdefault(label, group.name) != group.name:  # one column would silently drop the other
                    raise ValueError(f"descriptor column {label!r} is computed by both {made_by[label]} and "
                                     f"{group.name}: leave one of them out")  # fmt: skip
        columns = dict.fromkeys((*self.columns, *other.columns))
        name = f"{self.name}+{other.name}"
        description = "; ".join(d for d in (self.description, other.description) if d)
        return DescriptorSet(name, tuple(groups.values()), tuple(columns), self.user + tuple(added), description)

    def referenced_weights(self) -> list[dict[str, str]]:
        """The pretrained weights the set's groups are computed with (``{"model", "package", "sha256"}``, each once):
        a model trained on the set references them, it does not embed them."""
        found = {}
        for group in self.groups:
            if group.weights is not None:
                reference = dict(group.weights())  # a copy: the group's answer is cached
                found[reference["sha256"]] = reference
        return list(found.values())

    @property
    def version(self) -> str:
        """Hash of what determines the values: groups (definition versions, value digests) and the column order."""
        text = "|".join([*(g.key for g in self.groups), *self.columns])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def legacy_version(self) -> str:
        """The version matgl-hybrid 0.x gave this set before value digests (in format-1 checkpoints).

        It named the installed matminer version in every group key, and the packing fraction shared the density
        group; with the same matminer installed, the values are those of :attr:`version`, but for the density
        group of a structure whose packing fraction fails (0.x: NaN for density and volume per atom, imputed;
        now their values). Being without value digests, it cannot tell a later change of values.
        """
        keys = [
            f"{g.name}@2-matminer{matminer.__version__}" if g.check_values else g.key
            for g in self.groups
            if g.name != "packing_fraction"
        ]
        return hashlib.sha256("|".join([*keys, *self.columns]).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.columns)


def _named(name: str, columns: dict[str, Sequence[str] | None], description: str) -> DescriptorSet:
    """A set from group names, each with the columns it contributes (None: all its labels)."""
    known = {**GROUPS, **UIP_GROUPS}
    groups = tuple(known[g] for g in columns)
    cols = [c for g, sel in columns.items() for c in (known[g].labels if sel is None else sel)]
    return DescriptorSet(name, groups, tuple(cols), description=description)


_CHGNET = (
    "the universal potential pretrained on MPtrj, the Materials Project relaxation trajectories, weights from the "
    "chgnet PyPI wheel"
)


#: The named sets. ``gong28`` is Gong et al. (Sci. Adv. 2023), in the paper's order.
NAMED_SETS: dict[str, DescriptorSet] = {
    "gong28": _named(
        "gong28",
        {
            "symmetry": None,
            "complexity": None,
            "heterogeneity": None,
            "bond_length": None,
            "bond_angle": None,
            "coordination": None,
            "density": None,
            "packing_fraction": None,
            "lattice": None,
            "natoms": None,
        },
        "the 28 global structure descriptors of Gong et al. (2023)",
    ),
    "composition": _named(
        "composition", {"magpie": None}, "Magpie composition statistics (matminer's ElementProperty)"
    ),
    # CHGNet 0.3.0 (descriptors/uip.py): its crystal and mean atom features, energy per atom and mean |magmom|;
    # chgnet_noenergy leaves out the energy, close to a formation-energy label.
    "chgnet": _named(
        "chgnet",
        dict.fromkeys(("chgnet_crystal", "chgnet_atoms", "chgnet_energy", "chgnet_magmom")),
        f"frozen CHGNet 0.3.0 features (crystal and mean atom features, energy per atom and mean |magmom|; {_CHGNET})",
    ),
    "chgnet_noenergy": _named(
        "chgnet_noenergy",
        dict.fromkeys(("chgnet_crystal", "chgnet_atoms", "chgnet_magmom")),
        f"frozen CHGNet 0.3.0 features (crystal and mean atom features and mean |magmom|, without its energy; "
        f"{_CHGNET})",
    ),
    "tensornet_matpes": _named(
        "tensornet_matpes",
        {"tensornet_matpes": None},
        "frozen per-atom features of MatGL's TensorNet-MatPES-PBE potential (last layer, 128 per atom) pooled by "
        "mean, max and std (weights shipped in matgl-hybrid, BSD-3; MatPES samples MD from Materials Project "
        "structures)",
    ),
    "lattice": _named(
        "lattice",
        {"lattice": None, "volume": None, "natoms": None, "symmetry": ("crystal_system_int",)},
        "the lattice parameters, volume, number of atoms and crystal system",
    ),
}

#: The prefixed sets in words (their makers run models, so a description must not build them).
PREFIXED_DESCRIPTIONS = {
    "sim:chgnet": (
        "quantities simulated with CHGNet 0.3.0 through matcalc (relaxed energy and volume change, EOS bulk modulus "
        "and its derivative, Γ-point phonon frequencies)"
    ),
    "sim:chgnet:full": (
        "quantities simulated with CHGNet 0.3.0 through matcalc (relaxed energy and volume change, EOS bulk modulus "
        "and its derivative, Γ-point phonon frequencies; elastic moduli and anisotropy; last phonon DOS peak, heat "
        "capacity and internal energy at 300 K)"
    ),
}


def describe_descriptor_set(name: str) -> str:
    """The descriptor set ``name`` (``+``-joined names) in words, part by part, without building it (a part with
    no description by its name)."""
    described = []
    for part in name.split("+"):
        named = NAMED_SETS[part].description if part in NAMED_SETS else ""
        described.append(named or PREFIXED_DESCRIPTIONS.get(part) or f"the '{part}' descriptors")
    return "; ".join(described)


DescriptorSpec = str | DescriptorSet | BaseFeaturizer | UserDescriptors | Sequence

#: Entry-point group of the sets named ``<prefix>:<argument>`` (``ssl:``, ``sim:``): each entry point, named by its
#: prefix, is a function ``(name) -> DescriptorSet``. Their makers run models and live in the layers that own them
#: (pyproject.toml registers this package's own); another package can register a prefix of its own the same way.
PREFIXED_SETS = "matgl_hybrid.descriptor_sets"


@functools.cache
def prefixed_set_makers() -> dict[str, object]:
    """``{prefix: entry point}`` of the registered ``<prefix>:<argument>`` sets (loaded only when used); read once
    per process (reading the installed packages' metadata takes ~10 ms)."""
    return {ep.name: ep for ep in entry_points(group=PREFIXED_SETS)}


def get_descriptor_set(spec: DescriptorSpec) -> DescriptorSet:
    """Resolve a descriptor set.

    Args:
        spec: a name or ``+``-joined names (``"gong28+composition"``), a :class:`DescriptorSet`, a matminer
            featurizer, :class:`UserDescriptors`, or a list of any of these (combined in order).
    """
    if isinstance(spec, DescriptorSet):
        return spec
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split("+")]
        makers = prefixed_set_makers()
        unknown = [p for p in parts if p not in NAMED_SETS and p.partition(":")[0] not in makers]
        if unknown:
            raise UnknownNameError(
                f"unknown descriptor set(s) {unknown}; known: {sorted(NAMED_SETS)} and the prefixed "
                f"{', '.join(f'{m}:…' for m in sorted(makers))} (e.g. ssl:<encoder>:<layers>, sim:chgnet[:full])"
            )
        sets = [NAMED_SETS[p] if p in NAMED_SETS else makers[p.partition(":")[0]].load()(p) for p in parts]
        dset = _combine(sets)
        for group in dset.groups:
            if group.requires is not None:
                group.requires()  # e.g. chgnet installed: one clear line before any structure is featurized
        return dset
    if isinstance(spec, BaseFeaturizer):
        group = group_for_featurizer(spec)
        return DescriptorSet(group.name, (group,), group.labels)
    if isinstance(spec, UserDescriptors):
        return DescriptorSet("user", (), spec.labels, (spec,))
    if isinstance(spec, Sequence) and spec:
        return _combine([get_descriptor_set(s) for s in spec])
    raise TypeError(f"cannot make a descriptor set from {spec!r}")


def _combine(sets: list[DescriptorSet]) -> DescriptorSet:
    result = sets[0]
    for s in sets[1:]:
        result = result + s
    return result
