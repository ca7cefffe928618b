"""Training: ``TrainSpec`` (model + training settings, JSON-able) and ``fit`` with Lightning and MatGL's module."""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from matgl.config import DEFAULT_ELEMENTS
from matgl.ext.pymatgen import get_element_list
from matgl.utils.training import ModelLightningModule

from matgl_hybrid.checkpoint import load_model
from matgl_hybrid.data import StructureData, from_structures
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.models import HybridModel
from matgl_hybrid.models.negnn import encoder_spec
from matgl_hybrid.paths import descriptor_cache_dir


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
        if self.elements not in ("training", "all"):
            raise ValueError(f"elements must be 'training' or 'all', got {self.elements!r}")
        if self.descriptors in ("none", "None", ""):
            self.descriptors = None
        self.head_hidden = tuple(self.head_hidden)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainSpec:
        """Read a spec from a JSON file; unknown keys are an error (they would be silently ignored otherwise)."""
        values = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"unknown keys in {path}: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


class KeepBestWeights(Callback):
    """Keeps a copy of the weights with the lowest validation MAE; ``fit`` restores them at the end."""

    def __init__(self, monitor: str = "val_MAE"):
        self.monitor = monitor
        self.best = float("inf")
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not value < self.best:
            return
        self.best, self.best_epoch = float(value), trainer.current_epoch
        self.state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()})

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.state = state_dict["best"], state_dict["best_epoch"], state_dict["state"]


