"""Pretrained checkpoints: loading from a path or URL into the cache, verification, errors a user can act on."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from matgl_hybrid.checkpoint import FORMAT_VERSION, CheckpointError, save_checkpoint
from matgl_hybrid.data import load_records
from matgl_hybrid.models import HybridModel
from matgl_hybrid.pretrained import list_pretrained, load_pretrained, pretrained_cache_dir


@pytest.fixture
def saved(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MATGL_HYBRID_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_records(shared_data / "alexandria_heat_capacity.json.gz", "heat_capacity", limit=5)
    torch.manual_seed(0)
    elements = sorted({str(e) for s in data.structures for e in s.composition.elements})
    model = HybridModel(
        element_types=elements,
        readout="sum",
        head_hidden=(8,),
        target_mean=[100.0],
        target_std=[20.0],
        backbone_kwargs={"nblocks": 1},
    ).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    return tmp_path / "ckpt", data.structures, model.predict(data.structures, cache_dir=None)


def test_load_from_path_and_from_url_into_the_cache(saved):
    path, structures, expected = saved
    np.testing.assert_array_equal(load_pretrained(path).predict(structures, cache_dir=None), expected)
    model = load_pretrained(path.as_uri())  # file:// URL: downloaded into $MATGL_HYBRID_CACHE/pretrained
    np.testing.assert_array_equal(model.predict(structures, cache_dir=None), expected)
    (copy,) = list(pretrained_cache_dir().iterdir())
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in path.iterdir())
    load_pretrained(path.as_uri())  # a verified copy is reused
    assert len(list(pretrained_cache_dir().iterdir())) == 1


def test_tampered_download_is_refused_and_leaves_nothing(saved):
    path, _, _ = saved
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors"):
        load_pretrained(path.as_uri())
    assert not [p for p in pretrained_cache_dir().iterdir() if not p.name.startswith(".")]


def test_a_download_of_a_folder_without_a_model_is_refused_before_fetching_it(saved, tmp_path):
    """A folder whose SHA256SUMS lists no model.json (a potential's, say) was fetched whole, reported downloaded,
    and fetched again by every later use before failing."""
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    (folder / "SHA256SUMS").write_text(f"{hashlib.sha256(b'x').hexdigest()}  notes.txt\n")
    with pytest.raises(CheckpointError, match=r"SHA256SUMS lists no model\.json: not a matgl-hybrid checkpoint"):
        load_pretrained(folder.as_uri())
    cache = pretrained_cache_dir()
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.startswith(".")]


def test_unknown_names_and_missing_sources_say_what_to_do(saved, tmp_path):
    with pytest.raises(KeyError, match="unknown checkpoint 'no-such-model'"):
        load_pretrained("no-such-model")
    with pytest.raises(CheckpointError, match="cannot download"):
        load_pretrained((tmp_path / "nowhere").as_uri())
    assert isinstance(list_pretrained(), dict)


def test_cli_pretrained(saved, tmp_path, capsys):
    from matgl_hybrid.cli import main

    path, structures, expected = saved
    assert main(["pretrained", "list"]) == 0
    assert "hybrid-megnet-heat-capacity: Hybrid MEGNet" in capsys.readouterr().out
    assert main(["pretrained", "info", str(path)]) == 0
    assert f'"format_version": {FORMAT_VERSION}' in capsys.readouterr().out
    assert main(["pretrained", "info", "no-such-model"]) == 2
    assert "unknown checkpoint" in capsys.readouterr().err
    assert main(["pretrained", "download", str(path), "--cache-dir", str(tmp_path / "elsewhere")]) == 2
    assert "--cache-dir: options of 'pretrained predict'" in capsys.readouterr().err  # was accepted, and ignored
    planted = shutil.copytree(path, tmp_path / "planted")  # a card the manifest does not list is not the model's
    (planted / "model_card.md").write_text("# trust me\n")
    assert main(["pretrained", "info", str(planted)]) == 0
    assert "trust me" not in capsys.readouterr().out
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"id": f"s{i}", "structure": s.as_dict()} for i, s in enumerate(structures)]))
    out = tmp_path / "pred.csv"
    assert main(["pretrained", "predict", str(path), "--data", str(records), "--out", str(out), "--no-cache"]) == 0
    np.testing.assert_allclose(pd.read_csv(out)["prediction"], expected, rtol=1e-6)


def test_a_download_is_size_limited_keeps_a_racing_copy_and_refuses_unsafe_names(saved, monkeypatch, tmp_path):
    from matgl_hybrid import pretrained
    from matgl_hybrid.checkpoint import parse_manifest

    path, _, _ = saved
    with monkeypatch.context() as patched:
        patched.setattr(pretrained, "MAX_DOWNLOAD_BYTES", 100)
        with pytest.raises(CheckpointError, match="larger than 100 bytes"):
            pretrained.download(path.as_uri(), cache=tmp_path / "small")
    # another process renamed its verified copy into place first: this one's copy is dropped, the entry kept
    rename, racing = Path.rename, tmp_path / "racing"

    def beaten(self, target):
        if self.name.startswith(".download."):
            shutil.copytree(path, target)
        return rename(self, target)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "rename", beaten)
        folder = pretrained.download(path.as_uri(), cache=racing)
    assert [p.name for p in racing.iterdir()] == [folder.name]  # no .download. folder left
    for name in ("..\\evil.bat", "C:evil", "weights.safetensors:ads", ".hidden"):
        with pytest.raises(CheckpointError, match="is malformed"):
            parse_manifest(f"{'0' * 64}  {name}\n", "SHA256SUMS")


def test_a_registered_name_is_the_registered_checkpoint_even_beside_a_folder_of_that_name(saved, monkeypatch, tmp_path):
    from matgl_hybrid.pretrained import resolve

    name = next(iter(list_pretrained()))
    path, _, _ = saved
    monkeypatch.chdir(tmp_path)
    shutil.copytree(path, tmp_path / name)  # the user's own model, saved under that name
    assert resolve(name).resolve() != (tmp_path / name).resolve()
    assert resolve(f"./{name}") == Path(f"./{name}")


def test_a_cached_download_follows_the_remote_and_survives_going_offline(saved, monkeypatch, tmp_path):
    """A URL's cached copy was reused forever: a checkpoint republished at the same URL was never fetched again."""
    import os

    from matgl_hybrid import pretrained

    path, structures, expected = saved
    remote = shutil.copytree(path, tmp_path / "remote")
    first = pretrained.download(remote.as_uri())
    stamp = (first / "weights.safetensors").stat().st_mtime_ns
    assert pretrained.download(remote.as_uri()) == first  # unchanged remote: the copy is reused, not fetched again
    assert (first / "weights.safetensors").stat().st_mtime_ns == stamp
    card = remote / "model_card.md"  # republished: a new file listed in a new manifest
    card.write_text("# version 2\n")
    manifest = remote / "SHA256SUMS"
    manifest.write_text(manifest.read_text() + f"{hashlib.sha256(card.read_bytes()).hexdigest()}  model_card.md\n")
    assert (pretrained.download(remote.as_uri()) / "model_card.md").read_text() == "# version 2\n"
    pinned = hashlib.sha256((first / "SHA256SUMS").read_bytes()).hexdigest()
    shutil.rmtree(remote)  # offline, or the remote gone: the verified copy is used, with a warning
    with pytest.warns(UserWarning, match="using the cached copy"):
        assert pretrained.download(remote.as_uri()) == first
    with warnings.catch_warnings():  # a pinned copy is used without asking the remote
        warnings.simplefilter("error")
        assert pretrained.download(remote.as_uri(), pinned=pinned) == first
    for url in ("http://example.org/model", "HTTP://example.org/model"):
        with pytest.raises(CheckpointError, match="plain http:// is refused"):
            pretrained.download(url)
    request = urllib.request.Request("https://example.org/model/SHA256SUMS")
    with pytest.raises(CheckpointError, match=r"redirects to http://example\.org/x: only https:// is followed"):
        pretrained._HttpsRedirectsOnly().redirect_request(request, None, 302, "Found", {}, "http://example.org/x")
    old, young = (pretrained_cache_dir() / name for name in (".download.killed", ".download.running"))
    old.mkdir(), young.mkdir()
    os.utime(old, (0, 0))  # a killed process's leftover is removed; one that may still be running is kept
    pretrained.download(path.as_uri())
    assert not old.exists()
    assert young.exists()
    np.testing.assert_array_equal(load_pretrained(first).predict(structures, cache_dir=None), expected)


def test_a_download_keeps_a_copy_another_process_put_there_and_a_read_only_cache_is_used(saved, monkeypatch, tmp_path):
    """Two processes downloading the same new version: the second set the first's finished copy aside (deleting
    it under the first's load); a cache that cannot be written turned a remote update into a PermissionError."""
    from matgl_hybrid import pretrained

    path, _, _ = saved
    cache = tmp_path / "shared-cache"
    target = cache / hashlib.sha256(path.as_uri().encode()).hexdigest()[:16]
    fetch = pretrained._fetch

    def racing(url, limit):  # the other process finishes its download while this one fetches the weights
        if url.endswith("weights.safetensors") and not target.exists():
            shutil.copytree(path, target)
        return fetch(url, limit)

    with monkeypatch.context() as patched:
        patched.setattr(pretrained, "_fetch", racing)
        assert pretrained.download(path.as_uri(), cache=cache) == target
    other = (target / "weights.safetensors").stat().st_ino
    assert pretrained.download(path.as_uri(), cache=cache) == target
    assert (target / "weights.safetensors").stat().st_ino == other  # the other process's copy, never replaced
    assert [p.name for p in cache.iterdir()] == [target.name]

    remote = shutil.copytree(path, tmp_path / "remote")
    copy = pretrained.download(remote.as_uri(), cache=cache)
    manifest = remote / "SHA256SUMS"  # republished, while the cache became read-only
    manifest.write_text(manifest.read_text() + f"{hashlib.sha256(b'x').hexdigest()}  notes.txt\n")
    (remote / "notes.txt").write_text("x")

    def read_only(parent, prefix):
        raise PermissionError(13, "Permission denied", str(parent))

    with monkeypatch.context() as patched:
        patched.setattr(pretrained, "make_temp_dir", read_only)
        with pytest.warns(UserWarning, match="is not writable: using its copy"):
            assert pretrained.download(remote.as_uri(), cache=cache) == copy
        with pytest.raises(CheckpointError, match=r"cannot download .* into the cache"):
            pretrained.download(remote.as_uri(), cache=tmp_path / "empty-cache")
