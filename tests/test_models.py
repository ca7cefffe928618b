"""Fusions and HybridModel: shapes, gradients, save/load through matgl.load_model, training, bad input."""

from __future__ import annotations

import json
import shutil
import warnings

import matgl
import numpy as np
import pytest
import torch
from matgl.utils.training import ModelLightningModule
from pymatgen.core import Lattice, Structure
from sklearn.metrics import roc_auc_score

from matgl_hybrid.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from matgl_hybrid.data import InvalidStructureError, load_records
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.graphs import build_dataset, has_edges, make_loader
from matgl_hybrid.inference import embed
from matgl_hybrid.layers import FUSIONS, DescriptorEncoder, GraphOnly, make_fusion
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.training import TrainSpec, fit

# Small backbones so that the tests stay fast on two cores.
SMALL = {
    "megnet": {
        "dim_node_embedding": 8,
        "dim_edge_embedding": 16,
        "hidden_layer_sizes_input": (16, 8),
        "hidden_layer_sizes_conv": (16, 16, 8),
        "nblocks": 2,
    },
    "m3gnet": {"dim_node_embedding": 16, "dim_edge_embedding": 16, "units": 16, "nblocks": 2},
    "tensornet": {"units": 16, "nblocks": 1, "num_rbf": 8},
}


