"""Training reliability: a signal raises TrainingInterrupted; a resumed run reproduces the uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_MEGNET
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.trainer.connectors.signal_connector import _HandlersCompose

from matgl_hybrid.checkpoint import CheckpointError
from matgl_hybrid.errors import TrainingInterrupted
from matgl_hybrid.ssl import pretrain
from matgl_hybrid.training import TrainSpec, fit, train
from matgl_hybrid.training.modules import SpecEarlyStopping


class Interrupt(Callback):
    """Sends ``signum`` to this process in ``hook`` of epoch ``epoch`` of its ``fit``-th fit; notes the handler."""

    def __init__(self, epoch: int, signum: int = signal.SIGTERM, hook: str = "on_train_epoch_start", fit: int = 1):
        self.epoch, self.signum, self.fit, self.fits, self.handler = epoch, signum, fit, 0, None
        setattr(self, hook, self._send)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fits += 1

    def _send(self, trainer, pl_module) -> None:
        if self.fits == self.fit and trainer.current_epoch == self.epoch:
            self.handler = signal.getsignal(self.signum)
            os.kill(os.getpid(), self.signum)


class Noise(Callback):
    """Perturbs the weights each epoch with torch, NumPy and Python random draws: the curve depends on all three."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        with torch.no_grad():
            for p in pl_module.parameters():
                shift = float(np.random.randn()) + random.random()  # noqa: NPY002
                p.add_(1e-2 * (torch.randn_like(p) + shift))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_fit_raises_training_interrupted_naming_the_checkpoint_folder(elastic, tmp_path, signum):
    spec = TrainSpec(max_epochs=3, **TINY)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stop = Interrupt(epoch=1, signum=signum)
    ckpt = tmp_path / "ckpt"
    stopped = f"^{signal.Signals(signum).name} stopped training after 1 finished epoch; .* holds the last one: rerun"
    with pytest.raises(TrainingInterrupted, match=stopped) as info:
        fit(elastic, spec=spec, checkpoint_dir=ckpt, callbacks=[stop])  # today: SystemExit
    assert str(ckpt / "last.ckpt") in str(info.value)
    assert "\n" not in str(info.value)
    assert (ckpt / "last.ckpt").is_file()
    if signum == signal.SIGTERM:
        assert isinstance(stop.handler, _HandlersCompose)  # Lightning's own handler received it
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # Ctrl+C works again, SIGTERM is not swallowed

    with pytest.raises(TrainingInterrupted, match=r"nothing can be resumed.*--checkpoint-dir"):
        fit(elastic, spec=spec, callbacks=[Interrupt(epoch=1, signum=signum)])


def test_an_interrupted_ensemble_member_is_named(elastic, tmp_path):
    stopped = r"^ensemble member 2 of 2: SIGTERM stopped training after 0 finished epochs; nothing was saved in "
    with pytest.raises(TrainingInterrupted, match=stopped) as info:
        train(
            elastic,
            TrainSpec(max_epochs=1, **TINY),
            ensemble=2,
            checkpoint_dir=tmp_path,
            callbacks=[Interrupt(0, fit=2)],
        )  # today: SystemExit
    assert str(tmp_path / "member_1") in str(info.value)


@pytest.mark.parametrize("hook", ["on_train_epoch_start", "on_train_epoch_end"], ids=["mid-epoch", "epoch-end"])
def test_a_run_interrupted_and_resumed_reproduces_the_uninterrupted_one(elastic, tmp_path, hook):
    spec = TrainSpec(max_epochs=3, **TINY)
    straight = fit(elastic, spec=spec, checkpoint_dir=tmp_path / "straight", callbacks=[Noise()])
    ckpt = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted):
        fit(elastic, spec=spec, checkpoint_dir=ckpt, callbacks=[Noise(), Interrupt(epoch=1, hook=hook)])
    saved = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=True)  # portable: tensors and numbers
    assert saved["epoch"] == (1 if hook == "on_train_epoch_end" else 0)  # last.ckpt: the last epoch, not the best
    assert "RandomState" in saved["callbacks"]
    assert "HybridDataModule" in saved
    resumed = fit(elastic, spec=spec, checkpoint_dir=ckpt, callbacks=[Noise()])

    assert [row["epoch"] for row in resumed.history] == [row["epoch"] for row in straight.history] == [0, 1, 2]
    curves = [[row["val_MAE"] for row in result.history] for result in (straight, resumed)]
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-6)  # today: diverges from the resumed epoch
    for row, expected in zip(resumed.history, straight.history, strict=True):  # training metrics too
        assert row == pytest.approx(expected, rel=1e-6)
    assert resumed.best_val_mae == pytest.approx(straight.best_val_mae, rel=1e-6)
    assert 0 < resumed.resumed_seconds < resumed.seconds  # the epochs the interrupted process ran count too


