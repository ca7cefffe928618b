"""Descriptor bank: exactness against matminer, sets, cache, errors, parallelism and the transform."""

from __future__ import annotations

import copy
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEMO_DATA, LATTICE_COLUMNS, read_records
from joblib import Parallel, delayed, parallel_config, register_parallel_backend
from joblib._parallel_backends import ThreadingBackend
from matminer.featurizers.composition import ElementProperty, Stoichiometry
from matminer.featurizers.site import AverageBondAngle, AverageBondLength, CoordinationNumber
from matminer.featurizers.structure import (
    DensityFeatures,
    GlobalSymmetryFeatures,
    SiteStatsFingerprint,
    StructuralComplexity,
    StructuralHeterogeneity,
)
from pymatgen.core import Lattice, Structure
from pymatgen.core.local_env import VoronoiNN
from pymatgen.io.ase import AseAtomsAdaptor

import matgl_hybrid.files
from matgl_hybrid import data
from matgl_hybrid.data import InvalidStructureError
from matgl_hybrid.descriptors import (
    DescriptorTransform,
    UserDescriptors,
    featurize,
    get_descriptor_set,
    structure_key,
)
from matgl_hybrid.descriptors import bank as bank_module
from matgl_hybrid.descriptors import cache as cache_module
from matgl_hybrid.descriptors.groups import StructureContext
from matgl_hybrid.descriptors.summary import describe_descriptors
from matgl_hybrid.layers.descriptor_scaler import DescriptorScaler

# The 28 descriptors of Gong et al. (Sci. Adv. 2023), in the order the foundation issue fixes.
GONG28 = [
    "spacegroup_num",
    "crystal_system_int",
    "structural complexity per atom",
    "structural complexity per cell",
    "mean absolute deviation in relative bond length",
    "max relative bond length",
    "min relative bond length",
    "maximum neighbor distance variation",
    "range neighbor distance variation",
    "mean neighbor distance variation",
    "avg_dev neighbor distance variation",
    "mean absolute deviation in relative cell size",
    "mean Average bond length",
    "std_dev Average bond length",
    "mean Average bond angle",
    "std_dev Average bond angle",
    "mean CN_VoronoiNN",
    "std_dev CN_VoronoiNN",
    "density",
    "vpa",
    "packing fraction",
    "a",
    "b",
    "c",
    "alpha",
    "beta",
    "gamma",
    "natoms",
]


def _records(path, every: int, max_sites: int, n: int) -> list[tuple[str, Structure]]:
    records = read_records(path)
    picked = [r for r in records[::every] if len(r["structure"]["sites"]) <= max_sites][:n]
    return [(r["id"], Structure.from_dict(r["structure"])) for r in picked]


@pytest.fixture(scope="module")
def real_structures(shared_data) -> list[tuple[str, Structure]]:
    """52 real structures of varied chemistry and size (2–20 sites) from two datasets."""
    return _records(shared_data / "alexandria_heat_capacity.json.gz", 19, 20, 26) + _records(
        DEMO_DATA / "de_jong_2015_elasticity.json.gz", 37, 20, 26
    )


class _OnceVoronoiNN(VoronoiNN):
    """pymatgen's ``VoronoiNN`` (default settings) that tessellates each site once: the three site featurizers of
    the reference ask it for the same sites. Its answers are pymatgen's own (copies of them), so the reference is
    unchanged; only the test's time (about two thirds of it) is saved."""

    def __init__(self):
        super().__init__()
        self._answers: dict[tuple[int, int], list] = {}

    def get_nn_info(self, structure, n):
        key = (id(structure), n)
        if key not in self._answers:
            self._answers[key] = super().get_nn_info(structure, n)
        return copy.deepcopy(self._answers[key])


