"""Training: the data module, fit's Trainer options (kwargs, callbacks, CSV logger) and train (test split, ensemble)."""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import TINY
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from pymatgen.core import Lattice, Structure
from recorders import LearningRates

import matgl_hybrid.training.datamodule
from matgl_hybrid import data
from matgl_hybrid.cli import build_parser
from matgl_hybrid.data.splits import split_indices
from matgl_hybrid.descriptors import DescriptorTransform, featurize
from matgl_hybrid.fingerprint import FingerprintMismatch
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.training import HybridDataModule, TrainedModel, TrainSpec, fit, train
from matgl_hybrid.training.spec import upgrade_fingerprint


def _val(dataset: data.StructureData, ids: list[str]) -> data.StructureData:
    return dataset.subset([dataset.ids.index(i) for i in ids])


def test_data_module_featurizes_once_fits_on_training_data_and_carries_raw_descriptors(elastic, monkeypatch):
    calls = []

    def counted(structures, *args, **kwargs):
        calls.append(len(structures))
        return featurize(structures, *args, **kwargs)

    monkeypatch.setattr(matgl_hybrid.training.datamodule, "featurize", counted)
    train_split, val_split = elastic.subset(range(17)), elastic.subset(range(17, 24))
    module = HybridDataModule(train_split, val_split, TrainSpec(**{**TINY, "batch_size": 4}))
    module.setup("fit")
    module.setup("fit")  # Lightning's own call inside trainer.fit: nothing is done twice
    assert calls == [17, 7]

    frames = [featurize(d.structures, "lattice", progress=False) for d in (train_split, val_split)]
    assert module.transform_.to_dict() == DescriptorTransform().fit(frames[0]).to_dict()  # training split only
    for dataset, frame in zip((module.train_set, module.val_set), frames, strict=True):
        carried = np.concatenate([g.descriptor.numpy() for g in dataset.graphs])
        assert carried.dtype == np.float64
        np.testing.assert_array_equal(carried, frame.to_numpy(dtype=np.float64))  # raw, not standardized

    # 17 % 4 == 1: the last training batch of one structure is dropped; the shuffle is seeded (another module of the
    # same seed draws the same order)
    again = HybridDataModule(train_split, val_split, TrainSpec(**{**TINY, "batch_size": 4}))
    again.setup("fit")
    loaders = [module.train_dataloader(), again.train_dataloader()]
    orders = [np.concatenate([labels.numpy().ravel() for *_, labels in loader]) for loader in loaders]
    assert len(orders[0]) == 16
    np.testing.assert_array_equal(orders[0], orders[1])
    assert sum(len(labels) for *_, labels in module.val_dataloader()) == 7


def test_data_module_without_descriptors_and_with_all_elements(elastic):
    module = HybridDataModule(
        elastic.subset(range(6)),
        elastic.subset(range(6, 8)),
        TrainSpec(**{**TINY, "descriptor_set": None, "element_types": "all"}),
    )
    module.setup()
    assert module.transform_ is None
    assert module.descriptor_version is None
    assert len(module.element_types) == 89
    assert not hasattr(module.train_set.graphs[0], "descriptor")


class Recorder(Callback):
    def __init__(self):
        self.epochs, self.accumulated = [], None

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append(trainer.current_epoch)
        self.accumulated = trainer.accumulate_grad_batches


