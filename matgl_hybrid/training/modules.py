"""The Lightning pieces of training: the LightningModule (MatGL's), its callbacks, the model built for a spec."""

from __future__ import annotations

import copy
import functools
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torchmetrics
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from matgl.ext.pymatgen import get_element_list
from matgl.utils.training import ModelLightningModule

from matgl_hybrid import potentials
from matgl_hybrid.checkpoint import load_checkpoint
from matgl_hybrid.layers.targets import Probabilities
from matgl_hybrid.models import HybridModel
from matgl_hybrid.models.negnn import encoder_spec
from matgl_hybrid.training.datamodule import HybridDataModule, batches_per_epoch
from matgl_hybrid.training.finetuning import (
    freeze,
    load_pretrained_weights,
    optimizer_and_schedule,
    pretrained_architecture,
    pretrained_name,
    uses_finetuning_schedule,
)
from matgl_hybrid.training.spec import TrainSpec


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
            "descriptor_set": spec.descriptor_set,
            "descriptor_version": datamodule.descriptor_version,
            # each group's key, so that a model refused later is told which group changed, and how
            "descriptor_keys": {g.name: g.key for g in datamodule.descriptor_set.groups},
            "descriptor_transform": datamodule.transform_.to_dict(),
            "descriptor_dim": spec.descriptor_dim,
            "fusion": spec.fusion,
        }
    encoder = None
    if spec.node_embeddings:
        path, _, layers = spec.node_embeddings.rpartition(":")
        encoder = load_checkpoint(path)
        model_args["node_embeddings"] = encoder_spec(encoder, [int(x) for x in layers.split(",")])
    y_train = datamodule.train.targets
    regression = spec.task_type == "regression"
    backbone_kwargs = spec.backbone_kwargs
    if pretrained_name(spec) is not None:  # the potential's architecture, then its weights
        _, _, backbone_kwargs = pretrained_architecture(spec)
        name = pretrained_name(spec)
        model_args["pretrained_weights"] = {"name": name, "sha256": potentials.weights_sha256(name)}
    model = HybridModel(
        backbone=spec.backbone,
        element_types=datamodule.element_types,
        cutoff=spec.cutoff,
        backbone_kwargs=backbone_kwargs,
        readout=spec.readout,
        head_hidden=spec.head_hidden,
        activation=spec.activation,
        target_names=(target_name,),
        target_units=target_units,
        task_type=spec.task_type,
        target_mean=[float(np.mean(y_train))] if regression else None,
        target_std=[float(np.std(y_train)) or 1.0] if regression else None,
        trained_elements=tuple(get_element_list(datamodule.train.structures)),
        **model_args,
    )
    if encoder is not None:
        model.ne_encoder.encoder.load_state_dict(encoder.state_dict())
    if pretrained_name(spec) is not None:
        load_pretrained_weights(model, spec)
    freeze(model, spec.freeze)
    return model


