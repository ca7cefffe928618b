"""Tests for matgl_hybrid.data: loaders, validation and the embedded demo dataset."""

import gzip
import json
import math
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matminer.utils.io import store_dataframe_as_json
from pymatgen.core import DummySpecies, Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from matgl_hybrid.data import (
    InvalidStructureError,
    SkippedEntry,
    StructureData,
    from_dataframe,
    from_structures,
    load,
    load_demo,
    load_folder,
    load_records,
    log10_targets,
    material_key,
    target_units,
    validate_structure,
    validate_target,
)

DE_JONG = "de_jong_2015_elasticity.json.gz"


@pytest.fixture(scope="module")
def records(shared_data: Path) -> list[dict]:
    """The first 8 raw records of the shared de Jong 2015 file."""
    with gzip.open(shared_data / DE_JONG, "rt") as fh:
        return json.load(fh)[:8]


def nacl(distance: float = 2.0, a: float = 4.0) -> Structure:
    """Two-atom cell with Na at the origin and Cl ``distance`` Å away along x."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [distance / a, 0, 0]])


def write_json(path: Path, data: list[dict]) -> Path:
    path.write_text(json.dumps(data))
    return path


def assert_same_structure(a: Structure, b: Structure) -> None:
    assert len(a) == len(b)
    assert a.composition == b.composition
    assert a.volume == pytest.approx(b.volume, rel=1e-4)


# --- loaders -------------------------------------------------------------------------------------


def test_load_records_limit(shared_data: Path, records: list[dict]) -> None:
    data = load_records(shared_data / DE_JONG, "K_VRH", limit=5)
    assert len(data) == 5
    assert data.ids == [r["id"] for r in records[:5]]
    assert data.target_name == "K_VRH"
    assert data.targets.dtype == np.float64
    np.testing.assert_array_equal(data.targets, [r["K_VRH"] for r in records[:5]])
    assert data.structures[0] == Structure.from_dict(records[0]["structure"])
    assert data.skipped == []


def test_load_records_plain_json_without_target(tmp_path: Path, records: list[dict]) -> None:
    path = write_json(tmp_path / "recs.json", records[:3])
    data = load_records(path)
    assert data.targets is None
    assert data.target_name is None
    assert data.ids == [r["id"] for r in records[:3]]
    assert load(path, "G_VRH").targets.tolist() == [r["G_VRH"] for r in records[:3]]


@pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF")
def test_load_folder_with_targets_csv(tmp_path: Path, records: list[dict]) -> None:
    structures = {r["id"]: Structure.from_dict(r["structure"]) for r in records[:4]}
    ids = list(structures)
    for i, (entry_id, structure) in enumerate(structures.items()):
        suffix = ".vasp" if i == 0 else ".cif"
        structure.to(filename=str(tmp_path / f"{entry_id}{suffix}"))
    (tmp_path / "README.md").write_text("not a structure")
    order = [ids[2], ids[0], ids[3]]  # the CSV defines which entries and their order
    k_vrh = {r["id"]: r["K_VRH"] for r in records}
    csv = tmp_path / "targets.csv"
    pd.DataFrame({"id": order, "K_VRH": [k_vrh[i] for i in order]}).to_csv(csv, index=False)

    unlisted = rf"1 structure files have no row in targets\.csv and are left out \({ids[1]}\)"
    with pytest.warns(UserWarning, match=unlisted):
        data = load_folder(tmp_path, csv, "K_VRH")  # a typo in an id would drop its file without a word
    assert data.ids == order
    np.testing.assert_array_equal(data.targets, [k_vrh[i] for i in order])
    for entry_id, structure in zip(data.ids, data.structures, strict=True):
        assert_same_structure(structure, structures[entry_id])

    no_csv = load_folder(tmp_path)
    assert no_csv.ids == sorted(ids)
    assert no_csv.targets is None

    auto = load(tmp_path, "K_VRH")  # the folder's only CSV is picked up
    assert auto.ids == order
    (tmp_path / "._targets.csv").write_bytes(b"\x00\x05\x16\x07")  # macOS's metadata twin: not a CSV of ours
    assert load(tmp_path, "K_VRH").ids == order
    pd.DataFrame({"id": order, "K_VRH": [1.0] * 3}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(ValueError, match=r"holds 2 CSV files \(other\.csv, targets\.csv\): leave only"):
        load(tmp_path, "K_VRH")


def test_load_folder_default_target_column_and_missing_file(tmp_path: Path, records: list[dict]) -> None:
    Structure.from_dict(records[0]["structure"]).to(filename=str(tmp_path / "a.cif"))
    csv = tmp_path / "t.csv"
    pd.DataFrame({"id": ["a"], "target": [1.5]}).to_csv(csv, index=False)
    data = load_folder(tmp_path, csv)
    assert data.target_name == "target"
    assert data.targets.tolist() == [1.5]

    pd.DataFrame({"id": ["a", "ghost"], "target": [1.5, 2.0]}).to_csv(csv, index=False)
    with pytest.raises(InvalidStructureError, match=r"'ghost'.*no structure file named ghost"):
        load_folder(tmp_path, csv)
    with pytest.raises(ValueError, match="lacks column"):
        load_folder(tmp_path, csv, "K_VRH")


@pytest.mark.parametrize("form", ["object", "dict", "json"])
def test_from_dataframe(records: list[dict], form: str) -> None:
    convert = {
        "object": Structure.from_dict,
        "dict": lambda d: d,
        "json": json.dumps,
    }[form]
    df = pd.DataFrame(
        {"structure": [convert(r["structure"]) for r in records[:4]], "G_VRH": [r["G_VRH"] for r in records[:4]]},
        index=pd.Index([r["id"] for r in records[:4]], name="mbid"),
    )
    data = from_dataframe(df, "G_VRH")
    assert data.ids == [r["id"] for r in records[:4]]
    np.testing.assert_array_equal(data.targets, df["G_VRH"].to_numpy())
    assert data.structures[3] == Structure.from_dict(records[3]["structure"])


def test_from_dataframe_id_column_and_missing_column() -> None:
    df = pd.DataFrame({"name": ["x", "y"], "structure": [nacl(), nacl(2.5)]})
    assert from_dataframe(df, id_column="name").ids == ["x", "y"]
    assert from_dataframe(df).ids == ["0", "1"]
    with pytest.raises(ValueError, match="no target column 'y'"):
        from_dataframe(df, "y")


def test_from_structures_ase_atoms(records: list[dict]) -> None:
    structures = [Structure.from_dict(r["structure"]) for r in records[:3]]
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in structures]
    data = from_structures(atoms, targets=[1.0, 2.0, 3.0])
    assert data.ids == ["0", "1", "2"]
    assert data.target_name == "target"
    assert data.targets.tolist() == [1.0, 2.0, 3.0]
    for got, expected in zip(data.structures, structures, strict=True):
        assert isinstance(got, Structure)
        assert_same_structure(got, expected)
        np.testing.assert_allclose(got.cart_coords, expected.cart_coords, atol=1e-8)
    slab = atoms[0].copy()
    slab.pbc = (True, True, False)  # MatGL would build a periodic graph along c all the same
    with pytest.raises(InvalidStructureError, match=r"'0'.*not periodic along c .*pbc=True"):
        from_structures([slab])
    # a pymatgen Structure can carry the same: CHGNet would treat it as a slab, the cache key as the crystal
    lattice = Lattice(structures[0].lattice.matrix, pbc=(True, True, False))
    flat = Structure(lattice, structures[0].species, structures[0].frac_coords)
    with pytest.raises(InvalidStructureError, match=r"'0'.*not periodic along c \(lattice pbc=\[True, True, False\]\)"):
        from_structures([flat])


def test_load_dispatch(tmp_path: Path) -> None:
    data = from_structures([nacl()], ids=["a"])
    assert load(data) is data
    assert load([nacl(), nacl(2.5)], targets=[1, 2]).targets.tolist() == [1.0, 2.0]
    assert load(pd.DataFrame({"structure": [nacl()]})).ids == ["0"]

    csv = tmp_path / "structures.csv"
    pd.DataFrame({"id": ["007"], "cif": [nacl().to(fmt="cif")], "y": [4.0]}).to_csv(csv, index=False)
    from_csv = load(csv, "y")
    assert from_csv.ids == ["007"]
    assert from_csv.targets.tolist() == [4.0]
    assert from_csv.structures[0].composition.reduced_formula == "NaCl"

    with pytest.raises(TypeError, match="cannot load int"):
        load(3)
    odd = tmp_path / "x.xyz"
    odd.write_text("")
    with pytest.raises(ValueError, match="expected a folder"):
        load(odd)
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        load(tmp_path / "missing.json")


def test_load_matminer_dataframe_file_with_matbench_ids(tmp_path: Path) -> None:
    """matminer's ``store_dataframe_as_json`` layout; a Matbench file gets matbench's own zero-padded mbids."""
    structures = [nacl(2.0 + i / 100) for i in range(12)]
    df = pd.DataFrame({"exfoliation_en": [float(i) for i in range(12)], "structure": structures})
    store_dataframe_as_json(df, str(tmp_path / "matbench_jdft2d.json.gz"), compression="gz")
    data = load(tmp_path / "matbench_jdft2d.json.gz", "exfoliation_en")
    assert data.ids[:2] == ["mb-jdft2d-01", "mb-jdft2d-02"]  # zero-padded to the width of len(df), as matbench
    assert data.ids[-1] == "mb-jdft2d-12"
    assert data.targets.tolist() == df["exfoliation_en"].tolist()
    assert_same_structure(data.structures[3], df["structure"][3])
    store_dataframe_as_json(df, str(tmp_path / "mine.json"))
    assert load(tmp_path / "mine.json", "exfoliation_en").ids[:2] == ["0", "1"]
    with pytest.raises(ValueError, match=r"mine\.json: DataFrame has no target column 'gap'"):
        load(tmp_path / "mine.json", "gap")


def test_subset_keeps_index_order() -> None:
    data = from_structures([nacl(2.0), nacl(2.2), nacl(2.4)], targets=[0.0, 1.0, 2.0], ids=["a", "b", "c"])
    sub = data.subset([2, 0])
    assert sub.ids == ["c", "a"]
    assert sub.targets.tolist() == [2.0, 0.0]
    assert sub.structures[0] is data.structures[2]
    with pytest.raises(TypeError, match="integers"):
        data.subset(np.array([True, False, True]))


def test_log10_targets_drops_non_positive_entries_with_a_warning() -> None:
    data = from_structures(
        [nacl(2.0), nacl(2.2), nacl(2.4)], targets=[100.0, 0.0, 10.0], ids=["a", "b", "c"], target_name="K"
    )
    with pytest.warns(UserWarning, match="dropped 1 entries whose target is not positive: b"):
        logged = log10_targets(data)
    assert logged.ids == ["a", "c"]
    assert logged.targets.tolist() == [2.0, 1.0]
    assert logged.target_name == "log10_K"
    assert logged.skipped == [SkippedEntry("b", "target ≤ 0 has no log10")]
    assert data.targets.tolist() == [100.0, 0.0, 10.0]  # the input is left as it was
    # a quantity that is never positive (a formation energy, say) is said to be so, not left as an empty dataset
    energies = from_structures([nacl(2.0), nacl(2.2)], targets=[-1.0, -0.5], ids=["a", "b"], target_name="E_f")
    with pytest.raises(ValueError, match="no target of E_f is positive: log10 needs values > 0"):
        log10_targets(energies)


def test_material_key_matches_cells_of_one_crystal_and_tells_polymorphs_apart() -> None:
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    key = material_key(rocksalt)
    assert key == ("NaCl", 2, 225)
    assert material_key(rocksalt.get_primitive_structure()) == key
    assert material_key(rocksalt * (2, 1, 1)) == key
    cesium_chloride_type = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert material_key(cesium_chloride_type) == ("NaCl", 2, 221)


def test_structure_data_checks_lengths() -> None:
    with pytest.raises(ValueError, match=r"targets must have shape \(1,\), got \(2,\)"):
        StructureData(structures=[nacl()], targets=np.array([1.0, 2.0]), ids=["a"])


# --- validation ----------------------------------------------------------------------------------


def _disordered() -> Structure:
    return Structure(Lattice.cubic(4), [{"Fe": 0.5, "Co": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _partial() -> Structure:
    return Structure(Lattice.cubic(4), ["Fe", {"O": 0.75}], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _dummy() -> Structure:
    return Structure(Lattice.cubic(4), ["Fe", DummySpecies("X")], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.mark.parametrize(
    ("structure", "reason"),
    [
        (Structure(Lattice.cubic(4), [], []), r"empty \(0 sites\)"),
        (_disordered(), r"site 0 is disordered or partially occupied \(Fe:0.50*, Co:0.50*\)"),
        (_partial(), r"site 1 is disordered or partially occupied \(O:0.750*\)"),
        (_dummy(), "site 1 holds X0\\+, which is not a chemical element"),
        (nacl(0.3), r"sites [01] and [01] are 0.300 Å apart"),
        (nacl(0.0), r"sites [01] and [01] are 0.000 Å apart"),
        (nacl(3.8), r"sites [01] and [01] \(periodic images\) are 0.200 Å apart"),
        (Structure(Lattice.cubic(0.45), ["Na"], [[0, 0, 0]]), r"sites 0 and 0 \(periodic images\) are 0.450 Å"),
    ],
    ids=["empty", "disordered", "partial", "dummy", "overlap", "coincident", "overlap-pbc", "self-image"],
)
def test_validate_structure_rejects(structure: Structure, reason: str) -> None:
    with pytest.raises(InvalidStructureError, match=reason) as info:
        validate_structure(structure, "mp-bad")
    assert info.value.id == "mp-bad"
    assert str(info.value).startswith("entry 'mp-bad': ")


def test_validate_structure_min_distance_threshold() -> None:
    validate_structure(nacl(0.55), "ok")
    validate_structure(nacl(0.3), "ok", min_distance=0.25)
    with pytest.raises(InvalidStructureError, match=r"0\.450 Å apart"):
        validate_structure(nacl(0.45), "close")


def test_validate_structure_allowed_elements() -> None:
    validate_structure(nacl(), "ok", allowed_elements={"Na", "Cl", "O"})
    with pytest.raises(InvalidStructureError, match=r"'x'.*element\(s\) Cl unknown to the model"):
        validate_structure(nacl(), "x", allowed_elements=["Na", "O"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "is NaN"),
        (math.inf, r"is infinite \(inf\)"),
        (-np.inf, "is infinite"),
        (None, "is missing"),
        ("abc", "is not a number: 'abc'"),
    ],
)
def test_validate_target_rejects(value: object, reason: str) -> None:
    with pytest.raises(InvalidStructureError, match=f"entry 'mp-1': target 'K_VRH' {reason}"):
        validate_target(value, "mp-1", "K_VRH")


def test_validate_target_accepts_numbers() -> None:
    assert validate_target(np.float32(2.5), "a", "y") == 2.5
    assert isinstance(validate_target(np.int64(3), "a", "y"), float)
    assert validate_target(True, "a", "is_metal") == 1.0  # a class label
    assert validate_target(np.bool_(False), "a", "is_metal") == 0.0


def test_invalid_structure_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(InvalidStructureError("mp-1", "bad")))
    assert (err.id, err.reason, str(err)) == ("mp-1", "bad", "entry 'mp-1': bad")


# --- invalid entries while loading ---------------------------------------------------------------


@pytest.fixture
def mixed_records(records: list[dict]) -> list[dict]:
    """Records 0-4 of de Jong, with 1 (NaN target), 2 (overlapping atoms) and 3 (no K_VRH key) made invalid."""
    mixed = [dict(r) for r in records[:5]]
    mixed[1]["K_VRH"] = float("nan")
    mixed[2]["structure"] = nacl(0.2).as_dict()
    del mixed[3]["K_VRH"]
    return mixed


def test_invalid_entry_raises_naming_id(tmp_path: Path, mixed_records: list[dict]) -> None:
    path = write_json(tmp_path / "mixed.json", mixed_records)
    with pytest.raises(InvalidStructureError, match=f"'{mixed_records[1]['id']}': target 'K_VRH' is NaN"):
        load_records(path, "K_VRH")
    with pytest.raises(InvalidStructureError, match="overlapping atoms") as info:
        load_records(path, "G_VRH")
    assert info.value.id == mixed_records[2]["id"]


def test_missing_target_key_names_id_and_keys(tmp_path: Path, mixed_records: list[dict]) -> None:
    path = write_json(tmp_path / "mixed.json", mixed_records[3:4])
    with pytest.raises(InvalidStructureError, match="no target 'K_VRH'; available keys: id, formula, structure, G_VRH"):
        load_records(path, "K_VRH")


def test_skip_invalid_records_and_warns(tmp_path: Path, mixed_records: list[dict]) -> None:
    path = write_json(tmp_path / "mixed.json", mixed_records)
    with pytest.warns(UserWarning, match="skipped 3 of 5 entries"):
        data = load_records(path, "K_VRH", skip_invalid=True)
    ids = [r["id"] for r in mixed_records]
    assert data.ids == [ids[0], ids[4]]
    np.testing.assert_array_equal(data.targets, [mixed_records[0]["K_VRH"], mixed_records[4]["K_VRH"]])
    assert [s.id for s in data.skipped] == ids[1:4]
    assert all(isinstance(s, SkippedEntry) for s in data.skipped)
    assert "is NaN" in data.skipped[0].reason
    assert "overlapping atoms" in data.skipped[1].reason
    assert "no target 'K_VRH'" in data.skipped[2].reason


def test_skip_invalid_with_allowed_elements(records: list[dict]) -> None:
    structures = [Structure.from_dict(r["structure"]) for r in records[:4]]
    allowed = {el.symbol for el in structures[0].composition.elements}
    with pytest.warns(UserWarning, match="skipped"):
        data = from_structures(structures, skip_invalid=True, allowed_elements=allowed)
    assert data.ids[0] == "0"
    kept = {i for i, s in enumerate(structures) if {e.symbol for e in s.composition.elements} <= allowed}
    assert data.ids == [str(i) for i in sorted(kept)]
    assert all("unknown to the model" in s.reason for s in data.skipped)


def test_duplicate_ids_and_all_invalid() -> None:
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        from_structures([nacl(), nacl()], ids=["a", "a"])
    with pytest.raises(ValueError, match=r"no valid entries: 1 of 1 entries are invalid; first: '0': overlapping"):
        from_structures([nacl(0.1)], skip_invalid=True)


def test_copies_of_a_structure_under_other_ids_are_named_in_one_warning(tmp_path: Path) -> None:
    """A merged export can hold one crystal under two ids (with two targets): a split would score what it trained
    on. One warning names the copies; loading without targets (prediction) says nothing."""
    rows = [
        {"id": i, "structure": s.as_dict(), "y": y}
        for i, s, y in [("a", nacl(), 1.0), ("b", nacl(2.5), 2.0), ("c", nacl(), 3.0), ("d", nacl(2.5), 2.0)]
    ]
    path = tmp_path / "merged.json"
    path.write_text(json.dumps(rows))
    with pytest.warns(UserWarning, match=r"merged\.json: 2 entries are the same structure as an earlier one \('c' = "
                      r"'a', 'd' = 'b'\), 1 of them with another target") as caught:  # fmt: skip
        data = load_records(path, "y")
    assert len(data) == 4  # nothing dropped: the user decides
    assert len([w for w in caught if "same structure" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_records(path)


@pytest.mark.parametrize(
    ("raw_id", "message"),
    [
        (None, "the id is missing"),
        ("", "the id is missing"),
        (float("nan"), "the id is missing"),
        (" mp-1", "the id ' mp-1' has spaces around it"),
    ],
)
def test_a_missing_or_padded_id_is_refused_naming_the_entry(tmp_path: Path, raw_id, message) -> None:
    """``"id": null`` became the id "None" (and a second one a confusing "duplicate id 'None'"); a padded id would
    not match the same id in a targets file or a prediction."""
    path = tmp_path / "ids.json"
    rows = [{"id": "ok", "structure": nacl().as_dict()}, {"id": raw_id, "structure": nacl(2.5).as_dict()}]
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=rf"ids\.json: record 1: {re.escape(message)}"):
        load_records(path)
    with pytest.raises(ValueError, match=r"structure 1: " + re.escape(message)):
        from_structures([nacl(), nacl(2.5)], ids=["ok", raw_id])
    with pytest.raises(ValueError, match="structure 1: the id is missing"):  # NaN of any kind: numpy's, NaT
        from_structures([nacl(), nacl(2.5)], ids=["ok", np.float32("nan") if raw_id is None else pd.NaT])


def test_units_are_known_only_where_the_name_says_them() -> None:
    assert target_units("K_VRH") == "GPa"
    assert target_units("log10_K_VRH") == "log10 GPa"
    assert target_units("e_form") is None  # eV/atom in matbench_mp_e_form, eV per 5-atom cell in perovskites


def test_a_reader_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's message can span lines (a parser listing its attempts): the error stays one line."""

    def parse(*args: object, **kwargs: object) -> Structure:
        raise ValueError("no structure found:\n  tried cif\n  tried poscar")

    monkeypatch.setattr(Structure, "from_str", parse)
    with pytest.raises(InvalidStructureError, match="'bad': cannot read structure: ValueError: no structure found: "
                       "tried cif tried poscar") as caught:  # fmt: skip
        from_structures(["not a structure"], ids=["bad"])
    assert "\n" not in str(caught.value)


