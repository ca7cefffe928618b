"""Reliability v2 (issue 33), data loading and the Matbench runner: a text cell in a CSV target column, CSV errors
naming their file, ``results.json.gz`` really gzipped, and the Matbench ``--candidates`` checks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from monty.serialization import loadfn
from pymatgen.core import Lattice, Structure

from matgl_hybrid.data import InvalidStructureError, load, load_folder
from matgl_hybrid.descriptors import featurize_file
from matgl_hybrid.evaluation.matbench import (
    MatbenchRun,
    load_task,
    read_candidates,
    read_results,
    validate_submission,
    write_results,
)
from matgl_hybrid.inference import predict_file
from matgl_hybrid.training import TrainSpec

TASK = "matbench_jdft2d"
SUBMISSIONS = Path(__file__).resolve().parents[1] / "matbench_submissions"
TINY = TrainSpec(backbone="megnet", descriptor_set="lattice", head_hidden=(8,), max_epochs=1, progress=False)


def cubic(a: float) -> Structure:
    """A two-atom NaCl cell of edge ``a`` Å."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# --- case 1: one text cell in a CSV target column ------------------------------------------------


@pytest.fixture
def folder_with_text_cell(tmp_path: Path) -> Path:
    """Five structure files and a targets CSV whose fourth row (s3) reads "abc"."""
    cells = ["1.5", "2.5", "3.5", "abc", "5.5"]
    for i in range(5):
        cubic(4.0 + i / 10).to(filename=str(tmp_path / f"s{i}.cif"))
    rows = "\n".join(f"s{i},{cell}" for i, cell in enumerate(cells))
    (tmp_path / "targets.csv").write_text(f"id,K\n{rows}\n")
    return tmp_path


def test_a_text_cell_in_a_csv_target_column_invalidates_only_its_row(folder_with_text_cell: Path) -> None:
    with pytest.raises(InvalidStructureError, match=r"entry 's3': target 'K' is not a number: 'abc' \(data row 4"):
        load(folder_with_text_cell, "K")  # the row at fault, not row 0
    with pytest.warns(UserWarning, match="skipped 1 of 5 entries"):
        data = load(folder_with_text_cell, "K", skip_invalid=True)
    assert data.ids == ["s0", "s1", "s2", "s4"]
    assert data.targets.tolist() == [1.5, 2.5, 3.5, 5.5]
    assert [e.id for e in data.skipped] == ["s3"]

    table = folder_with_text_cell / "structures.csv"  # a CSV holding the structures themselves
    frame = pd.DataFrame({"id": ["a", "b", "c"], "cif": [cubic(4.0 + i / 10).to(fmt="cif") for i in range(3)]})
    frame.assign(y=["1.0", "unknown", "3.0"]).to_csv(table, index=False)
    with pytest.raises(InvalidStructureError, match=r"'b'.*'unknown'"):
        load(table, "y")
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        assert load(table, "y", skip_invalid=True).targets.tolist() == [1.0, 3.0]


def test_csv_errors_name_the_file_and_the_entry(folder_with_text_cell: Path, tmp_path: Path) -> None:
    targets = folder_with_text_cell / "targets.csv"
    targets.write_text("id,K\ns0,1.0\ns1,2.0\ns0,3.0\n")
    with pytest.raises(ValueError, match=r"targets\.csv: duplicate id 's0'"):
        load_folder(folder_with_text_cell, targets, "K")
    with pytest.raises(ValueError, match=r"targets\.csv lacks column\(s\) G"):
        load_folder(folder_with_text_cell, targets, "G")

    table = tmp_path / "structures.csv"
    frame = pd.DataFrame({"id": ["a", "a"], "cif": [cubic(4.0).to(fmt="cif")] * 2, "y": [1.0, 2.0]})
    frame.to_csv(table, index=False)
    with pytest.raises(ValueError, match=r"structures\.csv: duplicate id 'a'"):
        load(table, "y")
    with pytest.raises(ValueError, match=r"structures\.csv has no target column 'z'"):
        load(table, "z")
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"id": "x", "structure": cubic(4.0).as_dict()}] * 2))
    with pytest.raises(ValueError, match=r"records\.json: duplicate id 'x'"):
        load(records)

    empty = tmp_path / "empty.csv"
    empty.write_text("id,cif\n")
    with pytest.raises(ValueError, match=r"empty\.csv: no entries to load"):
        load(empty)
    damaged = tmp_path / "damaged.csv.gz"
    packed = bytearray(gzip.compress(frame.to_csv(index=False).encode(), mtime=0))
    packed[20:40] = bytes(20)  # inside the deflate stream
    damaged.write_bytes(bytes(packed))
    with pytest.raises(ValueError, match=r"damaged\.csv\.gz is not a readable CSV file"):
        load(damaged, "y")


