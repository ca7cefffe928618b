"""HybridModel composed when it is built: one forward formula, NativeModel its own class, weights' names kept, the
descriptor set resolved at prediction rather than when a model is built."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap

import matgl
import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_hybrid.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from matgl_hybrid.errors import UnknownNameError
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.layers import GraphOnly
from matgl_hybrid.models import HybridModel, NativeModel
from matgl_hybrid.models.negnn import encoder_spec
from matgl_hybrid.ssl import build_encoder

MEGNET = {
    "dim_node_embedding": 8,
    "dim_edge_embedding": 8,
    "hidden_layer_sizes_input": (8, 8),
    "hidden_layer_sizes_conv": (8, 8, 8),
    "nblocks": 1,
}
ELEMENTS = ("Cl", "Na")
#: A fitted DescriptorTransform's state for two descriptors (what a model with descriptors is built with).
TRANSFORM = {"feature_names": ["a", "b"], "median": [0.0, 1.0], "mean": [0.0, 1.0], "scale": [1.0, 2.0]}


def _structures() -> list[Structure]:
    return [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (2.8, 3.0, 3.2)]


def _model(**kwargs) -> HybridModel:
    torch.manual_seed(0)
    args = {"element_types": ELEMENTS, "cutoff": 4.0, "backbone_kwargs": MEGNET, "head_hidden": (4,)}
    return HybridModel(**{**args, **kwargs}).eval()


def _batch(descriptors: np.ndarray | None = None):
    structures = _structures()
    dataset = build_dataset(structures, ELEMENTS, 4.0, [str(i) for i in range(len(structures))], descriptors)
    g, lattice, state_attr, _ = next(iter(make_loader(dataset, len(structures))))
    g.pbc_offshift = torch.matmul(g.pbc_offset, lattice[0])
    g.pos = g.frac_coords @ lattice[0]
    return g, state_attr


def _branches(method) -> list[str]:
    """The conditional statements and expressions in ``method``'s body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    return [type(node).__name__ for node in ast.walk(tree) if isinstance(node, ast.If | ast.IfExp | ast.Match)]


@pytest.mark.parametrize("cls", [HybridModel, NativeModel])
def test_forward_is_one_formula_without_a_branch_on_the_model_kind(cls):
    assert _branches(cls.forward) == []


def test_the_check_finds_a_branch():
    def forward(self, g):
        return self.a(g) if self.native else self.b(g)

    assert _branches(forward) == ["IfExp"]


def test_each_kind_keeps_the_names_of_its_weights():
    fused = _model(descriptor_set="lattice", descriptor_version="v", descriptor_transform=TRANSFORM, fusion="gate")
    assert {k.split(".")[0] for k in fused.state_dict()} == {"backbone", "encoder", "fusion", "head"}
    plain = _model(readout="set2set")
    assert isinstance(plain.fusion, GraphOnly)
    assert {k.split(".")[0] for k in plain.state_dict()} == {"backbone", "readout", "head"}
    torch.manual_seed(0)
    encoder = build_encoder("megnet", ELEMENTS, 4.0, MEGNET)
    negnn = _model(node_embeddings=encoder_spec(encoder, [0]))
    keys = set(negnn.state_dict())
    assert {k.split(".")[0] for k in keys} == {"backbone", "ne_encoder", "head"}
    assert {k for k in keys if k.startswith("backbone.embedding.layer_node_embedding.")} == {
        f"backbone.embedding.layer_node_embedding.{k}" for k in ("types.weight", "project.0.weight", "project.0.bias")
    }
    assert negnn.node_input is negnn.ne_encoder
    g, state_attr = _batch()
    types = g.node_type.clone()
    assert negnn(g, state_attr).shape == (3,)
    assert torch.equal(g.node_type, types)  # the NEGNN input was swapped in for the backbone only


def test_a_model_without_descriptors_ignores_those_of_the_batch_and_a_fused_one_needs_them():
    plain = _model()
    assert torch.equal(plain(*_batch(np.ones((3, 2)))), plain(*_batch()))
    fused = _model(descriptor_set="lattice", descriptor_version="v", descriptor_transform=TRANSFORM)
    assert fused(*_batch(np.ones((3, 2)))).shape == (3,)
    with pytest.raises(ValueError, match="no 'descriptor' attribute"):
        fused(*_batch())


