"""Matbench runner end to end on a local stand-in for matbench_jdft2d (no internet), and submission validation.

The stand-in is a file in matminer's exact format (``store_dataframe_as_json``, orient split, gzip) with 636 rows —
the official row count, so matbench's ids and published folds apply — of REAL structures from ../shared/data and a
clearly labelled STAND-IN target (heat capacity per atom, not exfoliation energy).
"""

from __future__ import annotations

import gzip
import json
import runpy
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_MEGNET, read_records, write_small_records
from matbench.constants import MBV01_KEY
from matbench.metadata import mbv01_validation
from matbench.util import hash_dictionary
from matminer.datasets import dataset_retrieval
from matminer.datasets.utils import _load_dataset_dict
from matminer.utils.io import store_dataframe_as_json
from pymatgen.core import Structure

from matgl_hybrid.checkpoint import sha256_file
from matgl_hybrid.cli import main
from matgl_hybrid.data import StructureData
from matgl_hybrid.descriptors.sets import describe_descriptor_set
from matgl_hybrid.evaluation import cv as cv_module
from matgl_hybrid.evaluation import matbench as runner
from matgl_hybrid.evaluation.matbench import (
    DatasetFileError,
    MatbenchRun,
    load_task,
    read_candidates,
    rerun_submission,
    score_lines,
    validate_submission,
    verify_dataset_file,
    write_matbench_report,
)
from matgl_hybrid.evaluation.matbench import datasets as matbench_datasets
from matgl_hybrid.evaluation.matbench import report as matbench_report
from matgl_hybrid.evaluation.matbench import runner as matbench_runner
from matgl_hybrid.evaluation.matbench.candidates import choose
from matgl_hybrid.evaluation.report import write_report
from matgl_hybrid.fingerprint import FingerprintMismatch
from matgl_hybrid.training import FitResult, TrainSpec
from matgl_hybrid.training.selection import InnerKFold, Selection

TASK = "matbench_jdft2d"
TINY = TrainSpec(
    backbone="megnet",
    backbone_kwargs=TINY_MEGNET,
    descriptor_set="lattice",
    head_hidden=(8,),
    max_epochs=1,
    progress=False,
)


@pytest.fixture(scope="module")
def stand_in_dir(shared_data, tmp_path_factory):
    """A MATMINER_DATA folder holding the stand-in matbench_jdft2d.json.gz."""
    records = read_records(shared_data / "alexandria_heat_capacity.json.gz", 636)
    structures = [Structure.from_dict(r["structure"]) for r in records]
    stand_in_target = [r["heat_capacity"] / len(s) for r, s in zip(records, structures, strict=True)]
    frame = pd.DataFrame({"structure": structures, "exfoliation_en": stand_in_target})
    folder = tmp_path_factory.mktemp("matminer_data")
    store_dataframe_as_json(frame, str(folder / f"{TASK}.json.gz"), compression="gz", pbar=False)
    return folder


@pytest.fixture
def accept_stand_in(stand_in_dir, monkeypatch):
    """Make matminer's metadata expect the stand-in's sha256 (the one thing a stand-in cannot match)."""
    metadata = {**_load_dataset_dict()}
    metadata[TASK] = {**metadata[TASK], "hash": sha256_file(stand_in_dir / f"{TASK}.json.gz")}
    monkeypatch.setattr(matbench_datasets, "_load_dataset_dict", lambda: metadata)
    monkeypatch.setattr(dataset_retrieval, "_dataset_dict", metadata)
    monkeypatch.delenv("MATMINER_DATA", raising=False)
    return stand_in_dir


def test_dataset_file_is_verified_against_matminers_sha256(stand_in_dir, tmp_path):
    with pytest.raises(DatasetFileError, match="sha256") as error:
        verify_dataset_file(TASK, stand_in_dir)
    assert _load_dataset_dict()[TASK]["hash"] in str(error.value)
    with pytest.raises(DatasetFileError) as error:
        verify_dataset_file(TASK, tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / f"{TASK}.json.gz") in message  # which file, and where to put it
    assert _load_dataset_dict()[TASK]["url"] in message  # where to get it


def test_an_unofficial_file_of_another_length_is_refused_naming_the_counts(shared_data, tmp_path, monkeypatch):
    """matbench names rows by position: a reconstruction with rows missing failed in pandas ("not in index") while
    the submission's note claimed the official rows."""
    from matbench.bench import MatbenchBenchmark

    records = read_records(shared_data / "alexandria_heat_capacity.json.gz", 600)
    frame = pd.DataFrame({"structure": [Structure.from_dict(r["structure"]) for r in records],
                          "exfoliation_en": [1.0] * len(records)})  # fmt: skip
    store_dataframe_as_json(frame, str(tmp_path / f"{TASK}.json.gz"), compression="gz", pbar=False)
    metadata = {**_load_dataset_dict()}
    metadata[TASK] = {**metadata[TASK], "hash": sha256_file(tmp_path / f"{TASK}.json.gz")}
    monkeypatch.setattr(matbench_datasets, "_load_dataset_dict", lambda: metadata)
    monkeypatch.setattr(dataset_retrieval, "_dataset_dict", metadata)
    monkeypatch.delenv("MATMINER_DATA", raising=False)
    task = MatbenchBenchmark(autoload=False, subset=[TASK]).tasks_map[TASK]
    with pytest.raises(DatasetFileError, match=r"has 600 rows, Matbench's matbench_jdft2d 636"):
        load_task(task, tmp_path)


