"""``TrainSpec``: everything that defines a training run (model and training settings), JSON-able."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.files import read_json

#: The losses MatGL's ``ModelLightningModule`` knows (it falls back to L1 for any other name).
LOSSES = ("l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss")
#: Field names of matgl-hybrid 0.1, renamed to match :class:`~matgl_hybrid.models.HybridModel`'s arguments; the old
#: names still work (keyword arguments, attributes, JSON keys), with a ``DeprecationWarning``.
RENAMED = {"descriptors": "descriptor_set", "elements": "element_types", "task": "task_type"}


def _warn_renamed(old: str, stacklevel: int = 4) -> None:
    warnings.warn(f"TrainSpec.{old} is now TrainSpec.{RENAMED[old]}", DeprecationWarning, stacklevel=stacklevel)


@dataclass
class TrainSpec:
    """Everything that defines a training run: the model and how it is trained (the CLI's and config files' format).

    Model: ``backbone`` (megnet | m3gnet | tensornet), ``backbone_kwargs``, ``cutoff`` (Å), ``readout``
    (mean | sum | max | extensive | attention | set2set | native: the backbone's own, as MatGL ships it),
    ``descriptor_set`` (a descriptor set name such as ``gong28`` or ``gong28+composition``; None for the plain
    backbone), ``fusion`` (concat | gate | film),
    ``descriptor_dim``, ``head_hidden``, ``activation``, ``task_type`` (regression | classification: 0/1 targets,
    probabilities out, binary cross-entropy loss), ``element_types`` (training: the elements of the training data,
    so that any other element is refused at prediction; all: MatGL's 89 default elements, for test sets that may
    hold elements the training data lack, as in Matbench; or a list of element symbols). The model's arguments have
    the same names; the 0.1 names ``descriptors``, ``task`` and ``elements`` still work, deprecated.

    Training: ``max_epochs``, ``batch_size``, ``lr``, ``decay_alpha`` (cosine decay to lr × decay_alpha),
    ``loss`` (l1_loss | mse_loss | huber_loss | smooth_l1_loss), ``val_fraction``, ``patience`` (early stopping
    on validation MAE, epochs), ``seed``, ``accelerator`` / ``devices`` (Lightning's; "auto" uses a GPU when
    present, several devices train with DDP), ``n_jobs`` (descriptor workers), ``progress``.

    The defaults are the recommended recipe, chosen on inner validation of training folds only
    (``benchmarks/select_recipe.py``, ``benchmarks/results/recipe_selection.md``): hybrid MEGNet, extensive readout,
    concatenation of ``gong28+composition+chgnet_noenergy`` (the structure descriptors of Gong et al., Magpie
    composition statistics and CHGNet 0.3.0's crystal and atom features without its energy), lr 2e-3 with cosine
    decay, batch 32, at most 120 epochs, early stopping with patience 25.
    """

    backbone: str = "megnet"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    cutoff: float = 5.0
    readout: str = "extensive"
    descriptor_set: str | None = "gong28+composition+chgnet_noenergy"
    fusion: str = "concat"
    descriptor_dim: int = 64
    head_hidden: tuple[int, ...] = (64, 64)
    activation: str = "softplus2"
    task_type: str = "regression"
    element_types: str | list[str] = "training"
    node_embeddings: str | None = None
    max_epochs: int = 120
    batch_size: int = 32
    lr: float = 2e-3
    decay_alpha: float = 0.01
    loss: str = "l1_loss"
    val_fraction: float = 0.1
    patience: int = 25
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    n_jobs: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.descriptor_set in ("none", "None", ""):
            self.descriptor_set = None
        if not isinstance(self.element_types, str):
            self.element_types = [str(e) for e in self.element_types]
        self.head_hidden = tuple(self.head_hidden)
        self.validate()

    def validate(self) -> None:
        """Refuse settings that cannot train, before any work (MatGL would silently train on L1 for any loss name)."""
        problems = []
        if isinstance(self.element_types, str) and self.element_types not in ("training", "all"):
            problems.append(f"element_types must be 'training', 'all' or a list of symbols, got {self.element_types!r}")
        if self.task_type not in ("regression", "classification"):
            problems.append(f"task_type must be 'regression' or 'classification', got {self.task_type!r}")
        if self.loss not in LOSSES:
            problems.append(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        for name in ("max_epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))

    @classmethod
    def from_json(cls, path: str | Path) -> TrainSpec:
        """Read a spec from a JSON file; unknown keys are an error (they would be silently ignored otherwise)."""
        values = read_json(path)
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object of TrainSpec fields, got {type(values).__name__}")
        return cls.from_dict(values, source=str(path))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "TrainSpec") -> TrainSpec:
        """A spec from a dict of its fields (e.g. a training record's ``spec``); 0.1 names are mapped, with a warning.

        Raises:
            UnknownNameError: a key that is no field (it would be silently ignored otherwise), named with ``source``.
        """
        values = dict(values)
        for old, new in RENAMED.items():
            if old in values:
                _warn_renamed(old)
                values.setdefault(new, values.pop(old))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UnknownNameError(f"unknown keys in {source}: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def upgrade_fingerprint(fingerprint: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A run fingerprint (fold record, checkpoint folder) stored by 0.1, its settings under today's names, so that
    the work it stands for is reused; any other fingerprint as it is."""
    if not fingerprint or not isinstance(fingerprint.get("spec"), Mapping):
        return fingerprint
    spec = {RENAMED.get(k, k): v for k, v in fingerprint["spec"].items()}
    return {**fingerprint, "spec": spec}


def _renamed_property(old: str) -> property:
    def get(self: TrainSpec) -> Any:
        _warn_renamed(old)
        return getattr(self, RENAMED[old])

    def set_(self: TrainSpec, value: Any) -> None:
        _warn_renamed(old)
        setattr(self, RENAMED[old], value)

    return property(get, set_, doc=f"Deprecated name of :attr:`{RENAMED[old]}`.")


def _accept_renamed(init: Any) -> Any:
    """``TrainSpec.__init__`` that also takes the 0.1 names as keywords (not fields: ``dataclasses.replace`` and
    ``fields`` see today's names only)."""

    @functools.wraps(init)
    def __init__(self: TrainSpec, *args: Any, **kwargs: Any) -> None:
        for old, new in RENAMED.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"TrainSpec got both {old!r} and its new name {new!r}")
                _warn_renamed(old, stacklevel=3)
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    return __init__


TrainSpec.__init__ = _accept_renamed(TrainSpec.__init__)
for _old in RENAMED:
    setattr(TrainSpec, _old, _renamed_property(_old))
