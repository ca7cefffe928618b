"""Reliability of checkpoints (issue 33): no code from a model folder, absurd configs refused before anything is
built, MatGL's wrapped refusals explained, non-UTF-8 files named, a full disk while saving, migrate over a model."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matgl
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import LATTICE_COLUMNS, TINY_MEGNET

from matgl_hybrid import checkpoint
from matgl_hybrid.checkpoint import (
    MANIFEST,
    CheckpointError,
    load_checkpoint,
    migrate_checkpoint,
    save_checkpoint,
    sha256_file,
)
from matgl_hybrid.descriptors import DescriptorTransform, get_descriptor_set
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.pretrained import load_pretrained


def _tiny(seed: int = 0) -> HybridModel:
    """A one-block MEGNet hybrid with the lattice descriptors (its transform fitted on random values)."""
    frame = pd.DataFrame(np.random.default_rng(seed).normal(size=(8, len(LATTICE_COLUMNS))), columns=LATTICE_COLUMNS)
    torch.manual_seed(seed)
    return HybridModel(
        element_types=("O", "Si"),
        backbone_kwargs=TINY_MEGNET,
        descriptor_set="lattice",
        descriptor_version=get_descriptor_set("lattice").version,
        descriptor_transform=DescriptorTransform().fit(frame).to_dict(),
        descriptor_dim=4,
        head_hidden=(4,),
    ).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model with a training record and a model card (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    return save_checkpoint(_tiny(), folder, {"training": {"note": "kept"}}, {"model_card.md": "# card\n"})


def _copy(saved: Path, folder: Path) -> Path:
    shutil.copytree(saved, folder)
    return folder


def _edit_header(folder: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Replace model.json by ``edit(header)`` (which may change the header in place and return None)."""
    header = json.loads((folder / "model.json").read_text())
    result = edit(header)
    (folder / "model.json").write_text(json.dumps(header if result is None else result))