@pytest.mark.slow
def test_runner_uses_the_published_folds_resumes_and_writes_a_valid_submission(accept_stand_in, tmp_path, monkeypatch):
    out = tmp_path / "matbench_v0.1_HybridTest"
    # A first run that is "interrupted" after two folds.
    MatbenchRun([TASK], TINY, out, algorithm="HybridTest", data_dir=accept_stand_in, folds=(0, 1), progress=False).run()
    assert sorted(p.name for p in (out / "folds" / TASK).iterdir()) == ["fold0.json", "fold1.json"]
    assert validate_submission(out)  # incomplete: not yet valid

    trained = []
    original = MatbenchRun._train_and_predict

    def counting(self, task, fold, spec):
        trained.append(fold)
        return original(self, task, fold, spec)

    monkeypatch.setattr(MatbenchRun, "_train_and_predict", counting)
    MatbenchRun([TASK], TINY, out, algorithm="HybridTest", data_dir=accept_stand_in, progress=False).run()
    assert trained == [2, 3, 4]  # finished folds are not redone

    splits = mbv01_validation.splits[TASK]
    for fold in range(5):
        record = json.loads((out / "folds" / TASK / f"fold{fold}.json").read_text())
        assert record["ids"] == list(splits[f"fold_{fold}"].test)  # matbench's published test ids, in order
        assert record["n_train"] == len(splits[f"fold_{fold}"].train)
        assert np.isfinite(record["y_pred"]).all()

    assert validate_submission(out) == []
    loaded = runner.read_results(out / "results.json.gz")
    assert loaded.is_valid
    assert loaded.benchmark_name == MBV01_KEY
    task = loaded.tasks_map[TASK]
    assert task.all_folds_recorded
    assert 0 < task.scores["mae"]["mean"] < 100
    info = json.loads((out / "info.json").read_text())
    assert info["algorithm"] == "HybridTest"
    assert any("Gong" in ref for ref in info["bibtex_refs"])
    assert f"{TINY.max_epochs} epochs" in info["algorithm_long"]
    assert "Compute: 5 folds" in info["notes"]
    assert "cpu" in info["notes"]
    assert all(json.loads((out / "folds" / TASK / f"fold{f}.json").read_text())["params"]["device"] for f in (2, 3))
    assert any(pin.startswith("matgl==") for pin in info["requirements"]["python"])
    script = runpy.run_path(str(out / "run_matbench.py"))  # its module level; the run is under __main__
    assert TrainSpec(**script["SPEC"]) == TINY
    report = (out / "report.md").read_text()
    assert "matbench_jdft2d" in report
    assert "MODNet v0.1.12 (leaderboard)" in report
    ours = next(line for line in report.splitlines() if line.startswith("| HybridTest"))  # the run's own name
    assert "nan" not in ours  # the time column comes from the fold records, resumed folds included
    assert (out / "report.png").stat().st_size > 0


def test_unofficial_files_only_by_opt_in_and_then_recorded_as_reconstructed(stand_in_dir, tmp_path, monkeypatch):
    """A file whose sha256 differs is refused unless the user vouches for it; then info.json and the report give
    its sha256, call it reconstructed and carry the provenance, and the official folds still apply."""
    with pytest.raises(DatasetFileError, match="--allow-unofficial-data"):
        verify_dataset_file(TASK, stand_in_dir)
    checked = verify_dataset_file(TASK, stand_in_dir, allow_unofficial=True, provenance="a test stand-in")
    assert not checked.official
    assert checked.sha256 == sha256_file(stand_in_dir / f"{TASK}.json.gz")

    def train_mean(self, task, fold, spec):  # no training: the recording path is what is tested
        _, targets = task.get_train_and_val_data(fold)
        test = task.get_test_data(fold, include_target=False)
        return {
            "mae": None,
            "train_seconds": 0.0,
            "n_train": len(targets),
            "n_test": len(test),
            "params": {},
            "ids": list(test.index),
            "y_true": None,
            "y_pred": [float(np.mean(targets))] * len(test),
        }

    monkeypatch.setattr(MatbenchRun, "_train_and_predict", train_mean)
    monkeypatch.delenv("MATMINER_DATA", raising=False)
    out = tmp_path / "matbench_v0.1_Reconstr"
    with pytest.raises(DatasetFileError, match="--allow-unofficial-data"):  # the default refuses it before any work
        MatbenchRun([TASK], TINY, out, algorithm="Reconstr", data_dir=stand_in_dir, progress=False).run()
    assert not (out / "info.json").exists()
    MatbenchRun(
        [TASK],
        TINY,
        out,
        algorithm="Reconstr",
        data_dir=stand_in_dir,
        progress=False,
        allow_unofficial_data=True,
        data_provenance="a test stand-in",
    ).run()
    for text in (json.loads((out / "info.json").read_text())["notes"], (out / "report.md").read_text()):
        assert "reconstructed" in text
        assert checked.sha256 in text
        assert "a test stand-in" in text
    script = runpy.run_path(str(out / "run_matbench.py"))  # its rerun accepts the same files, recorded the same way
    assert script["OPTIONS"] == {"allow_unofficial_data": True, "data_provenance": "a test stand-in"}
    assert validate_submission(out) == []
    splits = mbv01_validation.splits[TASK]
    for fold in range(5):
        record = json.loads((out / "folds" / TASK / f"fold{fold}.json").read_text())
        assert record["ids"] == list(splits[f"fold_{fold}"].test)


def test_a_run_of_some_folds_records_every_finished_fold(accept_stand_in, tmp_path, monkeypatch):
    """Runs of one fold each (parallel processes, say) add up: the results file records every finished fold, not
    only the run's own, and trains only the folds asked for."""
    trained = []

    def train_mean(self, task, fold, spec):  # no training: the recording path is what is tested
        trained.append(fold)
        _, targets = task.get_train_and_val_data(fold)
        test = task.get_test_data(fold, include_target=False)
        return {"mae": None, "train_seconds": 0.0, "n_train": len(targets), "n_test": len(test), "params": {},
                "ids": list(test.index), "y_true": None, "y_pred": [float(np.mean(targets))] * len(test)}  # fmt: skip

    monkeypatch.setattr(MatbenchRun, "_train_and_predict", train_mean)
    out = tmp_path / "matbench_v0.1_Parts"
    for folds in ((0, 1), (3,)):
        MatbenchRun([TASK], TINY, out, algorithm="Parts", data_dir=accept_stand_in, folds=folds, progress=False).run()
    assert trained == [0, 1, 3]
    # matbench reads only a file with every fold recorded: look inside
    results = json.loads(gzip.decompress((out / "results.json.gz").read_bytes()))["tasks"][TASK]["results"]
    assert sorted(k for k, v in results.items() if v["data"]) == ["fold_0", "fold_1", "fold_3"]
    assert "| Parts" in (out / "report.md").read_text()
    MatbenchRun([TASK], TINY, out, algorithm="Parts", data_dir=accept_stand_in, progress=False).run()
    assert trained == [0, 1, 3, 2, 4]
    assert runner.read_results(out / "results.json.gz").tasks_map[TASK].all_folds_recorded
    assert validate_submission(out) == []


