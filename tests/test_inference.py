"""The prediction path and what v2 changed in the model: no MatGL head, raw descriptors in, one featurization per
ensemble, old checkpoint formats refused and migrated."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import DEMO_DATA, TINY_MEGNET
from matgl.models import MEGNet
from matgl.utils.training import ModelLightningModule
from safetensors.torch import load_file, save_file

from matgl_hybrid import inference
from matgl_hybrid.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    migrate_checkpoint,
    save_checkpoint,
    save_model,
    sha256_file,
)
from matgl_hybrid.data import load_records
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.layers import DescriptorEncoder, DescriptorScaler
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.models.backbones import SkippedHead


@pytest.fixture(scope="module")
def structures():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_records(DEMO_DATA / "de_jong_2015_elasticity.json.gz", limit=12).structures


def _model(structures, seed: int = 0) -> HybridModel:
    frame = featurize(structures, "lattice", progress=False)
    torch.manual_seed(seed)
    return HybridModel(
        element_types=sorted({e.symbol for s in structures for e in s.composition.elements}),
        cutoff=5.0,
        backbone_kwargs=TINY_MEGNET,
        descriptor_set="lattice",
        descriptor_version=get_descriptor_set("lattice").version,
        descriptor_transform=DescriptorTransform().fit(frame).to_dict(),
        descriptor_dim=4,
        head_hidden=(4,),
    ).eval()


def test_the_hybrid_backbone_has_no_matgl_head_and_trains_every_weight(structures):
    model = _model(structures).train()
    plain = MEGNet(element_types=model.element_types, cutoff=5.0, **TINY_MEGNET)
    head = sum(p.numel() for name in ("node_s2s", "edge_s2s", "output_proj") for p in getattr(plain, name).parameters())
    assert head > 0
    assert all(isinstance(getattr(model.backbone, n), SkippedHead) for n in ("node_s2s", "edge_s2s", "output_proj"))
    assert sum(p.numel() for p in model.backbone.parameters()) == sum(p.numel() for p in plain.parameters()) - head
    raw = featurize(structures, "lattice", progress=False).to_numpy()
    dataset = build_dataset(structures, model.element_types, 5.0, [str(i) for i in range(12)], raw)
    g, lattice, state_attr, _ = next(iter(make_loader(dataset, 12)))
    ModelLightningModule(model=model)(g=g, lat=lattice, state_attr=state_attr).sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused  # DDP needs no find_unused_parameters


def test_the_model_standardizes_raw_descriptors_as_the_transform_does():
    frame = np.array([[1.0, np.nan, 5.0], [2.0, 4.0, np.inf], [3.0, 8.0, 5.0]])
    transform = DescriptorTransform().fit(frame[:2])
    scaled = DescriptorScaler(transform.to_dict())(torch.as_tensor(frame))
    assert scaled.dtype == torch.float32
    np.testing.assert_array_equal(scaled.numpy(), transform.transform(frame).astype(np.float32))


def test_a_descriptor_constant_in_training_cannot_blow_up_the_descriptor_branch():
    """A column that is 0 in every training row leaves BatchNorm a running variance of 0, so at prediction a 14
    there was divided by sqrt(eps) (x316) and moved the output by orders of magnitude more than the training rows
    span. Clipped or not (a state without bounds, as every model before 0.5 saved), the branch now gives the same
    output for any value of that column."""
    torch.manual_seed(0)
    train = np.column_stack([np.zeros(64), np.random.default_rng(0).normal(size=64)])
    unseen = np.array([[0.0, 0.5], [14.0, 0.5]])
    outputs = {}
    for clip in (True, False):
        scaler = DescriptorScaler(DescriptorTransform(clip=clip).fit(train).to_dict())
        encoder = DescriptorEncoder(2, 4, "softplus")
        encoder.train()
        for batch in np.split(train, 4) * 50:  # 200 steps: the running statistics forget their initial values
            encoder(scaler(torch.as_tensor(batch)))
        encoder.eval()
        with torch.no_grad():
            outputs[clip] = encoder(scaler(torch.as_tensor(unseen))).numpy()
            spread = np.ptp(encoder(scaler(torch.as_tensor(train))).numpy())
    assert spread > 0
    np.testing.assert_array_equal(outputs[True][0], outputs[True][1])
    np.testing.assert_array_equal(outputs[False][0], outputs[False][1])


def test_an_ensemble_featurizes_once_and_agrees_with_its_members(structures, monkeypatch):
    members = [_model(structures, seed) for seed in (1, 2, 3)]
    ensemble = HybridEnsemble.from_models(members)
    expected = np.stack([m.predict(structures) for m in members])
    calls = []
    original = inference.featurize
    monkeypatch.setattr(inference, "featurize", lambda *a, **k: calls.append(1) or original(*a, **k))
    mean, std = ensemble.predict(structures, return_std=True)
    assert len(calls) == 1
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, expected.std(axis=0), rtol=1e-5, atol=1e-7)
    assert ensemble.predict_structure(structures[0]).item() == pytest.approx(mean[0], rel=1e-6)


def test_members_of_different_descriptor_sets_are_refused(structures):
    first = _model(structures)
    other = HybridModel(**{**first._init_args, "descriptor_set": None, "descriptor_transform": None})
    with pytest.raises(ValueError, match="members differ in descriptor_set"):
        HybridEnsemble.from_models([first, other])


def _as_format_2(folder, extra: dict[str, torch.Tensor]) -> None:
    """Turn a saved checkpoint into one of format 2, whose weights also held ``extra``."""
    weights = {**load_file(str(folder / "weights.safetensors")), **extra}
    save_file(weights, str(folder / "weights.safetensors"))
    header = json.loads((folder / "model.json").read_text())
    header["metadata"]["format_version"] = 2
    (folder / "model.json").write_text(json.dumps(header))
    names = sorted(p.name for p in folder.iterdir() if p.name != "SHA256SUMS")
    (folder / "SHA256SUMS").write_text("".join(f"{sha256_file(folder / n)}  {n}\n" for n in names))


def test_an_old_checkpoint_is_refused_with_the_command_that_migrates_it(structures, tmp_path):
    model = _model(structures)
    before = model.predict(structures)
    figure = b"\x89PNG\r\n\x1a\n\x00\xff not UTF-8"
    save_checkpoint(model, tmp_path / "old", {"training": {"note": "kept"}}, texts={"model_card.md": "# card\n"},
                    figures={"training.png": figure})  # fmt: skip
    plain = MEGNet(element_types=model.element_types, cutoff=5.0, **TINY_MEGNET)
    head = {f"backbone.{k}": v for k, v in plain.state_dict().items() if k.startswith(("node_s2s", "output_proj"))}
    _as_format_2(tmp_path / "old", head)
    with pytest.raises(CheckpointError, match=r"checkpoint format 2.*matgl-hybrid migrate"):
        load_checkpoint(tmp_path / "old")
    migrate_checkpoint(tmp_path / "old", tmp_path / "new")
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "new").predict(structures), before)
    assert json.loads((tmp_path / "new" / "training.json").read_text()) == {"note": "kept"}
    assert (tmp_path / "new" / "model_card.md").read_text() == "# card\n"
    assert (tmp_path / "new" / "training.png").read_bytes() == figure  # a figure is carried as it is
    assert (tmp_path / "old" / "model.json").exists()  # the old folder is left as it was

    save_checkpoint(model, tmp_path / "foreign")
    _as_format_2(tmp_path / "foreign", {"head.extra.weight": torch.zeros(2)})  # a weight the model never had
    with pytest.raises(CheckpointError, match="does not fit"):
        migrate_checkpoint(tmp_path / "foreign", tmp_path / "refused")


def test_prediction_path_validates_before_any_work(structures):
    model = _model(structures)
    with pytest.raises(ValueError, match="3 ids for 2 structures"):
        inference.predict(model, structures[:2], ids=["a", "b", "c"])
    graph = inference.embed(model, structures[:3])
    fused = inference.embed(model, structures[:3], tap="fused")
    assert graph.shape[0] == fused.shape[0] == 3
    with torch.no_grad():  # the prediction is the head on the fused vector, in target units
        by_hand = model.output(model.head(torch.as_tensor(fused, dtype=torch.float32))).squeeze(-1).numpy()
    np.testing.assert_allclose(inference.predict(model, structures[:3]), by_hand, rtol=1e-5, atol=1e-6)


def test_predicting_leaves_the_model_in_the_mode_it_was_in(structures):
    """The prediction wraps the model in a new module (born in train mode): restoring that wrapper's mode set a
    model in eval mode to train mode, so that its next forward pass updated its BatchNorm statistics."""
    model = _model(structures).eval()
    model.predict(structures[:2])
    assert not any(m.training for m in model.modules())
    model.train()
    model.backbone.eval()  # modules in different modes, as when a backbone is frozen: each kept as found
    modes = {name: m.training for name, m in model.named_modules()}
    model.predict(structures[:2])
    inference.embed(model, structures[:2])
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert modes[""]
    assert not modes["backbone"]


def test_the_old_names_of_the_checkpoint_functions_still_work_with_a_warning(structures, tmp_path):
    model = _model(structures)
    with pytest.warns(DeprecationWarning, match="save_checkpoint"):
        save_model(model, tmp_path / "m")
    with pytest.warns(DeprecationWarning, match="load_checkpoint"):
        loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(structures[:2]), model.predict(structures[:2]))


def test_migrating_into_the_old_folder_is_refused(structures, tmp_path):
    save_checkpoint(_model(structures), tmp_path / "old")
    with pytest.raises(CheckpointError, match="migrate into another folder"):
        migrate_checkpoint(tmp_path / "old", tmp_path / "old")


def test_a_file_of_several_targets_gets_a_column_per_target_and_an_encoder_is_refused(structures, tmp_path):
    from pymatgen.core import Structure

    source = tmp_path / "s.json"
    source.write_text(json.dumps([{"id": str(i), "structure": s.as_dict()} for i, s in enumerate(structures[:3])]))
    two = HybridModel(element_types=_model(structures).element_types, cutoff=5.0, backbone_kwargs=TINY_MEGNET,
                      head_hidden=(4,), n_targets=2, target_names=("K", "G")).eval()  # fmt: skip
    frame = inference.predict_file(two, source, tmp_path / "p.csv").frame
    assert list(frame.columns) == ["id", "prediction_K", "prediction_G"]
    np.testing.assert_allclose(frame[["prediction_K", "prediction_G"]].to_numpy(),
                               inference.predict(two, structures[:3]), rtol=1e-6)  # fmt: skip
    encoder = MEGNet(element_types=two.element_types, cutoff=5.0, **TINY_MEGNET)  # what `pretrain` saves
    with pytest.raises(ValueError, match=r"without targets \(a `pretrain` encoder\?\) predicts no property"):
        inference.predict(encoder, [Structure.from_dict(structures[0].as_dict())])


def test_an_unknown_element_suggests_skip_invalid_only_where_an_entry_can_be_skipped(structures, tmp_path):
    """``embed`` (probe, explain) and ``pretrain`` have no --skip-invalid: their error must not send users to it."""
    from pymatgen.core import Lattice, Structure

    model = _model(structures)
    alien = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"element\(s\) Po unknown to the model") as raised:
        inference.embed(model, [alien])
    assert "skip" not in str(raised.value)
    source = tmp_path / "s.json"
    source.write_text(json.dumps([{"id": "alien", "structure": alien.as_dict()}]))
    with pytest.raises(ValueError, match=r"'alien': element\(s\) Po unknown .*; --skip-invalid / skip_invalid=True"):
        inference.predict_file(model, source, tmp_path / "p.csv")


def test_predictions_for_elements_no_training_structure_held_are_warned_about():
    """A model built with every element embedded (``--elements all``: the shipped models, Matbench runs) predicted
    a Gd compound from an embedding that never trained, silently; the docs said such elements were refused."""
    from pymatgen.core import Lattice, Structure

    from matgl_hybrid.models import HybridEnsemble, HybridModel

    model = HybridModel(backbone_kwargs={"dim_node_embedding": 8, "dim_edge_embedding": 8, "dim_state_embedding": 2,
                                         "nblocks": 1, "hidden_layer_sizes_input": (8, 8),
                                         "hidden_layer_sizes_conv": (8, 8), "hidden_layer_sizes_output": (8, 4)},
                        head_hidden=(4,), trained_elements=("Na", "Cl")).eval()  # fmt: skip
    nacl = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    gdn = Structure(Lattice.cubic(4.8), ["Gd", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict([nacl])
    with pytest.warns(UserWarning, match=r"1 of 2 structures \('gdn'\) hold Gd, N, in none of the model's training"):
        model.predict([nacl, gdn], ids=["nacl", "gdn"])
    other = HybridModel(**{**model._init_args, "trained_elements": ("Gd", "N")})  # members trained on other parts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HybridEnsemble.from_models([model, other]).predict([nacl, gdn])