def _matminer_gong28(structure: Structure) -> list[float]:
    """The 28 values straight from matminer's featurizers (NaN where a featurizer raises)."""
    voronoi = _OnceVoronoiNN()  # one structure: the same sites for the three featurizers below
    featurizers = [
        GlobalSymmetryFeatures(desired_features=["spacegroup_num", "crystal_system_int"]),
        StructuralComplexity(),
        StructuralHeterogeneity(stats=("maximum", "range", "mean", "avg_dev")),
        SiteStatsFingerprint(AverageBondLength(voronoi), stats=("mean", "std_dev")),
        SiteStatsFingerprint(AverageBondAngle(voronoi), stats=("mean", "std_dev")),
        SiteStatsFingerprint(CoordinationNumber(voronoi), stats=("mean", "std_dev")),
        DensityFeatures(desired_features=["density", "vpa", "packing fraction"]),
    ]
    values: list[float] = []
    for f in featurizers:
        try:
            values += [float(v) for v in f.featurize(structure)]
        except Exception:  # the reference's own failure is what we must reproduce as NaN
            values += [np.nan] * len(f.feature_labels())
    return [*values, *structure.lattice.abc, *structure.lattice.angles, len(structure)]


def test_gong28_columns_are_the_papers_28_in_order():
    assert list(get_descriptor_set("gong28").columns) == GONG28


@pytest.mark.slow
def test_gong28_equals_matminer_on_real_structures(real_structures, tmp_path):
    assert len(real_structures) >= 50
    ids = [i for i, _ in real_structures]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = featurize([s for _, s in real_structures], "gong28", ids=ids, progress=False)
        # matminer is the slow side (~2 s per structure): both cores, as CI has two
        reference = np.array(Parallel(n_jobs=2)(delayed(_matminer_gong28)(s) for _, s in real_structures))
    assert list(ours.columns) == GONG28
    got = ours.to_numpy()
    both_nan = np.isnan(got) & np.isnan(reference)
    # rtol 1e-6 as required; atol 1e-12 only for features that are exactly zero in exact arithmetic
    # (deviations of identical bond lengths), where both codes return floating-point noise of ~1e-16.
    close = np.isclose(got, reference, rtol=1e-6, atol=1e-12)
    bad = np.argwhere(~(close | both_nan))
    assert not len(bad), [(ids[r], GONG28[c], got[r, c], reference[r, c]) for r, c in bad[:10]]
    # The comparison is not vacuous: most values are finite and non-trivial.
    assert np.isfinite(got).mean() > 0.95


def test_matminer_failure_gives_nan_for_the_failing_feature_only_and_is_recorded():
    # DensityFeatures' packing fraction has no atomic radius for Xe: matminer raises on XeF2. Density and volume per
    # atom need no radius: they stay (they were NaN too when the three shared one group).
    xef2 = Structure(Lattice.tetragonal(4.3, 7.0), ["Xe", "F", "F"], [[0, 0, 0], [0, 0, 0.28], [0, 0, 0.72]])
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.warns(UserWarning, match="featurizer failure"):
        frame = featurize([nacl, xef2], "gong28", ids=["nacl", "xef2"], progress=False)
    assert np.isnan(frame.loc[1, "packing fraction"])
    assert frame.loc[1, "density"] == pytest.approx(xef2.density, rel=1e-12)
    assert frame.loc[1, "vpa"] == pytest.approx(xef2.volume / 3, rel=1e-12)
    assert frame.drop(columns=["packing fraction"]).loc[1].notna().all()
    assert frame.loc[0].notna().all()
    (error,) = frame.attrs["errors"]
    assert error["id"] == "xef2"
    assert error["group"] == "packing_fraction"
    assert error["columns"] == ["packing fraction"]
    assert "TypeError" in error["error"]


def test_magnetic_moments_change_no_structure_descriptor():
    """The cache key ignores ``magmom``: so must the values. pymatgen hands the moments to spglib, whose symmetry
    dataset ignores them (an antiferromagnetic bcc cell would otherwise be simple cubic, 221, not 229)."""
    plain = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    magnetic = plain.copy()
    magnetic.add_site_property("magmom", [2.2, -2.2])
    frame = featurize([plain, magnetic], "gong28", progress=False)
    assert frame.loc[0, "spacegroup_num"] == 229
    pd.testing.assert_series_equal(frame.loc[0], frame.loc[1], check_names=False)


