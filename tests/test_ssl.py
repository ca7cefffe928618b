"""Self-supervised pretraining: masking rate, labels, decreasing pretext losses, per-layer embedding shapes."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import DEMO_DATA, in_two_threads_meeting_after
from matgl.config import DEFAULT_ELEMENTS

from matgl_hybrid.data import load_records
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.ssl import (
    MASK_TOKEN,
    MaskedPretraining,
    PretextHeads,
    build_encoder,
    choose_atoms,
    distance_bins,
    material_embeddings,
    node_embeddings,
    periodic_labels,
)

SMALL = {
    "dim_node_embedding": 16,
    "dim_edge_embedding": 16,
    "hidden_layer_sizes_input": (32, 16),
    "hidden_layer_sizes_conv": (32, 32, 16),
    "nblocks": 2,
}


def _encoder():
    """A small MEGNet encoder of MatGL's default elements plus the mask token."""
    return build_encoder("megnet", DEFAULT_ELEMENTS, 5.0, SMALL)


@pytest.fixture(scope="module")
def structures():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_records(DEMO_DATA / "de_jong_2015_elasticity.json.gz", limit=48).structures


def test_masking_picks_fifteen_percent_of_atoms_and_hides_as_many_others():
    masked, hidden = choose_atoms(1000, 0.15, torch.Generator().manual_seed(0))
    assert len(masked) == len(hidden) == 150
    assert len(set(masked.tolist()) | set(hidden.tolist())) == 300  # disjoint, no repeats
    masked, hidden = choose_atoms(3, 0.15)
    assert len(masked) == 1  # at least one atom per batch
    assert len(hidden) == 1
    masked, hidden = choose_atoms(1, 0.15)
    assert len(masked) == 1
    assert len(hidden) == 0


@pytest.mark.parametrize("backbone", ["megnet", "m3gnet"])
def test_the_encoder_never_sees_the_bonds_whose_lengths_it_predicts(structures, backbone, monkeypatch):
    # Moving the hidden atoms changes the length of every bond whose bin is a label, and nothing the encoder is
    # given: its node features stay identical. (Before the fix, the encoder embedded those very bond lengths.)
    torch.manual_seed(0)
    kwargs = SMALL if backbone == "megnet" else {"dim_node_embedding": 16, "dim_edge_embedding": 16, "nblocks": 2}
    module = MaskedPretraining(build_encoder(backbone, DEFAULT_ELEMENTS, 5.0, kwargs), backbone).eval()
    elements = module.encoder.element_types
    dataset = build_dataset(structures[:6], elements, 5.0, [str(i) for i in range(6)])
    seen = []
    monkeypatch.setattr(module.heads, "losses", lambda node_feat, *args: seen.append((node_feat, args)) or {})

    def features(batch) -> torch.Tensor:
        module.losses(batch, torch.Generator().manual_seed(3))
        return seen[-1][0]

    batch = next(iter(make_loader(dataset, 6)))
    g = batch[0]
    before = {k: getattr(g, k).clone() for k in ("edge_index", "pbc_offset", "node_type", "frac_coords")}
    reference = features(batch)
    for key, value in before.items():  # the batch is left as it came
        assert torch.equal(getattr(g, key), value), key
    _, hidden = choose_atoms(g.num_nodes, module.mask_fraction, torch.Generator().manual_seed(3))
    hidden_bonds, lengths = seen[-1][1][2], seen[-1][1][3]
    assert len(lengths) > 0
    assert bool((torch.isin(hidden_bonds[0], hidden) | torch.isin(hidden_bonds[1], hidden)).all())

    moved = next(iter(make_loader(dataset, 6)))
    moved[0].frac_coords[hidden] += 0.03
    torch.testing.assert_close(features(moved), reference, rtol=0, atol=0)
    assert not torch.allclose(seen[-1][1][3], lengths)  # the labels did move
    other = next(i for i in range(g.num_nodes) if i not in set(hidden.tolist()))
    moved_other = next(iter(make_loader(dataset, 6)))
    moved_other[0].frac_coords[other, 0] += 0.03
    assert not torch.allclose(features(moved_other), reference)  # what the encoder sees does matter