def _rehash(folder: Path) -> None:
    """Rewrite SHA256SUMS for the files now there: only the loader's own checks can catch an edit."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    (folder / MANIFEST).write_text("".join(f"{sha256_file(folder / n)}  {n}\n" for n in names))


def _as_format_2(folder: Path) -> None:
    """Mark a saved checkpoint as format 2, which only ``migrate`` reads."""
    _edit_header(folder, lambda h: h["metadata"].update(format_version=2))
    _rehash(folder)


def _plant_module(folder: Path, sentinel: Path) -> None:
    """The attack of bug 1: ``<folder>/evil.py`` writes ``sentinel``, and model.json names it as ``@module``."""
    (folder / "evil.py").write_text(f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('ran')\n")
    _edit_header(folder, lambda h: h.update({"@module": f"{folder.name}.evil"}))


def test_this_package_refuses_a_planted_module_without_importing_it(saved, tmp_path, monkeypatch):
    folder, sentinel = _copy(saved, tmp_path / "dl_model"), tmp_path / "sentinel"
    _plant_module(folder, sentinel)
    monkeypatch.syspath_prepend(str(tmp_path))  # as for `python -c` in the parent folder: the import would work
    with pytest.raises(CheckpointError, match=r"model\.json is corrupted or was modified"):
        load_checkpoint(folder)
    _rehash(folder)  # the hashes are no barrier against the folder's author: the class allowlist is
    for load in (load_checkpoint, load_pretrained, lambda f: migrate_checkpoint(f, tmp_path / "out")):
        with pytest.raises(CheckpointError, match=r"names class dl_model\.evil\.HybridModel, which is not"):
            load(folder)
    assert not sentinel.exists()
    assert "dl_model.evil" not in sys.modules


@pytest.mark.slow  # a fresh interpreter importing matgl
def test_matgl_load_model_runs_a_planted_module_upstream_behaviour(saved, tmp_path):
    """Documents MatGL's behaviour described in docs/upstream/matgl-load-model-imports-module.md.

    ``matgl.load_model`` imports the ``@module`` of model.json before any check of this package can run, so it runs
    ``evil.py`` when the folder's parent is on ``sys.path`` (``python -c``, notebooks, scripts beside the folder).
    If MatGL fixes this, this test fails: then update that document and the README's safety section (which say
    ``matgl.load_model`` is only for folders you trust) and turn this test around.
    """
    folder, sentinel = _copy(saved, tmp_path / "dl_model"), tmp_path / "sentinel"
    _plant_module(folder, sentinel)
    script = "import matgl\ntry:\n    matgl.load_model('dl_model')\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, timeout=300, check=True)
    assert sentinel.read_text() == "ran"


def _never_built(*args: Any, **kwargs: Any) -> None:
    pytest.fail("a model was built from a config that the loader must refuse first")


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda header: header["kwargs"].update({key: value})


ABSURD = {
    "descriptor_dim int": (_set("descriptor_dim", 10**7), "model.json: kwargs.descriptor_dim = 10000000 is out"),
    "descriptor_dim float": (_set("descriptor_dim", 1e7), "model.json: kwargs.descriptor_dim = 10000000.0 is out"),
    "descriptor_dim NaN": (_set("descriptor_dim", float("nan")), "model.json: kwargs.descriptor_dim = nan is out"),
    "hidden width": (_set("head_hidden", [10**13]), "model.json: kwargs.head_hidden[0] = 10000000000000 is out"),
    "hidden layers": (_set("head_hidden", [4] * 17), "model.json: kwargs.head_hidden has 17 entries"),
    "cutoff": (_set("cutoff", 1e4), "model.json: kwargs.cutoff = 10000.0 Å is out of range"),
    "negative cutoff": (_set("cutoff", -1.0), "model.json: kwargs.cutoff = -1.0 Å is out of range"),
    "elements": (_set("element_types", ["O", "Xx"]), "model.json: kwargs.element_types must be a list of distinct"),
    "nested width": (
        lambda h: h["kwargs"]["backbone_kwargs"].update(dim_node_embedding=70000),
        "model.json: kwargs.backbone_kwargs.dim_node_embedding = 70000 is out",
    ),
    "model.json a list": (lambda h: [h], "model.json must hold a JSON object, not a list"),
    "kwargs a list": (lambda h: h.update(kwargs=[1, 2]), "model.json: kwargs must be a JSON object, not a list"),
    "metadata a string": (lambda h: h.update(metadata="x"), "model.json: metadata must be a JSON object, not a"),
}


@pytest.mark.parametrize(("edit", "message"), ABSURD.values(), ids=ABSURD.keys())
def test_an_absurd_rehashed_config_is_refused_naming_file_and_field_before_building(
    saved, tmp_path, monkeypatch, edit, message
):
    folder = _copy(saved, tmp_path / "m")
    _edit_header(folder, edit)
    _rehash(folder)
    monkeypatch.setattr(HybridModel, "__init__", _never_built)
    with pytest.raises(CheckpointError, match=re.escape(f"{folder}/{message}")):
        load_checkpoint(folder)


def test_weights_that_do_not_fit_a_rehashed_config_are_refused_in_one_line(saved, tmp_path):
    folder = _copy(saved, tmp_path / "m")
    _edit_header(folder, lambda h: h["kwargs"].update(head_hidden=[6]))  # weights saved for a width of 4
    _rehash(folder)
    with pytest.raises(CheckpointError, match=r"weights\.safetensors does not fit HybridModel: .*size mismatch"):
        load_checkpoint(folder)


def test_a_state_file_cannot_smuggle_constructor_arguments(saved, tmp_path, monkeypatch):
    folder = _copy(saved, tmp_path / "m")
    state = json.loads((folder / "target_normalization.json").read_text())
    (folder / "target_normalization.json").write_text(json.dumps({**state, "head_hidden": [10**13]}))
    _rehash(folder)
    monkeypatch.setattr(HybridModel, "__init__", _never_built)
    with pytest.raises(CheckpointError, match=r"target_normalization\.json holds head_hidden; it may hold only"):
        load_checkpoint(folder)


def test_matgl_load_model_refusals_say_the_real_reason(saved, tmp_path):
    folder = _copy(saved, tmp_path / "m")
    with (folder / "weights.safetensors").open("ab") as f:
        f.write(b"\0")
    with (
        pytest.warns(UserWarning, match=r"matgl\.load_model refused .*weights\.safetensors is corrupted"),
        pytest.raises(ValueError, match="clear your cache"),  # MatGL's own message, which we cannot change
    ):
        matgl.load_model(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # called directly, the error itself says it: no warning
        with pytest.raises(CheckpointError, match=r"weights\.safetensors is corrupted"):
            HybridModel.load(folder)


@pytest.mark.parametrize("name", ["model_card.md", "training.json"])
def test_migrate_names_a_listed_file_that_is_not_utf8(saved, tmp_path, name):
    folder = _copy(saved, tmp_path / "old")
    (folder / name).write_bytes("caf\xe9\n".encode("latin-1"))
    _as_format_2(folder)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(folder / name))} is not UTF-8 text \(byte 3"):
        migrate_checkpoint(folder, tmp_path / "new")
    assert not (tmp_path / "new" / "model.json").exists()


def _full_disk(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


_replace = checkpoint.os.replace


def _full_disk_at_the_weights(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    """``os.replace`` on a disk that fills when the weights are moved into place (after the save's list of files)."""
    if Path(dst).name == "weights.safetensors":
        _full_disk()
    _replace(src, dst, *args, **kwargs)


def _torch_write_failed(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


WRITE_FAILURES = {  # what the writers raise on a full disk: an OSError (safetensors' is wrapped), torch's RuntimeError
    "safetensors": (lambda mp: mp.setattr(checkpoint, "save_file", _full_disk), "the disk is full"),
    "torch": (lambda mp: mp.setattr(checkpoint, "save_file", _torch_write_failed), "[enforce fail at inline_container"),
}


@pytest.mark.parametrize(("patch", "reason"), WRITE_FAILURES.values(), ids=WRITE_FAILURES.keys())
def test_a_failed_write_keeps_the_earlier_model_and_says_so_in_one_line(saved, tmp_path, monkeypatch, patch, reason):
    folder = _copy(saved, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model = _tiny(seed=1)
    patch(monkeypatch)
    with pytest.raises(OSError, match=r"; the earlier model there is unchanged$") as caught:
        save_checkpoint(model, folder)
    assert str(caught.value).startswith(f"cannot save the model in {folder} ({reason}")
    assert "\n" not in str(caught.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # and no temporary folder is left
    with pytest.raises(OSError, match=r"; nothing was written there$"):
        save_checkpoint(model, tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []


def test_a_failed_rename_says_the_folder_no_longer_loads(saved, tmp_path, monkeypatch):
    folder = _copy(saved, tmp_path / "m")
    model = _tiny(seed=1)
    monkeypatch.setattr(checkpoint.os, "replace", _full_disk_at_the_weights)
    with pytest.raises(OSError, match=r"\(the disk is full\); it now holds an incomplete model, which does not load"):
        save_checkpoint(model, folder)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=f"has no {MANIFEST}"):  # refused, never loaded wrong
        load_checkpoint(folder)


def test_saving_again_finishes_a_save_that_was_interrupted(saved, tmp_path, monkeypatch):
    """The manifest was removed and some files moved in when the disk filled: saving again was refused as a folder of
    someone else's files (and with --overwrite, as files no saved model wrote). The save's own list lets it finish,
    without --overwrite, and the user's file there stays."""
    folder = _copy(saved, tmp_path / "m")
    (folder / "my notes.txt").write_text("mine")
    with monkeypatch.context() as patched:
        patched.setattr(checkpoint.os, "replace", _full_disk_at_the_weights)
        with pytest.raises(OSError, match="it now holds an incomplete model, which does not load: save again"):
            save_checkpoint(_tiny(seed=1), folder, {"training": {"note": "new"}})
    checkpoint.check_model_dir(folder, replace_model=False)  # as train --out checks it: ours, not replacing a model
    save_checkpoint(_tiny(seed=1), folder, {"training": {"note": "new"}})
    reloaded = load_checkpoint(folder).state_dict()
    assert all(torch.equal(reloaded[k], v) for k, v in _tiny(seed=1).state_dict().items())
    assert (folder / "my notes.txt").read_text() == "mine"
    assert not (folder / "model_card.md").exists()  # the earlier model's, which the new one does not have
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_users_file_named_as_one_the_model_writes_is_refused_before_any_work(saved, tmp_path):
    """With --overwrite (or into a saved model), train learnt of the user's model_card.md only when it saved, after
    all the training: the model was lost. It is refused before the data is even read."""
    from matgl_hybrid.training import train_file

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "model_card.md").write_text("# my own card\n")
    with pytest.raises(FileExistsError, match=r"holds model_card\.md, which no saved model there wrote"):
        train_file("no such data.json", "K_VRH", folder, overwrite=True)
    assert (folder / "model_card.md").read_text() == "# my own card\n"


def test_train_replaces_a_saved_model_only_with_overwrite(saved, tmp_path):
    from matgl_hybrid.training import train_file

    folder = _copy(saved, tmp_path / "m")
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(folder))} already holds a saved model.*--overwrite"):
        train_file("no such data.json", "K_VRH", folder)
    with pytest.raises(FileNotFoundError, match=r"no such data\.json"):  # past the output checks, to the data
        train_file("no such data.json", "K_VRH", folder, overwrite=True)


@pytest.mark.parametrize(
    "extra",
    [{"texts": {"../outside.md": "x"}}, {"texts": {"résumé.md": "x"}}, {"texts": {"model.json": "{}"}},
     {"records": {"target_normalization": {}}}, {"figures": {"SHA256SUMS": b""}}],
    ids=["path", "non-ascii", "header", "state", "manifest"],
)  # fmt: skip
def test_extra_files_with_names_a_checkpoint_cannot_hold_are_refused(tmp_path, extra):
    """Such names saved (or overwrote the header, the fitted state, a file outside the folder) and then the
    checkpoint never loaded."""
    with pytest.raises(ValueError, match="cannot save a file named"):
        save_checkpoint(_tiny(), tmp_path / "m", **extra)
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())
    assert not (tmp_path / "outside.md").exists()


