"""Resuming a run from its checkpoint folder: fingerprint, weights check, finished runs restored."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from matgl_hybrid.checkpoint import CheckpointError
from matgl_hybrid.data import StructureData
from matgl_hybrid.files import atomic_write_text, check_output_dir, read_json
from matgl_hybrid.fingerprint import check_fingerprint, run_fingerprint
from matgl_hybrid.training.finetuning import uses_finetuning_schedule
from matgl_hybrid.training.spec import TrainSpec, upgrade_fingerprint


class ResumableRun:
    """A ``checkpoint_dir``: its fingerprint, whether and from where training resumes, and if it already finished.

    ``fingerprint.json`` holds ``{"fingerprint": …, "budget": {"max_epochs", "patience"}, "finished_epochs",
    "world_size"}``. An existing ``last.ckpt`` is resumed only when the stored fingerprint (data, target, every
    setting but the budget, descriptor version) equals this run's, and only when it loads and fits the model. A run
    that finished with the same budget is restored, not trained further; a larger budget continues it; a budget it
    has gone past (fewer epochs than it ran, a smaller patience) is refused, and so is training further on another
    number of processes (DDP shards each epoch's data: the steps per epoch, hence the schedule, change with it).
    Under the fine-tuning schedule (warm-up then a cosine over ``max_epochs``) another ``max_epochs`` is refused:
    the learning rate of every later step would change mid-run.
    """

    HINT = "resume with the same data and settings, or choose another checkpoint folder (or delete it) to start over"
    BUDGET = ("max_epochs", "patience")

    def __init__(
        self,
        directory: str | Path | None,
        datasets: Sequence[StructureData],
        spec: TrainSpec,
        version: str | None,
        trainer: dict[str, Any] | None = None,
    ):
        """``trainer``: the Lightning ``Trainer`` arguments given to ``fit`` that change its result (``precision``,
        …, as JSON values: :func:`~matgl_hybrid.training.fit.result_changing`), fingerprinted with the rest (absent
        when none, as in every fingerprint written before them)."""
        self.directory = None if directory is None else check_output_dir(directory)
        self.path: str | None = None
        self.finished_epochs: int | None = None
        self.state: dict[str, Any] | None = None
        self.world_size: int | None = None  # training processes of the run in the folder (None: not recorded)
        if self.directory is None:
            return
        settings = {k: v for k, v in spec.to_dict().items() if k not in self.BUDGET}
        # MatGL's own head (a native readout) at the head's rate since 2026-12-05: its optimizer groups differ
        head = {"native_head": "lr"} if spec.readout == "native" and uses_finetuning_schedule(spec) else {}
        self.fingerprint = run_fingerprint(
            datasets, settings, version, **({"trainer": trainer} if trainer else {}), **head
        )
        self.budget = {k: getattr(spec, k) for k in self.BUDGET}
        self.schedule_spans_budget = uses_finetuning_schedule(spec)
        stamp, last = self.directory / "fingerprint.json", self.directory / "last.ckpt"
        if last.exists():
            stored = read_json(stamp) if stamp.is_file() else {}
            check_fingerprint(upgrade_fingerprint(stored.get("fingerprint")), self.fingerprint, last, self.HINT)
            try:
                checkpoint = torch.load(last, map_location="cpu", weights_only=True)
                self.state = checkpoint["state_dict"]
            except Exception as exc:  # a truncated file, or no Lightning checkpoint at all
                raise CheckpointError(
                    f"{last} cannot be resumed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): "
                    "delete it, or choose another checkpoint folder, to start over"
                ) from None
            self.path = str(last)
            self.world_size = stored.get("world_size")
            self._check_budget(stored.get("budget") or {}, int(checkpoint.get("epoch", -1)) + 1, last)
            if stored.get("budget") == self.budget:
                self.finished_epochs = stored.get("finished_epochs")

    def _check_budget(self, stored: dict[str, Any], epochs_run: int, last: Path) -> None:
        """Refuse a budget the checkpoint has gone past: fewer epochs than it ran, or a smaller patience (it would
        hand back the longer run's best epoch as this one's)."""
        epochs, patience = self.budget["max_epochs"], self.budget["patience"]
        if self.schedule_spans_budget and epochs != stored.get("max_epochs", epochs):
            raise CheckpointError(
                f"{last} was trained on a cosine schedule over max_epochs {stored['max_epochs']}, this run asks for "
                f"{epochs}: its learning rate would jump mid-run; {self.HINT}"
            )
        if epochs < epochs_run:
            raise CheckpointError(
                f"{last} has run {epochs_run} epochs, more than max_epochs {epochs}: a smaller budget cannot be "
                f"resumed; {self.HINT}"
            )
        if patience < stored.get("patience", 0):
            raise CheckpointError(
                f"{last} was trained with patience {stored['patience']}, this run asks for {patience}: a smaller "
                f"patience cannot be resumed; {self.HINT}"
            )

    def _write(self, finished_epochs: int | None) -> None:
        if self.directory is not None:
            record = {
                "fingerprint": self.fingerprint,
                "budget": self.budget,
                "finished_epochs": finished_epochs,
                "world_size": self.world_size,
            }
            atomic_write_text(self.directory / "fingerprint.json", json.dumps(record))

    def begin(self, world_size: int, is_global_zero: bool = True) -> None:
        """Before training, once the Trainer knows its number of processes: refuse to train a checkpoint further
        on another number than it was trained on (a finished run is restored on any; a record written before the
        number was kept is taken as it comes), then write ``fingerprint.json`` (rank 0). A finished run stays
        marked until it has been restored."""
        if self.directory is None:
            return
        restored = self.path is not None and self.finished_epochs is not None
        if self.path is not None and not restored and self.world_size not in (None, world_size):
            raise CheckpointError(
                f"{self.path} was trained on {self.world_size} process(es), this run has {world_size}: each epoch's "
                f"steps, hence the learning-rate schedule, would change mid-run; resume with the same devices, or "
                "choose another checkpoint folder (or delete it) to start over"
            )
        if not restored:
            self.world_size = world_size
        if is_global_zero:
            self._write(self.finished_epochs)

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
