"""``fit``: one model, trained with early stopping, the best weights kept, checkpoints that resume."""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from matgl_hybrid.data import StructureData, from_structures
from matgl_hybrid.data.splits import split_indices
from matgl_hybrid.errors import TrainingInterrupted
from matgl_hybrid.models import HybridModel
from matgl_hybrid.quiet import quiet_lightning
from matgl_hybrid.training.datamodule import HybridDataModule
from matgl_hybrid.training.finetuning import WarmupEMA, pretrained_architecture, pretrained_name
from matgl_hybrid.training.modules import (
    History,
    KeepBestWeights,
    LastCheckpoint,
    RandomState,
    SpecEarlyStopping,
    build_model,
    build_module,
)
from matgl_hybrid.training.resume import ResumableRun
from matgl_hybrid.training.spec import TrainSpec


@dataclass
class FitResult:
    """What :func:`fit` returns: the model (best validation weights) and its training record.

    ``best_val_mae``: the validation MAE of the weights kept (for a classifier, of its probabilities at the epoch of
    its lowest validation log loss, the weights it keeps).

    ``seconds``: wall time of the training (s), including ``resumed_seconds``, the epochs that the processes it
    resumed from (its checkpoint) had run. ``processes``: how many trained it (DDP; ``batch_size`` is per process,
    so the global batch and the steps per epoch differ with it).
    """

    model: HybridModel
    best_val_mae: float
    best_epoch: int
    epochs_run: int
    train_ids: list[str]
    val_ids: list[str]
    seconds: float = 0.0
    resumed_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    global_rank: int = 0
    processes: int = 1


def device_name(accelerator: str = "auto") -> str:
    """The device Lightning's ``accelerator`` resolves to here, as recorded with results: a GPU's name or the CPU."""
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if accelerator == "mps":
        return "Apple GPU (mps)"
    return f"cpu ({torch.get_num_threads()} threads)"


def resolved_accelerator(accelerator: str) -> str:
    """The Lightning accelerator to train on: ``auto`` is a CUDA GPU where there is one, else the CPU (never Apple's
    MPS on its own: it has no float64, which the descriptor transform computes in); any other value as given."""
    if accelerator != "auto":
        return accelerator
    return "gpu" if torch.cuda.is_available() else "cpu"


def check_accelerator(accelerator: str) -> None:
    """Refuse, before any work, a CUDA accelerator on a machine without a CUDA GPU (Lightning would refuse it only
    when the Trainer is built, after the data are featurized)."""
    if resolved_accelerator(accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"accelerator {accelerator!r}: there is no CUDA GPU here (auto or cpu trains on the CPU)")


def lightning_trainer(**settings: Any) -> L.Trainer:
    """``L.Trainer(**settings)``; Lightning's refusal of them (devices this machine lacks, a strategy it cannot run)
    as one ValueError line."""
    try:
        return L.Trainer(**settings)
    except MisconfigurationException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"Lightning refuses the Trainer settings: {first}") from exc


#: Trainer arguments that ``fit`` takes as its own arguments or from the spec, refused in ``trainer_kwargs``.
_OWN_TRAINER_ARGS = {
    "callbacks": "pass them as fit(callbacks=...)",
    "logger": "pass it as fit(logger=...)",
    "max_epochs": "set TrainSpec.max_epochs (it is part of the run's fingerprint and its learning-rate decay)",
    "gradient_clip_val": "set TrainSpec.gradient_clip (it is part of the run's fingerprint and its record)",
    "max_time": "set TrainSpec.max_epochs (a run cut by time would be recorded as finished and never resumed)",
    "max_steps": "set TrainSpec.max_epochs (a run cut by steps would be recorded as finished and never resumed)",
}
#: Trainer arguments that change where and how visibly a run computes, not its result: left out of the fingerprint
#: of a checkpoint folder. Every other ``trainer_kwargs`` entry (``precision``, ``accumulate_grad_batches``, …) is in.
RUNTIME_TRAINER_ARGS = frozenset(
    {"accelerator", "devices", "num_nodes", "strategy", "enable_progress_bar", "enable_model_summary",
     "log_every_n_steps", "default_root_dir", "profiler"}
)  # fmt: skip