def test_fit_takes_trainer_kwargs_callbacks_and_writes_a_csv_log_into_the_checkpoint_dir(elastic, tmp_path):
    recorder = Recorder()
    spec = TrainSpec(max_epochs=2, **TINY)
    ckpt = tmp_path / "ckpt"
    result = fit(
        elastic, spec=spec, checkpoint_dir=ckpt, trainer_kwargs={"accumulate_grad_batches": 2}, callbacks=[recorder]
    )
    assert recorder.epochs == [0, 1]
    assert recorder.accumulated == 2
    with pytest.raises(FingerprintMismatch, match="trainer"):  # resumed without it: another run, refused
        fit(elastic, spec=spec, checkpoint_dir=ckpt)
    fit(elastic, spec=spec, checkpoint_dir=ckpt, trainer_kwargs={"accumulate_grad_batches": 2,
                                                                 "enable_progress_bar": True})  # fmt: skip
    with open(ckpt / "logs" / "version_0" / "metrics.csv") as f:
        logged = [float(row["val_MAE"]) for row in csv.DictReader(f) if row["val_MAE"]]
    assert logged == pytest.approx([row["val_MAE"] for row in result.history])
    assert (ckpt / "last.ckpt").is_file()
    # The returned model reads raw descriptors as training did: it reproduces the best validation MAE.
    val = _val(elastic, result.val_ids)
    predicted = result.model.predict(val.structures, ids=val.ids)
    assert np.mean(np.abs(predicted - val.targets)) == pytest.approx(result.best_val_mae, rel=1e-5)


def test_fit_logs_nothing_by_default_without_a_checkpoint_dir_and_takes_any_logger(elastic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = TrainSpec(max_epochs=1, **TINY)
    fit(elastic, spec=spec)
    assert list(tmp_path.iterdir()) == []  # no lightning_logs/ in the working folder
    fit(elastic, spec=spec, logger=CSVLogger(tmp_path / "mine", name="run"))
    assert (tmp_path / "mine" / "run" / "version_0" / "metrics.csv").is_file()
    fit(elastic, spec=spec, checkpoint_dir=tmp_path / "quiet", logger=False)
    assert not (tmp_path / "quiet" / "logs").exists()


@pytest.mark.parametrize("name", ["max_epochs", "callbacks", "logger", "gradient_clip_val"])
def test_trainer_kwargs_fit_owns_are_refused_before_any_work(elastic, tmp_path, name):
    with pytest.raises(ValueError, match=f"'{name}' is not a Trainer option here"):
        fit(elastic, spec=TrainSpec(**TINY), checkpoint_dir=tmp_path / "ckpt", trainer_kwargs={name: None})
    assert not (tmp_path / "ckpt").exists()


def test_train_refuses_bad_settings_before_any_work(elastic):
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\)"):
        train(elastic, TrainSpec(**TINY), test_fraction=1.0)
    with pytest.raises(ValueError, match="ensemble must be an integer >= 1"):
        train(elastic, TrainSpec(**TINY), ensemble=0)
    with pytest.raises(ValueError, match=r"warmup_epochs \(5\) must be below max_epochs \(5\)"):
        TrainSpec(warmup_epochs=5, max_epochs=5)
    assert TrainSpec(warmup_epochs=4, max_epochs=5).warmup_epochs == 4


@pytest.mark.slow
def test_train_holds_out_a_test_split_trains_an_ensemble_and_saves_it_with_its_card(elastic, tmp_path):
    seen = []
    trained = train(
        elastic,
        TrainSpec(max_epochs=1, element_types="all", **TINY),  # the test split may hold elements training lacks
        ensemble=2,
        test_fraction=0.25,
        test_seed=3,
        target_units="GPa",
        checkpoint_dir=tmp_path / "ckpt",
        on_member=lambda k, result: seen.append((k, result.global_rank)),
    )
    assert isinstance(trained, TrainedModel)
    assert isinstance(trained.model, HybridEnsemble)
    assert seen == [(0, 0), (1, 0)]
    assert len(trained.test) == 6
    assert trained.record["n_structures"] == 18
    assert not set(trained.test.ids) & set(trained.results[0].train_ids + trained.record["val_ids"])
    assert [m["seed"] for m in trained.record["members"]] == [0, 1]
    assert trained.results[0].val_ids == trained.results[1].val_ids  # one split, two initialisations
    assert (tmp_path / "ckpt" / "member_1" / "last.ckpt").is_file()

    out = trained.save(tmp_path / "model")  # from Python: no data file, no command line
    record = json.loads((out / "training.json").read_text())
    head = ["target_name", "units", "n_structures", "spec", "referenced_weights", "schedule", "device"]
    assert list(record) == [*head, "members", "val_ids", "test"]
    assert record["referenced_weights"] == []  # descriptors computed without pretrained weights
    assert record["test"]["n"] == 6
    assert record["test"]["seed"] == 3
    card = (out / "model_card.md").read_text()
    assert "Target `K_VRH`: 18 structures" in card
    assert "## Command" not in card
    assert f"| {record['test']['mae']:.6g} |" in card
    assert "Adam, lr 0.002 (MatGL's cosine, stepped per epoch" in card  # not a "cosine decay" it did not have
    member = record["members"][0]
    assert f"at epoch {member['best_epoch'] + 1} of {member['epochs_run']}" in card  # counted from 1, as the total

    source = {"data": "elastic.json.gz", "target": "K_VRH", "target_transform": None}
    trained.save(out, source=source, command="matgl-hybrid train …")
    record = json.loads((out / "training.json").read_text())
    assert list(record)[:3] == ["data", "target", "target_transform"]
    assert list(record)[3 + len(head)] == "command"  # right after the head
    assert "matgl-hybrid train …" in (out / "model_card.md").read_text()