def test_a_signal_during_pretraining_raises_training_interrupted(elastic):
    """Label-free pretraining stops the same way (it keeps no checkpoints: nothing to resume)."""
    stop = Interrupt(epoch=1)
    with pytest.raises(TrainingInterrupted, match=r"^SIGTERM stopped training after 1 finished epoch: pretraining"):
        pretrain(
            elastic.structures[:12],
            backbone_kwargs=TINY_MEGNET,
            max_epochs=3,
            batch_size=4,
            val_fraction=0.25,
            accelerator="cpu",
            progress=False,
            trainer_kwargs={"callbacks": [stop]},
        )


class ConstantValidation(Callback):
    """Every validation scores the same: early stopping counts one epoch without improvement per epoch after the
    first."""

    def on_validation_epoch_end(self, trainer, pl_module):
        trainer.callback_metrics["val_MAE"] = torch.tensor(1.0)


@pytest.mark.parametrize(
    ("grown", "epochs"),
    [
        ({"patience": 3}, 4),  # a raised patience holds (Lightning would restore the checkpoint's 1: 3 epochs)
        ({"max_epochs": 10}, 2),  # out of patience already: a larger budget trains nothing more (was one epoch)
    ],
)
def test_a_run_resumed_with_a_grown_budget_stops_where_an_uninterrupted_one_would(elastic, tmp_path, grown, epochs):
    train_part, val = elastic.subset(range(16)), elastic.subset(range(16, 20))
    spec = TrainSpec(**TINY, max_epochs=5, patience=1)
    first = fit(train_part, spec=spec, val_data=val, checkpoint_dir=tmp_path, callbacks=[ConstantValidation()])
    assert len(first.history) == 2
    resumed = fit(train_part, spec=TrainSpec(**{**spec.to_dict(), **grown}), val_data=val, checkpoint_dir=tmp_path,
                  callbacks=[ConstantValidation()])  # fmt: skip
    assert len(resumed.history) == epochs
    # checkpoints written with Lightning's own EarlyStopping resume with their wait count
    assert SpecEarlyStopping(3).state_key == EarlyStopping(monitor="val_MAE", mode="min").state_key


def test_a_native_fine_tuning_checkpoint_of_the_old_optimizer_groups_is_refused_by_its_fingerprint(elastic, tmp_path):
    """MatGL's own head left the layer-decay blocks (2026-12-05): a checkpoint of the old parameter groups would fail
    in torch's optimizer restore ("different number of parameter groups"), past the fingerprint."""
    spec = TrainSpec(**{**TINY, "descriptor_set": None}, readout="native", max_epochs=1, layer_decay=0.8)
    fit(elastic, spec=spec, checkpoint_dir=tmp_path / "native")
    assert "native_head" in (tmp_path / "native" / "fingerprint.json").read_text()
    fit(elastic, spec=TrainSpec(**TINY, max_epochs=1, layer_decay=0.8), checkpoint_dir=tmp_path / "hybrid")
    assert "native_head" not in (tmp_path / "hybrid" / "fingerprint.json").read_text()


@pytest.mark.parametrize("epochs", [4, 10], ids=["shrunk", "grown"])
def test_a_cosine_run_is_not_resumed_with_another_max_epochs(elastic, tmp_path, epochs):
    """The fine-tuning cosine spans max_epochs: resumed with another, its learning rate jumped mid-run (and a run
    that stopped early was handed back under a budget it never trained with)."""
    spec = TrainSpec(**TINY, max_epochs=6, lr_schedule="cosine")
    with pytest.raises(TrainingInterrupted):
        fit(elastic, spec=spec, checkpoint_dir=tmp_path, callbacks=[Interrupt(epoch=2)])
    with pytest.raises(CheckpointError, match=r"cosine schedule over max_epochs 6, this run asks for \d+: its learn"):
        fit(elastic, spec=replace(spec, max_epochs=epochs), checkpoint_dir=tmp_path)


def test_data_built_in_python_with_a_nan_target_is_refused_naming_it(elastic):
    """The loaders refuse a NaN target; data built in Python does not pass through them. One NaN made the target
    mean NaN, no epoch ever improved, and a model predicting NaN was kept without an error."""
    targets = elastic.targets[:12].copy()
    targets[4] = float("nan")
    broken = type(elastic)(elastic.structures[:12], targets, ids=elastic.ids[:12], target_name="K_VRH")
    with pytest.raises(ValueError, match=f"1 training targets are not finite numbers \\(first: {elastic.ids[4]}\\)"):
        fit(broken, spec=TrainSpec(**TINY, max_epochs=1), val_data=elastic.subset(range(12, 16)))


def test_lightning_never_looks_for_checkpoints_in_the_working_directory(elastic, tmp_path, monkeypatch):
    """On SLURM, Lightning resumes from any ``hpc_ckpt_<n>.ckpt`` in its root folder, by default the working
    directory, past the run's fingerprint: the root is the checkpoint folder, or a scratch folder of the call."""
    from pathlib import Path

    class RootDir(Callback):
        def on_train_start(self, trainer, pl_module):
            self.root = Path(trainer.default_root_dir).resolve()

    monkeypatch.chdir(tmp_path)
    seen = RootDir()
    fit(elastic.subset(range(12)), spec=TrainSpec(**TINY, max_epochs=1), callbacks=[seen])
    assert seen.root != tmp_path.resolve()
    assert not seen.root.exists()  # removed after the call
    fit(elastic.subset(range(12)), spec=TrainSpec(**TINY, max_epochs=1), checkpoint_dir=tmp_path / "run",
        callbacks=[seen])  # fmt: skip
    assert seen.root == (tmp_path / "run").resolve()


