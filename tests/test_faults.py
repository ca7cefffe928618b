"""Faults a user meets: tampered checkpoints, saving over folders, stale resumes, untrainable settings, bad paths.

Each test reproduces one case of the "Trustworthy by construction" issue; each failed on the code before it.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import matgl
import numpy as np
import pytest
from conftest import DEMO_DATA, TINY, write_small_records
from pymatgen.core import Lattice, Structure

import matgl_hybrid.evaluation.cv
import matgl_hybrid.files
from matgl_hybrid import data
from matgl_hybrid.checkpoint import MANIFEST, CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from matgl_hybrid.cli import main
from matgl_hybrid.descriptors import DescriptorTransform, get_descriptor_set
from matgl_hybrid.descriptors.groups import value_digest
from matgl_hybrid.evaluation import FoldStore, cross_validate, run_cv
from matgl_hybrid.fingerprint import FingerprintMismatch, run_fingerprint
from matgl_hybrid.pretrained import load_pretrained
from matgl_hybrid.training import HybridLightningModule, TrainSpec, fit


@pytest.fixture(scope="module")
def trained(elastic, tmp_path_factory):
    """A tiny trained hybrid, saved once; tests copy the folder before changing it."""
    result = fit(elastic, spec=TrainSpec(max_epochs=1, **TINY), cache_dir=None)
    return save_checkpoint(result.model, tmp_path_factory.mktemp("model") / "model", {"training": {"note": "test"}})


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "copy"))


def _rewrite_manifest(folder: Path, drop: str | None = None) -> None:
    """A manifest of the files as they are now (a tamperer's), optionally without one entry."""
    names = [line.partition("  ")[2] for line in (folder / MANIFEST).read_text().splitlines()]
    lines = [f"{sha256_file(folder / n)}  {n}\n" for n in names if n != drop]
    (folder / MANIFEST).write_text("".join(lines))


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _both_loaders_refuse(folder: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(folder)
    with pytest.raises((ValueError, RuntimeError)) as caught:  # matgl wraps our error; it must refuse all the same
        matgl.load_model(folder)
    chained = caught.value.__cause__ or caught.value
    assert isinstance(chained, CheckpointError)
    assert match in str(chained)


# 1. Partial manifests, class names, the MatGL route --------------------------------------------------------------


@pytest.mark.parametrize("missing", ["weights.safetensors", "target_normalization.json", "descriptor_transform.json"])
def test_a_manifest_without_a_file_the_loader_reads_is_refused(trained, tmp_path, missing):
    folder = _copy(trained, tmp_path)
    _flip_a_byte(folder / missing)  # tampered, and its manifest line removed so that no hash catches it
    _rewrite_manifest(folder, drop=missing)
    _both_loaders_refuse(folder, f"no entry for {missing}")


def test_an_emptied_manifest_is_refused_and_predict_exits_2(trained, tmp_path, elastic, capsys):
    folder = _copy(trained, tmp_path)
    _flip_a_byte(folder / "weights.safetensors")
    (folder / MANIFEST).write_text("")
    _both_loaders_refuse(folder, "no entry for model.json")
    records = tmp_path / "x.json.gz"
    with gzip.open(records, "wt") as f:
        json.dump([{"id": "a", "structure": elastic.structures[0].as_dict()}], f)
    code = main(["predict", "--model", str(folder), "--data", str(records), "--out", str(tmp_path / "p.csv")])
    assert code == 2
    assert "no entry for model.json" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("module", ["matgl_hybrid.models.evil; os", "matgl_hybrid.models", "matgl_hybrid.modelsx"])
def test_model_classes_are_matched_by_exact_module_and_name(trained, tmp_path, module):
    folder = _copy(trained, tmp_path)
    header = json.loads((folder / "model.json").read_text())
    header["@module"] = module
    (folder / "model.json").write_text(json.dumps(header))
    _rewrite_manifest(folder)
    with pytest.raises(CheckpointError, match="not a matgl-hybrid model"):
        load_checkpoint(folder)


def test_a_config_asking_for_more_weights_than_its_file_holds_is_refused_before_they_are_allocated(trained, tmp_path):
    """Each number of an untrusted model.json is bounded, not their product: 16 layers of 60000 units would
    allocate 15 × 14 GB before the weights file was read."""
    folder = _copy(trained, tmp_path)
    header = json.loads((folder / "model.json").read_text())
    header["kwargs"]["head_hidden"] = [60000] * 16
    (folder / "model.json").write_text(json.dumps(header))
    _rewrite_manifest(folder)
    with pytest.raises(CheckpointError, match=r"model\.json asks for [\d,]+ weights, .*holds [\d,]+: they do not"):
        load_checkpoint(folder)


def test_matgl_load_model_verifies_hashes_and_format_too(trained, tmp_path):
    folder = _copy(trained, tmp_path)
    assert isinstance(matgl.load_model(folder), type(load_checkpoint(folder)))
    _flip_a_byte(folder / "weights.safetensors")
    _both_loaders_refuse(folder, "corrupted or was modified")
    folder = Path(shutil.copytree(trained, tmp_path / "newer"))
    header = json.loads((folder / "model.json").read_text())
    header["metadata"]["format_version"] = 99
    (folder / "model.json").write_text(json.dumps(header))
    _rewrite_manifest(folder)
    _both_loaders_refuse(folder, "reads format")


# 2. Saving over folders ------------------------------------------------------------------------------------------


def test_saving_over_a_model_keeps_what_the_package_did_not_write(trained, tmp_path):
    folder = _copy(trained, tmp_path)
    (folder / "predictions.csv").write_text("id,prediction\na,1\n")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    model = load_checkpoint(folder)
    save_checkpoint(model, folder)  # without the "training" record of the first save
    assert (folder / "predictions.csv").read_text() == "id,prediction\na,1\n"
    assert (folder / "checkpoints" / "last.ckpt").read_bytes() == b"x"
    assert not (folder / "training.json").exists()  # the package's own file of the earlier save is replaced
    load_checkpoint(folder)


def test_a_folder_that_is_not_a_model_is_refused_unless_overwrite(trained, tmp_path):
    model = load_checkpoint(trained)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no saved model"):
        save_checkpoint(model, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    save_checkpoint(model, folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    load_checkpoint(folder)
    # a file of the user's named as one the model writes is theirs: refused, not replaced (the manifest of the
    # model there does not list it, as it would after the user added their own card to a model saved without one)
    (folder / "model_card.md").write_text("my card")
    with pytest.raises(FileExistsError, match=r"holds model_card\.md, which no saved model there wrote"):
        save_checkpoint(model, folder, texts={"model_card.md": "generated"}, overwrite=True)
    assert (folder / "model_card.md").read_text() == "my card"
    load_checkpoint(folder)  # nothing was changed: the earlier model still loads


@pytest.mark.slow
def test_train_refuses_a_foreign_out_before_any_work_and_accepts_a_checkpoint_dir_inside_a_new_out(tmp_path, capsys):
    path, _ = write_small_records(DEMO_DATA, "de_jong_2015_elasticity.json.gz", 16, tmp_path)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "progress": False}))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "predictions.csv").write_text("id,prediction\n")
    cache = tmp_path / "cache"
    base = ["train", "--data", str(path), "--target", "K_VRH", "--config", str(config), "--max-epochs", "1"]
    assert main([*base, "--cache-dir", str(cache), "--out", str(foreign)]) == 2
    assert "holds no saved model" in capsys.readouterr().err
    assert not cache.exists()  # refused before featurizing
    out = tmp_path / "new_model"
    code = main([*base, "--out", str(out), "--checkpoint-dir", str(out / "checkpoints"), "--no-cache"])
    assert code == 0
    assert len(list((out / "checkpoints" / "selection").glob("*/fold0/last.ckpt"))) == 2  # both graph candidates
    load_checkpoint(out)