def test_nacl_values_are_physical():
    nacl = Structure(
        Lattice.cubic(5.64),
        ["Na", "Cl"] * 4,
        [
            [0, 0, 0],
            [0.5, 0.5, 0.5],
            [0.5, 0.5, 0],
            [0, 0, 0.5],
            [0.5, 0, 0.5],
            [0, 0.5, 0],
            [0, 0.5, 0.5],
            [0.5, 0, 0],
        ],
    )
    row = featurize([nacl], "gong28", progress=False).iloc[0]
    assert row["spacegroup_num"] == 225
    assert row["crystal_system_int"] == 1  # matminer: cubic -> 1
    assert row["natoms"] == 8
    assert row["mean CN_VoronoiNN"] == pytest.approx(6.0)
    assert row["mean Average bond length"] == pytest.approx(2.82)
    assert row["mean Average bond angle"] == pytest.approx(np.pi / 2)
    assert row["structural complexity per atom"] == pytest.approx(1.0)  # two orbits of 4 sites: 1 bit/atom


def test_set_combination_and_composition_and_lattice():
    s = Structure(Lattice.hexagonal(3.2, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]])
    composition_labels = ElementProperty.from_preset("magpie").feature_labels()
    frame = featurize([s], "gong28+composition+lattice", progress=False)
    assert list(frame.columns) == [*GONG28, *composition_labels, "volume"]
    assert frame["volume"].iloc[0] == pytest.approx(s.volume)
    assert list(get_descriptor_set("lattice").columns) == LATTICE_COLUMNS
    assert frame["crystal_system_int"].iloc[0] == GlobalSymmetryFeatures.crystal_idx["hexagonal"]
    mean_z = frame["MagpieData mean Number"].iloc[0]
    assert mean_z == pytest.approx((30 + 8) / 2)


def test_a_user_featurizer_is_named_by_its_settings_the_same_in_every_process():
    from matgl_hybrid.descriptors.groups import group_for_featurizer

    def name(featurizer):
        return group_for_featurizer(featurizer).name

    # MagpieData's repr holds a memory address: two instances of one preset are one group
    assert name(ElementProperty.from_preset("magpie")) == name(ElementProperty.from_preset("magpie"))
    # VoronoiNN's repr leaves its settings out: other settings are another group
    wrapped = [SiteStatsFingerprint(CoordinationNumber(VoronoiNN(tol=t)), stats=("mean",)) for t in (0.0, 0.5)]
    assert name(wrapped[0]) != name(wrapped[1])


def test_user_featurizers_and_user_descriptors():
    structures = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (4.0, 4.1, 4.2)]
    frame = featurize(structures, [Stoichiometry(), DensityFeatures()], progress=False)
    assert list(frame.columns) == Stoichiometry().feature_labels() + DensityFeatures().feature_labels()
    assert frame["vpa"].tolist() == pytest.approx([a**3 / 2 for a in (4.0, 4.1, 4.2)])

    by_id = UserDescriptors.from_frame(pd.DataFrame({"id": ["c", "a", "b"], "gap": [3.0, 1.0, 2.0]}), id_column="id")
    frame = featurize(structures, ["lattice", by_id], ids=["a", "b", "c"], progress=False)
    assert frame["gap"].tolist() == [1.0, 2.0, 3.0]
    by_position = UserDescriptors.from_array(np.array([[7.0], [8.0], [9.0]]), names=["x"])
    assert featurize(structures, [by_position], progress=False)["x"].tolist() == [7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match="2 rows but there are 3 structures"):
        featurize(structures, [UserDescriptors.from_array(np.zeros((2, 1)))], progress=False)
    with pytest.raises(KeyError, match="no user descriptors for ids"):
        featurize(structures, [by_id], ids=["a", "b", "zz"], progress=False)
    # nothing silently dropped or shifted: duplicate ids, and a user column named as another column, are refused
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        UserDescriptors.from_frame(pd.DataFrame({"id": ["a", "a", "b"], "gap": [1.0, 1.5, 2.0]}), id_column="id")
    twin = UserDescriptors.from_array(np.zeros((3, 1)), names=["x"])
    with pytest.raises(ValueError, match="user descriptor column 'x' has the name of another"):
        featurize(structures, [by_position, twin], progress=False)
    with pytest.raises(ValueError, match="user descriptor column 'a' has the name of another"):
        featurize(structures, ["lattice", UserDescriptors.from_array(np.zeros((3, 1)), names=["a"])], progress=False)
    assert list(featurize(structures, [by_position, by_position], progress=False).columns) == ["x"]
    # keyed by id without ids=: refused, not aligned by the row numbers featurize would otherwise make up
    numbered = pd.DataFrame({"id": ["2", "0", "1"], "gap": [3.0, 1.0, 2.0]})
    by_number = UserDescriptors.from_frame(numbered, id_column="id")
    with pytest.raises(ValueError, match="these user descriptors are keyed by id: pass ids= to featurize"):
        featurize(structures, [by_number], progress=False)
    # a DataFrame of an array (column labels 0, 1): its columns by their names as text
    unnamed = UserDescriptors.from_frame(pd.DataFrame(np.arange(6.0).reshape(3, 2)))
    assert featurize(structures, [unnamed], progress=False).columns.tolist() == ["0", "1"]