def test_a_learning_curve_run_trains_on_a_seeded_part_of_each_fold_and_says_so(accept_stand_in, tmp_path, monkeypatch):
    """``train_fraction`` < 1 trains each fold on its seeded part (the same rows every run, other rows per fold), is
    fingerprinted apart from a whole-fold run, and info.json says it is no submission; 0 or above 1 is refused."""
    trained: dict[int, list[str]] = {}

    def fit_mean(train, spec, cache_dir=None):  # no training: which rows a fold trains on is what is tested
        trained[len(trained)] = list(train.ids)
        value = float(np.mean(train.targets))
        model = SimpleNamespace(predict=lambda structures, **_: np.full(len(structures), value))
        return SimpleNamespace(model=model, best_val_mae=0.0, best_epoch=1, processes=1)

    monkeypatch.setattr(matbench_runner, "fit", fit_mean)
    out = tmp_path / "matbench_v0.1_Half"
    half = dict(algorithm="Half", data_dir=accept_stand_in, folds=(0, 1), progress=False, train_fraction=0.5)
    mb = MatbenchRun([TASK], TINY, out, **half).run()
    task = mb.tasks_map[TASK]
    for fold in (0, 1):
        whole = list(task.get_train_and_val_data(fold)[0].index.astype(str))
        drawn = np.sort(np.random.default_rng(fold).permutation(len(whole))[: round(len(whole) / 2)])
        assert trained[fold] == [whole[i] for i in drawn]  # seeded by the fold, in the fold's order
    assert "50% of each training fold" in (out / "info.json").read_text()
    assert "not a Matbench submission" in (out / "report.md").read_text()
    assert "train_fraction" in (out / "run_matbench.py").read_text()
    with pytest.raises(FingerprintMismatch):  # the whole folds are another run: never mixed into this folder
        MatbenchRun([TASK], TINY, out, **{**half, "train_fraction": 1.0}).run()
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="train_fraction"):
            MatbenchRun([TASK], TINY, tmp_path / "bad", **{**half, "train_fraction": bad}).run()


def test_candidates_are_chosen_per_fold_on_the_inner_validation_split_only(accept_stand_in, tmp_path, monkeypatch):
    """With candidates, every fold trains each one and records the one with the lowest inner-validation MAE, never
    looking at the test fold; the choice, each MAE and the summed cost are in the record; reruns train nothing."""
    trained = []

    def fake_fit(self, task, fold, spec):  # candidate "long" validates better on odd folds only
        trained.append((fold, spec.max_epochs))
        test = task.get_test_data(fold, include_target=False)
        long = spec.max_epochs == 3
        return {"mae": None, "train_seconds": 30.0 if long else 10.0, "n_train": 1, "n_test": len(test),
                "params": {"best_val_mae": 1.0 + fold % 2 * 2.0 if long else 2.0}, "ids": list(test.index),
                "y_true": None, "y_pred": [3.0 if long else 1.0] * len(test)}  # fmt: skip

    monkeypatch.setattr(MatbenchRun, "_train_and_predict", fake_fit)
    out = tmp_path / "matbench_v0.1_Chooser"
    run = MatbenchRun([TASK], TINY, out, algorithm="Chooser", data_dir=accept_stand_in, progress=False,
                      candidates={"short": {}, "long": {"max_epochs": 3}})  # fmt: skip
    run.run()
    assert sorted(trained) == sorted((f, e) for f in range(5) for e in (1, 3))
    for fold in range(5):
        record = run.fold_records_[TASK][fold]
        chosen = "long" if fold % 2 == 0 else "short"  # long: 1.0 on even folds, 3.0 on odd ones; short: 2.0
        assert record["params"]["candidate"] == chosen
        assert record["params"]["inner_val_mae"] == {"short": 2.0, "long": 1.0 + fold % 2 * 2.0}
        assert set(record["y_pred"]) == {3.0 if chosen == "long" else 1.0}
        assert record["train_seconds"] == 40.0
        for name in ("short", "long"):
            assert (out / "folds" / TASK / name / f"fold{fold}.json").is_file()
    loaded = runner.read_results(out / "results.json.gz").tasks_map[TASK]
    assert [loaded.results[f"fold_{f}"]["parameters"]["candidate"] for f in range(5)] == [
        "long", "short", "long", "short", "long"]  # fmt: skip
    assert validate_submission(out) == []
    script = runpy.run_path(str(out / "run_matbench.py"))
    assert script["CANDIDATES"] == {"short": {}, "long": {"max_epochs": 3}}
    assert read_candidates(out / "candidates.json") == script["CANDIDATES"]  # for the CLI's --candidates
    described = json.loads((out / "info.json").read_text())["algorithm_long"]
    assert "lowest MAE (log loss for a classifier) on that inner validation split" in described
    trained.clear()
    # what the folder's run_matbench.py runs, with its own settings: every candidate's fold is reused
    rerun_submission(out, script["SPEC"], script["CANDIDATES"], [TASK], "Chooser", "me", data_dir=accept_stand_in)
    assert trained == []
    cli_out = tmp_path / "matbench_v0.1_ChooserCli"
    args = ["matbench", "--tasks", TASK, "--algorithm", "ChooserCli", "--out", str(cli_out), "--data-dir",
            str(accept_stand_in), "--candidates", str(out / "candidates.json")]  # fmt: skip
    assert main(args) == 0
    again = runner.read_results(cli_out / "results.json.gz").tasks_map[TASK]
    assert [again.results[f"fold_{f}"]["parameters"]["candidate"] for f in range(5)] == [
        "long", "short", "long", "short", "long"]  # fmt: skip
    # the same candidates chosen by inner K-fold would choose again and rewrite the folder's results: refused
    kfold = r"holds folds chosen by an inner validation split, this run chooses by inner 2-fold"
    with pytest.raises(ValueError, match=kfold):
        MatbenchRun([TASK], TINY, out, algorithm="Chooser", data_dir=accept_stand_in, progress=False,
                    candidates={"short": {}, "long": {"max_epochs": 3}}, inner_folds=2).run()  # fmt: skip
    # a NaN prediction, which matbench itself accepts, fails validation
    broken = tmp_path / "matbench_v0.1_NaNs"
    shutil.copytree(out, broken)
    content = json.loads(gzip.decompress((broken / "results.json.gz").read_bytes()))
    data = content["tasks"][TASK]["results"]["fold_2"]["data"]
    data[next(iter(data))] = float("nan")
    content.pop("hash")
    content["hash"] = hash_dictionary(content)
    (broken / "results.json.gz").write_bytes(gzip.compress(json.dumps(content).encode()))
    assert validate_submission(broken) == [
        f"results.json.gz: {TASK} fold_2 has a prediction that is not a finite number"
    ]
    # a fold record that does not list the fold's test structures in their order is refused, not scored
    for name in ("short", "long"):
        path = out / "folds" / TASK / name / "fold1.json"
        shuffled = json.loads(path.read_text())
        shuffled["ids"] = shuffled["ids"][::-1]
        path.write_text(json.dumps(shuffled))
    with pytest.raises(ValueError, match="fold 1's record does not list the fold's test structures in their order"):
        MatbenchRun([TASK], TINY, out, algorithm="Chooser", data_dir=accept_stand_in, progress=False,
                    candidates={"short": {}, "long": {"max_epochs": 3}}).run()  # fmt: skip