# --- embedded demo dataset -----------------------------------------------------------------------


def test_load_demo() -> None:
    data = load_demo()
    assert len(data) == 1181
    assert data.target_name == "K_VRH"
    assert np.isfinite(data.targets).all()
    assert (data.targets > 0).all()
    assert len(set(data.ids)) == 1181
    assert data.ids[0] == "mp-10003"
    assert data.targets[0] == pytest.approx(194.268884359)
    assert load_demo(None).targets is None


def test_demo_matches_shared_file(shared_data: Path) -> None:
    with gzip.open(shared_data / DE_JONG, "rt") as fh:
        shared = json.load(fh)
    demo = load_demo("G_VRH")
    assert demo.ids == [r["id"] for r in shared]
    np.testing.assert_array_equal(demo.targets, [r["G_VRH"] for r in shared])


def test_a_reader_warning_is_said_once_for_every_file_that_raised_it(tmp_path: Path) -> None:
    """pymatgen warns once per CIF whose coordinates it rounds: a folder of them gives one warning naming them."""
    import warnings

    for i in range(4):
        graphite = Structure(Lattice.hexagonal(3 + 0.1 * i, 5), ["C", "C"], [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5]])
        graphite.to(filename=str(tmp_path / f"c{i}.cif"))
    (tmp_path / "targets.csv").write_text("id,y\n" + "".join(f"c{i},{i}\n" for i in range(4)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load(tmp_path, target="y")
    assert len(data) == 4
    (warning,) = [str(w.message) for w in caught if "CIF" in str(w.message)]
    assert "4 entries ('c0', 'c1', 'c2', …)" in warning
    assert "fractional coordinates rounded" in warning


def test_splits_keep_copies_of_a_structure_on_one_side_and_are_unchanged_without_copies() -> None:
    from matgl_hybrid.data.splits import kfold_splits, split_indices

    n = 40
    copies = [f"s{i}" for i in range(n)]
    copies[7] = copies[3] = copies[30] = "dup"  # one structure under three ids
    copies[12] = copies[25] = "other"
    unique = [f"u{i}" for i in range(n)]
    for seed in range(20):
        kept, held = split_indices(n, 0.25, seed, copies)
        assert sorted([*kept, *held]) == list(range(n))
        for group in ({3, 7, 30}, {12, 25}):
            assert group <= set(kept) or group <= set(held), (seed, group)
        plain = split_indices(n, 0.25, seed)
        for got, expected in zip(split_indices(n, 0.25, seed, unique), plain, strict=True):
            np.testing.assert_array_equal(got, expected)
        folds = kfold_splits(n, 5, seed, copies)
        assert sorted(i for _, test in folds for i in test) == list(range(n))
        for group in ({3, 7, 30}, {12, 25}):
            assert sum(group <= set(test) for _, test in folds) == 1, (seed, group)
        for train, test in folds:
            assert not set(train) & set(test)
        for got, expected in zip(kfold_splits(n, 5, seed, unique), kfold_splits(n, 5, seed), strict=True):
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])  # Matbench's folds as they are, order included


