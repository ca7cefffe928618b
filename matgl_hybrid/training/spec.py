"""``TrainSpec``: everything that defines a training run (model and training settings), JSON-able."""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from matgl.layers import ActivationFunction
from pymatgen.core import Element

from matgl_hybrid.descriptors import NAMED_SETS
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.files import read_json
from matgl_hybrid.fingerprint import without_runtime_fields
from matgl_hybrid.layers import FUSIONS, READOUTS
from matgl_hybrid.models.backbones import BACKBONES

#: The losses MatGL's ``ModelLightningModule`` knows (it falls back to L1 for any other name).
LOSSES = ("l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss")
#: What ``TrainSpec.freeze`` may keep fixed.
FREEZE = ("none", "embedding", "backbone")
LR_SCHEDULES = ("matgl", "cosine")
#: Fields added after records were stored, with the value that reproduces those records (a fingerprint without
#: them is read with these, so the work it stands for is reused).
ADDED = {
    "freeze": "none",
    "layer_decay": 1.0,
    "weight_decay": 0.0,
    "warmup_epochs": 0,
    "gradient_clip": None,
    "ema_decay": None,
    "clip_descriptors": False,
    "lr_schedule": "matgl",
}
#: The JSON values that each type annotation of a TrainSpec field accepts (a part not listed accepts any; a bool is
#: no number).
_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
    "tuple[int, ...]": (list, tuple),
    "list[str]": (list, tuple),
    "list[int]": (list, tuple),
    "dict[str, Any]": (dict,),
}
#: Field names of matgl-hybrid 0.1, renamed to match :class:`~matgl_hybrid.models.HybridModel`'s arguments; the old
#: names still work (keyword arguments, attributes, JSON keys), with a ``DeprecationWarning``.
RENAMED = {"descriptors": "descriptor_set", "elements": "element_types", "task": "task_type"}