# 3. Cross-validation folds of another run ------------------------------------------------------------------------


def test_cross_validation_reuses_only_folds_of_the_same_run(elastic, tmp_path):
    def mean_model(train, test, fold):
        return np.full(len(test), train.targets.mean()), {}

    spec = TrainSpec(**TINY).to_dict()
    store = FoldStore(tmp_path / "folds", run_fingerprint([elastic], spec, "v1"))
    first = cross_validate(elastic, mean_model, store, progress=False)
    again = cross_validate(elastic, mean_model, FoldStore(tmp_path / "folds", store.fingerprint), progress=False)
    assert again == first
    other_target = data.StructureData(elastic.structures, elastic.targets + 1, elastic.ids, "G_VRH")
    other = FoldStore(tmp_path / "folds", run_fingerprint([other_target], spec, "v1"))
    with pytest.raises(FingerprintMismatch, match="target: 'K_VRH' there, 'G_VRH' here"):
        cross_validate(other_target, mean_model, other, progress=False)
    changed = FoldStore(tmp_path / "folds", run_fingerprint([elastic], {**spec, "lr": 0.01}, "v1"))
    with pytest.raises(FingerprintMismatch, match=rf"spec\.lr: {re.escape(str(spec['lr']))} there, 0\.01 here"):
        cross_validate(elastic, mean_model, changed, progress=False)