def test_a_batch_with_no_hidden_bond_has_no_distance_loss():
    heads = PretextHeads(node_dim=4, n_bins=8)
    node_feat = torch.randn(3, 4, requires_grad=True)
    groups, periods = periodic_labels(("H", "O"))
    losses = heads.losses(
        node_feat, torch.tensor([0]), torch.tensor([1]), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), 5.0,
        groups, periods,
    )  # fmt: skip
    assert set(losses) == {"group", "period"}  # not a 0 averaged into the epoch's distance loss
    assert torch.isfinite(sum(losses.values()))


def test_periodic_labels_and_distance_bins():
    groups, periods = periodic_labels(("H", "Fe", "La", "Pu", MASK_TOKEN))
    assert groups.tolist() == [0, 7, 2, 2, -1]
    assert periods.tolist() == [0, 3, 5, 6, -1]
    bins = distance_bins(torch.tensor([0.0, 2.5, 4.99, 7.0]), cutoff=5.0, n_bins=40)
    assert bins.tolist() == [0, 20, 39, 39]


@pytest.mark.slow
def test_pretext_losses_decrease_on_real_structures(structures):
    torch.manual_seed(0)
    module = MaskedPretraining(_encoder(), lr=3e-3)
    elements = module.encoder.element_types
    dataset = build_dataset(structures[:24], elements, 5.0, [str(i) for i in range(24)])
    batch = next(iter(make_loader(dataset, 24)))
    optimizer = module.configure_optimizers()[0][0]

    def loss() -> dict:
        return module.losses(batch, torch.Generator().manual_seed(1))  # the same masked atoms each time

    with torch.no_grad():
        before = {k: float(v) for k, v in loss().items()}
    for _ in range(30):
        optimizer.zero_grad()
        loss()["total"].backward()
        optimizer.step()
    with torch.no_grad():
        after = {k: float(v) for k, v in loss().items()}
    assert after["total"] < 0.85 * before["total"], (before, after)
    assert after["group"] < before["group"]
    assert after["period"] < before["period"]
    assert after["distance"] < before["distance"]


def test_per_layer_embeddings_have_the_right_shapes(structures):
    torch.manual_seed(0)
    encoder = _encoder()
    per_atom = node_embeddings(encoder, structures[:5], layers=[0, 2])
    assert [a.shape for a in per_atom] == [(len(s), 16 + 16) for s in structures[:5]]
    summed = material_embeddings(encoder, structures[:5], layers=[0, 1, 2])
    assert summed.shape == (5, 16 * 3)
    mean = material_embeddings(encoder, structures[:5], layers=[1], pool="mean")
    np.testing.assert_allclose(mean[0], per_atom_mean(encoder, structures[0]), rtol=1e-5)
    with pytest.raises(ValueError, match="do not exist"):
        node_embeddings(encoder, structures[:2], layers=[5])


def per_atom_mean(encoder, structure):
    return node_embeddings(encoder, [structure], layers=[1])[0].mean(axis=0)


def test_cli_pretrain_saves_a_loadable_encoder(tmp_path):
    import matgl
    from conftest import write_small_records

    from matgl_hybrid.cli import main

    path, _ = write_small_records(DEMO_DATA, "de_jong_2015_elasticity.json.gz", 30, tmp_path)
    assert main(["pretrain", "--data", str(path), str(path), "--max-epochs", "2", "--out", str(tmp_path / "enc")]) == 0
    encoder = matgl.load_model(tmp_path / "enc")
    assert encoder.element_types[-1] == MASK_TOKEN
    assert material_embeddings(encoder, [s for s in load_records(path).structures[:3]], layers=[0, 1]).shape[0] == 3
    record = json.loads((tmp_path / "enc" / "pretraining.json").read_text())
    assert {k: record[k] for k in ("backbone", "cutoff", "batch_size", "seed")} == {
        "backbone": "megnet", "cutoff": 5.0, "batch_size": 32, "seed": 0}  # fmt: skip
    # the pretext losses on the validation structures, per epoch, recorded and drawn beside the encoder
    assert [row["epoch"] for row in record["history"]] == [0, 1]
    assert set(record["history"][0]) == {"epoch", "val_group", "val_period", "val_distance", "val_total"}
    assert all(np.isfinite(row["val_total"]) for row in record["history"])
    assert (tmp_path / "enc" / "pretraining.png").read_bytes()[:4] == b"\x89PNG"
    assert "  pretraining.png\n" in (tmp_path / "enc" / "SHA256SUMS").read_text()


