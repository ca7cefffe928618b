"""``TrainSpec``: everything that defines a training run (model and training settings), JSON-able."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.files import read_json

#: The losses MatGL's ``ModelLightningModule`` knows (it falls back to L1 for any other name).
LOSSES = ("l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss")


@dataclass
class TrainSpec:
    """Everything that defines a training run: the model and how it is trained (the CLI's and config files' format).

    Model: ``backbone`` (megnet | m3gnet | tensornet), ``backbone_kwargs``, ``cutoff`` (Å), ``readout``
    (mean | sum | max | extensive | attention | set2set | native: the backbone's own, as MatGL ships it),
    ``descriptors`` (a descriptor set name such as ``gong28`` or ``gong28+composition``; None for the plain
    backbone), ``fusion`` (concat | gate | film),
    ``descriptor_dim``, ``head_hidden``, ``activation``, ``task`` (regression | classification: 0/1 targets,
    probabilities out, binary cross-entropy loss), ``elements`` (training: the elements of the training data, so
    that any other element is refused at prediction; all: MatGL's 89 default elements, for test sets that may hold
    elements the training data lack, as in Matbench).

    Training: ``max_epochs``, ``batch_size``, ``lr``, ``decay_alpha`` (cosine decay to lr × decay_alpha),
    ``loss`` (l1_loss | mse_loss | huber_loss | smooth_l1_loss), ``val_fraction``, ``patience`` (early stopping
    on validation MAE, epochs), ``seed``, ``accelerator`` / ``devices`` (Lightning's; "auto" uses a GPU when
    present, several devices train with DDP), ``n_jobs`` (descriptor workers), ``progress``.
    """

    backbone: str = "megnet"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    cutoff: float = 5.0
    readout: str = "extensive"
    descriptors: str | None = "gong28"
    fusion: str = "concat"
    descriptor_dim: int = 64
    head_hidden: tuple[int, ...] = (64, 64)
    activation: str = "softplus2"
    task: str = "regression"
    elements: str = "training"
    node_embeddings: str | None = None
    max_epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    decay_alpha: float = 0.01
    loss: str = "l1_loss"
    val_fraction: float = 0.1
    patience: int = 30
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    n_jobs: int = 1
    progress: bool = True

    def __post_init__(self):
        if self.descriptors in ("none", "None", ""):
            self.descriptors = None
        self.head_hidden = tuple(self.head_hidden)
        self.validate()

    def validate(self) -> None:
        """Refuse settings that cannot train, before any work (MatGL would silently train on L1 for any loss name)."""
        problems = []
        if self.elements not in ("training", "all"):
            problems.append(f"elements must be 'training' or 'all', got {self.elements!r}")
        if self.task not in ("regression", "classification"):
            problems.append(f"task must be 'regression' or 'classification', got {self.task!r}")
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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UnknownNameError(f"unknown keys in {path}: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)