def test_run_cv_refuses_folds_of_another_run_before_training(elastic, tmp_path):
    folds = tmp_path / "cv" / "folds"
    folds.mkdir(parents=True)
    (folds / "fold3.json").write_text(json.dumps({"mae": 1.0, "train_seconds": 1, "y_pred": [], "params": {}}))
    with pytest.raises(FingerprintMismatch, match="carries no fingerprint"):
        run_cv(elastic, TrainSpec(**TINY), tmp_path / "cv", cache_dir=None)
    assert not (folds / "fold0.json").exists()  # nothing was trained


def test_run_cv_never_replaces_a_users_file_of_a_report_name(elastic, tmp_path, monkeypatch):
    """cv.md, cv.png, cv.json and cv_predictions.csv were replaced after the five folds had trained, whatever wrote
    them; an earlier cv's own report is replaced by a rerun."""
    (tmp_path / "cv.md").write_text("# my notes\n")
    with pytest.raises(FileExistsError, match=r"cv\.md is not a report of an earlier `cv`"):
        run_cv(elastic, TrainSpec(**TINY), tmp_path, cache_dir=None)
    assert (tmp_path / "cv.md").read_text() == "# my notes\n"
    assert not (tmp_path / "folds").exists()  # refused before any work
    (tmp_path / "cv.json").write_text(json.dumps({"spec": {}, "folds_done": 5, "fold_mae": [1.0] * 5}))
    monkeypatch.setattr(matgl_hybrid.evaluation.cv, "cross_validate", lambda *a, **k: pytest.fail("got past"))
    with pytest.raises(pytest.fail.Exception, match="got past"):  # a rerun over an earlier cv's report goes on
        run_cv(elastic, TrainSpec(**TINY), tmp_path, cache_dir=None)


def test_run_cv_refuses_elements_a_pretrained_potential_lacks_before_training(elastic, tmp_path, monkeypatch):
    """Every fold embeds MatGL's 89 elements, but a pretrained potential only its own (a user's may hold fewer): an
    element outside them failed only when its test fold predicted, after that fold had trained."""
    from matgl.config import DEFAULT_ELEMENTS

    from matgl_hybrid import potentials

    part = elastic.subset(range(20))
    absent = sorted({e.symbol for s in part.structures for e in s.elements})[0]
    monkeypatch.setattr(potentials, "element_types", lambda name: tuple(e for e in DEFAULT_ELEMENTS if e != absent))
    monkeypatch.setattr(matgl_hybrid.evaluation.cv, "cross_validate", lambda *a, **k: pytest.fail("a fold trained"))
    spec = TrainSpec(backbone="tensornet-matpes-pbe", batch_size=4, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match=rf"{absent} \(in \d+ entries: .*\) are not among the 88 elements the pre"):
        run_cv(part, spec, tmp_path / "cv", cache_dir=None)


def test_a_cv_resumed_across_package_upgrades_says_which_folds_ran_under_which(elastic, tmp_path, monkeypatch):
    """cv.json named the last session's versions alone, as if every fold had run under them."""
    from matgl_hybrid.evaluation.matbench.submission import requirements

    now = requirements()["python"]
    records = {f: {"mae": 1.0, "train_seconds": 1.0, "ids": [f"{f}"], "y_true": [1.0], "y_pred": [2.0],
                   "params": {"device": "cpu", "requirements": ["matgl==4.0.0"] if f < 2 else now}}
               for f in range(5)}  # fmt: skip
    monkeypatch.setattr(matgl_hybrid.evaluation.cv, "cross_validate", lambda *a, **k: records)
    with pytest.warns(UserWarning, match=r"cv: folds 0, 1 ran under other package versions"):
        summary = run_cv(elastic.subset(range(10)), TrainSpec(**TINY), tmp_path / "cv", cache_dir=None)
    assert summary["requirements_per_fold"][0] == ["matgl==4.0.0"]
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["requirements_per_fold"]["4"] == now