def test_candidates_must_share_one_inner_split_and_name_known_fields(tmp_path):
    def specs(candidates):
        return MatbenchRun([TASK], TINY, tmp_path, candidates=candidates).candidate_specs()

    assert specs({"a": {}, "b": {"lr": 0.01}})["b"].lr == 0.01
    assert specs({})[""] == TINY
    with pytest.raises(ValueError, match="'b' changes \\['seed'\\]"):
        specs({"a": {}, "b": {"seed": 1}})
    with pytest.raises(ValueError, match="unknown TrainSpec fields \\['epochs'\\]"):
        specs({"a": {"epochs": 3}})
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps({"a": {"lr": 0.01}, "b": 3}))
    with pytest.raises(ValueError, match="candidate 'b' is int"):
        read_candidates(path)
    path.write_text(json.dumps({"a": {"epochs": 3}}))
    with pytest.raises(ValueError, match=r"candidates\.json: candidate .a. has unknown TrainSpec fields"):
        read_candidates(path)  # named with the file, before any data is loaded
    path.write_text(json.dumps({"a": {"lr": 0.01}}))
    assert read_candidates(path) == {"a": {"lr": 0.01}}


@pytest.mark.skipif(
    not (Path(__file__).parents[2] / "shared/data/matbench").is_dir(), reason="../shared/data/matbench absent"
)
def test_the_shared_reconstructions_need_the_opt_in():
    folder = Path(__file__).parents[2] / "shared" / "data" / "matbench"
    for task in ("matbench_jdft2d", "matbench_phonons"):
        with pytest.raises(DatasetFileError, match="sha256"):
            verify_dataset_file(task, folder)
        assert not verify_dataset_file(task, folder, allow_unofficial=True).official


def test_validation_catches_broken_submissions(accept_stand_in, tmp_path):
    out = tmp_path / "matbench_v0.1_Broken"
    out.mkdir()
    problems = validate_submission(out)
    assert "results.json.gz is missing" in problems
    assert "info.json is missing" in problems
    (out / "info.json").write_text(json.dumps({"algorithm": "abc", "authors": ""}))
    (out / "results.json.gz").write_text("{}")
    problems = " | ".join(validate_submission(out))
    assert "'notes'" in problems
    assert "'authors' is missing or empty" in problems
    assert "5 to 15 characters" in problems
    assert "cannot be read" in problems
    assert "no .py or .ipynb" in problems


def test_one_folder_is_checked_for_an_algorithm_name_its_neighbours_use(tmp_path, monkeypatch):
    """``validate benchmarks/matbench_v0.1_X`` in a matbench fork said "valid" for a name another submission
    beside it already used, which the leaderboard's CI rejects."""
    from matgl_hybrid.evaluation.matbench.rules import validate_folder

    for name, algorithm in (("matbench_v0.1_Mine", "MatGLHybrid"), ("matbench_v0.1_Theirs", "MatGLHybrid")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "info.json").write_text(json.dumps({"algorithm": algorithm}))
    (problems,) = validate_folder(tmp_path / "matbench_v0.1_Mine").values()
    assert "algorithm 'MatGLHybrid' is already used by matbench_v0.1_Theirs" in problems
    (tmp_path / "matbench_v0.1_Mine" / "folds").mkdir()
    monkeypatch.chdir(tmp_path / "matbench_v0.1_Mine" / "folds")  # `validate ..` from inside the folder
    (problems,) = validate_folder(Path("..")).values()
    assert "algorithm 'MatGLHybrid' is already used by matbench_v0.1_Theirs" in problems
    (tmp_path / "matbench_v0.1_Theirs" / "info.json").write_text(json.dumps({"algorithm": "Other"}))
    (problems,) = validate_folder(tmp_path / "matbench_v0.1_Mine").values()
    assert not [p for p in problems if "already used" in p]


def test_info_names_the_descriptor_sets_and_the_universal_potential_it_used():
    recipe = MatbenchRun([TASK], TrainSpec(), Path("unused")).info()
    assert "Magpie" in recipe["algorithm_long"]
    assert "CHGNet 0.3.0" in recipe["algorithm_long"]
    assert "MPtrj" in recipe["algorithm_long"]
    assert "without its energy" in recipe["algorithm_long"]
    assert any("Deng" in ref and "CHGNet" in ref for ref in recipe["bibtex_refs"])
    with_sim = {"sim": {"descriptor_set": f"{TrainSpec().descriptor_set}+sim:chgnet"}}
    described = MatbenchRun([TASK], TrainSpec(), Path("unused"), candidates=with_sim).describe()
    assert "sim (adds sim:chgnet: quantities simulated with CHGNet 0.3.0 through matcalc" in described
    assert described.count("Magpie") == 1  # the candidate's set is described by what it adds
    plain = MatbenchRun([TASK], TrainSpec(descriptor_set="gong28"), Path("unused")).info()
    assert not any("CHGNet" in ref for ref in plain["bibtex_refs"])
    assert describe_descriptor_set("gong28+mine") == (
        "the 28 global structure descriptors of Gong et al. (2023); the 'mine' descriptors"
    )