# --- case 2: results.json.gz is gzip -------------------------------------------------------------


def test_the_submission_writer_writes_gzip_that_gzip_and_monty_read(tmp_path: Path) -> None:
    from matbench.bench import MatbenchBenchmark

    mb = MatbenchBenchmark(autoload=False, subset=[TASK])
    run = MatbenchRun([TASK], TINY, tmp_path / "matbench_v0.1_Gzipped", progress=False)
    run.write_submission(mb)  # what MatbenchRun.run writes
    path = run.out / "results.json.gz"
    with gzip.open(path, "rt") as f:
        written = json.load(f)
    assert written["@class"] == "MatbenchBenchmark"
    assert list(written["tasks"]) == [TASK]
    assert loadfn(path, cls=json.JSONDecoder) == written  # monty opens .gz with gzip (MSON decoding aside)
    assert not list(run.out.glob(".*"))  # no temporary file left behind

    plain = tmp_path / "plain.json.gz"
    plain.write_text(json.dumps(written))  # what the runner wrote before
    with pytest.raises(ValueError, match=r"plain\.json\.gz is not gzip-compressed"):
        read_results(plain)
    write_results(mb, plain)
    assert json.loads(gzip.decompress(plain.read_bytes()))["tasks"].keys() == written["tasks"].keys()


def test_rewriting_the_same_results_keeps_the_file_and_new_results_replace_it(tmp_path: Path) -> None:
    """``as_dict`` stamps the time of each call: a rerun that only resumed finished folds changed every committed
    ``results.json.gz`` by its datestamp and hash."""
    from matbench.bench import MatbenchBenchmark

    mb = MatbenchBenchmark(autoload=False, subset=[TASK])
    path = tmp_path / "results.json.gz"
    write_results(mb, path)
    earlier = json.loads(gzip.decompress(path.read_bytes()))
    earlier.update(datestamp="2020.01.01 00:00.00", hash="0" * 64)  # as written by a run long ago
    path.write_bytes(gzip.compress(json.dumps(earlier).encode(), mtime=0))
    kept = path.read_bytes()
    write_results(mb, path)
    assert path.read_bytes() == kept

    mb.add_metadata({"note": "a change"})
    write_results(mb, path)
    rewritten = json.loads(gzip.decompress(path.read_bytes()))
    assert rewritten["user_metadata"] == {"note": "a change"}
    assert rewritten["datestamp"] != earlier["datestamp"]


