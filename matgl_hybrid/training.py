"""Training: ``TrainSpec`` (model + training settings, JSON-able), the Lightning pieces, ``fit`` and ``train``.

The pieces: :class:`HybridDataModule` (featurize, fit the descriptor transform on the training split only, build the
graph datasets and their loaders), :func:`build_model` (a :class:`HybridModel` for a spec and a set-up data module),
:class:`HybridLightningModule` (MatGL's ``ModelLightningModule``) and a Lightning ``Trainer``. :func:`fit` is the
one-call convenience on top (one model, with early stopping, the best weights, checkpoints that resume);
:func:`train` is what ``matgl-hybrid train`` does (an optional held-out test split, an ensemble), and
:meth:`TrainedModel.save` writes its checkpoint with a model card.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torchmetrics
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from matgl.config import DEFAULT_ELEMENTS
from matgl.ext.pymatgen import get_element_list
from matgl.utils.training import ModelLightningModule
from torch.utils.data import DistributedSampler

from matgl_hybrid.checkpoint import CheckpointError, load_model, save_model
from matgl_hybrid.data import StructureData, from_structures
from matgl_hybrid.data.splits import split_indices
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.descriptors.sets import DescriptorSet
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.files import atomic_write_text, check_output_dir, read_json
from matgl_hybrid.fingerprint import check_fingerprint, run_fingerprint
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.model_card import holdout_metrics, render_card
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.models.negnn import encoder_spec

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


class HybridDataModule(L.LightningDataModule):
    """The training and validation data of a run: descriptors, the fitted transform, graph datasets, loaders.

    :meth:`setup` featurizes both splits (when ``spec.descriptors`` is set), fits a :class:`DescriptorTransform` on
    the training split only (``transform_``, which the model takes as ``descriptor_transform``) and builds MatGL
    graph datasets (``train_set``, ``val_set``) carrying the *raw* descriptors (the model standardizes them
    itself). It does its work once: :func:`fit` calls it before building the model, and Lightning's own call in
    ``trainer.fit`` finds everything in place.

    Loaders: training batches are shuffled (seeded); under DDP a ``DistributedSampler`` shards them. Validation is
    sharded without repeats (``UnrepeatedDistributedSampler``), so that the reduced metric is exact; the Trainer
    must not replace the samplers (``use_distributed_sampler=False``). A last training batch of a single structure
    is dropped (BatchNorm cannot normalise a batch of one).

    Args:
        train, val: the training and validation splits, with targets.
        spec: the run's settings; used: ``descriptors``, ``cutoff``, ``elements``, ``batch_size``, ``seed``,
            ``n_jobs``, ``progress``.
        cache_dir: descriptor cache folder; None: no cache.
        element_types: the model's element list (default: MatGL's 89 with ``spec.elements == "all"``, else the
            elements of ``train`` and ``val``).
    """

    def __init__(
        self,
        train: StructureData,
        val: StructureData,
        spec: TrainSpec,
        *,
        cache_dir: str | Path | None = None,
        element_types: Sequence[str] | None = None,
    ):
        super().__init__()
        self.train, self.val, self.spec, self.cache_dir = train, val, spec, cache_dir
        if element_types is None:
            element_types = (
                DEFAULT_ELEMENTS if spec.elements == "all" else get_element_list(train.structures + val.structures)
            )
        self.element_types: tuple[str, ...] = tuple(element_types)
        self.descriptor_set: DescriptorSet | None = (
            get_descriptor_set(spec.descriptors) if spec.descriptors is not None else None
        )
        self.batch_size, self.seed = spec.batch_size, spec.seed
        self.transform_: DescriptorTransform | None = None
        self.train_set: Any = None
        self.val_set: Any = None

    @property
    def descriptor_version(self) -> str | None:
        """Version of the descriptor set (None without descriptors)."""
        return self.descriptor_set.version if self.descriptor_set is not None else None

    def setup(self, stage: str | None = None) -> None:
        """Featurize, fit the transform on the training split, build the graph datasets; only the first call works."""
        if self.train_set is not None:
            return
        spec = self.spec
        descriptors: list[np.ndarray | None] = [None, None]
        if self.descriptor_set is not None:
            frames = [
                featurize(
                    d.structures,
                    self.descriptor_set,
                    n_jobs=spec.n_jobs,
                    cache_dir=self.cache_dir,
                    ids=d.ids,
                    progress=spec.progress,
                )
                for d in (self.train, self.val)
            ]
            self.transform_ = DescriptorTransform().fit(frames[0])
            descriptors = [f.to_numpy(dtype=np.float64) for f in frames]  # raw: the model standardizes them
        self.train_set, self.val_set = (
            build_dataset(d.structures, self.element_types, spec.cutoff, d.ids, x, d.targets)
            for d, x in zip((self.train, self.val), descriptors, strict=True)
        )

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


def build_model(
    spec: TrainSpec, datamodule: HybridDataModule, *, target_name: str = "target", target_units: str | None = None
) -> HybridModel:
    """A fresh :class:`HybridModel` for ``spec``, taking the data module's elements and fitted descriptor transform.

    ``datamodule.setup()`` must have run (the transform is fitted there). Regression targets are standardized with
    the training split's mean and standard deviation; with ``spec.node_embeddings`` (``path:layers``) the
    pretrained encoder is loaded into the model (NEGNN).
    """
    if datamodule.descriptor_set is not None and datamodule.transform_ is None:
        raise RuntimeError("build_model needs a set-up data module: call datamodule.setup('fit') first")
    model_args: dict[str, Any] = {}
    if datamodule.descriptor_set is not None:
        model_args = {
            "descriptor_set": spec.descriptors,
            "descriptor_version": datamodule.descriptor_version,
            "descriptor_transform": datamodule.transform_.to_dict(),
            "descriptor_dim": spec.descriptor_dim,
            "fusion": spec.fusion,
        }
    encoder = None
    if spec.node_embeddings:
        path, _, layers = spec.node_embeddings.rpartition(":")
        encoder = load_model(path)
        model_args["node_embeddings"] = encoder_spec(encoder, spec.backbone, [int(x) for x in layers.split(",")])
    y_train = datamodule.train.targets
    regression = spec.task == "regression"
    model = HybridModel(
        backbone=spec.backbone,
        element_types=datamodule.element_types,
        cutoff=spec.cutoff,
        backbone_kwargs=spec.backbone_kwargs,
        readout=spec.readout,
        head_hidden=spec.head_hidden,
        activation=spec.activation,
        target_names=(target_name,),
        target_units=target_units,
        task_type=spec.task,
        target_mean=[float(np.mean(y_train))] if regression else None,
        target_std=[float(np.std(y_train)) or 1.0] if regression else None,
        **model_args,
    )
    if encoder is not None:
        model.ne_encoder.encoder.load_state_dict(encoder.state_dict())
    return model


def build_module(spec: TrainSpec, model: HybridModel, batches_per_epoch: int) -> HybridLightningModule:
    """The Lightning module training ``model`` with ``spec``'s loss, learning rate and cosine decay.

    ``batches_per_epoch``: training batches per epoch and process (the decay runs over ``max_epochs`` of them).
    Classification trains on binary cross-entropy.
    """
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
    return module


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


#: Trainer arguments that ``fit`` takes as its own arguments or from the spec, refused in ``trainer_kwargs``.
_OWN_TRAINER_ARGS = {
    "callbacks": "pass them as fit(callbacks=...)",
    "logger": "pass it as fit(logger=...)",
    "max_epochs": "set TrainSpec.max_epochs (it is part of the run's fingerprint and its learning-rate decay)",
}


def _n_devices(devices: Any) -> int:
    """The number of devices a Trainer's ``devices`` asks for explicitly (1 for "auto" and the like)."""
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    return 1