def test_native_readout_is_a_native_model_and_checkpoints_saved_as_hybrid_model_load(tmp_path):
    model = _model(readout="native", target_mean=[10.0], target_std=[2.0])
    assert type(model) is NativeModel
    assert isinstance(model, HybridModel)
    assert model.native
    assert model.head is None  # the backbone's own
    expected = model.predict(_structures())
    save_checkpoint(model, tmp_path / "native")
    header = json.loads((tmp_path / "native" / "model.json").read_text())
    assert (header["@class"], header["@module"]) == ("NativeModel", "matgl_hybrid.models.native")
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "native").predict(_structures()), expected)
    # readout given by position (HybridModel's fifth argument, NativeModel's is n_targets): the same model
    positional = HybridModel("megnet", ELEMENTS, 4.0, MEGNET, "native", target_names=("K",))
    assert type(positional) is NativeModel
    assert (positional.cutoff, positional.target_names) == (4.0, ("K",))

    old = tmp_path / "saved_as_hybrid"  # how HybridModel(readout="native") was saved before NativeModel
    (tmp_path / "native").rename(old)
    header.update({"@class": "HybridModel", "@module": "matgl_hybrid.models.hybrid"})
    (old / "model.json").write_text(json.dumps(header))
    manifest = "".join(f"{sha256_file(p)}  {p.name}\n" for p in sorted(old.iterdir()) if p.name != "SHA256SUMS")
    (old / "SHA256SUMS").write_text(manifest)
    for load in (load_checkpoint, matgl.load_model):
        loaded = load(old)
        assert type(loaded) is NativeModel
        np.testing.assert_array_equal(loaded.predict(_structures()), expected)


def test_a_native_model_refuses_descriptors_and_another_readout():
    with pytest.raises(ValueError, match="cannot fuse descriptors"):
        _model(readout="native", descriptor_set="lattice", descriptor_transform=TRANSFORM)
    with pytest.raises(ValueError, match=r"\('native'\), not 'mean'"):
        NativeModel(element_types=ELEMENTS, backbone_kwargs=MEGNET, readout="mean")


def test_the_descriptor_set_is_resolved_at_prediction_not_when_a_model_is_built_or_loaded(tmp_path):
    unknown = _model(descriptor_set="no_such_set", descriptor_version="v1", descriptor_transform=TRANSFORM)
    save_checkpoint(unknown, tmp_path / "unknown")
    loaded = load_checkpoint(tmp_path / "unknown")
    assert loaded.descriptor_version == "v1"
    with pytest.raises(UnknownNameError, match="no_such_set"):
        loaded.predict(_structures())
    stale = _model(descriptor_set="lattice", descriptor_version="0000", descriptor_transform=TRANSFORM)
    save_checkpoint(stale, tmp_path / "stale")
    with pytest.raises(ValueError, match="descriptor set 'lattice' version 0000"):
        load_checkpoint(tmp_path / "stale").predict(_structures())


def test_a_native_models_graph_vector_is_one_row_per_structure_or_refused_when_its_head_has_none():
    from matgl_hybrid.inference import embed

    tensornet = {"units": 8, "nblocks": 1, "num_rbf": 8}
    structures = [Structure(Lattice.cubic(3.0), ["Na", "Cl", "Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5],
                  [0.5, 0, 0], [0, 0.5, 0]])] * 2 + _structures()  # fmt: skip
    torch.manual_seed(0)
    model = NativeModel("tensornet", ELEMENTS, 4.0, tensornet).eval()
    vectors = embed(model, structures)
    assert vectors.shape == (5, 8)  # per structure, not per atom (TensorNet keeps per-atom features)
    np.testing.assert_allclose(vectors[0], vectors[1], rtol=1e-6)
    extensive = NativeModel("tensornet", ELEMENTS, 4.0, {**tensornet, "is_intensive": False}).eval()
    with pytest.raises(ValueError, match="no per-structure 'graph' vector"):
        embed(extensive, structures)
    with pytest.raises(ValueError, match="give task_type='classification' to the model"):
        NativeModel(element_types=ELEMENTS, backbone_kwargs={**MEGNET, "is_classification": True})
