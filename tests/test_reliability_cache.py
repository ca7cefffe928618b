"""Reliability of the descriptor cache (issue 33): archives that cannot poison it, damaged entries that are misses,
a cache folder that cannot be written refused before any work."""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import DEMO_DATA
from pymatgen.core import Lattice, Structure

import matgl_hybrid.files
from matgl_hybrid import data
from matgl_hybrid.descriptors import DescriptorCache, featurize, get_descriptor_set, import_archive, structure_key
from matgl_hybrid.descriptors import bank as bank_module
from matgl_hybrid.descriptors import cache as cache_module
from matgl_hybrid.descriptors.bank import archive_values


def _cscl() -> Structure:
    return Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _archive(path: Path, entries: dict) -> Path:
    path.write_bytes(gzip.compress(json.dumps({"format": 1, "entries": entries}).encode()))
    return path


def _lattice_keys() -> dict[str, str]:
    """Group name -> group key of the ``lattice`` set."""
    return {g.name: g.key for g in get_descriptor_set("lattice").groups}


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Counts the structures whose groups are computed (featurize with n_jobs=1 computes in this process)."""
    calls: list[int] = []
    original = bank_module.compute_groups

    def spy(structure, groups):
        calls.append(1)
        return original(structure, groups)

    monkeypatch.setattr(bank_module, "compute_groups", spy)
    return calls


# Bug 6: entries without "error" (or of other types) poison the cache; and the read side must not crash on them.


def _good_lattice_entries() -> dict[str, dict]:
    keys = _lattice_keys()
    return {
        keys["lattice"]: {"values": [4.0, 4.0, 4.0, 90.0, 90.0, 90.0], "error": None},
        keys["volume"]: {"values": [64.0], "error": None},
        keys["natoms"]: {"values": [2], "error": None},
        keys["symmetry"]: {"values": [221, 1], "error": None},
    }


@pytest.mark.parametrize(
    ("group", "entry", "reason"),
    [
        ("lattice", {"values": [4.0, 4.0, 4.0, 90.0, 90.0, 90.0]}, "not {"),  # no "error": the KeyError of the issue
        ("lattice", {"values": [4.0] * 6, "error": None, "extra": 1}, "not {"),
        ("lattice", {"values": None, "error": None}, "not {"),
        ("lattice", {"values": ["4.0"] * 6, "error": None}, "not {"),
        ("lattice", {"values": [4.0] * 6, "error": ["x"]}, "not {"),
        ("lattice", [4.0] * 6, "not {"),
        ("no version", {"values": [1.0], "error": None}, "not a group key"),
        ("lattice@3\nforged", {"values": [1.0], "error": None}, "not a group key"),
    ],
)
def test_import_refuses_a_malformed_entry_before_writing_anything(tmp_path, group, entry, reason):
    s = _cscl()
    entries = _good_lattice_entries()
    key = _lattice_keys().get(group, group)
    entries[key] = entry
    archive = _archive(tmp_path / "bad.json.gz", {structure_key(s): entries})
    with pytest.raises(ValueError, match=reason) as refused:
        import_archive(DescriptorCache(tmp_path / "cache"), archive)
    message = str(refused.value)
    assert "\n" not in message
    assert str(archive) in message
    assert structure_key(s) in message
    assert repr(key)[:20] in message
    assert not (tmp_path / "cache").exists()  # nothing written


def test_a_cache_entry_without_error_or_with_bad_values_is_a_miss_not_a_crash(tmp_path, counted):
    s = _cscl()
    first = featurize([s], "lattice", cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.rglob("*.json")
    stored = json.loads(path.read_text())
    keys = _lattice_keys()
    del stored[keys["lattice"]]["error"]  # what an unchecked import used to write: a KeyError on every read
    stored[keys["volume"]]["values"] = ["64"]  # a value of the wrong type
    path.write_text(json.dumps(stored))
    again = featurize([s], "lattice", cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert again.attrs["n_computed"] == 1
    assert len(counted) == 2
    repaired = json.loads(path.read_text())
    assert repaired[keys["lattice"]]["error"] is None
    assert repaired[keys["volume"]]["values"] == [64.0]


def test_an_archive_that_featurize_wrote_is_imported_whole(tmp_path):
    structures = data.load(DEMO_DATA / "de_jong_2015_elasticity.json.gz", limit=6).structures
    computed = featurize(structures, "gong28+lattice", cache_dir=tmp_path / "here", progress=False)
    archive = tmp_path / "values.json.gz"
    assert archive_values(structures, "gong28+lattice", tmp_path / "here", archive) == 6
    assert import_archive(DescriptorCache(tmp_path / "there"), archive) == 6
    imported = featurize(structures, "gong28+lattice", cache_dir=tmp_path / "there", progress=False)
    assert imported.attrs["n_computed"] == 0
    pd.testing.assert_frame_equal(computed, imported)


def test_null_values_import_as_nan(tmp_path):
    s = _cscl()
    entries = _good_lattice_entries()
    entries[_lattice_keys()["lattice"]] = {"values": [None] * 6, "error": "ValueError: failed elsewhere"}
    import_archive(DescriptorCache(tmp_path / "cache"), _archive(tmp_path / "a.json.gz", {structure_key(s): entries}))
    with pytest.warns(UserWarning, match="failed elsewhere"):
        frame = featurize([s], "lattice", cache_dir=tmp_path / "cache", progress=False)
    assert frame.attrs["n_computed"] == 0
    assert frame[["a", "alpha"]].isna().all(axis=None)


def test_an_archived_failure_beside_local_values_is_not_offered_in_their_place(tmp_path):
    """The import warned that such entries "differ" and said to delete the cache files to take the archive's: the
    good local values would have been replaced by a failure that is never computed again."""
    s = _cscl()
    featurize([s], "lattice", cache_dir=tmp_path / "cache", progress=False)  # local values
    entries = _good_lattice_entries()
    entries[_lattice_keys()["lattice"]] = {"values": [None] * 6, "error": "ValueError: failed elsewhere"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        archive = _archive(tmp_path / "a.json.gz", {structure_key(s): entries})
        import_archive(DescriptorCache(tmp_path / "cache"), archive)
    frame = featurize([s], "lattice", cache_dir=tmp_path / "cache", progress=False)
    assert not frame[["a", "alpha"]].isna().any(axis=None)  # the local values kept


# Bug 7: a cache file holding JSON that is not an object.


@pytest.mark.parametrize(
    "content", ["null", "[1, 2, 3]", '"text"', "7", "[" * 100_000], ids=["null", "list", "text", "number", "deep"]
)
def test_a_cache_file_that_is_not_an_object_is_a_miss_and_is_rewritten(tmp_path, content):
    s = _cscl()
    first = featurize([s], "lattice", cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.rglob("*.json")
    path.write_text(content)
    again = featurize([s], "lattice", cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert again.attrs["n_computed"] == 1
    assert isinstance(json.loads(path.read_text()), dict)  # rewritten


# Weak: no size limit on cache-import (a gzip bomb), no value checks.


def test_an_archive_expanding_beyond_the_limit_is_refused(tmp_path, monkeypatch):
    # valid JSON (an empty archive) padded with 8 MB of spaces: 8 kB compressed
    padded = b'{"format": 1, "entries": {}' + b" " * 8_000_000 + b"}"
    archive = tmp_path / "bomb.json.gz"
    archive.write_bytes(gzip.compress(padded))
    assert archive.stat().st_size < 100_000
    monkeypatch.setattr(cache_module, "MAX_ARCHIVE_BYTES", 1_000_000)
    with pytest.raises(ValueError, match="expands to more than 1000000 bytes") as refused:
        import_archive(DescriptorCache(tmp_path / "cache"), archive)
    assert str(archive) in str(refused.value)
    assert "\n" not in str(refused.value)
    monkeypatch.setattr(cache_module, "MAX_ARCHIVE_BYTES", 10_000_000)
    assert import_archive(DescriptorCache(tmp_path / "cache"), archive) == 0  # under the limit: read


def test_the_archive_limit_reads_in_bounded_chunks(tmp_path, monkeypatch):
    archive = tmp_path / "bomb.json.gz"
    archive.write_bytes(gzip.compress(b" " * 50_000_000))
    monkeypatch.setattr(cache_module, "MAX_ARCHIVE_BYTES", 1_000_000)
    reads = []
    original = gzip.GzipFile.read

    def spy(self, size=-1):
        reads.append(size)
        return original(self, size)

    monkeypatch.setattr(gzip.GzipFile, "read", spy)
    with pytest.raises(ValueError, match="expands to more than"):
        import_archive(DescriptorCache(tmp_path / "cache"), archive)
    assert reads
    assert all(0 < size <= 1_000_001 for size in reads)


@pytest.mark.parametrize(
    ("group", "values", "reason"),
    [
        ("natoms", [-5], r"natoms = -5.0 is not plausible: not a whole number in \[1, inf\)"),
        ("natoms", [2.5], "natoms = 2.5 is not plausible"),
        ("volume", [0.0], r"volume = 0.0 is not plausible: not in \(0, inf\)"),
        ("symmetry", [231, 1], "spacegroup_num = 231.0"),
        ("lattice", [4.0, 4.0, -4.0, 90.0, 90.0, 90.0], "c = -4.0"),
        ("lattice", [4.0, 4.0, 4.0, 90.0, 90.0, 270.0], "gamma = 270.0"),
        ("lattice", [4.0, 4.0, 4.0, 90.0, 90.0], "5 values for the 6 features"),
        ("lattice", [4.0, 4.0, 4.0, 90.0, 90.0, math.inf], "value 5 is infinite"),
    ],
)
def test_import_refuses_impossible_values(tmp_path, group, values, reason):
    s = _cscl()
    entries = _good_lattice_entries()
    entries[_lattice_keys()[group]] = {"values": values, "error": None}
    archive = _archive(tmp_path / "bad.json.gz", {structure_key(s): entries})
    with pytest.raises(ValueError, match=reason) as refused:
        import_archive(DescriptorCache(tmp_path / "cache"), archive)
    assert str(archive) in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "cache").exists()


def test_import_refuses_an_implausible_density_of_a_known_group(tmp_path):
    s = _cscl()
    key = next(g.key for g in get_descriptor_set("gong28").groups if g.name == "density")
    entries = {key: {"values": [1e308, 30.0], "error": None}}
    archive = _archive(tmp_path / "bad.json.gz", {structure_key(s): entries})
    with pytest.raises(ValueError, match=r"density = 1e\+308 is not plausible: not in \(0, 1000\]"):
        import_archive(DescriptorCache(tmp_path / "cache"), archive)
    # the same value under a group this version does not know (another version, a user's) is only checked finite
    other = {key.replace("density@", "density@0-other-"): {"values": [1e308, 30.0], "error": None}}
    assert import_archive(DescriptorCache(tmp_path / "cache"), _archive(tmp_path / "ok.json.gz", {"0" * 64: other}))


# Weak: an unusable cache folder failed late, with a raw errno, after work had started.


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_cache_folder_that_is_a_file_is_refused_before_any_computation(tmp_path, counted, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    cache_dir = blocker if where == "a file" else blocker / "descriptors"
    with pytest.raises(OSError, match="--no-cache") as refused:
        featurize([_cscl()], "lattice", cache_dir=cache_dir, progress=False)
    message = str(refused.value)
    assert "\n" not in message
    assert str(cache_dir) in message
    assert "cache_dir=None" in message
    assert counted == []  # nothing computed
    assert blocker.read_text() == "not a folder"


def test_a_read_only_cache_folder_is_refused_before_any_computation_but_can_be_read(tmp_path, counted, monkeypatch):
    s = _cscl()
    first = featurize([s], "lattice", cache_dir=tmp_path, progress=False)

    def read_only(*args, **kwargs):  # root ignores permission bits: make every file creation fail as EROFS would
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(matgl_hybrid.files.tempfile, "mkstemp", read_only)
    again = featurize([s], "lattice", cache_dir=tmp_path, progress=False)  # every value cached: only read
    pd.testing.assert_frame_equal(first, again)
    calls = len(counted)
    with pytest.raises(OSError, match="--no-cache") as refused:
        featurize([s], "gong28", cache_dir=tmp_path, progress=False)  # new groups to compute and store
    assert str(tmp_path) in str(refused.value)
    assert "Read-only" in str(refused.value)
    assert len(counted) == calls  # refused before computing


def test_cache_import_into_a_file_is_one_line_naming_the_folder(tmp_path):
    s = _cscl()
    archive = _archive(tmp_path / "a.json.gz", {structure_key(s): _good_lattice_entries()})
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write the descriptor cache folder") as refused:
        import_archive(DescriptorCache(blocker), archive)
    assert str(blocker) in str(refused.value)
    assert blocker.read_text() == "x"


def test_structure_keys_tell_oxidation_states_and_fixed_atoms_apart_and_plain_keys_stay(tmp_path):
    """Symmetry tells Fe2+ from Fe3+ (229 vs 221), and fixed atoms relax otherwise: neither may be served the other's
    values. A plain structure's key is the lattice, elements and coordinates alone, as archives were written."""
    import hashlib

    import numpy as np

    plain = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    legacy = hashlib.sha256()
    for array, dtype in ((plain.lattice.matrix, np.float64), ([26, 26], np.int64), (plain.frac_coords, np.float64)):
        legacy.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    assert structure_key(plain) == legacy.hexdigest()
    decorated = plain.copy()
    decorated.replace_species({"Fe": "Fe"})
    decorated.add_oxidation_state_by_site([2, 3])
    fixed = plain.copy(site_properties={"selective_dynamics": [[False] * 3, [True] * 3]})
    with_moments = plain.copy(site_properties={"magmom": [2.2, 2.2]})
    assert structure_key(with_moments) == structure_key(plain)
    assert len({structure_key(s) for s in (plain, decorated, fixed)}) == 3

    first = featurize([plain], "gong28", cache_dir=tmp_path, progress=False)
    second = featurize([decorated], "gong28", cache_dir=tmp_path, progress=False)
    assert second.attrs["n_computed"] == 1
    assert first["spacegroup_num"].iloc[0] == 229
    assert second["spacegroup_num"].iloc[0] == 221