@dataclass
class FitResult:
    """What :func:`fit` returns: the model (best validation weights) and its training record."""

    model: HybridModel
    best_val_mae: float
    best_epoch: int
    epochs_run: int
    train_ids: list[str]
    val_ids: list[str]
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def device_name(accelerator: str = "auto") -> str:
    """The device Lightning's ``accelerator`` resolves to here, as recorded with results: a GPU's name or the CPU."""
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/validation split of ``n`` items (at least one validation item)."""
    if n < 2:
        raise ValueError(f"need at least 2 structures to train with a validation split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fit(
    data: StructureData | Sequence,
    targets: Sequence[float] | None = None,
    spec: TrainSpec | None = None,
    *,
    val_data: StructureData | None = None,
    target_units: str | None = None,
    cache_dir: str | Path | None = "default",
    checkpoint_dir: str | Path | None = None,
) -> FitResult:
    """Train a :class:`HybridModel` on structures and targets.

    Args:
        data: a :class:`StructureData` with targets, or a list of structures with ``targets``.
        targets: (n,) target values when ``data`` is a list.
        spec: model and training settings (defaults: hybrid MEGNet, extensive readout, gong28, concat).
        val_data: explicit validation data; otherwise ``spec.val_fraction`` of ``data`` (seeded).
        target_units: units of the target, stored with the model.
        cache_dir: descriptor cache ("default": ``$MATGL_HYBRID_CACHE/descriptors``; None: no cache).
        checkpoint_dir: write Lightning checkpoints here (``last.ckpt`` every epoch, ``best.ckpt``); when
            ``last.ckpt`` exists, training resumes from it.

    Returns:
        :class:`FitResult`; its model carries the best validation weights and everything needed to predict.
    """
    spec = spec or TrainSpec()
    if not isinstance(data, StructureData):
        data = from_structures(data, targets, target_name="target")
    if data.targets is None:
        raise ValueError("fit needs targets: load the data with target=...")
    if val_data is None:
        train_idx, val_idx = split_indices(len(data), spec.val_fraction, spec.seed)
        train, val = data.subset(train_idx), data.subset(val_idx)
    else:
        train, val = data, val_data
    L.seed_everything(spec.seed, verbose=False)
    start = time.perf_counter()

    cache = descriptor_cache_dir() if cache_dir == "default" else cache_dir
    model_args: dict[str, Any] = {}
    train_x = val_x = None
    if spec.descriptors is not None:
        dset = get_descriptor_set(spec.descriptors)
        frames = [
            featurize(d.structures, dset, n_jobs=spec.n_jobs, cache_dir=cache, ids=d.ids, progress=spec.progress)
            for d in (train, val)
        ]
        transform = DescriptorTransform().fit(frames[0])
        train_x, val_x = (transform.transform(f) for f in frames)
        model_args = {
            "descriptor_set": spec.descriptors,
            "descriptor_version": dset.version,
            "descriptor_transform": transform.to_dict(),
            "descriptor_dim": spec.descriptor_dim,
            "fusion": spec.fusion,
        }
    y_train = train.targets
    encoder = None
    if spec.node_embeddings:
        path, _, layers = spec.node_embeddings.rpartition(":")
        encoder = load_model(path)
        model_args["node_embeddings"] = encoder_spec(encoder, spec.backbone, [int(x) for x in layers.split(",")])
    model = HybridModel(
        backbone=spec.backbone,
        element_types=DEFAULT_ELEMENTS
        if spec.elements == "all"
        else get_element_list(train.structures + val.structures),
        cutoff=spec.cutoff,
        backbone_kwargs=spec.backbone_kwargs,
        readout=spec.readout,
        head_hidden=spec.head_hidden,
        activation=spec.activation,
        target_names=(data.target_name or "target",),
        target_units=target_units,
        task_type=spec.task,
        target_mean=[float(np.mean(y_train))] if spec.task == "regression" else None,
        target_std=[float(np.std(y_train)) or 1.0] if spec.task == "regression" else None,
        **model_args,
    )
    if encoder is not None:
        model.ne_encoder.encoder.load_state_dict(encoder.state_dict())
    elements = model.element_types
    train_set = build_dataset(train.structures, elements, spec.cutoff, train.ids, train_x, train.targets)
    val_set = build_dataset(val.structures, elements, spec.cutoff, val.ids, val_x, val.targets)
    generator = torch.Generator().manual_seed(spec.seed)
    # BatchNorm cannot normalise a batch of one: drop a last training batch of a single structure.
    train_loader = make_loader(
        train_set, spec.batch_size, shuffle=True, generator=generator, drop_last=len(train_set) % spec.batch_size == 1
    )
    val_loader = make_loader(val_set, spec.batch_size)

    module = ModelLightningModule(
        model=model,
        data_mean=0.0,  # the model de-standardizes itself (target_mean / target_std)
        data_std=1.0,
        loss=spec.loss,
        lr=spec.lr,
        decay_steps=spec.max_epochs * max(1, len(train_loader)),
        decay_alpha=spec.decay_alpha,
    )
    if spec.task == "classification":
        if not np.isin(data.targets, (0.0, 1.0)).all():
            raise ValueError("classification targets must be 0 or 1")
        module.loss = _binary_cross_entropy
    best = KeepBestWeights()
    history = _History()
    callbacks: list[Callback] = [EarlyStopping(monitor="val_MAE", patience=spec.patience, mode="min"), best, history]
    resume_from = None
    if checkpoint_dir is not None:
        callbacks.append(ModelCheckpoint(Path(checkpoint_dir), filename="best", monitor="val_MAE", save_last=True))
        last = Path(checkpoint_dir) / "last.ckpt"
        resume_from = str(last) if last.exists() else None
    multi_device = isinstance(spec.devices, int) and spec.devices > 1
    trainer = L.Trainer(
        max_epochs=spec.max_epochs,
        accelerator=spec.accelerator,
        devices=spec.devices,
        strategy="ddp_find_unused_parameters_true" if multi_device else "auto",
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=spec.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from)
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    return FitResult(
        model=model,
        best_val_mae=best.best,
        best_epoch=best.best_epoch,
        epochs_run=trainer.current_epoch,
        train_ids=list(train.ids),
        val_ids=list(val.ids),
        seconds=time.perf_counter() - start,
        history=history.rows,
    )


def _binary_cross_entropy(labels: torch.Tensor, probabilities: torch.Tensor, **kwargs) -> torch.Tensor:
    """BCE with MatGL's loss argument order ``loss(labels, predictions)``."""
    return torch.nn.functional.binary_cross_entropy(probabilities.clamp(1e-7, 1 - 1e-7), labels)


class _History(Callback):
    """Per-epoch train and validation metrics."""

    def __init__(self):
        self.rows: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith(("MAE", "Loss"))})
        self.rows.append(row)