def test_run_cv_checks_the_elements_of_the_candidates_that_train_not_of_the_base_spec(elastic, tmp_path, monkeypatch):
    """With candidates, only they train: a base spec on a potential lacking an element refused data they embed."""
    from matgl.config import DEFAULT_ELEMENTS

    from matgl_hybrid import potentials

    part = elastic.subset(range(20))
    absent = sorted({e.symbol for s in part.structures for e in s.elements})[0]
    monkeypatch.setattr(potentials, "element_types", lambda name: tuple(e for e in DEFAULT_ELEMENTS if e != absent))
    monkeypatch.setattr(matgl_hybrid.evaluation.cv, "cross_validate", lambda *a, **k: pytest.fail("got past"))
    base = TrainSpec(backbone="tensornet-matpes-pbe", batch_size=4, max_epochs=1, progress=False)
    with pytest.raises(pytest.fail.Exception, match="got past"):
        run_cv(part, base, tmp_path / "cv", cache_dir=None, candidates={"megnet": TrainSpec(**TINY)})


# 4. Resuming Lightning checkpoints -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_checkpoint_of_another_target_is_not_resumed(elastic, tmp_path):
    spec = TrainSpec(max_epochs=2, **TINY)
    fit(elastic, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "ckpt")
    shear = data.StructureData(elastic.structures, elastic.targets / 2, elastic.ids, "G_VRH")
    with pytest.raises(FingerprintMismatch, match="target: 'K_VRH' there, 'G_VRH' here"):
        fit(shear, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "ckpt")


@pytest.mark.slow
def test_a_truncated_or_foreign_last_ckpt_gives_a_one_line_error(elastic, tmp_path):
    spec = TrainSpec(max_epochs=1, **TINY)
    fit(elastic, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "a")
    last = tmp_path / "a" / "last.ckpt"
    stamp = json.loads((tmp_path / "a" / "fingerprint.json").read_text())
    (tmp_path / "a" / "fingerprint.json").write_text(json.dumps({**stamp, "finished_epochs": None}))
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot be resumed") as caught:
        fit(elastic, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "a")
    assert "\n" not in str(caught.value)
    # Weights of another architecture under this run's fingerprint: named, not a size-mismatch traceback.
    wider = TrainSpec(max_epochs=1, **{**TINY, "head_hidden": (32, 32)})
    fit(elastic, spec=wider, cache_dir=None, checkpoint_dir=tmp_path / "b")
    shutil.copy(tmp_path / "b" / "last.ckpt", last)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        fit(elastic, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "a")


@pytest.mark.slow
def test_training_history_survives_a_kill_and_a_finished_rerun(elastic, tmp_path, monkeypatch):
    spec = TrainSpec(max_epochs=4, patience=50, **TINY)
    original = HybridLightningModule.on_train_epoch_start

    def killed_at_epoch_2(self):
        if self.current_epoch == 2:
            raise RuntimeError("killed")
        original(self)

    monkeypatch.setattr(HybridLightningModule, "on_train_epoch_start", killed_at_epoch_2)
    with pytest.raises(RuntimeError, match="killed"):
        fit(elastic, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.setattr(HybridLightningModule, "on_train_epoch_start", original)
    resumed = fit(elastic, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "ckpt")
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2, 3]
    rerun = fit(elastic, spec=spec, cache_dir=None, checkpoint_dir=tmp_path / "ckpt")
    assert rerun.history == resumed.history  # a finished run is restored, not trained further
    assert rerun.best_val_mae == resumed.best_val_mae
    # a budget the run has gone past would hand back its 4 epochs as a shorter run's: refused
    for smaller, said in (({"max_epochs": 2}, "has run 4 epochs, more than max_epochs 2"), ({"patience": 5},
                          "trained with patience 50, this run asks for 5")):  # fmt: skip
        with pytest.raises(CheckpointError, match=said):
            fit(elastic, spec=dataclasses.replace(spec, **smaller), cache_dir=None, checkpoint_dir=tmp_path / "ckpt")