def test_a_float64_model_reloads_in_float64_with_its_predictions(tmp_path):
    """Trained with ``precision="64-true"``, the weights were saved in float64 and loaded into a float32 model: the
    reloaded model's predictions were not those its card scored."""
    model = _tiny().double()
    save_checkpoint(model, tmp_path / "m")
    reloaded = load_checkpoint(tmp_path / "m")
    assert checkpoint.weight_dtype(reloaded) == torch.float64
    state = reloaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # and it predicts, in float64 (MatGL's collate gives float32 lattices and states, which it took as they came)
    from pymatgen.core import Lattice, Structure

    structures = [Structure(Lattice.cubic(3.0 + 0.1 * k), ["Si", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for k in range(3)]
    in_memory = model.predict(structures)
    np.testing.assert_array_equal(reloaded.predict(structures), in_memory)
    np.testing.assert_allclose(in_memory, _tiny().predict(structures), rtol=1e-5)  # the float32 model's, nearly
    ensemble = HybridEnsemble.from_models([model, model])
    assert checkpoint.weight_dtype(ensemble) == torch.float64
    np.testing.assert_array_equal(ensemble.predict(structures), in_memory)
    bf16 = _tiny().to(torch.bfloat16)
    assert np.isfinite(bf16.predict(structures)).all()


def test_migrate_refuses_an_out_that_holds_another_model_unless_overwrite(saved, tmp_path):
    old = _copy(saved, tmp_path / "old")
    _as_format_2(old)
    other = save_checkpoint(_tiny(seed=1), tmp_path / "other")
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(other))} already holds a saved model.*--overwrite"):
        migrate_checkpoint(old, other)
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before
    migrate_checkpoint(old, other, overwrite=True)
    migrated, original = load_checkpoint(other).state_dict(), load_checkpoint(saved).state_dict()
    assert migrated.keys() == original.keys()
    assert all(torch.equal(migrated[k], original[k]) for k in original)