@pytest.mark.slow
def test_a_resumed_fit_logs_each_run_in_a_new_csv_version_and_a_finished_rerun_logs_nothing(elastic, tmp_path):
    spec = TrainSpec(max_epochs=1, **TINY)
    fit(elastic, spec=spec, checkpoint_dir=tmp_path)
    spec.max_epochs = 2
    resumed = fit(elastic, spec=spec, checkpoint_dir=tmp_path)
    assert [row["epoch"] for row in resumed.history] == [0, 1]  # the history comes from the checkpoint
    rerun = fit(elastic, spec=spec, checkpoint_dir=tmp_path)
    assert rerun.history == resumed.history
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["version_0", "version_1"]
    assert isinstance(rerun.model, HybridModel)


def test_the_0_1_names_of_trainspec_fields_still_work_with_a_warning(tmp_path):
    with pytest.warns(DeprecationWarning, match="TrainSpec.descriptors is now TrainSpec.descriptor_set"):
        spec = TrainSpec(descriptors="lattice", elements="all", task="classification")
    assert (spec.descriptor_set, spec.element_types, spec.task_type) == ("lattice", "all", "classification")
    with pytest.warns(DeprecationWarning, match="descriptor_set"):
        assert spec.descriptors == "lattice"
    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"descriptors": None, "elements": ["Na", "Cl"]}))
    with pytest.warns(DeprecationWarning, match="element_types"):
        loaded = TrainSpec.from_json(config)
    assert loaded.descriptor_set is None
    assert loaded.element_types == ["Na", "Cl"]
    assert "descriptors" not in loaded.to_dict()
    with warnings.catch_warnings():  # dataclasses.replace sees today's names only: no old name overrides a change
        warnings.simplefilter("error", DeprecationWarning)
        assert dataclasses.replace(spec, descriptor_set=None).descriptor_set is None
    with pytest.raises(TypeError, match="both 'descriptors' and its new name"):
        TrainSpec(descriptors="lattice", descriptor_set="gong28")
    old = {"data": "x", "spec": {"descriptors": "lattice", "seed": 0}}
    assert upgrade_fingerprint(old) == {"data": "x", "spec": {"descriptor_set": "lattice", "seed": 0}}
    assert upgrade_fingerprint(None) is None