# 5. Settings that cannot train -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_epochs": 0}, "max_epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"batch_size": 1}, "batch_size must be >= 2 with descriptors"),  # BatchNorm of one structure
        ({"loss": "l2_loss"}, "unknown loss 'l2_loss'"),
        ({"val_fraction": 1.0}, "val_fraction must be in"),
        ({"val_fraction": 0.0}, "val_fraction must be in"),
    ],
)
def test_settings_that_cannot_train_are_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        TrainSpec(**setting)


def test_too_few_training_structures_are_refused_before_featurizing(elastic, tmp_path):
    with pytest.raises(ValueError, match="cannot train on 1 training and 2 validation"):
        fit(elastic.subset([0, 1, 2]), spec=TrainSpec(val_fraction=0.9, **TINY), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_train_with_zero_epochs_exits_2_and_writes_nothing(tmp_path, capsys):
    path, _ = write_small_records(DEMO_DATA, "de_jong_2015_elasticity.json.gz", 8, tmp_path)
    out = tmp_path / "m"
    code = main(["train", "--data", str(path), "--target", "K_VRH", "--max-epochs", "0", "--out", str(out)])
    assert code == 2
    assert "max_epochs must be an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


# Clear errors, checked before the work ---------------------------------------------------------------------------


def test_output_paths_are_checked_before_the_work(tmp_path, capsys, monkeypatch):
    path, _ = write_small_records(DEMO_DATA, "de_jong_2015_elasticity.json.gz", 4, tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cache = tmp_path / "cache"
    featurize = ["featurize", "--data", str(path), "--cache-dir", str(cache), "--n-jobs", "1", "--out"]
    assert main([*featurize, str(a_file / "x.csv")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main([*featurize, str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["train", "--data", str(path), "--target", "K_VRH", "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(matgl_hybrid.files.tempfile, "mkstemp", read_only)
    assert main([*featurize, str(tmp_path / "ro" / "x.csv")]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert not cache.exists()  # nothing was featurized


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"[{", "not valid JSON"), (gzip.compress(b"[" * 5000)[:40], "not a readable gzip")],
)
def test_unreadable_record_files_give_one_line_naming_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "broken.json.gz"
    path.write_bytes(content)
    assert main(["featurize", "--data", str(path), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert str(path) in err
    assert len(err.splitlines()) == 1


def test_a_broken_config_file_gives_one_line_naming_it(tmp_path, capsys):
    config = tmp_path / "spec.json"
    config.write_text('{"max_epochs": 3,')
    code = main(["train", "--data", "x.json", "--target", "y", "--config", str(config), "--out", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert f"{config} is not valid JSON" in err
    assert len(err.splitlines()) == 1


def test_options_a_command_would_ignore_are_refused(trained, tmp_path, capsys):
    out = str(tmp_path / "p")
    assert main(["probe", "--model", str(trained), "--backbone", "megnet", "--data", "x", "--out", out]) == 2
    assert "one of the two" in capsys.readouterr().err
    assert main(["pretrained", "list", "--data", "x.json"]) == 2
    assert "options of 'pretrained predict'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # predict computes the model's own descriptors: there is no choice to make
        main(["predict", "--model", str(trained), "--data", "x", "--out", "y", "--descriptors", "gong28"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --descriptors" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [TypeError, KeyError, AttributeError])
def test_a_bug_keeps_its_traceback_while_user_errors_are_one_line(tmp_path, monkeypatch, capsys, bug):
    assert main(["featurize", "--data", str(tmp_path / "none.json"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err

    def broken(*args, **kwargs):
        raise bug("a bug, not the user's fault")

    monkeypatch.setattr(data, "load", broken)
    with pytest.raises(bug, match="a bug"):
        main(["featurize", "--data", str(tmp_path / "none.json"), "--out", str(tmp_path / "x.csv")])


def test_featurize_of_a_cif_folder_needs_no_target(elastic, tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for structure, entry_id in zip(elastic.structures[:3], elastic.ids[:3], strict=True):
        structure.to(filename=str(folder / f"{entry_id}.cif"))
    (folder / "targets.csv").write_text("id,K_VRH\n" + "".join(f"{i},1\n" for i in elastic.ids[:3]))
    out = tmp_path / "d.csv"
    assert (
        main(["featurize", "--data", str(folder), "--descriptors", "lattice", "--n-jobs", "1", "--out", str(out)]) == 0
    )
    lines = out.read_text().splitlines()
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(elastic.ids[:3])


def test_predict_has_no_descriptor_option_and_skips_invalid_entries_on_request(trained, elastic, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["predict", "--model", str(trained), "--data", "x", "--out", "y", "--descriptors", "gong28"])
    assert caught.value.code == 2
    lonely = Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]])  # no neighbour within the cutoff
    unknown = Structure(Lattice.cubic(3.0), ["U"], [[0, 0, 0]])  # an element the model never saw
    records = [
        {"id": i, "structure": s.as_dict()} for i, s in zip(elastic.ids[:2], elastic.structures[:2], strict=True)
    ]
    records += [{"id": "lonely", "structure": lonely.as_dict()}, {"id": "uranium", "structure": unknown.as_dict()}]
    records.append({"id": "broken", "structure": {"not": "a structure"}})
    path = tmp_path / "mixed.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(records, f)
    out = tmp_path / "p.csv"
    base = ["predict", "--model", str(trained), "--data", str(path), "--out", str(out), "--no-cache", "--n-jobs", "1"]
    assert main(base) == 2
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*base, "--skip-invalid"]) == 0
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == elastic.ids[:2]
    skipped = (tmp_path / "p.csv.skipped.csv").read_text()
    assert all(name in skipped for name in ("lonely", "uranium", "broken"))
    assert "skipped 3 invalid entries" in capsys.readouterr().out
    # predicting again without --skip-invalid (valid data now) leaves no stale listing beside the new predictions
    valid = tmp_path / "valid.json.gz"
    with gzip.open(valid, "wt") as f:
        json.dump(records[:2], f)
    assert main([*base[:4], str(valid), *base[5:], "--overwrite"]) == 0
    assert (tmp_path / "p.csv.skipped.csv").read_text().strip() == "id,reason"
    # predictions moved away, their listing left: a new run does not replace it without --overwrite
    out.rename(tmp_path / "kept.csv")
    (tmp_path / "p.csv.skipped.csv").write_text("id,reason\nlonely,kept by the user\n")
    assert main([*base[:4], str(valid), *base[5:]]) == 2
    assert "p.csv.skipped.csv" in capsys.readouterr().err
    assert "kept by the user" in (tmp_path / "p.csv.skipped.csv").read_text()


def test_train_stops_at_an_unconnected_structure_naming_it_and_skips_it_on_request(elastic, tmp_path, capsys):
    from matgl_hybrid.model_card import heldout_split

    lonely = Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]])  # valid, but no neighbour within the cutoff
    entries = zip(elastic.ids[:12], elastic.structures[:12], elastic.targets[:12], strict=True)
    records = [{"id": i, "structure": s.as_dict(), "y": float(t)} for i, s, t in entries]
    records.insert(3, {"id": "lonely", "structure": lonely.as_dict(), "y": 1.0})
    path = tmp_path / "mixed.json.gz"

    def write(rows):
        with gzip.open(path, "wt") as f:
            json.dump(rows, f)

    config = tmp_path / "spec.json"
    config.write_text(json.dumps({**TINY, "max_epochs": 1}))
    base = [
        "train",
        "--data",
        str(path),
        "--target",
        "y",
        "--config",
        str(config),
        "--no-cache",
        "--elements",
        "all",
        "--no-select",
    ]
    write(records)
    assert main([*base, "--out", str(tmp_path / "refused")]) == 2
    error = capsys.readouterr().err
    assert "lonely" in error
    assert "no edges" in error
    # cv checks every structure before the first fold (one in a test fold failed after that fold had trained)
    cv = ["cv", "--data", str(path), "--target", "y", "--config", str(config), "--no-cache"]
    cv += ["--out", str(tmp_path / "cv")]
    assert main(cv) == 2
    error = capsys.readouterr().err
    assert "1 structures ('lonely') have no atom with a neighbour" in error
    assert "--skip-invalid" in error
    assert not (tmp_path / "cv").exists() or not any((tmp_path / "cv").rglob("fold*.json"))
    write([*records, {"id": "broken", "structure": {}, "y": 1.0}])
    assert main([*base, "--out", str(tmp_path / "refused")]) == 2
    assert "broken" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*base, "--skip-invalid", "--test-fraction", "0.25", "--out", str(tmp_path / "m")]) == 0
    assert "skipped 2 of 14 entries (broken: " in capsys.readouterr().out
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["n_structures"] + record["test"]["n"] == 12
    assert sorted(e["id"] for e in record["skipped_entries"]) == ["broken", "lonely"]
    assert "Left out: 2 entries (" in (tmp_path / "m" / "model_card.md").read_text()
    assert heldout_split(record).ids == record["test"]["ids"]  # rebuilt by id, past the broken record


def test_written_files_and_folders_follow_the_umask(trained, tmp_path):
    old = os.umask(0o027)
    try:
        folder = save_checkpoint(load_checkpoint(trained), tmp_path / "m")
        matgl_hybrid.files.atomic_write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o640
    assert (folder / "weights.safetensors").stat().st_mode & 0o777 == 0o640
    assert (folder / MANIFEST).stat().st_mode & 0o777 == 0o640
    (tmp_path / "t.txt").chmod(0o600)  # the user's private file, replaced (--overwrite): stays private
    matgl_hybrid.files.atomic_write_text(tmp_path / "t.txt", "y")
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o600


# The descriptor path ---------------------------------------------------------------------------------------------


def test_descriptor_transform_treats_inf_in_training_data_as_missing():
    train = np.array([[1.0, np.inf], [2.0, 3.0], [3.0, 5.0], [4.0, -np.inf]])
    out = DescriptorTransform().fit(train).transform(train)
    assert np.isfinite(out).all()
    assert out[1, 1] == pytest.approx(-np.sqrt(2))  # column 2: 3 and 5 known, ±inf imputed by their median 4


@pytest.mark.slow
def test_shipped_checkpoints_predict_with_another_matminer_version(elastic, tmp_path):
    # In a fresh process, with matminer's version string changed before matgl-hybrid is imported (as an upgrade
    # that leaves the values alone would): the shipped checkpoints still predict, the same numbers.
    records = tmp_path / "two.json"
    records.write_text(json.dumps([{"id": i, "structure": s.as_dict()} for i, s in enumerate(elastic.structures[:2])]))
    script = (
        "import json, warnings; warnings.simplefilter('ignore'); import matminer; matminer.__version__ = '99.0.0'\n"
        "from matgl_hybrid import data; from matgl_hybrid.pretrained import load_pretrained\n"
        f"d = data.load({str(records)!r})\n"
        "p = load_pretrained('hybrid-megnet-log10-bulk-modulus').predict(d.structures, cache_dir=None)\n"
        "print(json.dumps(p.tolist()))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = load_pretrained("hybrid-megnet-log10-bulk-modulus").predict(elastic.structures[:2], cache_dir=None)
    np.testing.assert_allclose(json.loads(run.stdout.splitlines()[-1]), expected, rtol=1e-6)


def test_a_real_change_of_descriptor_values_is_refused(elastic, monkeypatch):
    model = load_pretrained("hybrid-megnet-log10-bulk-modulus")
    density = get_descriptor_set("gong28").groups[6]
    assert density.name == "density"
    original = density.compute
    value_digest.cache_clear()
    try:  # an "upgrade" that changes the density by 1 %
        object.__setattr__(density, "compute", lambda ctx: [1.01 * v for v in original(ctx)])
        with pytest.raises(ValueError, match="group density gives other values"):
            model.predict(elastic.structures[:1], cache_dir=None)
    finally:
        object.__setattr__(density, "compute", original)
        value_digest.cache_clear()


def test_the_held_out_split_is_rebuilt_from_the_file_with_the_targets_the_record_scored(tmp_path):
    """Two files of the data's name under data_dir, the first (sorted) an older version with the same ids: the split
    was rebuilt from it, and its metrics were another data's, without a word."""
    from pymatgen.core import Lattice, Structure

    from matgl_hybrid.model_card import heldout_split

    structures = [Structure(Lattice.cubic(4.0 + 0.1 * k), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for k in range(4)]
    for folder, shift in (("a_old", 1.0), ("b_new", 0.0)):
        rows = [{"id": f"s{k}", "structure": s.as_dict(), "K": 10.0 + k + shift} for k, s in enumerate(structures)]
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.json").write_text(json.dumps(rows))
    record = {"data": "elsewhere/data.json", "target": "K", "test": {"ids": ["s1", "s3"], "y_true": [11.0, 13.0]}}
    split = heldout_split(record, tmp_path)
    assert list(split.targets) == [11.0, 13.0]
    record["test"]["y_true"] = [99.0, 99.0]
    with pytest.raises(ValueError, match="holds other targets for the held-out ids than the record scored"):
        heldout_split(record, tmp_path)


def test_a_folds_training_seconds_count_the_sessions_it_resumed_from(elastic, tmp_path):
    """train_seconds counted only the last session of a fold resumed from its checkpoints (minutes of hours)."""

    def resumed(train, test, fold):
        return np.full(len(test), float(np.mean(train.targets))), {"train_seconds": 3600.0 + fold}

    records = cross_validate(elastic, resumed, FoldStore(tmp_path / "folds"), progress=False)
    assert [records[f]["train_seconds"] for f in range(5)] == [3600.0, 3601.0, 3602.0, 3603.0, 3604.0]
    assert all("train_seconds" not in r["params"] for r in records.values())


def test_a_fold_whose_model_diverged_is_recorded_with_a_nan_score_and_cv_finishes(elastic, tmp_path, monkeypatch):
    """A fold whose model predicted inf stopped `cv` with NonFinitePredictions, and every rerun (its finished fit
    restored from the checkpoints) stopped there again: cv.json and the report were never written."""
    from types import SimpleNamespace

    from matgl_hybrid.errors import NonFinitePredictions

    class Diverged:
        def predict(self, *args, **kwargs):
            raise NonFinitePredictions("gave non-finite predictions")

    fitted = SimpleNamespace(model=Diverged(), best_val_mae=1.0, best_epoch=0, history={}, seconds=0.0, processes=1)
    monkeypatch.setattr(matgl_hybrid.evaluation.cv, "fit", lambda *a, **k: fitted)
    with pytest.warns(UserWarning, match="not finite"):
        run_cv(elastic.subset(range(10)), TrainSpec(**TINY), tmp_path / "cv", cache_dir=None)
    assert (tmp_path / "cv" / "cv.json").is_file()


def test_cv_says_when_it_does_not_use_a_list_of_elements_given(elastic, tmp_path, monkeypatch):
    """cv embeds every element in each fold (a test fold may hold elements its training part lacks): a spec's own
    list of elements was replaced without a word."""
    monkeypatch.setattr(matgl_hybrid.evaluation.cv, "cross_validate", lambda *a, **k: pytest.fail("got past"))
    part = elastic.subset(range(10))
    listed = sorted({e.symbol for s in part.structures for e in s.elements})
    warned = pytest.warns(UserWarning, match="cv embeds all of MatGL's elements in every fold")
    with warned, pytest.raises(pytest.fail.Exception, match="got past"):
        run_cv(part, TrainSpec(**{**TINY, "element_types": listed}), tmp_path / "cv", cache_dir=None)


def test_cv_says_when_its_folds_trained_on_different_numbers_of_processes(elastic, tmp_path, monkeypatch):
    """A run stopped on a one-GPU machine and resumed on four trained its last folds with four times the global
    batch (the batch size is per process); cv.json averaged both setups and nothing said so."""
    records = {f: {"mae": 1.0, "train_seconds": 1.0, "ids": [f"{f}"], "y_true": [1.0], "y_pred": [2.0],
                   "params": {"device": "cpu", "processes": 1 if f < 3 else 4}} for f in range(5)}  # fmt: skip
    monkeypatch.setattr(matgl_hybrid.evaluation.cv, "cross_validate", lambda *a, **k: records)
    with pytest.warns(UserWarning, match=r"cv: the folds trained on different numbers of processes"):
        summary = run_cv(elastic.subset(range(10)), TrainSpec(**TINY), tmp_path / "cv", cache_dir=None)
    assert summary["processes_per_fold"] == {0: 1, 1: 1, 2: 1, 3: 4, 4: 4}