def test_a_folder_changed_between_its_hashing_and_its_reading_is_refused(saved, tmp_path, monkeypatch):
    """A save into the folder while it loads: weights of the same shapes, hashed before they changed, must not load
    with the configuration read before."""
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path / "m")
    original, calls = checkpoint.verify, []

    def verify_then_saved_over(path, *args, **kwargs):
        digests = original(path, *args, **kwargs)
        calls.append(path)
        if len(calls) == 1:  # another process replaces the weights right after the first check
            weights = {
                k: v + 1.0 if v.is_floating_point() else v for k, v in load_file(folder / "weights.safetensors").items()
            }
            save_file(weights, folder / "weights.safetensors")
        return digests

    monkeypatch.setattr(checkpoint, "verify", verify_then_saved_over)
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is corrupted or was modified"):
        load_checkpoint(folder)


def test_predict_structure_refuses_return_std_it_cannot_return():
    """It indexed predict's (mean, std) tuple and returned the means of all structures as "the prediction"."""
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(3.0), ["Si", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"call predict\(\[structure\], return_std=True\)"):
        _tiny().predict_structure(structure, return_std=True)


def test_predict_refuses_one_structure_no_structure_and_a_batch_size_below_one():
    """One Structure was taken as a sequence of its sites ("got PeriodicSite"); an empty list ended in torch.cat's
    error; --batch-size 0 failed after every descriptor was computed."""
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(3.0), ["Si", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"predict takes a list of structures: \[structure\]"):
        _tiny().predict(structure)
    with pytest.raises(ValueError, match="predict takes a list of structures"):
        _tiny().predict(structure.to_ase_atoms())
    with pytest.raises(ValueError, match="no structure to predict"):
        _tiny().predict([])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        _tiny().predict([structure], batch_size=0)


