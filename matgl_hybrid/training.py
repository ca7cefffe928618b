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
import torchmetrics
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from matgl.config import DEFAULT_ELEMENTS
from matgl.ext.pymatgen import get_element_list
from matgl.utils.training import ModelLightningModule
from torch.utils.data import DistributedSampler

from matgl_hybrid.checkpoint import CheckpointError, load_model
from matgl_hybrid.data import StructureData, from_structures
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.files import atomic_write_text, check_output_dir, read_json
from matgl_hybrid.fingerprint import check_fingerprint, run_fingerprint
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.models import HybridModel
from matgl_hybrid.models.negnn import encoder_spec
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.splits import split_indices

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


class HybridLightningModule(ModelLightningModule):
    """MatGL's ``ModelLightningModule`` with the validation MAE computed over the whole validation split.

    ``val_MAE`` is a torchmetrics ``MeanAbsoluteError`` whose sums are reduced over all processes: under DDP
    every rank sees the same value (one best epoch, one early stop), and it equals the MAE of the model on the
    whole validation split (the validation sampler gives each structure to exactly one rank).
    """

    def __init__(self, **kwargs: Any):
        super().__init__(sync_dist=True, **kwargs)
        self.val_mae = torchmetrics.MeanAbsoluteError()

    def validation_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        g, lattice, state_attr, labels = batch
        predictions = self(g=g, lat=lattice, state_attr=state_attr)
        results = self.loss_fn(loss=self.loss, preds=predictions, labels=labels)
        self.val_mae.update(predictions.reshape(labels.shape), labels)
        self.log("val_MAE", self.val_mae, on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict(
            {"val_Total_Loss": results["Total_Loss"], "val_RMSE": results["RMSE"]},
            batch_size=labels.numel(),
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        return results["Total_Loss"]


class GraphDataModule(L.LightningDataModule):
    """Training and validation loaders of graph datasets; under DDP each rank gets its share of both.

    Training batches are shuffled (seeded); under DDP a ``DistributedSampler`` shards them. Validation is
    sharded without repeats (``UnrepeatedDistributedSampler``), so that the reduced metric is exact.
    """

    def __init__(self, train_set: Any, val_set: Any, batch_size: int, seed: int):
        super().__init__()
        self.train_set, self.val_set, self.batch_size, self.seed = train_set, val_set, batch_size, seed

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> Any:
        world, rank = self._world()
        if world > 1:
            sampler = DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            # BatchNorm cannot normalise a batch of one: drop a last training batch of a single structure.
            return make_loader(
                self.train_set, self.batch_size, sampler=sampler, drop_last=len(sampler) % self.batch_size == 1
            )
        generator = torch.Generator().manual_seed(self.seed)
        drop_last = len(self.train_set) % self.batch_size == 1
        return make_loader(self.train_set, self.batch_size, shuffle=True, generator=generator, drop_last=drop_last)

    def val_dataloader(self) -> Any:
        world, rank = self._world()
        sampler = None
        if world > 1:
            sampler = UnrepeatedDistributedSampler(self.val_set, num_replicas=world, rank=rank, shuffle=False)
        return make_loader(self.val_set, self.batch_size, sampler=sampler)


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
    global_rank: int = 0


def device_name(accelerator: str = "auto") -> str:
    """The device Lightning's ``accelerator`` resolves to here, as recorded with results: a GPU's name or the CPU."""
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


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
        checkpoint_dir: write Lightning checkpoints here (``last.ckpt`` every epoch, ``best.ckpt``) with a
            ``fingerprint.json`` of the run; when ``last.ckpt`` exists, training resumes from it, but only for the
            same data, target, settings and descriptor version (else :class:`FingerprintMismatch`). A finished
            run is restored, not trained further, unless ``max_epochs`` or ``patience`` grew.

    Returns:
        :class:`FitResult`; its model carries the best validation weights and everything needed to predict. Under
        DDP every process returns one; only the one with ``global_rank == 0`` should write anything.

    Raises:
        ValueError: settings or data that cannot train (checked before any work).
    """
    spec = spec or TrainSpec()
    spec.validate()
    if not isinstance(data, StructureData):
        data = from_structures(data, targets, target_name="target")
    if data.targets is None:
        raise ValueError("fit needs targets: load the data with target=...")
    if val_data is None:
        train_idx, val_idx = split_indices(len(data), spec.val_fraction, spec.seed)
        train, val = data.subset(train_idx), data.subset(val_idx)
    else:
        train, val = data, val_data
    if len(train) < 2 or len(val) < 1:
        raise ValueError(
            f"cannot train on {len(train)} training and {len(val)} validation structures: at least 2 and 1 are "
            "needed (more data, or another val_fraction)"
        )
    if spec.task == "classification" and not np.isin(np.concatenate([train.targets, val.targets]), (0.0, 1.0)).all():
        raise ValueError("classification targets must be 0 or 1")
    dset = get_descriptor_set(spec.descriptors) if spec.descriptors is not None else None
    resume = _Resume(checkpoint_dir, [train, val], spec, dset.version if dset else None)
    L.seed_everything(spec.seed, verbose=False)
    start = time.perf_counter()

    cache = descriptor_cache_dir() if cache_dir == "default" else cache_dir
    model_args: dict[str, Any] = {}
    train_x = val_x = None
    if dset is not None:
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
    loaders = GraphDataModule(train_set, val_set, spec.batch_size, spec.seed)
    world = spec.devices if isinstance(spec.devices, int) else 1
    batches_per_epoch = max(1, -(-len(train_set) // world) // spec.batch_size)

    module = HybridLightningModule(
        model=model,
        data_mean=0.0,  # the model de-standardizes itself (target_mean / target_std)
        data_std=1.0,
        loss=spec.loss,
        lr=spec.lr,
        decay_steps=spec.max_epochs * batches_per_epoch,
        decay_alpha=spec.decay_alpha,
    )
    if spec.task == "classification":
        module.loss = _binary_cross_entropy
    resume.check_weights(module)
    best = KeepBestWeights()
    history = History()
    callbacks: list[Callback] = [EarlyStopping(monitor="val_MAE", patience=spec.patience, mode="min"), best, history]
    if checkpoint_dir is not None:
        callbacks.append(ModelCheckpoint(Path(checkpoint_dir), filename="best", monitor="val_MAE", save_last=True))
    multi_device = world > 1
    trainer = L.Trainer(
        max_epochs=resume.finished_epochs or spec.max_epochs,
        accelerator=spec.accelerator,
        devices=spec.devices,
        strategy="ddp_find_unused_parameters_true" if multi_device else "auto",
        use_distributed_sampler=False,  # GraphDataModule shards the data itself
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
        trainer.fit(module, datamodule=loaders, ckpt_path=resume.path)
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    if trainer.is_global_zero:
        resume.mark_finished(trainer.current_epoch)
    return FitResult(
        model=model,
        best_val_mae=best.best,
        best_epoch=best.best_epoch,
        epochs_run=trainer.current_epoch,
        train_ids=list(train.ids),
        val_ids=list(val.ids),
        seconds=time.perf_counter() - start,
        history=history.rows,
        global_rank=trainer.global_rank,
    )


class _Resume:
    """A ``checkpoint_dir``: its fingerprint, whether and from where training resumes, and if it already finished.

    ``fingerprint.json`` holds ``{"fingerprint": …, "budget": {"max_epochs", "patience"}, "finished_epochs"}``. An
    existing ``last.ckpt`` is resumed only when the stored fingerprint (data, target, every setting but the
    budget, descriptor version) equals this run's, and only when it loads and fits the model. A run that finished
    with the same budget is restored, not trained further; a larger budget continues it.
    """

    HINT = "resume with the same data and settings, or choose another checkpoint folder (or delete it) to start over"
    BUDGET = ("max_epochs", "patience")

    def __init__(
        self, directory: str | Path | None, datasets: Sequence[StructureData], spec: TrainSpec, version: str | None
    ):
        self.directory = None if directory is None else check_output_dir(directory)
        self.path: str | None = None
        self.finished_epochs: int | None = None
        self.state: dict[str, Any] | None = None
        if self.directory is None:
            return
        settings = {k: v for k, v in spec.to_dict().items() if k not in self.BUDGET}
        self.fingerprint = run_fingerprint(datasets, settings, version)
        self.budget = {k: getattr(spec, k) for k in self.BUDGET}
        stamp, last = self.directory / "fingerprint.json", self.directory / "last.ckpt"
        if last.exists():
            stored = read_json(stamp) if stamp.is_file() else {}
            check_fingerprint(stored.get("fingerprint"), self.fingerprint, last, self.HINT)
            try:
                checkpoint = torch.load(last, map_location="cpu", weights_only=True)
                self.state = checkpoint["state_dict"]
            except Exception as exc:  # a truncated file, or no Lightning checkpoint at all
                raise CheckpointError(
                    f"{last} cannot be resumed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): "
                    "delete it, or choose another checkpoint folder, to start over"
                ) from None
            self.path = str(last)
            if stored.get("budget") == self.budget:
                self.finished_epochs = stored.get("finished_epochs")
        self._write(None)

    def _write(self, finished_epochs: int | None) -> None:
        if self.directory is not None:
            record = {"fingerprint": self.fingerprint, "budget": self.budget, "finished_epochs": finished_epochs}
            atomic_write_text(self.directory / "fingerprint.json", json.dumps(record))

    def check_weights(self, module: L.LightningModule) -> None:
        """Raise unless the checkpoint's weights have the names and shapes of ``module``'s."""
        if self.state is None:
            return
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in self.state.items()}
        if expected != found:
            wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
            detail = (
                f"{wrong[0]} has shape {found[wrong[0]]}, the model needs {expected[wrong[0]]}"
                if wrong
                else f"{len(expected.keys() ^ found.keys())} weights differ in name"
            )
            raise CheckpointError(f"{self.path} does not fit this model ({detail}): {self.HINT}")
        self.state = None

    def mark_finished(self, epochs: int) -> None:
        """Record that training ended after ``epochs`` epochs: a rerun restores it instead of training further."""
        self._write(epochs)


def _binary_cross_entropy(labels: torch.Tensor, probabilities: torch.Tensor, **kwargs) -> torch.Tensor:
    """BCE with MatGL's loss argument order ``loss(labels, predictions)``."""
    return torch.nn.functional.binary_cross_entropy(probabilities.clamp(1e-7, 1 - 1e-7), labels)


class History(Callback):
    """Per-epoch train and validation metrics; saved in Lightning checkpoints, so a resumed run keeps them all."""

    def __init__(self):
        self.rows: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith(("MAE", "Loss"))})
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])