def test_pretraining_that_could_learn_nothing_is_refused_before_it_runs(structures):
    from matgl_hybrid.models.negnn import encoder_spec
    from matgl_hybrid.ssl import pretrain

    with pytest.raises(ValueError, match="has no full batch"):  # 28 training structures, batches of 32, full only
        pretrain(structures[:30], task="contrastive", max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="needs batch_size >= 2"):
        pretrain(structures[:30], task="contrastive", batch_size=1, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="not 'tensornet-matpes-pbe'"):
        pretrain(structures[:30], backbone="tensornet-matpes-pbe", max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="needs a MEGNet encoder, this one is a M3GNet"):
        encoder_spec(build_encoder("m3gnet", ("Na", "Cl"), 5.0), [0])


def test_ssl_values_of_concurrent_threads_are_each_their_own_structures(structures, tmp_path, monkeypatch):
    """The shared encoder leaves a pass's per-atom features in its feature_dict: with two threads (Dask's threaded
    workers) both passing before either read, one pooled the other structure's atoms, and cached it for good."""
    from matgl_hybrid.checkpoint import save_checkpoint
    from matgl_hybrid.descriptors import get_descriptor_set
    from matgl_hybrid.descriptors.groups import StructureContext
    from matgl_hybrid.ssl import descriptors as ssl_descriptors

    torch.manual_seed(0)
    save_checkpoint(_encoder().eval(), tmp_path / "enc")
    group = get_descriptor_set(f"ssl:{tmp_path / 'enc'}:0,2").groups[0]
    first, second = sorted(structures[:8], key=len)[::7][:2]  # two sizes: another's atoms give other sums
    expected = [group.compute(StructureContext(s)) for s in (first, second)]
    folder = tmp_path / "enc"
    encoder = ssl_descriptors._encoder(str(folder.resolve()), ssl_descriptors._manifest_digest(folder))
    calls = [lambda s=s: group.compute(StructureContext(s)) for s in (first, second)]
    found = in_two_threads_meeting_after(monkeypatch, encoder, "forward", calls)
    for k in range(2):
        np.testing.assert_allclose(found[k], expected[k], rtol=1e-6)