@pytest.mark.parametrize("backbone", ["m3gnet", "tensornet"])
def test_matgls_extensive_head_of_several_targets_is_refused_on_construction(backbone):
    """MatGL's extensive head flattens (N, T) per-atom outputs against N batch indices: the first forward failed."""
    with pytest.raises(ValueError, match="MatGL's extensive head predicts one target"):
        HybridModel(backbone=backbone, readout="native", element_types=("Si", "O"),
                    backbone_kwargs={"is_intensive": False}, n_targets=2, target_names=("a", "b"))  # fmt: skip


def test_a_model_with_a_repeated_trainable_activation_saves_and_reloads(tmp_path):
    """``activation="softexp"``: MatGL's MLP repeats one trainable activation after every hidden layer, so the
    state lists one tensor under several names; safetensors refused it after the whole training had run."""
    model = HybridModel(element_types=("Na", "Cl"), activation="softexp", head_hidden=(8, 8),
                        backbone_kwargs=TINY_MEGNET).eval()  # fmt: skip
    with torch.no_grad():
        model.head.layers[1].alpha.fill_(0.3)  # trained away from its initial value, shared by both hidden layers
    save_checkpoint(model, tmp_path / "softexp")
    loaded = load_checkpoint(tmp_path / "softexp")
    assert loaded.head.layers[1].alpha is loaded.head.layers[3].alpha
    assert float(loaded.head.layers[3].alpha) == pytest.approx(0.3)


def test_tensornet_weights_are_saved_in_the_layout_every_machine_loads(tmp_path):
    """MatGL's GPU (Warp) TensorNet embedding keeps its three distance projections as one fused ``distance_proj``;
    saved that way, the model did not load where the Warp kernels are not installed."""
    from matgl_hybrid.checkpoint import portable_state

    model = HybridModel(backbone="tensornet", element_types=("Na", "Cl"), backbone_kwargs={"units": 8, "nblocks": 1})
    plain = model.state_dict()
    prefix = "backbone.tensor_embedding.distance_proj"
    fused = {k: v for k, v in plain.items() if not k.startswith(prefix)}  # the Warp embedding's state
    for kind in ("weight", "bias"):
        fused[f"{prefix}.{kind}"] = torch.cat([plain[f"{prefix}{i}.{kind}"] for i in (1, 2, 3)])
    portable = portable_state(fused)
    assert portable.keys() == plain.keys()
    for name, tensor in plain.items():
        torch.testing.assert_close(portable[name], tensor, rtol=0, atol=0)


def test_a_checkpoint_folder_nested_in_the_output_folder_is_allowed_at_any_depth(tmp_path):
    """``train --out m --checkpoint-dir m/ckpt/run1``: the save found ``m/ckpt`` "not the allowed folder" and threw
    the trained model away; so did ``m/../m/ckpt``."""
    out = tmp_path / "m"
    nested = out / "ckpt" / "run1" / "member_0"
    nested.mkdir(parents=True)
    for allowed in (out / "ckpt" / "run1", tmp_path / "m" / ".." / "m" / "ckpt"):
        assert checkpoint.check_model_dir(out, allow=[allowed]) == out
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match=r"is not empty \(notes\.txt\)"):
        checkpoint.check_model_dir(out, allow=[out / "ckpt" / "run1"])