def test_a_transient_failure_is_computed_again_a_final_one_is_not(tmp_path):
    """A relaxation over its time budget on a busy machine says nothing about the structure: the next call computes
    it again. A failure of the structure itself (ValueError) is served from the cache."""
    from matgl_hybrid.descriptors.groups import FeatureGroup
    from matgl_hybrid.descriptors.sets import DescriptorSet

    calls = {"timeout": 0, "value": 0}

    def once_too_slow(ctx):
        calls["timeout"] += 1
        if calls["timeout"] == 1:
            raise TimeoutError("relaxation stopped at step 40: over its budget of 300 s")
        return [1.0]

    def always_bad(ctx):
        calls["value"] += 1
        raise ValueError("no neighbours within the cutoff")

    groups = (FeatureGroup("slow", ("x",), once_too_slow, check_values=False),
              FeatureGroup("bad", ("y",), always_bad, check_values=False))  # fmt: skip
    descriptors = DescriptorSet("test", groups, ("x", "y"))
    first = featurize([_cscl()], descriptors, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert math.isnan(first["x"].iloc[0])
    second = featurize([_cscl()], descriptors, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert second["x"].iloc[0] == 1.0
    assert calls == {"timeout": 2, "value": 1}
    third = featurize([_cscl()], descriptors, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert third.attrs["n_computed"] == 0


def test_a_package_missing_where_a_group_ran_is_not_cached_as_the_structure_s_failure(tmp_path):
    from matgl_hybrid.descriptors.groups import FeatureGroup
    from matgl_hybrid.descriptors.sets import DescriptorSet

    calls = []

    def needs_a_package(ctx):  # e.g. a Dask worker without chgnet installed, then one with it
        calls.append(1)
        if len(calls) == 1:
            raise ModuleNotFoundError("No module named 'chgnet'")
        return [1.0]

    descriptors = DescriptorSet("test", (FeatureGroup("uip", ("x",), needs_a_package, check_values=False),), ("x",))
    assert math.isnan(featurize([_cscl()], descriptors, cache_dir=tmp_path, progress=False)["x"].iloc[0])
    assert featurize([_cscl()], descriptors, cache_dir=tmp_path, progress=False)["x"].iloc[0] == 1.0


def test_writing_an_entry_keeps_what_the_file_holds_that_this_version_does_not_read(tmp_path):
    """An entry of a newer version (an extra field) is not read here, but it is not ours to delete."""
    cache = DescriptorCache(tmp_path)
    key = structure_key(_cscl())
    path = tmp_path / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    newer = {"values": [1.0], "error": None, "seconds": 0.5}
    path.write_text(json.dumps({"future@1": newer}))
    assert cache.get(key) == {}
    cache.put(key, {"b@1": {"values": [2.0], "error": None}})
    assert json.loads(path.read_text()) == {"future@1": newer, "b@1": {"values": [2.0], "error": None}}


def test_importing_values_that_differ_from_the_cached_ones_keeps_the_local_and_says_so(tmp_path, recwarn):
    key, cache = structure_key(_cscl()), DescriptorCache(tmp_path / "cache")
    entries = _good_lattice_entries()
    import_archive(cache, _archive(tmp_path / "same.json.gz", {key: entries}))
    rounded = {**entries, _lattice_keys()["volume"]: {"values": [64.0 * (1 + 1e-9)], "error": None}}
    import_archive(cache, _archive(tmp_path / "rounded.json.gz", {key: rounded}))
    assert not recwarn.list  # the same values (up to another machine's rounding): nothing to say
    other = {**entries, _lattice_keys()["volume"]: {"values": [65.0], "error": None}}
    with pytest.warns(UserWarning, match=rf"1 archived entries differ .* kept \(first: structure {key}, group volume"):
        import_archive(cache, _archive(tmp_path / "other.json.gz", {key: other}))
    assert cache.get(key)[_lattice_keys()["volume"]]["values"] == [64.0]


def test_a_cache_folder_under_home_written_with_a_tilde_is_that_folder(tmp_path, monkeypatch):
    # as the docs write it: cache_dir="~/.cache/matgl-hybrid/descriptors" (was a folder named "~" here)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    featurize([_cscl()], "lattice", cache_dir="~/cache", progress=False)
    assert list((tmp_path / "home" / "cache").rglob("*.json"))
    assert not (tmp_path / "~").exists()


def test_a_transient_failure_on_the_reference_structures_is_raised_not_put_in_the_key():
    """A MemoryError while computing the value digest says nothing of the group: as part of its key, the values of
    that call would sit under a key of their own and models would be refused for 'other values'."""
    from matgl_hybrid.descriptors.groups import FeatureGroup

    def out_of_memory(ctx):
        raise MemoryError("no memory left")

    def undefined(ctx):
        raise ValueError("no value for this structure")

    with pytest.raises(MemoryError):
        _ = FeatureGroup("transient-digest-test", ("x",), out_of_memory).key
    assert FeatureGroup("final-digest-test", ("x",), undefined).key.startswith("final-digest-test@")


@pytest.mark.parametrize(
    "error",
    ["RuntimeError: CUDA error: all CUDA-capable devices are busy or unavailable",
     "OSError: [Errno 28] No space left on device", "ConnectionError: worker lost",
     "AcceleratorError: CUDA error: an illegal memory access was encountered",
     "RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
     "allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)",
     "ConnectionResetError: [Errno 104] Connection reset by peer",
     "CheckpointError: TensorNet-MatPES-PBE-v2025.1-PES/weights.safetensors changed after it was verified"],
)  # fmt: skip
def test_failures_of_the_machine_are_transient_not_the_structures(error):
    """A busy GPU, a full disk or a lost connection were cached as the structure's final failure: its NaNs stayed
    until the cache files were deleted."""
    from matgl_hybrid.descriptors.groups import is_transient

    assert is_transient(error)
    assert not is_transient("RuntimeError: relaxation did not converge to fmax 0.05 eV/Å in 500 steps")
    assert not is_transient("ValueError: no neighbours within the cutoff")


def test_a_pretrained_potentials_groups_are_computed_and_cached_one_structure_at_a_time(tmp_path):
    """Chunks of up to 32 structures reached the cache (and the bar) only when the whole chunk ended: an interrupt
    lost up to 31 simulations per worker. With a potential's groups the second structure's failure leaves the
    first one's values cached."""
    from matgl_hybrid.descriptors.groups import FeatureGroup
    from matgl_hybrid.descriptors.sets import DescriptorSet

    calls = []

    def simulated(ctx):
        calls.append(len(calls))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl+C during the second structure
        return [float(len(calls))]

    group = FeatureGroup("simulated", ("x",), simulated, check_values=False, weights=lambda: {"model": "m"})
    descriptors = DescriptorSet("test", (group,), ("x",))
    structures = [_cscl().scale_lattice(40.0 + k) for k in range(12)]  # chunks of 3 for one worker, were
    with pytest.raises(KeyboardInterrupt):
        featurize(structures, descriptors, cache_dir=tmp_path, n_jobs=1, progress=False)
    again = featurize(structures[:1], descriptors, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert again.attrs["n_computed"] == 0  # the first structure's value was kept
    assert again["x"].iloc[0] == 1.0


def test_a_user_featurizer_fitted_otherwise_is_cached_under_another_key():
    """The key hashed only the featurizer's parameters: refitted on other elements, it served the first fit's values
    under the new fit's columns."""
    from matminer.featurizers.structure import PartialRadialDistributionFunction

    from matgl_hybrid.descriptors.groups import matminer_group

    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kbr = Structure(Lattice.cubic(6.6), ["K", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    first = matminer_group(PartialRadialDistributionFunction(cutoff=4.0, bin_size=2.0).fit([nacl]))
    second = matminer_group(PartialRadialDistributionFunction(cutoff=4.0, bin_size=2.0).fit([kbr]))
    assert first.labels != second.labels
    assert first.name != second.name


def test_where_a_package_is_installed_is_not_part_of_a_key():
    """ElementProperty holds MagpieData, whose data_dir is an absolute site-packages path: the key changed with the
    environment, and an archive made in one was never read in another."""
    from matminer.featurizers.composition import ElementProperty

    from matgl_hybrid.descriptors.groups import matminer_group

    featurizer = ElementProperty.from_preset("magpie")
    name = matminer_group(featurizer, on="composition").name
    featurizer.data_source.data_dir = "/elsewhere/site-packages/matminer/utils/data_files"
    assert matminer_group(featurizer, on="composition").name == name


def test_two_groups_computing_one_column_are_refused():
    """The second group's column was silently dropped (the first one's values shown under it)."""
    from matgl_hybrid.descriptors.groups import FeatureGroup
    from matgl_hybrid.descriptors.sets import DescriptorSet

    one = DescriptorSet("one", (FeatureGroup("a", ("x",), lambda ctx: [1.0]),), ("x",))
    other = DescriptorSet("other", (FeatureGroup("b", ("x", "y"), lambda ctx: [2.0, 3.0]),), ("x", "y"))
    with pytest.raises(ValueError, match="column 'x' is computed by both a and b"):
        _ = one + other


def test_an_infinite_value_is_stored_as_missing_and_its_archive_imports(tmp_path):
    """±inf was cached as it came; the archive export wrote it and the import refused the whole archive."""
    from matgl_hybrid.descriptors.groups import FeatureGroup
    from matgl_hybrid.descriptors.sets import DescriptorSet

    group = FeatureGroup("infinite", ("x", "y"), lambda ctx: [float("inf"), 2.0], check_values=False)
    descriptors = DescriptorSet("test", (group,), ("x", "y"))
    frame = featurize([_cscl()], descriptors, cache_dir=tmp_path / "a", n_jobs=1, progress=False)
    assert math.isnan(frame["x"].iloc[0])
    assert frame["y"].iloc[0] == 2.0
    cache = DescriptorCache(tmp_path / "a")
    cache_module.export_archive(cache, [_cscl()], [group.key], tmp_path / "values.json.gz")
    assert import_archive(DescriptorCache(tmp_path / "b"), tmp_path / "values.json.gz") == 1


def test_a_failure_does_not_replace_values_another_writer_stored(tmp_path):
    cache = DescriptorCache(tmp_path)
    cache.put("k" * 64, {"g": {"values": [1.0], "error": None}})
    cache.put("k" * 64, {"g": {"values": [float("nan")], "error": "RuntimeError: lost"}, "h": {"values": [2.0],
                                                                                               "error": None}})
    assert cache.get("k" * 64) == {"g": {"values": [1.0], "error": None}, "h": {"values": [2.0], "error": None}}


#: A featurizer whose worker dies (as under the OOM killer) on the structure of lattice constant 3 Å, after the
#: others have finished; run as a script, so that loky's workers receive the class by value.
_DYING_WORKER = """
import os, sys, time
from matminer.featurizers.base import BaseFeaturizer
from pymatgen.core import Lattice, Structure
from matgl_hybrid.descriptors import featurize

class Volume(BaseFeaturizer):
    def featurize(self, s):
        if os.environ.get("COMPUTED"):
            raise AssertionError("computed again")
        if abs(s.lattice.a - 3.0) < 1e-9:
            time.sleep(4)
            os._exit(1)
        return [s.volume]

    def feature_labels(self):
        return ["volume"]

    def citations(self):
        return []

    def implementors(self):
        return []

structures = [Structure(Lattice.cubic(3.0 + 0.1 * k), ["Cu"], [[0, 0, 0]]) for k in range(6)]
try:
    featurize(structures, [Volume()], n_jobs=2, cache_dir=sys.argv[1], ids=list("abcdef"), progress=False)
except Exception as exc:
    print(type(exc).__name__, exc)
os.environ["COMPUTED"] = "1"
again = featurize(structures[1:], [Volume()], cache_dir=sys.argv[1], progress=False)
print("recomputed", again.attrs["n_computed"], "errors", len(again.attrs["errors"]))
"""


@pytest.mark.slow
def test_a_worker_that_dies_names_its_structures_and_loses_none_of_the_finished(tmp_path):
    """A worker killed on the first structure (out of memory) held back, in order, every finished structure after
    it: none reached the cache, and joblib's error named none of them."""
    script = tmp_path / "dying.py"
    script.write_text(_DYING_WORKER)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    died, recomputed = run.stdout.strip().splitlines()[-2:]
    assert died == ("TerminatedWorkerError a worker process died computing one of the structures a (out of memory?); "
                    "the 5 finished structures' values are cached")
    assert recomputed == "recomputed 0 errors 0"


def test_an_archive_of_other_group_versions_says_they_will_never_be_read(tmp_path):
    """Values simulated with other package versions were imported under keys this installation never looks up,
    and the command said it imported them: the next featurize silently computed everything again."""
    s = _cscl()
    current = _lattice_keys()["lattice"]
    name = current.split(":")[0]
    older = f"{name.split('@')[0]}@0-elsewhere"
    archive = _archive(tmp_path / "a.json.gz", {structure_key(s): {older: {"values": [4.0] * 6, "error": None}}})
    expected = rf"1 archived group versions are not the ones .* \(first: {re.escape(older)}, here {re.escape(name)}"
    with pytest.warns(UserWarning, match=expected):
        assert import_archive(DescriptorCache(tmp_path / "cache"), archive) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current version imports without a word
        import_archive(DescriptorCache(tmp_path / "again"), _archive(tmp_path / "b.json.gz",
                                                                    {structure_key(s): _good_lattice_entries()}))


def test_an_archive_of_the_same_version_with_other_values_says_they_will_never_be_read(tmp_path):
    """Values of the same group version but another value digest (other matminer or weights where they were
    computed) were imported with "read the values of 1 structures": the next featurize computed them all again."""
    s = _cscl()
    current = _lattice_keys()["lattice"]
    elsewhere = f"{current.split(':')[0]}:000000000000"
    archive = _archive(tmp_path / "a.json.gz", {structure_key(s): {elsewhere: {"values": [4.0] * 6, "error": None}}})
    expected = rf"1 archived group versions are not .* \(first: {re.escape(elsewhere)}, here {re.escape(current)};"
    with pytest.warns(UserWarning, match=expected):
        assert import_archive(DescriptorCache(tmp_path / "cache"), archive) == 1

    real = cache_module._known_groups()[current.split(":")[0]]

    class Unloadable:  # a universal potential's group whose digest fails here (a CUDA or package error)
        name, version, labels = real.name, real.version, real.labels

        @property
        def key(self):
            raise RuntimeError("CUDA error: no kernel image")

    known = {**cache_module._known_groups(), current.split(":")[0]: Unloadable()}
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        patch.setattr(cache_module, "_known_groups", lambda: known)
        warnings.simplefilter("error")  # imported, without the warning it cannot make
        assert import_archive(DescriptorCache(tmp_path / "again"), archive) == 1


def test_a_cache_on_a_file_system_without_locks_is_written_with_a_warning(tmp_path, monkeypatch):
    """Lustre mounted ``noflock`` (or some network mounts): ``flock`` raised ENOSYS after the first chunk was
    computed, a bare OSError naming neither the folder nor a way out, and the run's work was lost."""
    import errno
    import fcntl

    def no_locks(handle, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    s = _cscl()
    with pytest.warns(UserWarning, match="cannot be locked \\(Function not implemented\\): written without locks"):
        first = featurize([s], "lattice", cache_dir=tmp_path / "cache", progress=False)
    again = featurize([s], "lattice", cache_dir=tmp_path / "cache", progress=False)
    assert again.attrs["n_computed"] == 0
    pd.testing.assert_frame_equal(first, again)