def fit(
    data: StructureData | Sequence,
    targets: Sequence[float] | None = None,
    spec: TrainSpec | None = None,
    *,
    val_data: StructureData | None = None,
    target_units: str | None = None,
    cache_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    callbacks: Iterable[Callback] = (),
    logger: Logger | bool | None = None,
) -> FitResult:
    """Train a :class:`HybridModel` on structures and targets.

    Built from the library's pieces: a :class:`HybridDataModule` (set up here, before the model, which takes its
    fitted descriptor transform), :func:`build_model`, :func:`build_module` and a Lightning ``Trainer``.

    Args:
        data: a :class:`StructureData` with targets, or a list of structures with ``targets``.
        targets: (n,) target values when ``data`` is a list.
        spec: model and training settings (defaults: hybrid MEGNet, extensive readout, gong28, concat).
        val_data: explicit validation data; otherwise ``spec.val_fraction`` of ``data`` (seeded).
        target_units: units of the target, stored with the model.
        cache_dir: descriptor cache folder; None: no cache.
        checkpoint_dir: write Lightning checkpoints here (``last.ckpt`` every epoch, ``best.ckpt``) with a
            ``fingerprint.json`` of the run; when ``last.ckpt`` exists, training resumes from it, but only for the
            same data, target, settings and descriptor version (else :class:`FingerprintMismatch`). A finished
            run is restored, not trained further, unless ``max_epochs`` or ``patience`` grew.
        trainer_kwargs: Lightning ``Trainer`` arguments, merged over those ``fit`` chooses (``accelerator`` and
            ``devices`` from the spec, ``strategy``, ``enable_progress_bar``, ``use_distributed_sampler=False``,
            ``num_sanity_val_steps=0``, …): e.g. ``precision``, ``gradient_clip_val``, ``accumulate_grad_batches``.
            ``callbacks``, ``logger`` and ``max_epochs`` are refused here (fit's own arguments, and the spec's).
        callbacks: Lightning callbacks added to fit's own (early stopping on validation MAE, the best weights,
            the history and, with ``checkpoint_dir``, checkpointing).
        logger: a Lightning logger, or False for none; default: a ``CSVLogger`` writing
            ``<checkpoint_dir>/logs/version_<n>/metrics.csv`` (a new version each run, resumes included) when
            ``checkpoint_dir`` is given, else none. ``FitResult.history`` does not depend on it.

    Returns:
        :class:`FitResult`; its model carries the best validation weights and everything needed to predict. Under
        DDP every process returns one; only the one with ``global_rank == 0`` should write anything.

    Raises:
        ValueError: settings or data that cannot train (checked before any work).
    """
    spec = spec or TrainSpec()
    spec.validate()
    trainer_kwargs = dict(trainer_kwargs or {})
    refused = sorted(trainer_kwargs.keys() & _OWN_TRAINER_ARGS.keys())
    if refused:
        raise ValueError(
            "trainer_kwargs: "
            + "; ".join(f"{name!r} is not a Trainer option here: {_OWN_TRAINER_ARGS[name]}" for name in refused)
        )
    if not isinstance(data, StructureData):
        data = from_structures(data, targets, target_name="target")
    if data.targets is None or (val_data is not None and val_data.targets is None):
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
    datamodule = HybridDataModule(train, val, spec, cache_dir=cache_dir)
    resume = _Resume(checkpoint_dir, [train, val], spec, datamodule.descriptor_version)
    L.seed_everything(spec.seed, verbose=False)
    start = time.perf_counter()

    datamodule.setup("fit")  # featurize, fit the transform on the training split, build the graphs
    model = build_model(spec, datamodule, target_name=data.target_name or "target", target_units=target_units)

    best = KeepBestWeights()
    history = History()
    own: list[Callback] = [EarlyStopping(monitor="val_MAE", patience=spec.patience, mode="min"), best, history]
    if checkpoint_dir is not None:
        own.append(ModelCheckpoint(Path(checkpoint_dir), filename="best", monitor="val_MAE", save_last=True))
    all_callbacks = [*own, *callbacks]
    if logger is None:  # a restored finished run trains nothing: nothing to log
        logger = (
            CSVLogger(Path(checkpoint_dir), name="logs")
            if checkpoint_dir is not None and resume.finished_epochs is None
            else False
        )
    settings: dict[str, Any] = {
        "max_epochs": resume.finished_epochs or spec.max_epochs,
        "accelerator": spec.accelerator,
        "devices": spec.devices,
        "use_distributed_sampler": False,  # HybridDataModule shards the data itself
        "enable_checkpointing": any(isinstance(c, ModelCheckpoint) for c in all_callbacks),
        "enable_progress_bar": spec.progress,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **trainer_kwargs,
    }
    if "strategy" not in settings:
        # The backbone's own (native) head is MatGL's: let DDP find any parameter it leaves unused. Hybrid models
        # use every parameter (MatGL's readout and head are dropped from their backbones).
        many = _n_devices(settings["devices"]) > 1
        settings["strategy"] = ("ddp_find_unused_parameters_true" if model.native else "ddp") if many else "auto"
    trainer = L.Trainer(callbacks=all_callbacks, logger=logger, **settings)
    batches_per_epoch = max(1, -(-len(datamodule.train_set) // trainer.world_size) // spec.batch_size)
    module = build_module(spec, model, batches_per_epoch)
    resume.check_weights(module)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume.path)
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
    """Per-epoch train and validation metrics; saved in Lightning checkpoints, so a resumed run keeps them all.

    The source of ``FitResult.history`` (and of the training record), rather than the CSV logger: a logger is
    optional (none without ``checkpoint_dir``, any other the user passes), ``CSVLogger`` starts a new file for each
    run of a resumed training, may hold an epoch twice when a run was killed after logging it but before its
    checkpoint, and a restored finished run trains (and logs) nothing. These rows always match the checkpoint.
    """

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


@dataclass
class TrainedModel:
    """What :func:`train` returns: the model, the fits of its members, the held-out test split and the record.

    Attributes:
        model: a :class:`HybridModel`, or a :class:`HybridEnsemble` of several members; on the CPU.
        results: one :class:`FitResult` per member.
        test: the held-out test split (never seen in training or early stopping), or None.
        record: the training record (``training.json``): ``target_name``, ``units``, ``n_structures`` (training
            and validation), ``spec``, ``device``, ``members`` (seed, best validation MAE and epoch, epochs run,
            seconds, history of each), ``val_ids``, and ``test`` (fraction, seed, metrics, ids and predictions)
            once the test split is scored (:meth:`score_test`, :meth:`save`).
        test_fraction, test_seed: how the test split was drawn.
        cache_dir: the descriptor cache the test split is scored through (None: no cache).
    """

    model: HybridModel | HybridEnsemble
    results: list[FitResult]
    test: StructureData | None
    record: dict[str, Any]
    test_fraction: float = 0.0
    test_seed: int = 0
    cache_dir: str | Path | None = None

    #: The record's keys that precede ``command`` in ``training.json``.
    _HEAD = ("target_name", "units", "n_structures", "spec", "device")

    @property
    def global_rank(self) -> int:
        """This process's rank under DDP (0 otherwise); only rank 0 writes."""
        return self.results[0].global_rank

    def score_test(self) -> dict[str, Any]:
        """Score the model on the held-out test split on the CPU, into ``record["test"]``, and return that."""
        if self.test is None:
            raise ValueError("no held-out test split: train with test_fraction > 0")
        metrics = holdout_metrics(self.model, self.test, self.cache_dir)
        self.record["test"] = {"fraction": self.test_fraction, "seed": self.test_seed, **metrics}
        return self.record["test"]

    def training_record(self, source: dict[str, Any] | None = None, command: str | None = None) -> dict[str, Any]:
        """The record as ``training.json`` holds it: ``source`` first, then ``record``, ``command`` after ``device``."""
        record = {**(source or {}), **{k: self.record[k] for k in self._HEAD}}
        if command is not None:
            record["command"] = command
        record.update({k: v for k, v in self.record.items() if k not in self._HEAD})
        return record

    def save(
        self,
        out: str | Path,
        *,
        source: dict[str, Any] | None = None,
        command: str | None = None,
        title: str | None = None,
        overwrite: bool = False,
        allow: Iterable[str | Path] = (),
    ) -> Path | None:
        """Save the model with ``training.json`` and ``model_card.md``; with a test split, score it and save again.

        The test split is scored after the model is safely saved (a structure the model cannot read loses nothing),
        then the checkpoint is saved again with the metrics in its record and card. Under DDP only the process of
        ``global_rank`` 0 writes; the others return None.

        Args:
            out: the checkpoint folder (see :func:`~matgl_hybrid.checkpoint.save_model`).
            source: where the data came from, recorded first (the CLI's ``data``, ``target``, ``target_transform``;
                with them the test split can be rebuilt by :func:`~matgl_hybrid.model_card.heldout_split`).
            command: the command line that trained the model, recorded and shown in the card.
            title: the card's title (default: ``matgl-hybrid checkpoint: <folder name>``).
            overwrite, allow: see :func:`~matgl_hybrid.checkpoint.check_model_dir`.
        """
        if self.global_rank != 0:  # under DDP the other processes trained the same model: one writes it
            return None
        title = title or f"matgl-hybrid checkpoint: {Path(out).name}"
        allow = list(allow)

        def write() -> Path:
            record = self.training_record(source, command)
            texts = {"model_card.md": render_card(record, title)}
            return save_model(self.model, out, {"training": record}, texts=texts, overwrite=overwrite, allow=allow)

        path = write()
        if self.test is not None and "test" not in self.record:
            self.score_test()
            path = write()
        return path


def train(
    data: StructureData,
    spec: TrainSpec | None = None,
    *,
    ensemble: int = 1,
    test_fraction: float = 0.0,
    test_seed: int = 0,
    target_units: str | None = None,
    cache_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    callbacks: Iterable[Callback] = (),
    logger: Logger | bool | None = None,
    on_member: Callable[[int, FitResult], None] | None = None,
) -> TrainedModel:
    """Train a model as ``matgl-hybrid train`` does: an optional held-out test split, one model or an ensemble.

    The held-out test split (``test_fraction`` of ``data``, seeded with ``test_seed``) is drawn first and never
    reaches training or early stopping. The members train on the same train/validation split of the rest
    (``spec.val_fraction``, seeded with ``spec.seed``) and differ in their initialisation: member ``k`` trains
    with seed ``spec.seed + k``. Save the result, with its model card and the test metrics, with
    :meth:`TrainedModel.save`.

    Args:
        data: structures with targets.
        spec: model and training settings (default: ``TrainSpec()``).
        ensemble: number of members (K > 1: a :class:`HybridEnsemble`).
        test_fraction: fraction held out as a test split, in [0, 1) (0: none).
        test_seed: seed of the test split.
        target_units: units of the target, stored with the model.
        cache_dir: descriptor cache folder; None: no cache.
        checkpoint_dir: Lightning checkpoints of member ``k`` in ``<checkpoint_dir>/member_<k>`` (see :func:`fit`:
            a rerun resumes them).
        trainer_kwargs, callbacks, logger: see :func:`fit`; the same ones serve every member.
        on_member: called as ``on_member(k, result)`` after member ``k`` (from 0) is trained, in every process.

    Raises:
        ValueError: settings or data that cannot train (checked before any work).
    """
    spec = spec or TrainSpec()
    spec.validate()
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise ValueError(f"ensemble must be an integer >= 1, got {ensemble!r}")
    if data.targets is None:
        raise ValueError("train needs targets: load the data with target=...")
    test = None
    if test_fraction:
        # The held-out test split is drawn first and never reaches training or early stopping.
        keep, held = split_indices(len(data), test_fraction, test_seed)
        data, test = data.subset(keep), data.subset(held)
    # Members share the train/validation split (split seed = spec.seed) and differ in initialisation.
    split = split_indices(len(data), spec.val_fraction, spec.seed)
    train_split, val_split = data.subset(split[0]), data.subset(split[1])
    callbacks = list(callbacks)  # the same ones for every member
    results = []
    for k in range(ensemble):
        member_spec = TrainSpec(**{**spec.to_dict(), "seed": spec.seed + k}) if k else spec
        result = fit(
            train_split,
            spec=member_spec,
            val_data=val_split,
            target_units=target_units,
            cache_dir=cache_dir,
            checkpoint_dir=Path(checkpoint_dir) / f"member_{k}" if checkpoint_dir is not None else None,
            trainer_kwargs=trainer_kwargs,
            callbacks=callbacks,
            logger=logger,
        )
        if on_member is not None:
            on_member(k, result)
        results.append(result)
    model = results[0].model if ensemble == 1 else HybridEnsemble.from_models([r.model for r in results])
    model = model.cpu()  # saved and scored on the CPU: the held-out metrics reproduce on any machine
    accelerator = (trainer_kwargs or {}).get("accelerator", spec.accelerator)
    record = {
        "target_name": data.target_name,
        "units": target_units,
        "n_structures": len(data),
        "spec": spec.to_dict(),
        "device": device_name(accelerator),
        "members": [
            {
                "seed": spec.seed + k,
                "best_val_mae": r.best_val_mae,
                "best_epoch": r.best_epoch,
                "epochs_run": r.epochs_run,
                "seconds": r.seconds,
                "history": r.history,
            }
            for k, r in enumerate(results)
        ],
        "val_ids": results[0].val_ids,
    }
    return TrainedModel(model, results, test, record, test_fraction, test_seed, cache_dir)