def test_user_descriptors_from_a_csv_keep_leading_zeros_and_name_the_file(tmp_path):
    """Ids such as 007 were read as numbers (7, and 7.0 in a column with a blank): no structure matched them."""
    structures = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (4.0, 4.1)]
    path = tmp_path / "gaps.csv"
    path.write_text("id,gap\n007,1.5\n010,2.5\n")
    frame = featurize(structures, [UserDescriptors.from_csv(path)], ids=["010", "007"], progress=False)
    assert frame["gap"].tolist() == [2.5, 1.5]
    path.write_text("id,gap\n007,1.5\n007,2.5\n")
    with pytest.raises(ValueError, match=r"gaps\.csv: user descriptors: duplicate id '007'"):
        UserDescriptors.from_csv(path)


def test_cache_hit_skips_computation_and_returns_identical_values(tmp_path, real_structures, monkeypatch):
    structures = [s for _, s in real_structures[:6]]
    first = featurize(structures, "gong28", cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.rglob("*.json"))) == 6

    def fail(*args, **kwargs):
        raise AssertionError("cache miss: compute_groups was called")

    monkeypatch.setattr(bank_module, "compute_groups", fail)
    second = featurize(structures, "gong28", cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, second)
    assert (first.attrs["n_computed"], second.attrs["n_computed"]) == (6, 0)
    # A set sharing groups with the cached one reuses them: only 'volume' is new for gong28+lattice.
    monkeypatch.undo()
    calls = []
    original = bank_module.compute_groups

    def spy(structure, groups):
        calls.append([g.name for g in groups])
        return original(structure, groups)

    monkeypatch.setattr(bank_module, "compute_groups", spy)
    assert featurize(structures, "gong28+lattice", cache_dir=tmp_path, progress=False).attrs["n_computed"] == 6
    assert calls == [["volume"]] * 6


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    s = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    first = featurize([s], "lattice", cache_dir=tmp_path, progress=False)
    (entry,) = tmp_path.rglob("*.json")
    entry.write_text('{"truncated": ')
    again = featurize([s], "lattice", cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert json.loads(entry.read_text())  # rewritten whole


def test_cache_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    s = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    featurize([s], "lattice", cache_dir=tmp_path, progress=False)
    (entry,) = tmp_path.rglob("*.json")
    before = entry.read_text()

    def killed(src, dst):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it

    monkeypatch.setattr(matgl_hybrid.files.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        featurize([s], "gong28", cache_dir=tmp_path, progress=False)
    assert entry.read_text() == before  # old entry intact, no half-written file
    # temporary file removed; the folder's lock file (writers take turns) is the only other entry
    assert sorted(p.name for p in entry.parent.iterdir()) == sorted([entry.name, cache_module.LOCK_FILE])


def test_structure_key_identifies_structures():
    s = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_key(s) == structure_key(s.copy())
    moved = s.copy()
    moved.translate_sites([1], [0.001, 0, 0])
    assert structure_key(moved) != structure_key(s)
    assert structure_key(Structure(s.lattice, ["Cs", "Br"], s.frac_coords)) != structure_key(s)


@pytest.mark.slow
def test_parallel_equals_serial_and_accepts_ase_atoms(real_structures):
    structures = [s for _, s in real_structures[:8]]
    serial = featurize(structures, "gong28", n_jobs=1, progress=False)
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in structures]
    parallel = featurize(atoms, "gong28", n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)


def test_values_do_not_depend_on_how_site_coordinates_are_written(real_structures):
    # The same crystals with sites moved by whole lattice vectors (coordinates outside [0, 1), some exactly 1.0):
    # matminer's StructuralHeterogeneity raises or describes the wrong cells on such input; ours must not change.
    structures = [s for _, s in real_structures[::6]]
    rng = np.random.default_rng(0)
    moved = []
    for s in structures:
        frac = s.frac_coords + rng.integers(-1, 2, size=s.frac_coords.shape)
        frac[s.frac_coords == 0] = 1.0
        moved.append(Structure(s.lattice, s.species, frac))
    assert any(((m.frac_coords < 0) | (m.frac_coords >= 1)).any() for m in moved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.testing.assert_frame_equal(
            featurize(structures, "gong28", progress=False), featurize(moved, "gong28", progress=False)
        )


def test_bad_input_is_refused_with_a_clear_error():
    good = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    disordered = Structure(Lattice.cubic(4.0), [{"Cs": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(InvalidStructureError, match=r"'bad'.*site 0 is disordered or partially occupied"):
        featurize([good, disordered], "lattice", ids=["ok", "bad"], progress=False)
    with pytest.raises(InvalidStructureError, match=r"structure is empty \(0 sites\)"):
        featurize([Structure(Lattice.cubic(4.0), [], [])], "lattice", progress=False)
    with pytest.raises(KeyError, match="unknown descriptor set"):
        featurize([good], "gong29", progress=False)
    with pytest.raises(TypeError, match="site featurizer"):
        featurize([good], [AverageBondLength(VoronoiNN())], progress=False)
    # what that error recommends is accepted (it lives in matminer.featurizers.structure.sites)
    wrapped = featurize([good], [SiteStatsFingerprint(CoordinationNumber(VoronoiNN()), stats=("mean",))],
                        progress=False)  # fmt: skip
    assert wrapped.iloc[0].tolist() == [14.0]  # the Voronoi cell of CsCl: 8 + 6 faces


class _NotStreaming(ThreadingBackend):
    """A joblib backend that cannot return results as a generator (as multiprocessing and ray)."""

    supports_return_generator = False


def test_backends_that_cannot_stream_results_give_the_serial_values():
    structures = data.load(DEMO_DATA / "de_jong_2015_elasticity.json.gz", limit=4).structures
    serial = featurize(structures, "lattice", progress=False)
    register_parallel_backend("not_streaming", _NotStreaming)
    with parallel_config(backend="not_streaming"):
        parallel = featurize(structures, "lattice", n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    with parallel_config(backend="multiprocessing"), pytest.raises(ValueError, match="use the default backend"):
        featurize(structures, "lattice", n_jobs=2, progress=False)


def test_transform_fits_on_training_rows_imputes_and_round_trips(tmp_path):
    train = pd.DataFrame({"a": [1.0, 2.0, np.nan, 5.0], "b": [3.0, 3.0, 3.0, 3.0], "c": [np.nan] * 4})
    with pytest.warns(UserWarning, match="no value in the training data"):
        t = DescriptorTransform().fit(train)
    assert t.median_.tolist() == [2.0, 3.0, 0.0]
    out = t.transform(train)
    assert not np.isnan(out).any()
    assert out[:, 0].mean() == pytest.approx(0.0)
    assert out[:, 0].std() == pytest.approx(1.0)
    assert (out[:, 1] == 0).all()  # constant column: scale 1, no division by zero
    test = pd.DataFrame({"a": [np.nan, 100.0], "b": [4.0, np.inf], "c": [1.0, np.nan]})
    path = tmp_path / "transform.json"
    t.save(path)
    restored = DescriptorTransform.load(path)
    np.testing.assert_array_equal(restored.transform(test), t.transform(test))
    assert restored.transform(test)[0, 0] == t.transform(pd.DataFrame({"a": [2.0], "b": [4.0], "c": [1.0]}))[0, 0]
    with pytest.raises(ValueError, match="differ from those the transform was fitted on"):
        t.transform(test[["b", "a", "c"]])
    with pytest.raises(RuntimeError, match="not fitted"):
        DescriptorTransform().transform(test)
    state = json.loads(path.read_text())
    state["format_version"] = 99
    with pytest.raises(ValueError, match="format_version"):
        DescriptorTransform.from_dict(state)


def test_transform_is_a_scikit_learn_transformer():
    from sklearn.base import BaseEstimator, TransformerMixin, clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    t = DescriptorTransform()
    assert isinstance(t, BaseEstimator)
    assert isinstance(t, TransformerMixin)
    assert repr(t) == "DescriptorTransform()"
    assert t.get_params() == {"clip": True}
    with pytest.raises(NotFittedError, match="call fit\\(\\) on training descriptors first"):
        t.get_feature_names_out()
    train = pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [0.5, np.nan, 1.5]})
    assert t.fit(train) is t
    check_is_fitted(t)
    assert t.n_features_in_ == 2
    assert t.get_feature_names_out().tolist() == ["a", "b"]
    fresh = clone(t)  # parameters only: an unfitted copy
    assert type(fresh) is DescriptorTransform
    assert not hasattr(fresh, "median_")
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.transform(train)
    state = t.to_dict()
    assert set(state) == {"feature_names", "median", "mean", "scale", "lower", "upper"}  # versioned by the checkpoint
    assert DescriptorTransform.from_dict({**state, "format_version": 1}).n_features_in_ == len(state["median"])
    restored = DescriptorTransform.from_dict(json.loads(json.dumps(state)))
    check_is_fitted(restored)
    assert restored.n_features_in_ == 2
    assert restored.get_feature_names_out().tolist() == ["a", "b"]
    np.testing.assert_array_equal(restored.transform(train), t.transform(train))
    # an array has no column names: they are x0 … x{D-1}
    unnamed = DescriptorTransform().fit(train.to_numpy())
    assert unnamed.n_features_in_ == 2
    assert unnamed.get_feature_names_out().tolist() == ["x0", "x1"]
    # the transform of a shipped checkpoint restores with n_features_in_
    folder = os.path.join(os.path.dirname(matgl_hybrid.__file__), "pretrained_models", "hybrid-megnet-heat-capacity")
    with open(os.path.join(folder, "descriptor_transform.json")) as file:
        shipped = json.load(file)["descriptor_transform"]
    assert DescriptorTransform.from_dict(shipped).n_features_in_ == len(shipped["feature_names"])


def test_a_nonzero_constant_column_without_bounds_gives_its_training_value():
    """A column of 0.3s: its mean rounds off 0.3 and its std off 0 (5.6e-17), so a state fitted that way (before
    0.2) had scale 5.6e-17 and a test value of 0.4 standardized to ~1.8e15; the rule read only scale 1. Such a
    column now gives, unclipped, what its training rows gave; a new fit stores it with scale 1."""
    train = pd.DataFrame({"constant": [0.3] * 234, "varied": np.linspace(1.0, 4.0, 234)})
    unseen = pd.DataFrame({"constant": [0.4, 0.1], "varied": [40.0, -5.0]})
    values = train["constant"].to_numpy()
    assert values.std() > 0  # the float rounding this is about
    varied = train["varied"].to_numpy()
    old_state = {"feature_names": ["constant", "varied"], "median": [0.3, float(np.median(varied))],
                 "mean": [values.mean(), varied.mean()], "scale": [values.std(), varied.std()]}  # fmt: skip
    old = DescriptorTransform.from_dict(old_state)
    trained = old.transform(train)[0, 0]
    np.testing.assert_array_equal(old.transform(unseen)[:, 0], [trained, trained])
    layer = DescriptorScaler(old_state).double()
    np.testing.assert_array_equal(layer(torch.tensor(unseen.to_numpy())).numpy(), old.transform(unseen))
    fitted = DescriptorTransform(clip=False).fit(train)
    assert (fitted.mean_[0], fitted.scale_[0]) == (0.3, 1.0)
    np.testing.assert_array_equal(fitted.transform(unseen)[:, 0], [0.0, 0.0])
    assert abs(fitted.transform(unseen)[0, 1]) > 1  # a varying column keeps its standardized value


def test_a_descriptor_value_never_seen_in_training_is_clipped_to_the_training_range():
    """A column constant in training always gives 0 and values beyond the training range give its edge (with clip,
    the default); without clip, or from a state saved before clipping existed, the standardized value is kept but
    for a constant column's, still 0 (shipped models' BatchNorm had seen that one value: a new one came out hundreds
    of standard deviations away)."""
    train = pd.DataFrame({"constant": [0.0, 0.0, 0.0, 0.0], "varied": [1.0, 2.0, 3.0, 4.0]})
    unseen = pd.DataFrame({"constant": [14.0, -3.0], "varied": [40.0, -5.0]})
    clipped = DescriptorTransform().fit(train)
    out = clipped.transform(unseen)
    np.testing.assert_array_equal(out[:, 0], [0.0, 0.0])
    edges = clipped.transform(pd.DataFrame({"constant": [0.0, 0.0], "varied": [4.0, 1.0]}))[:, 1]
    np.testing.assert_array_equal(out[:, 1], edges)
    np.testing.assert_array_equal(clipped.transform(train), DescriptorTransform(clip=False).fit_transform(train))
    kept = DescriptorTransform(clip=False).fit(train)
    np.testing.assert_array_equal(kept.transform(unseen)[:, 0], [0.0, 0.0])
    assert kept.transform(unseen)[0, 1] == (40.0 - 2.5) / np.std([1.0, 2.0, 3.0, 4.0])  # beyond the range: kept
    assert set(kept.to_dict()) == {"feature_names", "median", "mean", "scale"}
    old_state = {k: v for k, v in clipped.to_dict().items() if k not in ("lower", "upper")}
    restored = DescriptorTransform.from_dict(old_state)
    assert restored.clip is False
    np.testing.assert_array_equal(restored.transform(unseen), kept.transform(unseen))
    layer = DescriptorScaler(old_state).double()  # the model's layer: the same values
    np.testing.assert_array_equal(layer(torch.tensor(unseen.to_numpy())).numpy(), kept.transform(unseen))
    reloaded = DescriptorTransform.from_dict(json.loads(json.dumps(clipped.to_dict())))
    np.testing.assert_array_equal(reloaded.transform(unseen), out)
    with pytest.raises(ValueError, match="different lengths"):
        DescriptorTransform.from_dict({**clipped.to_dict(), "upper": [1.0]})
    half = {k: v for k, v in clipped.to_dict().items() if k != "lower"}  # one bound lost: refused, not unclipped
    with pytest.raises(ValueError, match="corrupt DescriptorTransform state: no lower"):
        DescriptorTransform.from_dict(half)
    with pytest.raises(ValueError, match="no lower in its state"):
        DescriptorScaler(half)
    with pytest.raises(ValueError, match="median has 1 values for 2 names"):
        DescriptorScaler({**clipped.to_dict(), "median": 0.5})


def test_the_descriptor_scaler_keeps_float64_statistics_in_a_converted_model():
    """A Trainer with precision="64-true" / "bf16-true" converts the model: the scaler's output must follow (a float32
    output into a float64 encoder failed) and its statistics must not be rounded (bf16 collapsed 1500.25 and
    1500.35 onto one value)."""
    state = {"feature_names": ["v"], "median": [1500.3], "mean": [1500.3], "scale": [0.05]}
    x = torch.tensor([[1500.25], [1500.35]], dtype=torch.float64)
    expected = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    model = torch.nn.Sequential(DescriptorScaler(state), torch.nn.Linear(1, 1)).double()
    assert model[0](x).dtype == torch.float64
    model(x)  # the float64 layer after it takes its output
    torch.testing.assert_close(model[0](x), expected)
    low = DescriptorScaler(state).to(torch.bfloat16)
    assert low.mean.dtype == torch.float64
    torch.testing.assert_close(low(x).double(), expected, atol=1e-2, rtol=0)


def test_transform_fit_transform_is_median_imputation_then_population_standardization():
    frame = pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, np.inf, 10.0],  # finite 1, 3, 10: median 3
            "b": [2.0, 2.0, -np.inf, 2.0, 2.0],  # constant once imputed: scale 1
            "c": [np.nan] * 5,  # no value: imputed with 0
            "d": [0.5, 1.5, 2.5, 3.5, np.nan],  # median 2
        }
    )
    a = np.array([1.0, 3.0, 3.0, 3.0, 10.0])
    d = np.array([0.5, 1.5, 2.5, 3.5, 2.0])
    expected = np.column_stack(
        [(a - a.mean()) / np.sqrt(np.mean((a - a.mean()) ** 2)), np.zeros(5), np.zeros(5), (d - 2.0) / 1.0]
    )
    t = DescriptorTransform()
    with pytest.warns(UserWarning, match="no value in the training data"):
        out = t.fit_transform(frame)
    assert type(out) is np.ndarray
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-14)
    assert t.median_.tolist() == [3.0, 2.0, 0.0, 2.0]
    assert t.mean_.tolist() == [4.0, 2.0, 0.0, 2.0]
    np.testing.assert_allclose(t.scale_, [np.sqrt(9.6), 1.0, 1.0, 1.0], rtol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning in transform
        np.testing.assert_array_equal(t.transform(frame), out)


def test_cache_dir_default_honours_environment(monkeypatch, tmp_path):
    from matgl_hybrid.paths import descriptor_cache_dir

    monkeypatch.setenv("MATGL_HYBRID_CACHE", os.fspath(tmp_path))
    assert descriptor_cache_dir() == tmp_path / "descriptors"


def test_describe_descriptors_ranks_by_rank_correlation_with_a_target_of_any_sign():
    frame = pd.DataFrame({"up": [1.0, 2.0, 3.0, 4.0, 5.0], "down": [9.0, np.nan, 5.0, 1.0, 0.0], "flat": [1.0] * 5})
    target = np.array([-3.0, -2.0, -1.0, 0.0, 1.0])  # formation energies: negative and zero targets count too
    table = describe_descriptors(frame, target, "y")
    assert sorted(table.index[:2]) == ["down", "up"]  # |rho| = 1, 1, then the constant column (NaN)
    assert table.loc["up", "spearman y"] == pytest.approx(1.0)
    assert table.loc["down", "spearman y"] == pytest.approx(-1.0)
    assert table.loc["down", "NaN"] == 1
    assert table.loc["up", "max"] == 5.0  # the range is over every structure


def test_a_shared_analysis_that_fails_is_not_computed_again_for_the_next_group(elastic):
    calls = []

    def relax(structure):
        calls.append(structure)
        raise RuntimeError("did not converge")

    ctx = StructureContext(elastic.structures[0])
    for _ in range(3):  # three groups need the same relaxation
        with pytest.raises(RuntimeError, match="did not converge"):
            ctx.shared("relax", relax)
    assert len(calls) == 1
    assert ctx.shared("volume", lambda s: s.volume) == elastic.structures[0].volume


def test_a_user_column_named_like_a_hidden_computed_column_is_refused():
    """``lattice`` computes ``spacegroup_num`` (its symmetry group) without showing it: a user column of that name
    passed the clash check and was replaced, silently, by the computed space group."""
    from matgl_hybrid.descriptors import UserDescriptors, get_descriptor_set

    mine = UserDescriptors.from_frame(pd.DataFrame({"spacegroup_num": [1.0, 2.0]}))
    lattice = get_descriptor_set("lattice")
    assert "spacegroup_num" not in lattice.columns
    assert any("spacegroup_num" in g.labels for g in lattice.groups)
    for combined in (lambda: lattice + get_descriptor_set(mine), lambda: get_descriptor_set(mine) + lattice):
        with pytest.raises(ValueError, match="user descriptor column 'spacegroup_num' has the name of another"):
            combined()