def test_data_splits_see_copies_through_structure_keys() -> None:
    from matgl_hybrid.training.selection import InnerKFold, ValidationSplit

    cells = [Structure(Lattice.cubic(4.0 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for i in range(20)]
    cells[11] = cells[2].copy()  # the same structure under another id
    data = StructureData(cells, np.arange(20.0), [f"id{i}" for i in range(20)], "t")
    assert data.structure_keys()[11] == data.structure_keys()[2]
    for seed in range(10):
        for scheme in (ValidationSplit(0.3, seed), InnerKFold(4, seed)):
            for train, scored in scheme.splits(data):
                assert {2, 11} <= set(train) or {2, 11} <= set(scored), (scheme, seed)


def test_a_run_on_data_with_copies_says_so_in_its_fingerprint() -> None:
    """Its splits are drawn with the copies together since 2026-12-05: folds drawn before are another run's. Data
    without copies keeps the fingerprint it always had."""
    from matgl_hybrid.fingerprint import run_fingerprint

    cells = [Structure(Lattice.cubic(4.0 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for i in range(4)]
    plain = StructureData(cells, np.arange(4.0), ["a", "b", "c", "d"], "t")
    copied = StructureData([*cells[:3], cells[0].copy()], np.arange(4.0), ["a", "b", "c", "d"], "t")
    assert "copies" not in run_fingerprint([plain], {}, None)
    assert run_fingerprint([copied], {}, None)["copies"] == "together"


def test_a_rebuilt_demo_dataset_that_differs_from_the_shipped_one_is_not_written(tmp_path):
    """The build script printed the rebuilt file's sha256 and replaced the shipped one whatever it was: another
    pymatgen's as_dict would have changed every structure key and fingerprint reading the demo set."""
    import hashlib
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "build_demo_dataset.py"
    spec = importlib.util.spec_from_file_location("build_demo_dataset", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "demo.json.gz"
    out.write_bytes(b"the shipped bytes")
    with pytest.raises(SystemExit, match="not written"):
        script.write_gzip_json([{"id": "a"}], out, expected_sha256="0" * 64)
    assert out.read_bytes() == b"the shipped bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["demo.json.gz"]
    data = script.write_gzip_json([{"id": "a"}], out)
    assert script.write_gzip_json([{"id": "a"}], out, hashlib.sha256(data).hexdigest()) == data
    assert hashlib.sha256(script.DEFAULT_OUTPUT.read_bytes()).hexdigest() == script.SHIPPED_SHA256