def test_composition_tasks_are_refused(tmp_path):
    with pytest.raises(ValueError, match="composition task"):
        MatbenchRun(["matbench_steels"], TINY, out=tmp_path / "out", progress=False).run()


@pytest.mark.slow
def test_cli_validate_and_cv(shared_data, tmp_path, capsys, monkeypatch):
    assert main(["validate", str(tmp_path)]) == 1  # not a submission folder
    assert "matbench_v0.1_" in capsys.readouterr().out

    data, records = write_small_records(shared_data, "alexandria_heat_capacity.json.gz", 60, tmp_path)
    config = tmp_path / "spec.json"
    config.write_text(json.dumps(TINY.to_dict()))
    args = [
        "cv",
        "--data",
        str(data),
        "--target",
        "heat_capacity",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "cv"),
    ]
    checkpoints = []  # what each fold's training left in its checkpoint folder, seen as it finished

    def fit_and_look(*fit_args, **fit_kwargs):
        result = original_fit(*fit_args, **fit_kwargs)
        checkpoints.extend(Path(fit_kwargs["checkpoint_dir"]).iterdir())
        return result

    original_fit = cv_module.fit
    monkeypatch.setattr(cv_module, "fit", fit_and_look)
    assert main(args) == 0
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert len(summary["fold_mae"]) == 5
    folds = [json.loads((tmp_path / "cv" / "folds" / f"fold{k}.json").read_text()) for k in range(5)]
    test_ids = sorted(i for f in folds for i in f["ids"])
    assert test_ids == sorted(r["id"] for r in records)  # every structure is tested exactly once
    assert (tmp_path / "cv" / "cv.md").read_text().count("/5") == 1
    # what it ran: the command, the device, the package versions; every out-of-fold prediction in one table
    assert summary["command"] == "matgl-hybrid " + " ".join(args)
    assert f"Command: `{summary['command']}`" in (tmp_path / "cv" / "cv.md").read_text()
    assert any(r.startswith("matgl==") for r in summary["requirements"])
    predictions = pd.read_csv(tmp_path / "cv" / "cv_predictions.csv", dtype={"id": str})
    assert predictions["id"].tolist() == [i for f in folds for i in f["ids"]]
    assert predictions["fold"].tolist() == [k for k, f in enumerate(folds) for _ in f["ids"]]
    np.testing.assert_allclose(predictions["y_pred"], [p for f in folds for p in f["y_pred"]])
    # each fold trained in its own checkpoint folder (an interrupted fold resumes from its last epoch), removed
    # once the fold's record is written
    assert sorted(c.parent.name for c in checkpoints if c.name == "last.ckpt") == [f"fold{k}" for k in range(5)]
    assert not (tmp_path / "cv" / "checkpoints").exists()
    assert [r["epoch"] for r in folds[0]["params"]["history"]] == list(range(TINY.max_epochs))  # the curve stays


def test_report_flags_best_only_when_it_beats_every_row_leaderboard_included(tmp_path):
    row = {"fold_mae": [1.0] * 5, "mae_std": 0.1, "train_seconds": 1.0, "folds_done": 5, "mad": 10.0}
    tables = {"t": {"ours": {**row, "mae_mean": 2.0}, "other": {**row, "mae_mean": 3.0}}}
    reference = {"t": [{"algorithm": "Leader", "mae_mean": 1.5, "mae_std": 0.2, "source": "s"}]}
    write_report(tmp_path / "behind", "r", tables, {"t": "eV"}, reference=reference)
    assert "(best)" not in (tmp_path / "behind.md").read_text()
    write_report(tmp_path / "ahead", "r", tables, {"t": "eV"})
    assert "| ours **(best)** |" in (tmp_path / "ahead.md").read_text()
    # each fold's score in the table, not only as dots in the figure; a fold without one as a dash
    partial = {"t": {"ours": {**row, "fold_mae": [1.25, float("nan"), 0.5], "mae_mean": 0.875, "folds_done": 3}}}
    write_report(tmp_path / "partial", "r", partial, {"t": "eV"})
    assert "| 3/5 | 1 | 1.25, –, 0.5 |" in (tmp_path / "partial.md").read_text()
    # a diverged model (a NaN fold, hence a NaN mean) is never the best and is listed last, whatever its name
    diverged = {"t": {"a_diverged": {**row, "mae_mean": float("nan")}, **tables["t"]}}
    write_report(tmp_path / "nan", "r", diverged, {"t": "eV"})
    table = [line for line in (tmp_path / "nan.md").read_text().splitlines() if line.startswith("| ")]
    assert table[1].startswith("| ours **(best)** |")
    assert table[3].startswith("| a_diverged | nan")