def result_changing(trainer_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``trainer_kwargs`` that change a run's result (all but :data:`RUNTIME_TRAINER_ARGS`), as JSON values for
    fingerprints (an object by its type's name)."""
    changing = {k: v for k, v in (trainer_kwargs or {}).items() if k not in RUNTIME_TRAINER_ARGS}
    return json.loads(json.dumps(changing, default=lambda o: type(o).__name__))


def _n_devices(devices: Any, accelerator: Any) -> int:
    """The number of devices a Trainer's ``devices`` asks for on ``accelerator`` (a name, ``"auto"`` included, or a
    Lightning ``Accelerator``, as ``trainer_kwargs`` may give it): a count, indices (a list, or ``"0,1"``), or
    ``"auto"`` / ``-1``: every GPU, or one CPU process."""
    if isinstance(accelerator, str):
        gpu = resolved_accelerator(accelerator) in ("gpu", "cuda")
    else:
        gpu = "CUDA" in type(accelerator).__name__
    text = devices.strip() if isinstance(devices, str) else None
    if devices == -1 or text in ("auto", "-1"):
        return torch.cuda.device_count() if gpu else 1
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices
    if isinstance(devices, list | tuple):
        return len(devices)
    if text is not None and "," in text:
        return len([d for d in text.split(",") if d.strip()])
    return int(text) if text is not None and text.isdigit() else 1


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
        spec: model and training settings (default: ``TrainSpec()``, the recommended recipe).
        val_data: explicit validation data; otherwise ``spec.val_fraction`` of ``data`` (seeded).
        target_units: units of the target, stored with the model.
        cache_dir: descriptor cache folder; None: no cache.
        checkpoint_dir: write Lightning checkpoints here (``last.ckpt`` after every epoch, holding the random
            states and the shuffle's, so that a resumed run reproduces the uninterrupted one; ``best.ckpt``) with a
            ``fingerprint.json`` of the run; when ``last.ckpt`` exists, training resumes from it, but only for the
            same data, target, settings, descriptor version, NEGNN encoder files and result-changing
            ``trainer_kwargs`` (else :class:`FingerprintMismatch`). A finished run is restored, not trained further,
            unless ``max_epochs`` or ``patience`` grew: then it goes on from its last epoch with the new patience (a
            run already out of patience stops), but its learning-rate schedule is not the one a run with the larger
            budget would have had from its start; a budget the checkpoint has gone past (fewer epochs than it ran,
            a smaller patience) raises :class:`CheckpointError`.
        trainer_kwargs: Lightning ``Trainer`` arguments, merged over those ``fit`` chooses (``accelerator`` and
            ``devices`` from the spec, ``strategy``, ``enable_progress_bar``, ``use_distributed_sampler=False``,
            ``num_sanity_val_steps=0``, …): e.g. ``precision``, ``accumulate_grad_batches`` (part of a checkpoint
            folder's fingerprint, but for :data:`RUNTIME_TRAINER_ARGS`). ``callbacks``, ``logger``, ``max_epochs``
            and ``gradient_clip_val`` are refused here (fit's own arguments, and the spec's).
        callbacks: Lightning callbacks added to fit's own (early stopping on validation MAE, a classifier's on
            its log loss, the best weights,
            the history and, with ``checkpoint_dir``, checkpointing).
        logger: a Lightning logger, or False for none; default: a ``CSVLogger`` writing
            ``<checkpoint_dir>/logs/version_<n>/metrics.csv`` (a new version each run, resumes included) when
            ``checkpoint_dir`` is given, else none. ``FitResult.history`` does not depend on it.

    Returns:
        :class:`FitResult`; its model carries the best validation weights and everything needed to predict. Under
        DDP every process returns one; only the one with ``global_rank == 0`` should write anything.

    Raises:
        ValueError: settings or data that cannot train (checked before any work).
        TrainingInterrupted: SIGTERM or SIGINT (Ctrl+C) stopped training; with ``checkpoint_dir``, a rerun with the
            same data and settings resumes from the last finished epoch and reproduces the uninterrupted run.
    """
    spec = spec or TrainSpec()
    spec.validate()
    if pretrained_name(spec) is not None:  # its cutoff and architecture are the potential's: refused before any work
        pretrained_architecture(spec)
    check_accelerator(spec.accelerator)
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
        classes = data.targets if spec.task_type == "classification" else None  # no split of one class alone
        train_idx, val_idx = split_indices(len(data), spec.val_fraction, spec.seed, data.structure_keys(), classes)
        train, val = data.subset(train_idx), data.subset(val_idx)
    else:
        train, val = data, val_data
    if len(train) < 2 or len(val) < 1:
        raise ValueError(
            f"cannot train on {len(train)} training and {len(val)} validation structures: at least 2 and 1 are "
            "needed (more data, or another val_fraction)"
        )
    for part, name in ((train, "training"), (val, "validation")):  # data built in Python skips the loaders' checks
        finite = np.isfinite(np.asarray(part.targets, dtype=float))
        if bad := [str(i) for i, ok in zip(part.ids, finite, strict=True) if not ok]:
            raise ValueError(f"{len(bad)} {name} targets are not finite numbers (first: {', '.join(bad[:3])})")
    if (
        spec.task_type == "classification"
        and not np.isin(np.concatenate([train.targets, val.targets]), (0.0, 1.0)).all()
    ):
        raise ValueError("classification targets must be 0 or 1")
    datamodule = HybridDataModule(train, val, spec, cache_dir=cache_dir)
    resume = ResumableRun(checkpoint_dir, [train, val], spec, datamodule.descriptor_version,
                          result_changing(trainer_kwargs))  # fmt: skip
    L.seed_everything(spec.seed, verbose=False)
    start = time.perf_counter()

    datamodule.setup("fit")  # featurize, fit the transform on the training split, build the graphs
    model = build_model(spec, datamodule, target_name=data.target_name or "target", target_units=target_units)

    # A classifier keeps and stops on its validation log loss (a proper score; the MAE of probabilities rewards
    # pushing them to 0 or 1), as its candidates are compared; a regression on its validation MAE.
    monitor = "val_Total_Loss" if spec.task_type == "classification" else "val_MAE"
    best = KeepBestWeights(monitor)
    history = History()
    own: list[Callback] = [SpecEarlyStopping(spec.patience, monitor), best, history]
    if spec.ema_decay is not None:  # after ``best``: at a validation's end it keeps the averaged weights validated
        own.append(WarmupEMA(decay=spec.ema_decay))
    if checkpoint_dir is not None:
        best_checkpoint = ModelCheckpoint(Path(checkpoint_dir), filename="best", monitor=monitor)
        # last.ckpt after every epoch, with the random states: a resumed run reproduces the uninterrupted one.
        own += [best_checkpoint, LastCheckpoint(checkpoint_dir), RandomState()]
    all_callbacks = [*own, *callbacks]
    if logger is None:  # a restored finished run trains nothing: nothing to log
        logger = (
            CSVLogger(Path(checkpoint_dir), name="logs")
            if checkpoint_dir is not None and resume.finished_epochs is None
            else False
        )
    settings: dict[str, Any] = {
        "max_epochs": resume.finished_epochs or spec.max_epochs,
        "accelerator": resolved_accelerator(spec.accelerator),
        "devices": spec.devices,
        "use_distributed_sampler": False,  # HybridDataModule shards the data itself
        "enable_checkpointing": any(isinstance(c, ModelCheckpoint) for c in all_callbacks),
        "enable_progress_bar": spec.progress,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **({"gradient_clip_val": spec.gradient_clip} if spec.gradient_clip is not None else {}),
        **trainer_kwargs,
    }
    if "strategy" not in settings:
        # The backbone's own (native) head is MatGL's: let DDP find any parameter it leaves unused. Hybrid models
        # use every parameter (MatGL's readout and head are dropped from their backbones).
        many = _n_devices(settings["devices"], settings["accelerator"]) > 1
        settings["strategy"] = ("ddp_find_unused_parameters_true" if model.native else "ddp") if many else "auto"
    # Lightning's root folder: the checkpoint folder, or a scratch folder of this call, never the working directory,
    # where on SLURM Lightning would resume from any ``hpc_ckpt_<n>.ckpt`` it finds (another run's, unchecked).
    root = contextlib.nullcontext(checkpoint_dir) if checkpoint_dir is not None else tempfile.TemporaryDirectory(
        prefix="matgl-hybrid-fit-")  # fmt: skip
    with root as root_dir:
        settings.setdefault("default_root_dir", str(root_dir))
        with quiet_lightning():
            trainer = lightning_trainer(callbacks=all_callbacks, logger=logger, **settings)
        per_process = -(-len(datamodule.train_set) // trainer.world_size)
        if per_process < 2 or len(datamodule.val_set) < trainer.world_size:  # else a process gets no batch at all
            raise ValueError(
                f"cannot train {len(datamodule.train_set)} training and {len(datamodule.val_set)} validation "
                f"structures on {trainer.world_size} processes: each needs 2 and 1 (more data, or fewer devices)"
            )
        resume.begin(trainer.world_size, trainer.is_global_zero)
        module = build_module(spec, model, per_process, trainer.accumulate_grad_batches)
        resume.check_weights(module)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            with quiet_lightning():
                fit_or_raise_interrupted(
                    trainer, module, lambda: _resume_hint(resume), datamodule=datamodule, ckpt_path=resume.path
                )
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    if trainer.is_global_zero:
        resume.mark_finished(trainer.current_epoch)
    best_val_mae = best.best if monitor == "val_MAE" else _logged(history.rows, best.best_epoch, "val_MAE")
    return FitResult(
        model=model,
        best_val_mae=best_val_mae,
        best_epoch=best.best_epoch,
        epochs_run=trainer.current_epoch,
        train_ids=list(train.ids),
        val_ids=list(val.ids),
        seconds=time.perf_counter() - start + history.resumed_seconds,
        resumed_seconds=history.resumed_seconds,
        history=history.rows,
        global_rank=trainer.global_rank,
        processes=resume.world_size or trainer.world_size,  # a restored run: the processes that trained it
    )


def _logged(rows: list[dict[str, float]], epoch: int, name: str) -> float:
    """The value of ``name`` that the history ``rows`` hold for ``epoch`` (NaN where none does)."""
    return next((row[name] for row in rows if row.get("epoch") == epoch and name in row), float("nan"))


def fit_or_raise_interrupted(
    trainer: L.Trainer, module: L.LightningModule, resume_hint: Callable[[], str], **fit_kwargs: Any
) -> None:
    """``trainer.fit(module, **fit_kwargs)``, with a stop by SIGTERM or SIGINT raised as :class:`TrainingInterrupted`
    (its message: what stopped, after how many epochs, and ``resume_hint()``), not ``SystemExit``.

    Lightning's own SIGTERM handler (installed by the Trainer on the main thread) ends training with its
    ``SIGTERMException``, a ``SystemExit`` without a code; on a ``KeyboardInterrupt`` it calls ``sys.exit(1)`` and
    leaves SIGINT ignored. The first exits 0 (success, to a pipeline), the second 1 without a word: both are raised
    here as a one-line error naming what can be resumed, with Ctrl+C restored.
    """
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, **fit_kwargs)
    except SystemExit as exc:
        if isinstance(exc, SIGTERMException):
            name = "SIGTERM"
        elif trainer.interrupted and isinstance(exc.__context__, KeyboardInterrupt):
            name = "SIGINT"
            if sigint is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, sigint)
        else:
            raise
        epochs = trainer.fit_loop.epoch_progress.current.completed
        stopped = f"{name} stopped training after {epochs} finished epoch{'s' * (epochs != 1)}"
        raise TrainingInterrupted(stopped + resume_hint()) from None


def _resume_hint(resume: ResumableRun) -> str:
    """What a rerun of an interrupted :func:`fit` resumes from."""
    if resume.directory is None:
        return ": nothing can be resumed, it ran without a checkpoint folder (--checkpoint-dir, checkpoint_dir)"
    if (last := resume.directory / "last.ckpt").is_file():
        return f"; {last} holds the last one: rerun with the same data, settings and checkpoint folder to resume"
    return f"; nothing was saved in {resume.directory} yet: a rerun starts it over"