def test_a_submission_with_ensemble_uncertainties_validates_and_a_nan_std_is_named(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inner-K-fold run records each test structure's spread: matbench stores it per id as ``{"ci_lower",
    "ci_upper", "std"}``; the check read those dicts as numbers and called every such submission unreadable."""
    from matbench.bench import MatbenchBenchmark

    monkeypatch.setenv("MATMINER_DATA", str(tmp_path))  # load_task sets it

    def recorded(bad_std: bool) -> Path:
        mb = MatbenchBenchmark(autoload=False, subset=[TASK])
        task = mb.tasks_map[TASK]
        load_task(task, shared_data / "matbench", download=False, allow_unofficial=True)  # the scores need targets
        for fold in task.folds:
            n = len(task.validation[task.folds_map[fold]].test)
            std = np.full(n, 0.5)
            std[0] = np.nan if bad_std and fold == 0 else std[0]
            task.record(fold, np.zeros(n), std=std)
        run = MatbenchRun([TASK], TINY, tmp_path / f"matbench_v0.1_Std{int(bad_std)}", progress=False)
        run.write_submission(mb)
        return run.out

    assert validate_submission(recorded(bad_std=False)) == []
    assert validate_submission(recorded(bad_std=True)) == [
        f"results.json.gz: {TASK} fold_0 has an uncertainty that is not a finite number"
    ]


def test_the_committed_submissions_are_gzip_and_valid() -> None:
    paths = sorted(SUBMISSIONS.glob("*/results.json.gz"))
    assert paths, f"no submission under {SUBMISSIONS}"
    for path in paths:
        assert path.read_bytes()[:2] == b"\x1f\x8b", path
        assert validate_submission(path.parent) == []


# --- case 3: Matbench --candidates ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": {}, "a": {"lr": 0.01}}', r"candidates\.json: 'a' is given twice"),
        ('{"a": {"lr": 0.01, "lr": 0.02}}', r"candidates\.json: 'lr' is given twice"),
        ('{"..": {}}', r"candidates\.json: candidate name '\.\.'"),
        ('{"a/b": {}}', r"candidates\.json: candidate name 'a/b'"),
        ('{"": {}}', r"candidates\.json: candidate name ''"),
        ('{".hidden": {}}', r"candidates\.json: candidate name '\.hidden'"),
        ('{"a": {"max_epochs": "ten"}}', r"candidates\.json: candidate 'a' has values of the wrong type: max_epochs"),
        ('{"a": {"cutoff": [5]}}', r"candidates\.json: candidate 'a' has values of the wrong type: cutoff"),
        ('{"a": {"max_epochs": 0}}', r"candidates\.json: candidate 'a': invalid training settings: max_epochs"),
        ('{"a": {}, "b": [1]}', r"candidates\.json: candidate 'b' is list"),
    ],
)
def test_a_candidates_file_refuses_duplicates_unsafe_names_and_wrong_types(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "candidates.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_candidates(path)


def test_candidate_names_and_values_are_checked_without_a_file(tmp_path: Path) -> None:
    for name in ("..", "a/b", ".x"):
        with pytest.raises(ValueError, match="candidate name"):
            MatbenchRun([TASK], TINY, tmp_path, candidates={name: {}}).candidate_specs()
    with pytest.raises(ValueError, match="candidate 'a': invalid training settings"):
        MatbenchRun([TASK], TINY, tmp_path, candidates={"a": {"max_epochs": "ten"}}).candidate_specs()
    assert list(MatbenchRun([TASK], TINY, tmp_path, candidates={"v1.2_b-3": {}}).candidate_specs()) == ["v1.2_b-3"]


def test_a_rerun_with_other_candidates_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "matbench_v0.1_Chosen"
    out.mkdir()
    (out / "results.json.gz").write_bytes(b"recorded")
    (out / "candidates.json").write_text(json.dumps({"a": {}, "b": {"lr": 0.01}}))

    def run(candidates: dict) -> None:  # no dataset there and no download: only the check can pass or fail
        MatbenchRun([TASK], TINY, out, candidates=candidates, data_dir=tmp_path, download=False, progress=False).run()

    for candidates, differing in (({"a": {}}, "b"), ({"a": {}, "b": {"lr": 0.1}}, "b"), ({}, "a, b")):
        with pytest.raises(ValueError, match=rf"Chosen records candidates a, b.*differing: {differing}\).*--out"):
            run(candidates)
    assert (out / "results.json.gz").read_bytes() == b"recorded"
    assert json.loads((out / "candidates.json").read_text()) == {"a": {}, "b": {"lr": 0.01}}
    MatbenchRun([TASK], TINY, out, candidates={"b": {"lr": 0.01}, "a": {}}).check_recorded_candidates()  # same ones

    (out / "candidates.json").unlink()  # a folder with results and no candidates.json records none
    with pytest.raises(ValueError, match=r"records no candidates, this run has candidates a"):
        run({"a": {}})
    MatbenchRun([TASK], TINY, out).check_recorded_candidates()


def test_a_folder_finds_its_targets_csv_in_any_case_or_gzipped_and_says_when_there_is_none(tmp_path: Path) -> None:
    for k in range(2):
        Structure(Lattice.cubic(4.0 + 0.1 * k), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
            filename=str(tmp_path / f"s{k}.cif")
        )
    with pytest.raises(ValueError, match=r"has no CSV file of targets \(columns id,y\) beside its structure files"):
        load(tmp_path, "y")
    pd.DataFrame({"id": ["s1", "s0"], "y": [1.0, 2.0]}).to_csv(tmp_path / "TARGETS.csv.gz", index=False)
    assert load(tmp_path, "y").ids == ["s1", "s0"]
    pd.DataFrame({"id": ["s0"], "y": [3.0]}).to_csv(tmp_path / "targets.csv", index=False)  # the only .csv wins
    assert load(tmp_path, "y").ids == ["s0"]


def test_structure_files_of_one_id_are_named_in_the_error(tmp_path: Path) -> None:
    """pymatgen's own POSCAR.<name> convention gives every file the id POSCAR."""
    for name, a in [("POSCAR.Li2O", 4.0), ("POSCAR.NaCl", 5.0)]:
        Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(tmp_path / name),
                                                                                    fmt="poscar")  # fmt: skip
    with pytest.raises(ValueError, match=r"POSCAR\.Li2O, POSCAR\.NaCl have the same id 'POSCAR' \(ids are file names"):
        load(tmp_path)