def test_classifier_candidates_are_chosen_by_validation_log_loss_not_mae_of_probabilities(monkeypatch):
    """A classifier's fold record holds the log loss of its validation probabilities, and the choice uses it: a
    candidate with the lower MAE of probabilities but confident mistakes loses."""
    atom = Structure([[3, 0, 0], [0, 3, 0], [0, 0, 3]], ["Na"], [[0, 0, 0]])
    ids = ["pos1", "neg1", "pos2", "neg2"]
    train = StructureData([atom] * 4, np.array([1.0, 0.0, 1.0, 0.0]), ids)
    test = StructureData([atom], None, ["t"])

    class Model:
        def predict(self, structures, ids, cache_dir=None):
            return np.array([{"pos2": 0.9, "neg2": 0.2}.get(i, 0.5) for i in ids])

    result = FitResult(Model(), best_val_mae=0.15, best_epoch=0, epochs_run=1, train_ids=ids[:2], val_ids=ids[2:])
    monkeypatch.setattr(matbench_runner, "fold_data", lambda task, fold: (train, test))
    monkeypatch.setattr(matbench_runner, "fit", lambda data, spec, cache_dir: result)
    task = SimpleNamespace(metadata=SimpleNamespace(task_type="classification"))
    run = MatbenchRun([TASK], replace(TINY, task_type="classification"), Path("unused"), progress=False)
    record = run._train_and_predict(task, 0, run.spec)
    assert record["params"]["val_log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2)
    assert record["params"]["processes"] == 1

    def fold(mae: float, log_loss: float) -> dict:
        return {"train_seconds": 1.0, "params": {"best_val_mae": mae, "val_log_loss": log_loss}}

    chosen = choose({"confident": fold(0.10, 2.3), "calibrated": fold(0.30, 0.4)})
    assert chosen["params"]["candidate"] == "calibrated"
    assert chosen["params"]["inner_val_log_loss"] == {"confident": 2.3, "calibrated": 0.4}


def test_with_inner_folds_a_classifier_fold_records_the_log_losses_that_chose(monkeypatch):
    """With inner folds, a classification task's fold record names the inner log losses, the score its choice was
    made by, beside the MAEs of probabilities (which would have chosen the other candidate here)."""
    atom = Structure([[3, 0, 0], [0, 3, 0], [0, 0, 3]], ["Na"], [[0, 0, 0]])
    train = StructureData([atom] * 4, np.array([1.0, 0.0, 1.0, 0.0]), ["p1", "n1", "p2", "n2"])
    test = StructureData([atom], None, ["t"])
    y = [1.0, 0.0]

    def fold(probabilities: list[float]) -> dict:
        return {"mae": 0.0, "seconds": 1.0, "ids": ["p", "n"], "y_true": y, "y_pred": probabilities,
                "best_val_mae": 0.1, "best_epoch": 0}  # fmt: skip

    class Ensemble:
        def predict(self, structures, ids, cache_dir=None, return_std=False):
            return np.array([0.7]), np.array([0.1])

    classifier = replace(TINY, task_type="classification", loss="l1_loss", element_types="all")
    folds = {"confident": [fold([0.999, 0.001]), fold([0.001, 0.001])], "calibrated": [fold([0.6, 0.4])] * 2}
    fits = [FitResult(Ensemble(), best_val_mae=0.1, best_epoch=0, epochs_run=1, train_ids=[], val_ids=[])] * 2
    selection = Selection(InnerKFold(2, seed=0), dict.fromkeys(folds, classifier), folds, "calibrated", Ensemble(),
                          fits)  # fmt: skip
    assert selection.maes["confident"] < selection.maes["calibrated"]  # MAE would have chosen the other one
    monkeypatch.setattr(matbench_runner, "fold_data", lambda task, fold: (train, test))
    monkeypatch.setattr(matbench_runner, "select", lambda *args, **kwargs: selection)
    task = SimpleNamespace(dataset_name="matbench_mp_is_metal", metadata=SimpleNamespace(task_type="classification"))
    run = MatbenchRun(["matbench_mp_is_metal"], TINY, Path("unused"), progress=False, inner_folds=2)
    params = run._select_and_predict(task, 0, {"confident": TINY, "calibrated": TINY})["params"]
    assert params["candidate"] == params["chosen"] == "calibrated"
    assert params["inner_log_loss"] == pytest.approx(
        {"confident": -(3 * np.log(0.999) + np.log(0.001)) / 4, "calibrated": -np.log(0.6)}
    )
    assert params["inner_mae"] == pytest.approx({"confident": 0.2505, "calibrated": 0.4})


def test_report_ranks_a_classifier_s_roc_auc_higher_is_better(tmp_path):
    row = {"rocauc_std": 0.01, "train_seconds": 1.0, "folds_done": 5}
    tables = {
        "is_metal": {
            "weak": {**row, "rocauc_mean": 0.80, "fold_rocauc": [0.8] * 5},
            "strong": {**row, "rocauc_mean": 0.95, "fold_rocauc": [0.95] * 5},
        }
    }
    reference = {"is_metal": [{"algorithm": "Leader", "rocauc_mean": 0.92, "source": "s"}]}
    write_report(tmp_path / "r", "r", tables, {"is_metal": None}, reference=reference, metrics={"is_metal": "rocauc"})
    text = (tmp_path / "r.md").read_text()
    assert "| model | ROC-AUC (mean ± std) | folds |" in text
    assert text.index("| strong **(best)** | 0.95") < text.index("| weak | 0.8")


def test_the_matbench_report_of_a_classification_task_reads_the_stored_roc_auc_leaderboard(tmp_path):
    from matgl_hybrid.evaluation.matbench.report import write_matbench_report

    class Metadata(dict):
        task_type = "classification"

    folds = range(5)
    task = SimpleNamespace(dataset_name="matbench_mp_is_metal", metadata=Metadata(), folds=list(folds),
                           folds_map={f: f"fold_{f}" for f in folds}, is_recorded=dict.fromkeys(folds, True),
                           results={f"fold_{f}": {"scores": {"rocauc": 0.96 + 0.001 * f}} for f in folds})  # fmt: skip
    write_matbench_report(SimpleNamespace(tasks=[task]), tmp_path / "r", name="MyHybrid")
    text = (tmp_path / "r.md").read_text()
    assert "| model | ROC-AUC (mean ± std) | folds |" in text
    assert "| MyHybrid **(best)** | 0.962 ± 0.0014 | 5/5 | – |" in text  # its algorithm's name; no time recorded
    assert "| CGCNN v2019 (leaderboard) | 0.952" in text


def test_a_run_of_one_task_keeps_the_earlier_finished_tasks_of_its_folder(tmp_path):
    def run(**kwargs):
        return MatbenchRun([TASK], TINY, tmp_path, **kwargs)

    finished, unfinished = tmp_path / "folds" / "matbench_phonons", tmp_path / "folds" / "matbench_dielectric"
    for folder, folds in ((finished, range(5)), (unfinished, range(2))):
        folder.mkdir(parents=True)
        for fold in folds:
            (folder / f"fold{fold}.json").write_text("{}")
    (tmp_path / "folds" / "not_a_task").mkdir()
    with pytest.warns(UserWarning, match="matbench_dielectric: an earlier run's unfinished task"):
        assert run().submission_tasks() == [TASK, "matbench_phonons"]
    assert run(folds=(0, 1)).submission_tasks() == [TASK, "matbench_dielectric", "matbench_phonons"]
    # with candidates, a task is finished when every candidate finished every fold
    with pytest.warns(UserWarning, match="matbench_phonons: an earlier run's unfinished task"):
        assert run(candidates={"a": {}}).submission_tasks() == [TASK]
    recorded = run()
    recorded.fold_records_ = {TASK: {}, "matbench_phonons": {}}  # as run() leaves them
    assert f"TASKS = {[TASK, 'matbench_phonons']!r}" in recorded.script()


@pytest.mark.slow
def test_with_inner_folds_each_fold_chooses_by_inner_kfold_and_its_ensemble_predicts(
    accept_stand_in, tmp_path, monkeypatch
):
    """The Matbench protocol through the selection engine: per fold, inner K-fold on the training fold alone, the
    chosen candidate's K models (an ensemble) predict the test fold; the record names the choice and every score."""
    out = tmp_path / "matbench_v0.1_InnerKFold"
    candidates = {"extensive": {}, "mean": {"readout": "mean"}}
    run = MatbenchRun([TASK], TINY, out, algorithm="InnerKFold", data_dir=accept_stand_in, folds=(0,),
                      progress=False, candidates=candidates, inner_folds=2,
                      protocol="protocol.md @ abc1234")  # fmt: skip
    benchmark = run.run()
    record = json.loads((out / "folds" / TASK / "fold0.json").read_text())
    params = record["params"]
    drawn = {}  # the report's parity plot: the test fold's predictions against its targets
    with monkeypatch.context() as patch:
        patch.setattr(matbench_report, "write_report", lambda *args, **kwargs: drawn.update(parity=args[4]))
        write_matbench_report(benchmark, tmp_path / "report")
    _, y_drawn, p_drawn = drawn["parity"][TASK]
    assert p_drawn.tolist() == pytest.approx(record["y_pred"])
    np.testing.assert_allclose(y_drawn, benchmark.tasks_map[TASK].df.loc[record["ids"], "exfoliation_en"])
    (line,) = score_lines(benchmark)  # what the command prints at the end
    score = benchmark.tasks_map[TASK].results["fold_0"]["scores"]["mae"]
    assert line.startswith(f"{TASK}: MAE {score:.4g} ± 0 meV/atom over 1 of 5 folds (leaderboard best: ")
    assert set(params["inner_mae"]) == {"extensive", "mean"}
    assert params["candidate"] == min(params["inner_mae"], key=params["inner_mae"].get)
    assert params["scheme"] == {"scheme": "inner_kfold", "k": 2, "seed": TINY.seed}
    assert params["processes"] == 1  # how many trained each member (DDP: the batch size is per process)
    assert np.isfinite(record["y_pred"]).all()
    spread = np.asarray(record["y_std"])  # the two inner models disagree somewhere: the ensemble's uncertainty
    assert spread.shape == (len(record["ids"]),)
    assert (spread >= 0).all()
    assert spread.max() > 0
    recorded = benchmark.tasks_map[TASK].results["fold_0"]["uncertainty"]
    assert [recorded[i]["std"] for i in record["ids"]] == pytest.approx(record["y_std"])  # the submission's uncertainty
    test_ids = set(record["ids"])
    inner = out / "folds" / TASK / "selection" / "fold0"
    scored = [i for k in range(2) for i in json.loads((inner / "mean" / f"fold{k}.json").read_text())["ids"]]
    assert len(scored) == len(mbv01_validation.splits[TASK]["fold_0"].train)  # out of fold over the training fold
    assert test_ids.isdisjoint(scored)
    options = runpy.run_path(str(out / "run_matbench.py"))["OPTIONS"]
    assert (options["inner_folds"], options["protocol"]) == (2, "protocol.md @ abc1234")
    registered = "Protocol registered before any test fold was scored: protocol.md @ abc1234."
    assert registered in json.loads((out / "info.json").read_text())["notes"]
    assert registered in (out / "report.md").read_text()
    # the ensemble's members are the fits that were scored (trained in this call), said per member
    members = params["members"]
    assert len(members) == 2
    assert all(m["same"] and m["best_val_mae"] == m["scored_best_val_mae"] for m in members)
    assert "inner 2-fold cross-validation" in run.describe()
    assert "base settings, which each candidate below changes as listed: MatGL megnet" in run.describe()
    inner_seconds = sum(
        json.loads(f.read_text())["seconds"] for f in inner.glob("*/fold*.json")
    )  # every inner fit, counted once, and the prediction
    assert record["train_seconds"] >= inner_seconds
    devices = {json.loads(f.read_text())["device"] for f in inner.glob("*/fold*.json")}  # where each inner fit ran
    assert devices
    assert devices <= set(params["device"].split("; "))
    # a finished fold resumed by a session elsewhere (another accelerator, more workers): reused, nothing trained
    elsewhere = dict(candidates=candidates, inner_folds=2, protocol="protocol.md @ abc1234")
    again = MatbenchRun([TASK], replace(TINY, accelerator="cpu", n_jobs=2), out, algorithm="InnerKFold",
                        data_dir=accept_stand_in, folds=(0,), progress=False, **elsewhere)  # fmt: skip
    again.run()
    assert again.fold_records_[TASK][0]["y_pred"] == record["y_pred"]
    # a revised descriptor set (another version than the inner fits were trained with) refuses the finished fold,
    # naming the inner record, instead of mixing versions in one submission
    inner_record = inner / "mean" / "fold1.json"
    stale = json.loads(inner_record.read_text())
    stale["fingerprint"]["descriptor_version"] = "an-earlier-revision"
    inner_record.write_text(json.dumps(stale))
    with pytest.raises(FingerprintMismatch, match=r"selection/fold0/mean/fold1\.json.*descriptor_version"):
        MatbenchRun([TASK], TINY, out, algorithm="InnerKFold", data_dir=accept_stand_in, folds=(0,),
                    progress=False, **elsewhere).run()  # fmt: skip
    # and a finished fold whose inner records are gone (a folder copied without them) cannot be checked: refused
    inner_record.unlink()
    with pytest.raises(ValueError, match=r"fold 0 is finished, but .* lacks 1 inner records \(mean/fold1\.json\)"):
        MatbenchRun([TASK], TINY, out, algorithm="InnerKFold", data_dir=accept_stand_in, folds=(0,),
                    progress=False, **elsewhere).run()  # fmt: skip


#: The SPEC of the v1 submission's run_matbench.py as it was written (2026-11-29), before ``lr_schedule`` and
#: ``clip_descriptors`` existed; a frozen copy, since promoting v2 moves that folder and a rerun rewrites the script.
V1_SCRIPT_SPEC = {
    "backbone": "megnet", "backbone_kwargs": {}, "cutoff": 5.0, "readout": "extensive",
    "descriptor_set": "gong28+composition+chgnet_noenergy", "fusion": "concat", "descriptor_dim": 64,
    "head_hidden": (64, 64), "activation": "softplus2", "task_type": "regression", "element_types": "training",
    "node_embeddings": None, "max_epochs": 120, "batch_size": 32, "lr": 0.002, "decay_alpha": 0.01,
    "loss": "l1_loss", "val_fraction": 0.1, "patience": 25, "seed": 0, "accelerator": "auto", "devices": "auto",
    "n_jobs": 1, "progress": False,
}  # fmt: skip


def test_a_submission_script_written_before_a_spec_field_reruns_with_the_settings_it_ran(monkeypatch, tmp_path):
    """v1's run_matbench.py predates ``clip_descriptors``: read with today's default (clipping) it would train another
    model than the one it records; its SPEC reads as the version that wrote it trained."""
    ran = []
    monkeypatch.setattr(MatbenchRun, "run", lambda self: ran.append(self))
    monkeypatch.setenv("MATGL_HYBRID_CACHE", str(tmp_path / "cache"))
    rerun_submission(tmp_path, V1_SCRIPT_SPEC, {"recipe": {}}, ["matbench_jdft2d"], "MatGLHybrid", "me")
    assert ran[0].spec.clip_descriptors is False
    assert ran[0].spec.lr_schedule == "matgl"
    # through the descriptor cache, as `matgl-hybrid matbench` runs (without one, every fit of a sim: candidate
    # simulated every structure again)
    assert Path(ran[0].cache_dir) == tmp_path / "cache" / "descriptors"
    assert TrainSpec.from_stored(TrainSpec().to_dict()) == TrainSpec()  # a whole spec of today stays as it is


def test_a_misspelt_task_is_refused_with_the_nearest_name(tmp_path, capsys):
    """A typo raised matbench's KeyError as a traceback."""
    out = tmp_path / "matbench_v0.1_Typos"
    assert main(["matbench", "--tasks", "matbench_jdft2d, matbench_phonon", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "not Matbench v0.1 tasks: 'matbench_phonon' (did you mean matbench_phonons?)" in error
    assert not out.exists()
    assert main(["matbench", "--tasks", " , ", "--out", str(out)]) == 2  # matbench would run all 13
    assert "no Matbench task given" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--algorithm", "MGH"], "--algorithm 'MGH' must have 5 to 15 characters"),
        (["--algorithm", "a/b/MatGL"], "no path separator"),
        (["--out", "results"], "the folder name 'results' must start with 'matbench_v0.1_'"),
        (["--authors", " "], "--authors is empty"),
    ],
)
def test_submission_names_that_could_never_be_valid_are_refused_before_any_work(tmp_path, capsys, monkeypatch,
                                                                                 options, message):  # fmt: skip
    """They were found by validate_submission after every fold had trained, and the command still exited 0."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(MatbenchRun, "run", lambda self: pytest.fail("the run started"))
    assert main(["matbench", "--tasks", TASK, *options]) == 2
    assert message in capsys.readouterr().err


def test_matbench_refuses_a_forest_candidate_saying_why(tmp_path, capsys, monkeypatch):
    (tmp_path / "c.json").write_text(json.dumps({"a": {}, "rf": {"model": "random_forest"}}))
    monkeypatch.setattr(MatbenchRun, "run", lambda self: pytest.fail("the run started"))
    out = tmp_path / "matbench_v0.1_Forest"
    assert main(["matbench", "--tasks", TASK, "--candidates", str(tmp_path / "c.json"), "--out", str(out)]) == 2
    assert "matbench takes graph-network candidates only; rf is a random forest" in capsys.readouterr().err


def test_a_classification_task_trains_whatever_regression_loss_the_spec_names(tmp_path):
    """``--loss huber_loss`` with matbench_mp_is_metal failed TrainSpec's validation only when that task's first fold
    started, after every fold of the tasks before it had trained."""
    classification = SimpleNamespace(metadata=SimpleNamespace(task_type="classification"))
    huber = replace(TINY, loss="huber_loss")
    spec = MatbenchRun([TASK], huber, tmp_path)._fold_spec(classification, huber)
    spec.validate()
    assert (spec.task_type, spec.loss) == ("classification", "l1_loss")


def test_info_json_describes_the_inner_ensemble_and_folds_of_other_package_versions(tmp_path):
    run = MatbenchRun([TASK], TINY, tmp_path / "matbench_v0.1_Described", inner_folds=5)
    assert "5 models are trained on an inner 5-fold split of the training fold (seeds 0..4; each stops early on 10%" \
        in run.describe()
    now = matbench_runner.requirements()["python"]
    fold = {"train_seconds": 1.0, "params": {"device": "cpu", "requirements": now}}
    run.fold_records_ = {TASK: {0: fold, 1: {**fold, "params": {**fold["params"], "requirements": ["x==1"]}}}}
    notes = run.info()["notes"]
    assert f"other package versions than those listed: {TASK} fold 1 (each record's params.requirements)" in notes
    assert "chgnet==" in " ".join(run.info()["requirements"]["python"])  # what the chgnet and sim: values need