def build_module(
    spec: TrainSpec, model: HybridModel, n_train: int, accumulate_grad_batches: int = 1
) -> HybridLightningModule:
    """The Lightning module training ``model`` with ``spec``'s loss, learning rate and cosine decay.

    ``n_train``: training structures per epoch and process; ``accumulate_grad_batches``: the Trainer's (batches per
    optimizer step). Classification trains on binary cross-entropy. Fine-tuning settings (or a pretrained backbone)
    train with :func:`~matgl_hybrid.training.finetuning.optimizer_and_schedule` (AdamW, layer-wise rates, warm-up +
    cosine per optimizer step, over the steps that the
    :func:`~matgl_hybrid.training.datamodule.batches_per_epoch` make: one per ``accumulate_grad_batches``, the last
    of an epoch included, as Lightning steps); otherwise MatGL's Adam with
    its cosine over ``max_epochs × (n_train // batch_size)`` steps, stepped once per epoch (see :class:`TrainSpec`:
    every recipe result was trained so, and runs registered with it resume and reproduce).
    """
    schedule: dict[str, Any] = {}
    if uses_finetuning_schedule(spec):
        steps = -(-batches_per_epoch(n_train, spec.batch_size) // accumulate_grad_batches)
        optimizer, scheduler = optimizer_and_schedule(model, spec, steps)
        schedule = {"optimizer": optimizer, "scheduler": scheduler}
    module = HybridLightningModule(
        model=model,
        data_mean=0.0,  # the model de-standardizes itself (target_mean / target_std)
        data_std=1.0,
        loss=spec.loss,
        lr=spec.lr,
        decay_steps=spec.max_epochs * max(1, n_train // spec.batch_size),
        decay_alpha=spec.decay_alpha,
        **schedule,
    )
    if spec.task_type == "classification":
        module.loss = functools.partial(_binary_cross_entropy, model.output)
    return module


def _binary_cross_entropy(
    output: Probabilities, labels: torch.Tensor, probabilities: torch.Tensor, **kwargs
) -> torch.Tensor:
    """BCE with MatGL's loss argument order ``loss(labels, predictions)``, from the logits of the forward pass that
    gave ``probabilities`` (kept by the model's :class:`~matgl_hybrid.layers.targets.Probabilities` output)."""
    logits, output.logits = output.logits, None  # read once: the tensor (and its graph) is not kept
    if logits is None or logits.numel() != probabilities.numel():
        raise RuntimeError("the classification loss needs the logits of the forward pass that gave its predictions")
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.reshape(labels.shape), labels)


class SpecEarlyStopping(EarlyStopping):
    """Early stopping on validation MAE (a classifier's: log loss) with the spec's patience, also when a run
    resumes with another budget.

    Lightning restores the checkpoint's patience with its wait count, so a raised ``patience`` would be ignored;
    and it does not save that a run stopped, so a run that had run out of patience would train on when only
    ``max_epochs`` grew. Here the spec's patience holds, and such a run stops before training, as an
    uninterrupted run with the larger budget would have.
    """

    def __init__(self, patience: int, monitor: str = "val_MAE"):
        super().__init__(monitor=monitor, patience=patience, mode="min")

    @property
    def state_key(self) -> str:
        """Lightning's ``EarlyStopping`` key: checkpoints written with it resume with their wait count."""
        return f"EarlyStopping{ ({'monitor': self.monitor, 'mode': self.mode})!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.wait_count >= self.patience:
            trainer.should_stop = True


class KeepBestWeights(Callback):
    """Keeps a copy of the weights with the lowest ``monitor`` (validation MAE; a classifier's log loss); ``fit``
    restores them at the end."""

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
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state, "monitor": self.monitor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        kept_by = state_dict.get("monitor", "val_MAE")  # checkpoints written before the monitor was kept
        if kept_by != self.monitor:
            raise ValueError(
                f"the checkpoint kept its best weights by {kept_by}, this run keeps them by {self.monitor} (a "
                "classifier's log loss since 2026-12-05): their scores cannot be compared; start the run anew in "
                "another folder"
            )
        self.best, self.best_epoch, self.state = state_dict["best"], state_dict["best_epoch"], state_dict["state"]


class History(Callback):
    """Per-epoch train and validation metrics; saved in Lightning checkpoints, so a resumed run keeps them all.

    The source of ``FitResult.history`` (and of the training record), rather than the CSV logger: a logger is
    optional (none without ``checkpoint_dir``, any other the user passes), ``CSVLogger`` starts a new file for each
    run of a resumed training, may hold an epoch twice when a run was killed after logging it but before its
    checkpoint, and a restored finished run trains (and logs) nothing. These rows always match the checkpoint.
    A row is taken at the end of its training epoch, after its validation: it holds that epoch's training metrics
    (at validation time they are still the previous epoch's, and a resumed run has none yet).

    Also the wall time of the epochs (``seconds``, s, validation included), kept with the rows: ``resumed_seconds``
    is what the checkpoint a run resumed from had spent (0 for checkpoints written before it was kept).
    """

    def __init__(self, endings: tuple[str, ...] = ("MAE", "Loss")) -> None:
        """``endings``: the logged metrics kept, by how their names end (a fit's ``val_MAE``, pretraining's
        ``val_total``)."""
        self.endings = endings
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0
        self.resumed_seconds = 0.0
        self._epoch_start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith(self.endings)})
        self.rows.append(row)
        if self._epoch_start is not None:
            self.seconds += time.perf_counter() - self._epoch_start

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])
        self.seconds = self.resumed_seconds = float(state_dict.get("seconds", 0.0))


class LastCheckpoint(Checkpoint):
    """Writes ``<directory>/last.ckpt`` at the end of every training epoch, the point a resumed run goes on from.

    Since Lightning 2.6, ``ModelCheckpoint(save_last=True)`` with a monitor writes ``last.ckpt`` only when the
    monitored value improves: a resume would repeat every epoch since the best one. Lightning runs checkpoint
    callbacks after the others, so the file holds the epoch's history, best weights and early-stopping state.
    """

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "last.ckpt"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # beside it, then renamed over it: Lightning's own write goes through the system's temporary folder, and from
        # another file system it is a copy into last.ckpt, which a kill during it would leave torn
        partial = self.path.with_name(f".{self.path.name}.partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier()


class RandomState(Callback):
    """Saves the global random states (torch, CUDA, NumPy, Python) in Lightning checkpoints and restores them on resume.

    With the data module's shuffle state (:meth:`HybridDataModule.state_dict`), a run resumed from an epoch's
    checkpoint draws what the uninterrupted run drew (dropout, a callback's noise). Stored as tensors and numbers,
    the checkpoint still loads with ``torch.load(weights_only=True)``. Under DDP rank 0's states serve every rank.
    """

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the global state is saved)
        version, internal, gauss_next = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
            "numpy": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(gauss),
            },
            "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss_next},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(state_dict["cuda"])
        state = state_dict["numpy"]
        keys = state["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))  # noqa: NPY002
        state = state_dict["python"]
        random.setstate((state["version"], tuple(state["internal"].tolist()), state["gauss"]))