def test_a_checkpoint_trained_on_other_processes_is_not_trained_further(elastic, tmp_path):
    """DDP shards each epoch's data: on another number of processes the steps per epoch, hence the schedule, change
    mid-run. The number is recorded; a finished run is restored on any, training further is refused."""
    train_part, val = elastic.subset(range(12)), elastic.subset(range(12, 16))
    spec = TrainSpec(**TINY, max_epochs=1)
    fit(train_part, spec=spec, val_data=val, checkpoint_dir=tmp_path)
    stamp = tmp_path / "fingerprint.json"
    record = json.loads(stamp.read_text())
    assert record["world_size"] == 1
    stamp.write_text(json.dumps({**record, "world_size": 2}))  # as a two-process DDP run writes it
    restored = fit(train_part, spec=spec, val_data=val, checkpoint_dir=tmp_path)
    assert len(restored.history) == 1
    assert restored.processes == 2  # what trained it (the batch size was per process), not this session's 1
    with pytest.raises(CheckpointError, match=r"was trained on 2 process\(es\), this run has 1: .*same devices"):
        fit(train_part, spec=TrainSpec(**TINY, max_epochs=2), val_data=val, checkpoint_dir=tmp_path)
    assert json.loads(stamp.read_text())["budget"]["max_epochs"] == 1  # the refused run left the record as it was
    assert len(fit(train_part, spec=spec, val_data=val, checkpoint_dir=tmp_path).history) == 1  # still restored
    # a record written before the number was kept: taken as it comes, and the number recorded from then on
    stamp.write_text(json.dumps({k: v for k, v in record.items() if k != "world_size"}))
    grown = fit(train_part, spec=TrainSpec(**TINY, max_epochs=2), val_data=val, checkpoint_dir=tmp_path)
    assert len(grown.history) == 2
    assert json.loads(stamp.read_text())["world_size"] == 1


def test_last_ckpt_is_replaced_whole_or_not_at_all(tmp_path):
    """Lightning writes through the system's temporary folder; from another file system its move is a copy into
    last.ckpt, and a kill during it left a torn file: the run could not resume and started over."""
    from types import SimpleNamespace

    from matgl_hybrid.training.modules import LastCheckpoint

    class Trainer:
        is_global_zero = True
        strategy = SimpleNamespace(barrier=lambda: None)

        def __init__(self, killed: bool):
            self.killed = killed

        def save_checkpoint(self, path):
            Path(path).write_bytes(b"torn" if self.killed else b"epoch 2")
            if self.killed:
                raise KeyboardInterrupt  # the kill, mid-write

    callback = LastCheckpoint(tmp_path)
    (tmp_path / "last.ckpt").write_bytes(b"epoch 1")
    with pytest.raises(KeyboardInterrupt):
        callback.on_train_epoch_end(Trainer(killed=True), None)
    assert (tmp_path / "last.ckpt").read_bytes() == b"epoch 1"
    callback.on_train_epoch_end(Trainer(killed=False), None)
    assert (tmp_path / "last.ckpt").read_bytes() == b"epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_training_loader_rebuilt_each_epoch_shuffles_on(elastic):
    """Each loader reseeded its generator: with reload_dataloaders_every_n_epochs every epoch had the same order."""
    from matgl_hybrid.training import HybridDataModule

    module = HybridDataModule(elastic.subset(range(16)), elastic.subset(range(16, 20)), TrainSpec(**TINY))
    module.setup("fit")
    first, second = list(module.train_dataloader().sampler), list(module.train_dataloader().sampler)
    assert sorted(first) == sorted(second)
    assert first != second


def test_time_and_step_limits_are_refused_they_would_mark_a_cut_run_finished(elastic):
    for limit in ({"max_time": "00:01:00:00"}, {"max_steps": 10}):
        with pytest.raises(ValueError, match=r"set TrainSpec\.max_epochs"):
            fit(elastic, spec=TrainSpec(**TINY, max_epochs=1), trainer_kwargs=limit)


@pytest.mark.parametrize(
    ("devices", "accelerator", "gpus", "count"),
    [("0,1", "gpu", 2, 2), ("auto", "gpu", 4, 4), (-1, "gpu", 3, 3), ("auto", "cpu", 0, 1), ([0, 1, 2], "gpu", 4, 3),
     ("2", "cpu", 0, 2), ("auto", "auto", 4, 4), ("auto", "auto", 0, 1)],
)  # fmt: skip
def test_the_device_count_that_picks_the_ddp_strategy(devices, accelerator, gpus, count, monkeypatch):
    """'0,1', 'auto' and -1 counted as one device: a native model on two GPUs got DDP without unused-parameter
    detection."""
    from matgl_hybrid.training.fit import _n_devices

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    assert _n_devices(devices, accelerator) == count