def test_an_output_cannot_replace_a_file_its_input_folder_is_read_from(tmp_path: Path) -> None:
    """``--out d/targets.csv --overwrite`` replaced the targets CSV it read (only the folder was compared)."""
    for k in range(2):
        Structure(Lattice.cubic(4.0 + 0.1 * k), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
            filename=str(tmp_path / f"s{k}.cif")
        )
    targets = tmp_path / "targets.csv"
    pd.DataFrame({"id": ["s0", "s1"], "y": [1.0, 2.0], "note": ["kept", "kept"]}).to_csv(targets, index=False)
    before = targets.read_bytes()
    with pytest.raises(ValueError, match=r"out .*targets\.csv is the input source's targets CSV"):
        featurize_file(tmp_path, "lattice", target="y", out=targets, cache_dir=None)
    with pytest.raises(ValueError, match=r"out .*s0\.cif is the input source's structure file s0\.cif"):
        predict_file(object(), tmp_path, tmp_path / "s0.cif")
    assert targets.read_bytes() == before


# --- inputs a materials scientist has that were mis-read or refused -----------------------------------------

NO_SPECIES_POSCAR = """Li8 O4 (old VASP 4 file: no species line)
1.0
4.6 0 0
0 4.6 0
0 0 4.6
2 1
direct
0 0 0
0.5 0.5 0.5
0.25 0.25 0.25
"""


def test_a_poscar_without_species_and_a_cif_of_several_structures_are_refused(tmp_path: Path) -> None:
    """pymatgen named a species-less POSCAR's atoms H, He, … and kept a multi-block CIF's first structure alone,
    each with a warning at most: the model trained on the wrong chemistry or the wrong structure."""
    (tmp_path / "li2o.vasp").write_text(NO_SPECIES_POSCAR)
    with pytest.raises(InvalidStructureError, match=r"entry 'li2o': the POSCAR names no elements"):
        load(tmp_path)
    (tmp_path / "li2o.vasp").unlink()
    blocks = cubic(4.0).to(fmt="cif") + cubic(4.4).to(fmt="cif").replace("data_NaCl", "data_NaCl_600K")
    (tmp_path / "two.cif").write_text(blocks)
    with pytest.raises(InvalidStructureError, match=r"entry 'two': the CIF holds 2 structures \(data blocks\)"):
        load(tmp_path)


def test_boolean_labels_json_lines_paths_and_spreadsheet_encodings_load(tmp_path: Path) -> None:
    """``"is_metal": true`` was "not a number"; a JSON Lines file "not valid JSON"; a path given as a string was
    read as POSCAR text; a UTF-16 CSV (a spreadsheet's Unicode export) "not readable"."""
    records = [{"id": f"s{i}", "structure": cubic(4.0 + i / 10).as_dict(), "is_metal": bool(i % 2)} for i in range(3)]
    lines = tmp_path / "records.json"
    lines.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    data = load(lines, "is_metal")
    assert data.ids == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(data.targets, [0.0, 1.0, 0.0])
    cif = tmp_path / "folder" / "a.cif"
    cif.parent.mkdir()
    cubic(4.2).to(filename=str(cif))
    assert load([str(cif)]).structures[0] == cubic(4.2)
    (tmp_path / "folder" / "targets.csv").write_bytes("id,K (GPa)\na,1.5\n".encode("utf-16"))
    assert load(tmp_path / "folder", "K (GPa)").targets.tolist() == [1.5]
    (tmp_path / "folder" / "targets.csv").write_bytes("id,K (µPa)\na,1.5\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"targets\.csv is not UTF-8 text: save it as CSV UTF-8"):
        load(tmp_path / "folder", "K (µPa)")