def test_ssl_descriptor_set_from_a_saved_encoder(structures, tmp_path):
    from matgl_hybrid.checkpoint import save_checkpoint
    from matgl_hybrid.descriptors import featurize

    torch.manual_seed(0)
    encoder = _encoder().eval()
    save_checkpoint(encoder, tmp_path / "enc")
    spec = f"ssl:{tmp_path / 'enc'}:0,2"
    frame = featurize(structures[:4], spec, cache_dir=tmp_path / "cache", progress=False)
    assert frame.shape == (4, 32)
    expected = material_embeddings(encoder, structures[:4], layers=[0, 2])
    np.testing.assert_allclose(frame.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    again = featurize(structures[:4], f"lattice+{spec}", cache_dir=tmp_path / "cache", progress=False)
    assert again.shape == (4, 9 + 32)
    # another encoder saved in the same folder, in the same process: its values, not the first encoder's
    other = _encoder().eval()
    shutil.rmtree(tmp_path / "enc")
    save_checkpoint(other, tmp_path / "enc")
    replaced = featurize(structures[:4], spec, cache_dir=tmp_path / "cache2", progress=False)
    expected_other = material_embeddings(other, structures[:4], layers=[0, 2])
    np.testing.assert_allclose(replaced.to_numpy(), expected_other, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected_other, expected, atol=1e-3)
    with pytest.raises(KeyError, match="ssl:<encoder checkpoint>:<layers>"):
        featurize(structures[:1], "ssl:only-a-path", progress=False)
    # averaged over atoms, a cell and its supercell are one material; summed, the supercell counts twice
    cell = structures[0]
    pair = [cell, cell * (2, 1, 1)]
    mean = featurize(pair, f"{spec}:mean", progress=False).to_numpy()
    np.testing.assert_allclose(mean[0], mean[1], rtol=1e-5, atol=1e-6)
    summed = featurize(pair, f"{spec}:sum", progress=False).to_numpy()
    np.testing.assert_allclose(summed[1], 2 * summed[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_negnn_trains_saves_and_loads_with_its_frozen_encoder(structures, tmp_path):
    import matgl

    from matgl_hybrid.checkpoint import save_checkpoint
    from matgl_hybrid.data import from_structures
    from matgl_hybrid.training import TrainSpec, fit

    torch.manual_seed(0)
    encoder = _encoder().eval()
    save_checkpoint(encoder, tmp_path / "enc")
    data = from_structures(structures[:30], targets=np.linspace(0, 1, 30), target_name="y")
    megnet = {k: v for k, v in SMALL.items() if k != "nblocks"} | {"nblocks": 1}
    spec = TrainSpec(
        max_epochs=2,
        progress=False,
        descriptor_set=None,
        backbone_kwargs=megnet,
        node_embeddings=f"{tmp_path / 'enc'}:0,1",
    )
    model = fit(data, spec=spec, cache_dir=None).model
    assert model.ne_encoder.width == 32
    for name, value in encoder.state_dict().items():  # frozen: still the pretrained weights after training
        torch.testing.assert_close(model.ne_encoder.encoder.state_dict()[name], value)
    assert not any(p.requires_grad for p in model.ne_encoder.parameters())
    before = model.predict(structures[:5], cache_dir=None)
    save_checkpoint(model, tmp_path / "negnn")
    np.testing.assert_array_equal(matgl.load_model(tmp_path / "negnn").predict(structures[:5], cache_dir=None), before)


@pytest.mark.slow
def test_contrastive_views_and_nt_xent(structures):
    from matgl_hybrid.ssl.contrastive import (
        ContrastivePretraining,
        collate_pairs,
        displaced,
        nt_xent,
        paired_views,
    )

    s = structures[0]
    view = displaced(s, np.random.default_rng(0))
    assert view.lattice == s.lattice
    assert view.species == s.species
    shifts = np.linalg.norm(view.cart_coords - s.cart_coords, axis=1)
    assert 0 < shifts.mean() < 0.2
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    assert nt_xent(z, z) < nt_xent(z, torch.randn(8, 16))  # matching views score better than unrelated ones

    torch.manual_seed(0)
    module = ContrastivePretraining(_encoder(), lr=3e-3)
    small = [s for s in structures if len(s) <= 6][:8]
    views = paired_views(small, 5.0, module.encoder.element_types)
    first, second = collate_pairs([views[i] for i in range(8)])
    # the second view is the same atoms, moved (a supercell, as before, doubled the atoms and, mean-pooled, gave
    # exactly the first view's embedding: nothing to be invariant to)
    assert first[0].num_nodes == second[0].num_nodes
    moved = (first[0].frac_coords - second[0].frac_coords) @ first[1][0]
    assert 0.01 < float(moved.norm(dim=1).mean()) < 0.2
    optimizer = module.configure_optimizers()[0][0]

    def loss():
        pair = collate_pairs([views[i] for i in range(8)])  # fresh batches: the views are masked in place
        return module.losses(pair, torch.Generator().manual_seed(3))["total"]

    with torch.no_grad():
        before = float(loss())
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        assert float(loss()) < before


def test_the_corpus_keeps_other_materials_that_share_a_file_local_id(tmp_path):
    from pymatgen.core import Lattice, Structure

    from matgl_hybrid.ssl.corpus import pretraining_corpus

    def records(path, formulas):
        cells = {"NaCl": (["Na", "Cl"], 5.6), "KBr": (["K", "Br"], 6.6), "CsCl": (["Cs", "Cl"], 4.1)}
        rows = [{"id": str(i), "structure": Structure(Lattice.cubic(cells[f][1]), cells[f][0],
                                                      [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()}
                for i, f in enumerate(formulas)]  # fmt: skip
        path.write_text(json.dumps(rows))
        return path

    a, b = records(tmp_path / "a.json", ["NaCl"]), records(tmp_path / "b.json", ["KBr"])
    again = pretraining_corpus([a, a, b])  # "0" twice as NaCl (one entry), once as KBr (another material)
    assert sorted(s.composition.reduced_formula for s in again.structures) == ["KBr", "NaCl"]
    held = pretraining_corpus([a, b], exclude=[records(tmp_path / "test.json", ["CsCl"])])
    assert held.n_excluded == 0  # its row "0" is another material
    assert pretraining_corpus([a, b], exclude=[b]).n_excluded == 1


def test_a_negnn_run_is_fingerprinted_by_its_encoders_files_not_only_its_path(structures, tmp_path):
    from matgl_hybrid.checkpoint import save_checkpoint
    from matgl_hybrid.data import from_structures
    from matgl_hybrid.fingerprint import run_fingerprint

    data = from_structures(structures[:4], targets=np.zeros(4), target_name="y")
    spec = {"node_embeddings": f"{tmp_path / 'enc'}:0,1"}
    torch.manual_seed(0)
    save_checkpoint(_encoder(), tmp_path / "enc")
    first = run_fingerprint([data], spec, None)
    torch.manual_seed(1)
    save_checkpoint(_encoder(), tmp_path / "enc", overwrite=True)  # pretrained again into the same folder
    assert run_fingerprint([data], spec, None) != first
    assert "encoder" not in run_fingerprint([data], {"node_embeddings": None}, None)


def test_the_pretraining_figure_draws_each_validated_loss_once(structures):
    """Contrastive pretraining's total is its NT-Xent (one curve, not two on top of each other); epochs without a
    validation (``check_val_every_n_epoch``) are skipped, not a KeyError."""
    from lightning.pytorch.callbacks import Callback

    from matgl_hybrid.ssl.pretrain import pretrain, pretraining_figure

    contrastive = [{"epoch": e, "val_nt_xent": 2.0 - e, "val_total": 2.0 - e} for e in range(3)]
    (ax,) = pretraining_figure(contrastive, "contrastive").axes
    assert [line.get_label() for line in ax.get_lines()] == ["nt_xent"]
    sparse = [{"epoch": 0}, {"epoch": 1, "val_group": 1.0, "val_total": 3.0}]
    (ax,) = pretraining_figure(sparse, "masked").axes
    assert {line.get_label(): line.get_xdata().tolist() for line in ax.get_lines()} == {"group": [2], "total": [2]}

    class Count(Callback):
        epochs = 0

        def on_train_epoch_end(self, trainer, pl_module):
            Count.epochs += 1

    # one callback given as Lightning takes it (not in a list) runs beside the history; None is no callback
    module = pretrain(structures[:12], max_epochs=1, progress=False, trainer_kwargs={"callbacks": Count()})
    assert Count.epochs == 1
    assert [row["epoch"] for row in module.history] == [0]
    pretrain(structures[:12], max_epochs=1, progress=False, trainer_kwargs={"callbacks": None})


def test_a_contrastive_validation_batch_of_one_crystal_is_not_scored(structures, monkeypatch):
    """Its NT-Xent is exactly 0 (no negative pair): averaged in, it pulled the validation loss down."""
    from matgl_hybrid.ssl.contrastive import ContrastivePretraining, collate_pairs, nt_xent, paired_views

    z = torch.randn(1, 8)
    assert float(nt_xent(z, z + 1)) == 0.0
    module = ContrastivePretraining(_encoder())
    views = paired_views(structures[:3], 5.0, module.encoder.element_types)
    logged = []
    monkeypatch.setattr(module, "log_dict", lambda values, **kwargs: logged.append(values))
    module.validation_step(collate_pairs([views[0]]), 0)
    assert logged == []
    module.validation_step(collate_pairs([views[1], views[2]]), 1)
    assert set(logged[0]) == {"val_nt_xent", "val_total"}


def test_an_ssl_encoder_saved_again_or_of_another_kind_is_refused(tmp_path):
    """The encoder was reloaded (by a worker, or after the cache evicted it) from whatever the folder held then, and
    its values cached under the first encoder's key; a hybrid model or TensorNet failed deep inside a forward pass."""
    from matgl.models import MEGNet

    from matgl_hybrid.checkpoint import save_checkpoint
    from matgl_hybrid.models import HybridModel
    from matgl_hybrid.ssl.descriptors import _encoder, _manifest_digest

    save_checkpoint(MEGNet(element_types=("Na", "Cl"), nblocks=1), tmp_path / "enc")
    digest = _manifest_digest(tmp_path / "enc")
    assert isinstance(_encoder(str(tmp_path / "enc"), digest), MEGNet)
    with pytest.raises(ValueError, match="was saved again since its digest 0000000000000000 was read"):
        _encoder(str(tmp_path / "enc"), "0" * 16)
    save_checkpoint(HybridModel(element_types=("Na", "Cl"), descriptor_set=None), tmp_path / "hybrid")
    with pytest.raises(ValueError, match="holds a HybridModel, not a pretrained MEGNet or M3GNet encoder"):
        _encoder(str(tmp_path / "hybrid"), _manifest_digest(tmp_path / "hybrid"))


def test_node_embeddings_are_checked_before_any_work():
    """'enc:-1' silently meant the last layer, 'enc' and 'enc:a' failed after featurizing, and a non-MEGNet
    backbone was refused only when the model was built."""
    from matgl_hybrid.training import TrainSpec

    for bad in ("enc", "enc:a", "enc:-1", ":0"):
        with pytest.raises(ValueError, match="node_embeddings must be <encoder folder>:<layers>"):
            TrainSpec(node_embeddings=bad)
    with pytest.raises(ValueError, match="feeds MEGNet's node input, not m3gnet's"):
        TrainSpec(node_embeddings="enc:0,1", backbone="m3gnet")
    assert TrainSpec(node_embeddings="C:/runs/enc:0,1").node_embeddings == "C:/runs/enc:0,1"


def test_a_corpus_with_an_element_no_encoder_embeds_is_refused_naming_the_entry(tmp_path):
    """MatGL's converter failed with a bare KeyError ('Am') after the whole corpus was read."""
    from pymatgen.core import Lattice, Structure

    from matgl_hybrid.data import InvalidStructureError
    from matgl_hybrid.ssl.corpus import pretraining_corpus

    rows = [{"id": "nacl", "structure": Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]).as_dict()},
            {"id": "amo", "structure": Structure(Lattice.cubic(5.0), ["Am", "O"], [[0, 0, 0], [0.5] * 3]).as_dict()}]
    (tmp_path / "corpus.json").write_text(json.dumps(rows))
    with pytest.raises(InvalidStructureError, match=r"'amo'.*Am"):
        pretraining_corpus([tmp_path / "corpus.json"])


def test_pretraining_refuses_no_epoch_and_a_cutoff_of_zero():
    from matgl_hybrid.ssl import pretrain

    with pytest.raises(ValueError, match="pretraining needs max_epochs >= 1 and a cutoff > 0"):
        pretrain([], max_epochs=0)
    with pytest.raises(ValueError, match="pretraining needs max_epochs >= 1 and a cutoff > 0"):
        pretrain([], cutoff=0.0)
    with pytest.raises(ValueError, match="give max_epochs as pretrain's own argument"):
        pretrain([], trainer_kwargs={"max_epochs": 3})


def test_the_width_of_an_encoder_with_a_short_cutoff_is_measured():
    """The one-atom probe crystal of 3 Å had no neighbour within an encoder's 2.5 Å cutoff ("no atom has a
    neighbour"), so ssl: descriptors and NEGNN of such an encoder failed."""
    from matgl.models import MEGNet

    from matgl_hybrid.inference import embedding_width

    encoder = MEGNet(element_types=("Na", "Cl"), cutoff=2.5, nblocks=1)
    assert embedding_width(encoder, [0, 1]) > 0


def test_pretraining_runs_on_one_device_unless_asked(structures, monkeypatch):
    """Lightning's default takes every GPU of a node with DDP, whose gradient reduction fails on the encoder's head
    (never used by the pretext task), and every rank would save the encoder."""
    import importlib

    module = importlib.import_module("matgl_hybrid.ssl.pretrain")  # the package exports the function by this name
    asked = []

    def trainer(**kwargs):
        asked.append(kwargs.get("devices"))
        raise RuntimeError("stop before training")

    monkeypatch.setattr(module, "lightning_trainer", trainer)
    for extra in ({}, {"trainer_kwargs": {"devices": 2}}):
        with pytest.raises(RuntimeError, match="stop before training"):
            module.pretrain(structures[:40], max_epochs=1, progress=False, **extra)
    assert asked == [1, 2]


def test_a_displaced_view_that_loses_every_edge_is_drawn_again():
    """Contrastive views of structures whose only pair lies just inside the cutoff: a displacement pushed it past,
    and the displaced view's empty graph stopped the whole pretraining before it started."""
    from pymatgen.core import Lattice, Structure

    from matgl_hybrid.graphs import has_edges
    from matgl_hybrid.ssl.contrastive import paired_views

    dimer = Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0, 0, 0], [2.99 / 12.0, 0, 0]])
    views = paired_views([dimer] * 10, cutoff=3.0, element_types=("Na", "Cl"), seed=0)
    assert len(views) == 10
    assert has_edges(dimer, 3.0)