@pytest.fixture(scope="module")
def heat_capacity(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_records(shared_data / "alexandria_heat_capacity.json.gz", "heat_capacity", limit=200)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_fusion_shapes_and_gradient_reaches_descriptor_branch(name):
    torch.manual_seed(0)
    graph = torch.randn(4, 10, requires_grad=True)
    encoder = DescriptorEncoder(7, 5)
    fusion = make_fusion(name, 10, 5)
    descriptors = torch.randn(4, 7)
    out = fusion(graph, encoder(descriptors))
    assert out.shape == (4, fusion.out_dim)
    (out**2).sum().backward()
    linear = encoder.net[1]
    assert linear.weight.grad is not None
    assert linear.weight.grad.abs().sum() > 0
    assert graph.grad.abs().sum() > 0


def _tiny_model(structures, backbone, descriptor_set="lattice", fusion="concat", readout="extensive"):
    args = {}
    if descriptor_set is not None:
        frame = featurize(structures, descriptor_set, progress=False)
        args = {
            "descriptor_set": descriptor_set,
            "descriptor_version": get_descriptor_set(descriptor_set).version,
            "descriptor_transform": DescriptorTransform().fit(frame).to_dict(),
            "descriptor_dim": 8,
            "fusion": fusion,
        }
    elements = sorted({str(el) for s in structures for el in s.composition.elements})
    torch.manual_seed(0)
    return HybridModel(
        backbone=backbone,
        element_types=elements,
        cutoff=4.0,
        backbone_kwargs=SMALL[backbone],
        readout=readout,
        head_hidden=(8,),
        target_mean=[100.0],
        target_std=[50.0],
        **args,
    ).eval()


@pytest.mark.parametrize("backbone", sorted(SMALL))
def test_save_then_matgl_load_model_gives_identical_predictions(backbone, heat_capacity, tmp_path):
    structures = heat_capacity.structures[:12]
    model = _tiny_model(structures, backbone)
    before = model.predict(structures, cache_dir=None)
    assert before.shape == (12,)
    assert np.isfinite(before).all()
    save_checkpoint(model, tmp_path / "model")
    loaded = matgl.load_model(tmp_path / "model")
    assert type(loaded) is HybridModel
    np.testing.assert_array_equal(loaded.predict(structures, cache_dir=None), before)
    assert loaded.predict_structure(structures[0], cache_dir=None).item() == pytest.approx(before[0])


def test_gradient_reaches_descriptors_through_the_whole_model(heat_capacity):
    structures = heat_capacity.structures[:6]
    model = _tiny_model(structures, "megnet", fusion="film").train()
    frame = featurize(structures, "lattice", progress=False)
    dataset = build_dataset(structures, model.element_types, 4.0, [str(i) for i in range(6)], frame.to_numpy())
    g, lattice, state_attr, _ = next(iter(make_loader(dataset, 6)))
    out = ModelLightningModule(model=model)(g=g, lat=lattice, state_attr=state_attr)  # MatGL attaches positions
    assert out.shape == (6,)
    out.sum().backward()
    assert model.encoder.net[1].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_without_descriptors_it_is_the_plain_backbone_with_a_readout(heat_capacity):
    model = _tiny_model(heat_capacity.structures[:4], "megnet", descriptor_set=None, readout="mean")
    assert isinstance(model.fusion, GraphOnly)
    assert not any(k.startswith(("encoder.", "fusion.")) for k in model.state_dict())
    assert np.isfinite(model.predict(heat_capacity.structures[:4], cache_dir=None)).all()


@pytest.mark.slow
def test_training_on_200_real_structures_beats_the_mean_predictor(heat_capacity, tmp_path):
    spec = TrainSpec(
        backbone="megnet",
        readout="extensive",
        descriptor_set="gong28",
        max_epochs=15,
        lr=3e-3,
        progress=False,
        patience=15,
        n_jobs=2,  # the 200 structures' gong28 on both cores (values as serial)
    )
    result = fit(heat_capacity, spec=spec, cache_dir=tmp_path)
    val = heat_capacity.subset([heat_capacity.ids.index(i) for i in result.val_ids])
    train = heat_capacity.subset([heat_capacity.ids.index(i) for i in result.train_ids])
    mean_predictor = np.abs(val.targets - train.targets.mean()).mean()
    predicted = result.model.predict(val.structures, cache_dir=tmp_path)
    mae = np.abs(predicted - val.targets).mean()
    assert mae == pytest.approx(result.best_val_mae, rel=1e-3)  # the returned model is the best one
    assert mae < 0.25 * mean_predictor, (mae, mean_predictor)


def test_unknown_element_and_isolated_atom_are_refused(heat_capacity):
    model = _tiny_model(heat_capacity.structures[:4], "megnet", descriptor_set=None)
    unknown = Structure(Lattice.cubic(3.0), ["Og"], [[0, 0, 0]])
    with pytest.raises(InvalidStructureError, match="Og"):
        model.predict([unknown], cache_dir=None, ids=["og-1"])
    element = model.element_types[0]
    lonely = Structure(Lattice.cubic(12.0), [element, element], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(InvalidStructureError, match="no atom has a neighbour within the cutoff"):
        model.predict([lonely], cache_dir=None, ids=["far-apart"])
    assert not has_edges(lonely, 5.0)
    assert has_edges(lonely, 11.0)  # 10.4 Å apart


def test_nan_descriptors_are_imputed_by_the_saved_transform():
    # matminer has no atomic radius for Xe: the packing fraction of XeF2 is NaN, the transform imputes it.
    xef2 = Structure(Lattice.tetragonal(4.3, 7.0), ["Xe", "F", "F"], [[0, 0, 0], [0, 0, 0.28], [0, 0, 0.72]])
    naf = [Structure(Lattice.cubic(a), ["Na", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (4.2, 4.6, 6.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transform = DescriptorTransform().fit(featurize(naf, "gong28", progress=False))
        model = HybridModel(
            backbone="megnet",
            element_types=("F", "Na", "Xe"),
            cutoff=4.0,
            backbone_kwargs=SMALL["megnet"],
            descriptor_set="gong28",
            descriptor_version=get_descriptor_set("gong28").version,
            descriptor_transform=transform.to_dict(),
            descriptor_dim=4,
            head_hidden=(4,),
        ).eval()
        prediction = model.predict([xef2], cache_dir=None)
        raw = featurize([xef2], "gong28", progress=False).to_numpy(dtype=float)
        graph = torch.as_tensor(embed(model, [xef2]), dtype=torch.float32)
    missing = np.isnan(raw[0])
    assert missing.any()  # the packing fraction
    assert not np.allclose(transform.median_[missing], transform.mean_[missing])  # median, not mean, is checked
    filled = np.where(missing, transform.median_, raw)  # the training median in its place
    with torch.no_grad():
        by_hand = model.predict_from_graph(graph, torch.as_tensor(filled, dtype=torch.float32)).numpy()
    assert np.isfinite(prediction).all()
    np.testing.assert_allclose(prediction, by_hand, rtol=1e-5)


def test_incompatible_checkpoints_are_refused(heat_capacity, tmp_path):
    structures = heat_capacity.structures[:4]
    model = _tiny_model(structures, "megnet")
    stale = HybridModel(**{**model._init_args, "descriptor_version": "0000"}).eval()
    with pytest.raises(ValueError, match="descriptor set 'lattice' version 0000"):
        stale.predict(structures, cache_dir=None)
    save_checkpoint(model, tmp_path / "m")
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    header["metadata"]["format_version"] = 99
    (tmp_path / "m" / "model.json").write_text(json.dumps(header))
    manifest = "".join(
        f"{sha256_file(p)}  {p.name}\n" for p in sorted((tmp_path / "m").iterdir()) if p.name != "SHA256SUMS"
    )
    (tmp_path / "m" / "SHA256SUMS").write_text(manifest)  # a genuine checkpoint from a newer version
    with pytest.raises(CheckpointError, match="upgrade matgl-hybrid"):
        load_checkpoint(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not a saved model"):
        load_checkpoint(tmp_path)


def test_ensemble_round_trip_and_spread(heat_capacity, tmp_path):
    structures = heat_capacity.structures[:5]
    args = _tiny_model(structures, "megnet")._init_args
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(HybridModel(**args).eval())
    ensemble = HybridEnsemble.from_models(members)
    mean, std = ensemble.predict(structures, return_std=True, cache_dir=None)
    expected = np.stack([m.predict(structures, cache_dir=None) for m in members])
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-6)
    assert (std > 0).all()
    save_checkpoint(ensemble, tmp_path / "ens")
    loaded = matgl.load_model(tmp_path / "ens")
    assert type(loaded) is HybridEnsemble
    np.testing.assert_array_equal(loaded.predict(structures, cache_dir=None), mean)
    header = json.loads((tmp_path / "ens" / "model.json").read_text())["metadata"]
    assert (header["target_names"], header["target_units"]) == (list(members[0].target_names), members[0].target_units)
    # one signature for a model and an ensemble: positional batch size, keyword-only return_std (zeros for one model)
    np.testing.assert_array_equal(ensemble.predict(structures, 2, None), mean)
    single, spread = members[0].predict(structures, cache_dir=None, return_std=True)
    np.testing.assert_allclose(single, expected[0], rtol=1e-6)
    assert (spread == 0).all()
    # members that predict other targets or units cannot be averaged into one column
    with pytest.raises(ValueError, match="ensemble members differ in target_units"):
        HybridEnsemble([args, {**args, "target_units": "meV"}])


@pytest.mark.slow
def test_training_resumes_from_its_last_checkpoint(heat_capacity, tmp_path):
    spec = TrainSpec(max_epochs=2, progress=False, backbone_kwargs=SMALL["megnet"], descriptor_set="lattice")
    data = heat_capacity.subset(range(40))
    first = fit(data, spec=spec, cache_dir=None, checkpoint_dir=tmp_path)
    assert (tmp_path / "last.ckpt").exists()
    assert [h["epoch"] for h in first.history] == [0, 1]
    spec.max_epochs = 4
    resumed = fit(data, spec=spec, cache_dir=None, checkpoint_dir=tmp_path)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]  # epochs 0-1 are not redone, nor forgotten
    assert resumed.history[:2] == first.history
    assert resumed.best_val_mae <= first.best_val_mae  # the best weights survive the restart


def test_native_readout_is_matgls_own_megnet(heat_capacity, tmp_path):
    structures = heat_capacity.structures[:6]
    model = _tiny_model(structures, "megnet", descriptor_set=None, readout="native")
    assert model.head is None
    prediction = model.predict(structures, cache_dir=None)
    assert np.isfinite(prediction).all()
    save_checkpoint(model, tmp_path / "native")
    np.testing.assert_array_equal(matgl.load_model(tmp_path / "native").predict(structures, cache_dir=None), prediction)
    with pytest.raises(ValueError, match="cannot fuse descriptors"):
        _tiny_model(structures, "megnet", readout="native")


@pytest.mark.slow
def test_classification_gives_probabilities(heat_capacity):
    data = heat_capacity.subset(range(40))
    natoms = np.array([len(s) for s in data.structures])
    data.targets = (natoms > np.median(natoms)).astype(float)  # learnable from the lattice set's natoms
    spec = TrainSpec(
        max_epochs=30,
        patience=30,
        lr=1e-2,
        progress=False,
        backbone_kwargs=SMALL["megnet"],
        descriptor_set="lattice",
        task_type="classification",
    )
    result = fit(data, spec=spec, cache_dir=None)
    model = result.model
    # the epoch kept is the one of the lowest validation log loss (proper), its MAE the MAE logged at that epoch
    losses = {row["epoch"]: row["val_Total_Loss"] for row in result.history}
    assert result.best_epoch == min(losses, key=losses.get)
    assert result.best_val_mae == next(r["val_MAE"] for r in result.history if r["epoch"] == result.best_epoch)
    probabilities = model.predict(data.structures, cache_dir=None)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()  # a confident float32 sigmoid reaches 1.0
    assert roc_auc_score(data.targets, probabilities) > 0.9  # it learned the label, not only a sigmoid's range
    data.targets[0] = 0.5
    with pytest.raises(ValueError, match="must be 0 or 1"):
        fit(data, spec=spec, cache_dir=None)


def test_checkpoint_has_safe_files_and_refuses_any_flipped_byte(heat_capacity, tmp_path):
    structures = heat_capacity.structures[:4]
    model = _tiny_model(structures, "megnet")
    save_checkpoint(model, tmp_path / "m", records={"training": {"note": "x"}}, texts={"model_card.md": "# card\n"})
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert {
        "model.json",
        "weights.safetensors",
        "descriptor_transform.json",
        "target_normalization.json",
        "SHA256SUMS",
        "model_card.md",
        "training.json",
    } <= set(names)
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    assert "descriptor_transform" not in header["kwargs"]  # stored once, in its own file
    for marker in ("model.pt", "state.pt"):  # the weights are stored once, in weights.safetensors
        assert (tmp_path / "m" / marker).stat().st_size == 0
    assert header["metadata"]["descriptor_set"] == "lattice"
    expected = model.predict(structures, cache_dir=None)
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "m").predict(structures, cache_dir=None), expected)
    for name in names:
        if name == "SHA256SUMS":
            continue
        copy = tmp_path / f"flip_{name}"
        shutil.copytree(tmp_path / "m", copy)
        data = bytearray((copy / name).read_bytes())
        if data:
            data[len(data) // 2] ^= 0x01
        else:  # MatGL's empty markers (model.pt, state.pt): a byte added is a change too
            data = bytearray(b"\x00")
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match=name.replace(".", "\\.")):
            load_checkpoint(copy)


def test_an_m3gnet_hybrid_with_a_state_is_refused():
    """The hybrid reads M3GNet's node features only: with include_state the last block's state network never got a
    gradient (and DDP on two devices stopped at its second step on the unused weights)."""
    from matgl_hybrid.models import HybridModel

    with pytest.raises(ValueError, match="include_state=True would leave the last block's state network untrained"):
        HybridModel(backbone="m3gnet", element_types=("Na", "Cl"), backbone_kwargs={"include_state": True})
    HybridModel(backbone="m3gnet", element_types=("Na", "Cl"), backbone_kwargs={"include_state": False})