def test_the_cosine_schedule_decays_per_step_and_matgls_stays_near_lr(elastic):
    """``lr_schedule="matgl"`` (the default, as every recipe result trained) keeps the rate within a few percent
    of ``lr``: MatGL's cosine counts steps but Lightning steps it per epoch. ``cosine`` reaches ``lr ×
    decay_alpha`` at the end. Stored specs read ``matgl``; the command line has ``--lr-schedule``."""

    train_split, val_split = elastic.subset(range(16)), elastic.subset(range(16, 20))
    recorded = {}
    for schedule in ("matgl", "cosine"):
        recorded[schedule] = LearningRates()
        spec = TrainSpec(**{**TINY, "batch_size": 4}, max_epochs=4, lr=1e-2, lr_schedule=schedule)
        fit(train_split, spec=spec, val_data=val_split, callbacks=[recorded[schedule]])
    matgl, cosine = recorded["matgl"].rates, recorded["cosine"].rates
    assert len(matgl) == len(cosine) == 16
    assert min(matgl) > 0.8e-2
    assert cosine == sorted(cosine, reverse=True)
    assert cosine[-1] < 0.03e-2  # 1.95e-4 at step 16 of 16
    assert TrainSpec().lr_schedule == "matgl"
    assert upgrade_fingerprint({"spec": {"backbone": "megnet"}})["spec"]["lr_schedule"] == "matgl"
    with pytest.raises(ValueError, match="lr_schedule must be one of matgl, cosine"):
        TrainSpec(lr_schedule="linear")
    base = ["train", "--data", "d.json", "--target", "y", "--out", "m"]
    assert build_parser().parse_args([*base, "--lr-schedule", "cosine"]).lr_schedule == "cosine"


def test_descriptors_are_clipped_by_default_and_specs_stored_before_read_unclipped(elastic):
    """``clip_descriptors`` (default True) reaches the data module's transform; a run fingerprint stored before the
    field existed reads False (how it ran); the command line has --clip-descriptors / --no-clip-descriptors."""
    assert TrainSpec().clip_descriptors is True
    train_split, val_split = elastic.subset(range(8)), elastic.subset(range(8, 10))
    for clip in (True, False):
        module = HybridDataModule(train_split, val_split, TrainSpec(**{**TINY, "clip_descriptors": clip}))
        module.setup()
        assert module.transform_.clip is clip
        assert ("lower" in module.transform_.to_dict()) is clip
    old = {"data": "x", "spec": {"backbone": "megnet", "seed": 0}}
    assert upgrade_fingerprint(old)["spec"]["clip_descriptors"] is False
    # a run with candidates (Matbench v2 folds) stores each candidate's spec: each reads as it ran, a forest as is
    forest = {"model": "random_forest", "descriptor_set": "gong28"}
    old = {"data": "x", "candidates": {"long": {"backbone": "megnet", "seed": 0}, "rf": forest}}
    assert upgrade_fingerprint(old)["candidates"]["long"]["clip_descriptors"] is False
    assert upgrade_fingerprint(old)["candidates"]["rf"] == forest
    with pytest.raises(ValueError, match="clip_descriptors must be true or false"):
        TrainSpec(clip_descriptors="no")
    parser = build_parser()
    base = ["train", "--data", "d.json", "--target", "y", "--out", "m"]
    assert parser.parse_args([*base, "--no-clip-descriptors"]).clip_descriptors is False
    assert parser.parse_args(base).clip_descriptors is None  # not given: the spec's default


def test_auto_never_picks_apples_mps_which_has_no_float64(elastic, monkeypatch):
    from lightning.fabric.accelerators.mps import MPSAccelerator

    monkeypatch.setattr(MPSAccelerator, "is_available", staticmethod(lambda: True))  # as on an Apple laptop
    result = fit(elastic, spec=TrainSpec(max_epochs=1, accelerator="auto", **TINY), cache_dir=None)
    assert next(result.model.parameters()).device.type == "cpu"


def test_a_confident_mistake_still_teaches_a_classifier():
    """The loss is taken from the logits: where the sigmoid has rounded to 0 or 1, its gradient is still p - y."""
    from matgl_hybrid.layers import make_output
    from matgl_hybrid.training.modules import _binary_cross_entropy

    output = make_output("classification", 1)
    raw = torch.tensor([[30.0], [-30.0]], requires_grad=True)  # both confidently wrong
    _binary_cross_entropy(output, torch.tensor([0.0, 1.0]), output(raw).reshape(2)).backward()
    assert torch.allclose(raw.grad.reshape(-1), torch.tensor([0.5, -0.5]))  # (p - y) / batch