def option(kind: type, meaning: str, flag: str | None = None, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A field's metadata that makes it a command-line flag: its type, what it means, the flag's name (default: the
    field's) and its allowed values. ``TrainSpec``'s flags and their help are generated from it."""
    return {"option": {"kind": kind, "meaning": meaning, "flag": flag, "choices": choices}}


def _warn_renamed(old: str, stacklevel: int = 4) -> None:
    warnings.warn(f"TrainSpec.{old} is now TrainSpec.{RENAMED[old]}", DeprecationWarning, stacklevel=stacklevel)


@dataclass
class TrainSpec:
    """Everything that defines a training run: the model and how it is trained (the CLI's and config files' format).

    Model: ``backbone`` (megnet | m3gnet | tensornet), ``backbone_kwargs``, ``cutoff`` (Å), ``readout``
    (mean | sum | max | extensive | attention | set2set | native: the backbone's own, as MatGL ships it),
    ``descriptor_set`` (a descriptor set name such as ``gong28`` or ``gong28+composition``; None for the plain
    backbone), ``fusion`` (concat | gate | film), ``clip_descriptors`` (clip standardized descriptors to their
    training range; specs stored before it existed read False, as they ran),
    ``descriptor_dim``, ``head_hidden``, ``activation``, ``task_type`` (regression | classification: 0/1 targets,
    probabilities out, binary cross-entropy loss), ``element_types`` (training: the elements of the data ``fit`` is
    given, its validation split included, so that any other element is refused at prediction; all: MatGL's 89
    default elements, for test sets that may hold elements the training data lack, as in Matbench; or a list of
    element symbols). The model's arguments have
    the same names; the 0.1 names ``descriptors``, ``task`` and ``elements`` still work, deprecated.

    Training: ``max_epochs``, ``batch_size``, ``lr``, ``decay_alpha`` (cosine decay to lr × decay_alpha, see
    ``lr_schedule`` below),
    ``loss`` (l1_loss | mse_loss | huber_loss | smooth_l1_loss), ``val_fraction``, ``patience`` (early stopping
    on validation MAE, epochs), ``seed``, ``accelerator`` / ``devices`` (Lightning's; "auto" uses a CUDA GPU
    when present, else the CPU, not Apple's MPS; several devices train with DDP), ``n_jobs`` (descriptor workers),
    ``progress``.

    ``lr_schedule``: ``matgl`` (the default) is MatGL's ``ModelLightningModule`` schedule: its cosine runs over
    ``max_epochs`` × batches-per-epoch steps but Lightning steps it once per epoch, so the learning rate stays
    within a few percent of ``lr`` (measured: 0.86 × lr after 4 of 4 epochs of 5 batches; ≈ 0.997 × lr after the
    recipe's 120 epochs of ~27 batches). Every recipe result was trained so, and it stays the default until a
    decaying schedule wins on inner validation. ``cosine`` decays per step from ``lr`` to ``lr × decay_alpha``
    over ``max_epochs`` (after ``warmup_epochs``), with the fine-tuning optimizer below; any fine-tuning setting
    implies it.

    Fine-tuning (any of ``freeze``, ``layer_decay``, ``weight_decay``, ``warmup_epochs``, or a pretrained
    ``backbone`` such as ``tensornet-matpes-pbe``, trains with AdamW and a per-step warm-up + cosine schedule,
    :mod:`~matgl_hybrid.training.finetuning`): ``freeze`` (none | embedding | backbone), ``layer_decay`` (backbone
    block i of L at lr × layer_decay^(L−i)), ``weight_decay``, ``warmup_epochs``; with either schedule,
    ``gradient_clip`` (max gradient norm) and ``ema_decay`` (an exponential moving average of the weights is what
    validation sees and the model keeps).

    The defaults are the recommended recipe, chosen on an inner validation split of outer fold 0's training part
    (not nested; ``benchmarks/select_recipe.py``, ``benchmarks/results/recipe_selection.md``): hybrid MEGNet,
    extensive readout, concatenation of ``gong28+composition+chgnet_noenergy`` (the structure descriptors of Gong
    et al., Magpie composition statistics and CHGNet 0.3.0's crystal and atom features without its energy), lr 2e-3
    (MatGL's schedule, nearly constant), batch 32, at most 120 epochs, early stopping with patience 25.
    """

    backbone: str = field(default="megnet", metadata=option(str, "graph network", choices=tuple(BACKBONES)))
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    cutoff: float = field(default=5.0, metadata=option(float, "graph cutoff radius (Å)"))
    readout: str = field(
        default="extensive",
        metadata=option(
            str,
            "pooling of node features into one vector per structure; native: the backbone's own readout and head, "
            "as MatGL ships it (no descriptors)",
            choices=(*READOUTS, "native"),
        ),
    )
    descriptor_set: str | None = field(
        default="gong28+composition+chgnet_noenergy",
        metadata=option(
            str,
            f"descriptor set fused into the readout: {', '.join(NAMED_SETS)}, ssl:<encoder>:<layers>[:sum|mean] or "
            "sim:chgnet[:full], several joined with '+' (e.g. gong28+composition); none: the plain backbone",
            flag="descriptors",
        ),
    )
    fusion: str = field(
        default="concat", metadata=option(str, "how the descriptors join the readout", choices=tuple(FUSIONS))
    )
    clip_descriptors: bool = field(
        default=True,
        metadata=option(
            bool,
            "clip each standardized descriptor to its training range (a value never seen in training, e.g. in a "
            "column constant there, cannot drive the prediction far out)",
        ),
    )
    descriptor_dim: int = 64
    head_hidden: tuple[int, ...] = (64, 64)
    activation: str = "softplus2"
    task_type: str = "regression"
    element_types: str | list[str] = field(
        default="training",
        metadata=option(
            str,
            "elements the model accepts: training (those of the training data) or all (MatGL's 89); a list of "
            "symbols: in --config",
            flag="elements",
        ),
    )
    node_embeddings: str | None = None
    freeze: str = field(
        default="none",
        metadata=option(
            str,
            "weights kept at their initial (pretrained) values: none, embedding (the backbone's first block), or "
            "backbone (all of it: only readout, fusion and head train)",
            choices=FREEZE,
        ),
    )
    layer_decay: float = field(
        default=1.0,
        metadata=option(float, "layer-wise lr decay: backbone block i of L trains at lr × decay^(L−i), 1: none"),
    )
    weight_decay: float = field(default=0.0, metadata=option(float, "AdamW weight decay"))
    warmup_epochs: int = field(default=0, metadata=option(int, "epochs of linear learning-rate warm-up"))
    gradient_clip: float | None = field(
        default=None, metadata=option(float, "clip the gradient norm to this value (none: no clipping)")
    )
    ema_decay: float | None = field(
        default=None,
        metadata=option(
            float,
            "exponential moving average of the weights (e.g. 0.999; the decay ramps up as (1+n)/(10+n) over the "
            "first updates), validated and saved (none: no average)",
        ),
    )
    max_epochs: int = field(default=120, metadata=option(int, "most training epochs"))
    batch_size: int = field(default=32, metadata=option(int, "structures per batch"))
    lr: float = field(default=2e-3, metadata=option(float, "learning rate (see --lr-schedule)"))
    decay_alpha: float = 0.01
    lr_schedule: str = field(
        default="matgl",
        metadata=option(
            str,
            "matgl: MatGL's cosine, stepped per epoch over max_epochs × batches steps (the rate stays within a few "
            "percent of lr; every recipe result); cosine: per step from lr to lr × decay_alpha over max_epochs",
            choices=LR_SCHEDULES,
        ),
    )
    loss: str = field(default="l1_loss", metadata=option(str, "training loss", choices=LOSSES))
    val_fraction: float = field(
        default=0.1, metadata=option(float, "fraction of the training data held out for early stopping")
    )
    patience: int = field(
        default=25,
        metadata=option(int, "epochs without a better validation MAE (a classifier: log loss) before training stops"),
    )
    seed: int = field(default=0, metadata=option(int, "seed of the validation split and of the initialisation"))
    accelerator: str = field(
        default="auto",
        metadata=option(str, "Lightning accelerator: auto (a CUDA GPU when present, else the CPU), cpu, gpu, mps, …"),
    )
    devices: int | str | list[int] = "auto"
    n_jobs: int = field(default=1, metadata=option(int, "descriptor workers (-1: all cores)"))
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
        if problems := [*self._field_problems(), *self._combination_problems()]:
            raise ValueError("invalid training settings: " + "; ".join(problems))

    @classmethod
    def field_problems(cls, changes: Mapping[str, Any]) -> list[str]:
        """What :meth:`validate` refuses in the values of ``changes`` on their own, not in how they combine with the
        fields of a spec they will change (a candidates file is checked so before the run's spec is known)."""
        spec = cls()
        for name, value in changes.items():  # unchecked here: the combination is checked when the spec is built
            object.__setattr__(spec, name, value)
        return spec._field_problems()

    def _field_problems(self) -> list[str]:
        """Values that no spec may hold, each field on its own."""
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        if self.readout not in (*READOUTS, "native"):
            problems.append(f"unknown readout {self.readout!r}; known: {', '.join((*READOUTS, 'native'))}")
        if self.fusion not in FUSIONS:
            problems.append(f"unknown fusion {self.fusion!r}; known: {', '.join(FUSIONS)}")
        if self.activation not in ActivationFunction.__members__:
            known = ", ".join(ActivationFunction.__members__)
            problems.append(f"unknown activation {self.activation!r}; known: {known}")
        widths = [self.descriptor_dim, *self.head_hidden]
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            problems.append(f"descriptor_dim and head_hidden must be integers >= 1, got {self.descriptor_dim!r}, "
                            f"{list(self.head_hidden)!r}")  # fmt: skip
        if not (isinstance(self.cutoff, int | float) and math.isfinite(self.cutoff) and self.cutoff > 0):
            problems.append(f"cutoff must be a distance > 0 (Å), got {self.cutoff!r}")
        if not _devices_ok(self.devices):
            problems.append(f"devices must be 'auto', a count >= 1 (-1: all), or device indices such as [0, 1] or "
                            f"'0,1', got {self.devices!r}")  # fmt: skip
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
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (0 <= self.decay_alpha <= 1):
            problems.append(f"decay_alpha must be in [0, 1] (last rate: lr × decay_alpha), got {self.decay_alpha!r}")
        if not isinstance(self.clip_descriptors, bool):
            problems.append(f"clip_descriptors must be true or false, got {self.clip_descriptors!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.freeze not in FREEZE:
            problems.append(f"freeze must be one of {', '.join(FREEZE)}, got {self.freeze!r}")
        if not 0 < self.layer_decay <= 1:
            problems.append(f"layer_decay must be in (0, 1], got {self.layer_decay!r}")
        if not self.weight_decay >= 0 or not math.isfinite(self.weight_decay) or (
            self.gradient_clip is not None and not (self.gradient_clip > 0 and math.isfinite(self.gradient_clip))
        ):
            problems.append(f"weight_decay must be >= 0 and gradient_clip > 0, got {self.weight_decay!r}, "
                            f"{self.gradient_clip!r}")  # fmt: skip
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            problems.append(f"ema_decay must be in (0, 1), got {self.ema_decay!r}")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            problems.append(f"warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        if isinstance(self.backbone_kwargs, dict) and (own := sorted({"cutoff", "element_types"} & set(
                self.backbone_kwargs))):  # fmt: skip
            problems.append(f"backbone_kwargs may not set {', '.join(own)}: TrainSpec's own fields set them")
        if isinstance(self.element_types, list) and (
            len(set(self.element_types)) != len(self.element_types)
            or not all(isinstance(e, str) and Element.is_valid_symbol(e) for e in self.element_types)
        ):
            problems.append(f"element_types must list distinct element symbols, got {self.element_types!r}")
        if self.node_embeddings is not None:
            path, _, layers = str(self.node_embeddings).rpartition(":")
            if not isinstance(self.node_embeddings, str) or not path or not all(
                x.strip().isdigit() for x in layers.split(",")
            ):
                problems.append(f"node_embeddings must be <encoder folder>:<layers>, e.g. encoder:0,1,2, got "
                                f"{self.node_embeddings!r}")  # fmt: skip
        return problems

    def _combination_problems(self) -> list[str]:
        """Fields that are valid alone but cannot train together."""
        problems = []
        if self.readout == "native" and self.descriptor_set:
            problems.append(f"readout 'native' keeps the backbone's own head, which cannot fuse descriptors: "
                            f"set descriptors to none (got {self.descriptor_set!r}), or a pooling readout")  # fmt: skip
        if self.node_embeddings is not None and self.backbone != "megnet":
            problems.append(f"node_embeddings (NEGNN) feeds MEGNet's node input, not {self.backbone}'s")
        if self.task_type == "classification" and self.loss != "l1_loss":
            problems.append(f"a classifier trains on binary cross-entropy: loss {self.loss!r} would be ignored")
        if self.descriptor_set and self.batch_size == 1:
            problems.append("batch_size must be >= 2 with descriptors: their BatchNorm cannot normalise a batch of one")
        warmup, epochs = self.warmup_epochs, self.max_epochs
        if isinstance(warmup, int) and isinstance(epochs, int) and warmup > 0 and warmup >= epochs:
            problems.append(f"warmup_epochs ({self.warmup_epochs}) must be below max_epochs ({self.max_epochs}): the "
                            "rate would never reach lr nor decay")  # fmt: skip
        pretrained = BACKBONES[self.backbone].potential if self.backbone in BACKBONES else None
        if self.readout == "native" and pretrained:
            problems.append(f"readout 'native' keeps the backbone's own head, but {self.backbone} starts from "
                            f"{pretrained}, whose head predicts energies: choose a pooling readout")  # fmt: skip
        return problems

    @classmethod
    def from_json(cls, path: str | Path) -> TrainSpec:
        """Read a spec from a JSON file; unknown keys are an error (they would be silently ignored otherwise)."""
        return cls.from_dict(cls.json_values(path), source=str(path))

    @staticmethod
    def json_values(path: str | Path) -> dict[str, Any]:
        """The fields a JSON spec file gives, not yet checked as a whole (flags may still change them)."""
        values = read_json(path)
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object of TrainSpec fields, got {type(values).__name__}")
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "TrainSpec") -> TrainSpec:
        """A spec from a dict of its fields (e.g. a training record's ``spec``); 0.1 names are mapped, with a warning.

        Raises:
            UnknownNameError: a key that is no field (it would be silently ignored otherwise), named with ``source``.
        """
        values = dict(values)
        for old, new in RENAMED.items():
            if old in values:
                if new in values:
                    raise ValueError(f"{source} gives both {old!r} and its new name {new!r}: keep {new!r}")
                _warn_renamed(old)
                values[new] = values.pop(old)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UnknownNameError(f"unknown keys in {source}: {unknown}; known: {sorted(known)}")
        if wrong := wrong_types(values):
            raise ValueError(f"values of the wrong type in {source}: {', '.join(wrong)}")
        return cls(**values)

    @classmethod
    def from_stored(cls, values: Mapping[str, Any], source: str = "TrainSpec") -> TrainSpec:
        """A whole spec as an earlier version wrote it (``to_dict``, e.g. a submission's ``run_matbench.py``): the
        fields added since take the values that version trained with (:data:`ADDED`), not today's defaults."""
        return cls.from_dict({**ADDED, **values}, source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def _devices_ok(devices: Any) -> bool:
    """Whether ``devices`` is a Lightning ``devices`` value that asks for at least one device."""
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, list | tuple):
        return bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    if isinstance(devices, str):
        text = devices.strip()
        return text == "auto" or text == "-1" or (re.fullmatch(r"\d+(\s*,\s*\d+)*,?", text) is not None and text != "0")
    return False


def wrong_types(values: Mapping[str, Any]) -> list[str]:
    """``field=value (annotation)`` for each of ``values`` (TrainSpec fields, as JSON gives them) that its field's
    type does not take (``{"lr": "1e-3"}`` would fail deep inside training, or compare a string with a number)."""
    annotations = {f.name: str(f.type) for f in fields(TrainSpec)}
    return [f"{k}={v!r} ({annotations[k]})" for k, v in values.items()
            if k in annotations and not _json_kind_accepts(annotations[k], v)]  # fmt: skip


def _json_kind_accepts(annotation: str, value: Any) -> bool:
    """Whether a JSON ``value`` fits a TrainSpec field annotated ``annotation`` (a bool is no number)."""
    parts = annotation.split(" | ")
    if isinstance(value, bool):
        return "bool" in parts
    return any(isinstance(value, _JSON_KINDS.get(part, object)) for part in parts)


def upgrade_fingerprint(fingerprint: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A run fingerprint (fold record, checkpoint folder) stored by an earlier version, its settings (``spec`` and
    each of ``candidates``) under today's names and with the fields added since (:data:`ADDED`), so that the work
    it stands for is reused; the settings that change only where a run computes (accelerator, devices, workers,
    progress) are left out, as new fingerprints leave them out. Any other fingerprint as it is."""
    if not fingerprint:
        return fingerprint
    upgraded = dict(fingerprint)
    if isinstance(fingerprint.get("spec"), Mapping):
        upgraded["spec"] = _upgrade_spec(fingerprint["spec"])
    if isinstance(fingerprint.get("candidates"), Mapping):
        upgraded["candidates"] = {name: _upgrade_spec(spec) if isinstance(spec, Mapping) else spec
                                  for name, spec in fingerprint["candidates"].items()}  # fmt: skip
    return upgraded


def _upgrade_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Stored settings under today's names, without runtime fields; a training spec's (not a forest's) with the
    fields added since."""
    spec = {RENAMED.get(k, k): v for k, v in without_runtime_fields(spec).items()}
    return {**ADDED, **spec} if "backbone" in spec else spec


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