def test_a_test_split_with_elements_the_training_part_lacks_is_refused_before_training():
    """With the training part's elements (the default), a held-out structure of another element could not be
    predicted: ``score_test`` failed after the model had trained and been saved."""
    n = 12
    _, held = split_indices(n, 0.25, 0)
    species = [["Li", "Cl"] if i == held[0] else ["Na", "Cl"] for i in range(n)]
    cells = [Structure(Lattice.cubic(4.0 + 0.05 * i), s, [[0, 0, 0], [0.5, 0.5, 0.5]]) for i, s in enumerate(species)]
    dataset = data.from_structures(cells, targets=np.arange(n, dtype=float), ids=[f"s{i}" for i in range(n)])
    with pytest.raises(ValueError, match=rf"1 held-out test structures \('s{held[0]}'\) have elements the training "
                       r"part lacks \(Li\).*--elements all"):  # fmt: skip
        train(dataset, TrainSpec(**TINY, max_epochs=1), test_fraction=0.25, test_seed=0)
    listed = TrainSpec(**{**TINY, "element_types": ["Na", "Cl"]}, max_epochs=1)
    with pytest.raises(ValueError, match=r"have elements the model does not embed \(Li\)"):
        train(dataset, listed, test_fraction=0.25, test_seed=0)
    everything = TrainSpec(**{**TINY, "element_types": "all"}, max_epochs=1)
    with pytest.raises(ValueError, match=r"candidate 'a': .*the training part lacks"):  # the candidates train
        train(dataset, everything, test_fraction=0.25, candidates={"a": TrainSpec(**TINY, max_epochs=1)})
    assert train(dataset, everything, test_fraction=0.25, test_seed=0).score_test()["n"] == len(held)


def test_fit_and_train_keep_copies_of_a_structure_on_one_side_of_their_splits(elastic):
    """Two ids, one structure: a split putting one in training and one in validation (or the held-out test) would
    score what the model trained on; the seeds below are ones that did, before splits saw copies."""
    part = elastic.subset(range(24))
    part.structures[13] = part.structures[2].copy()
    copies = {part.ids[2], part.ids[13]}
    seed = next(s for s in range(100) if len({2, 13} & set(split_indices(24, 0.25, s)[1])) == 1)
    result = fit(part, spec=TrainSpec(max_epochs=1, val_fraction=0.25, seed=seed, **TINY))
    assert copies <= set(result.train_ids) or copies <= set(result.val_ids)
    trained = train(part, TrainSpec(max_epochs=1, element_types="all", **TINY), test_fraction=0.25, test_seed=seed)
    assert copies <= set(trained.test.ids) or not copies & set(trained.test.ids)


def test_the_best_weights_are_those_of_the_monitored_score_and_a_checkpoint_kept_by_another_is_refused():
    from types import SimpleNamespace

    from matgl_hybrid.training.modules import KeepBestWeights

    module = SimpleNamespace(model=torch.nn.Linear(1, 1))
    keeper = KeepBestWeights("val_Total_Loss")
    # the MAE is lowest at epoch 0, the log loss at epoch 1: the classifier keeps epoch 1
    for epoch, (mae, loss) in enumerate([(0.10, 0.70), (0.20, 0.40), (0.15, 0.50)]):
        metrics = {"val_MAE": torch.tensor(mae), "val_Total_Loss": torch.tensor(loss)}
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics=metrics)
        keeper.on_validation_epoch_end(trainer, module)
    assert (keeper.best_epoch, keeper.best) == (1, pytest.approx(0.40))
    old = {"best": 0.1, "best_epoch": 0, "state": None}  # written before the monitor was kept: by val_MAE
    KeepBestWeights().load_state_dict(old)
    with pytest.raises(ValueError, match="kept its best weights by val_MAE, this run keeps them by val_Total_Loss"):
        KeepBestWeights("val_Total_Loss").load_state_dict(old)
