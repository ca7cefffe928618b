"""MatGL's pretrained potentials shipped in the package: offline loading that matches MatGL's own, tampering
refused, and fine-tuning one inside the hybrid (freezing, layer-wise rates, save and reload)."""

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import matgl
import numpy as np
import pytest
import torch
from conftest import DEMO_DATA, SHARED_DATA, TINY_MEGNET, in_two_threads_meeting_after
from pymatgen.core import Lattice, Structure

from matgl_hybrid import data, potentials
from matgl_hybrid.checkpoint import CheckpointError, load_checkpoint, sha256_file
from matgl_hybrid.training import TrainSpec, train
from matgl_hybrid.training.finetuning import (
    WarmupEMA,
    backbone_blocks,
    freeze,
    parameter_groups,
    warmup_ema_update,
)

SHARED_WEIGHTS = SHARED_DATA.parent / "weights"
TENSORNET = "TensorNet-MatPES-PBE-v2025.1-PES"


def energy(potential, structure: Structure) -> float:
    from matgl.ext.ase import PESCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(PESCalculator(potential).get_potential_energy(structure.to_ase_atoms()))


@pytest.mark.parametrize("name", sorted(potentials.shipped_potentials()))
def test_a_shipped_potential_loads_offline_and_gives_matgls_own_energy(name):
    if not (SHARED_WEIGHTS / name).is_dir():
        if os.environ.get("CI"):  # CI has ../shared beside the clone: the one check against MatGL's own must run
            pytest.fail(f"MatGL's own copy of {name} not found in {SHARED_WEIGHTS} (CI is set)")
        pytest.skip(f"MatGL's own copy of {name} not found in {SHARED_WEIGHTS}")
    structure = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ours = energy(potentials.load_potential(name), structure)
    theirs = energy(matgl.load_model(SHARED_WEIGHTS / name), structure)
    assert ours == pytest.approx(theirs, rel=1e-5)
    info = potentials.shipped_potentials()[name]
    assert "BSD-3-Clause" in info.licence
    assert "Materials Project" in info.leakage
    assert (potentials.potential_folder(name) / "LICENSE.matgl").read_text().startswith("BSD 3-Clause")


def test_a_modified_weights_file_is_refused_naming_it(tmp_path, monkeypatch):
    folder = tmp_path / TENSORNET
    shutil.copytree(potentials.potential_folder(TENSORNET), folder)
    weights = folder / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is corrupted or was modified"):
        potentials.load_potential(folder)
    # A consistent manifest does not help a shipped name: its weights' sha256 is pinned in the registry.
    manifest = folder / "SHA256SUMS"
    lines = [line for line in manifest.read_text().splitlines() if not line.endswith("weights.safetensors")]
    digest = sha256_file(weights)
    manifest.write_text("\n".join([*lines, f"{digest}  weights.safetensors"]) + "\n")
    monkeypatch.setattr(potentials, "HERE", tmp_path)
    with pytest.raises(CheckpointError, match=r"is not the shipped potential .* the registry pins"):
        potentials.load_potential(TENSORNET)
    with pytest.raises(CheckpointError, match="no potential 'nonsense'"):
        potentials.load_potential("nonsense")


def test_weights_replaced_between_their_check_and_their_read_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / TENSORNET
    shutil.copytree(potentials.potential_folder(TENSORNET), folder)
    checked = potentials.verify

    def check_then_replace(path, required):  # a copy landing in the folder right after the hashes were checked
        digests = checked(path, required)
        weights = Path(path) / "weights.safetensors"
        raw = bytearray(weights.read_bytes())
        raw[-1] ^= 1
        weights.write_bytes(bytes(raw))
        return digests

    monkeypatch.setattr(potentials, "verify", check_then_replace)
    for load in (potentials.load_weights, potentials.load_potential):
        shutil.copy2(potentials.potential_folder(TENSORNET) / "weights.safetensors", folder)
        with pytest.raises(CheckpointError, match=r"weights\.safetensors changed after it was verified"):
            load(folder)


def test_a_shipped_potential_with_any_file_changed_is_refused_by_name_and_by_folder(tmp_path, monkeypatch):
    """The whole folder is pinned (its SHA256SUMS' sha256 in the registry), not only the weights: a config.json
    changed under a consistent manifest would build another network and still claim MatGL's weights."""
    folder = tmp_path / TENSORNET
    shutil.copytree(potentials.potential_folder(TENSORNET), folder)
    config = folder / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()), indent=1))  # same values, other bytes
    manifest = folder / "SHA256SUMS"
    lines = [line for line in manifest.read_text().splitlines() if not line.endswith("config.json")]
    manifest.write_text("\n".join([*lines, f"{sha256_file(config)}  config.json"]) + "\n")
    potentials.load_potential(folder)  # a folder of the user's: its own manifest is what it is checked against
    monkeypatch.setattr(potentials, "HERE", tmp_path)
    for given in (TENSORNET, folder):
        with pytest.raises(CheckpointError, match=r"SHA256SUMS is not the shipped potential .* the registry pins"):
            potentials.load_potential(given)


def test_a_pretrained_backbone_refuses_its_potentials_own_head():
    with pytest.raises(ValueError, match=r"readout .native. keeps the backbone.s own head.*choose a pooling readout"):
        TrainSpec(backbone="tensornet-matpes-pbe", readout="native", descriptor_set=None)


@pytest.mark.slow
def test_fine_tuning_a_pretrained_backbone_freezes_what_it_should_saves_and_reloads_identically(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = data.load(DEMO_DATA / "de_jong_2015_elasticity.json.gz", target="K_VRH", limit=40)
    spec = TrainSpec(backbone="tensornet-matpes-pbe", readout="set2set", descriptor_set="lattice", max_epochs=2,
                     batch_size=8, freeze="embedding", layer_decay=0.5, warmup_epochs=1, weight_decay=0.01,
                     gradient_clip=1.0, progress=False)  # fmt: skip
    trained = train(found, spec)
    model = trained.model
    pretrained = potentials.backbone_weights(TENSORNET)
    embedding = backbone_blocks(model)[0]
    prefix = next(n for n, m in model.backbone.named_children() if m is embedding)
    state = model.backbone.state_dict()
    frozen = [k for k in state if k.startswith(prefix + ".")]
    assert frozen
    assert all(torch.equal(state[k], pretrained[k]) for k in frozen)
    trained_keys = [k for k in state if k.startswith("layers.") and state[k].is_floating_point()]
    assert any(not torch.equal(state[k], pretrained[k]) for k in trained_keys)  # the rest was fine-tuned
    assert model.element_types == potentials.element_types(TENSORNET)  # the potential's embedding order

    out = trained.save(tmp_path / "model")
    record = json.loads((Path(out) / "training.json").read_text())
    assert record["pretrained_backbone"]["name"] == TENSORNET
    assert record["pretrained_backbone"]["sha256"] == potentials.shipped_potentials()[TENSORNET].weights_sha256
    assert TENSORNET in (Path(out) / "model_card.md").read_text()
    expected = model.predict(found.structures[:6])
    for loaded in (matgl.load_model(out), load_checkpoint(out)):
        # identical up to float32 summation order (scatter sums on several threads): 1e-6 relative
        np.testing.assert_allclose(loaded.predict(found.structures[:6]), expected, rtol=1e-6)
    # the model itself references the weights it started from (also when saved without train's record)
    model.save(tmp_path / "bare")
    config = json.loads((tmp_path / "bare" / "model.json").read_text())
    reference = {"name": TENSORNET, "sha256": record["pretrained_backbone"]["sha256"]}
    assert config["kwargs"]["pretrained_weights"] == reference


def test_a_reference_to_weights_the_package_does_not_ship_is_warned_about():
    shipped = potentials.shipped_potentials()[TENSORNET].weights_sha256
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        potentials.check_reference({"name": TENSORNET, "sha256": shipped})
    replaced = re.escape(f"{TENSORNET} weights of sha256 {'0' * 12}…, this package ships {shipped[:12]}…")
    with pytest.warns(UserWarning, match=replaced):
        potentials.check_reference({"name": TENSORNET, "sha256": "0" * 64})
    with pytest.warns(UserWarning, match="'my-potential', which this package does not ship"):
        potentials.check_reference({"name": "my-potential", "sha256": "0" * 64})


def test_layer_wise_rates_fall_towards_the_embedding_and_frozen_weights_are_left_out():
    from matgl_hybrid.models import HybridModel

    args = potentials.architecture_args(potentials.potential_config(TENSORNET))
    kwargs = {k: v for k, v in args.items() if k not in ("element_types", "cutoff", "dtype")}
    model = HybridModel(backbone="tensornet-matpes-pbe", element_types=args["element_types"], backbone_kwargs=kwargs)
    groups = parameter_groups(model, lr=1e-3, layer_decay=0.5)
    rates = [g["lr"] for g in groups]
    assert rates == sorted(rates)
    assert rates[-1] == 1e-3
    assert rates[0] == 1e-3 * 0.5 ** len(backbone_blocks(model))
    backbone_blocks(model)[0].requires_grad_(False)
    assert len(parameter_groups(model, 1e-3, 0.5)) == len(groups) - 1


def test_matgls_own_head_of_a_native_model_learns_at_the_heads_rate_and_is_not_frozen_with_the_backbone():
    """A ``readout="native"`` model keeps MatGL's readout and head inside its backbone: they were counted as its
    last blocks (MEGNet's head at lr × decay, its convolutions one power lower each) and frozen with it."""
    from matgl_hybrid.models import NativeModel

    model = NativeModel(element_types=("Na", "Cl"), backbone_kwargs=TINY_MEGNET)
    head = [p for name in ("node_s2s", "edge_s2s", "output_proj") for p in getattr(model.backbone, name).parameters()]
    groups = parameter_groups(model, lr=1e-3, layer_decay=0.5)
    at_lr = {id(p) for g in groups if g["lr"] == 1e-3 for p in g["params"]}
    assert {id(p) for p in head} <= at_lr
    freeze(model, "backbone")
    assert all(p.requires_grad for p in head)
    assert not any(p.requires_grad for b in backbone_blocks(model) for p in b.parameters())


def test_m3gnets_three_body_and_graph_layers_of_one_block_share_its_rate():
    """M3GNet registers all three-body interactions before all graph layers but runs them in alternation: block i
    is ``three_body_interactions[i]`` with ``graph_layers[i]``, one rate, rising with i."""
    from matgl_hybrid.models import HybridModel

    name = "M3GNet-MatPES-PBE-v2025.1-PES"
    args = potentials.architecture_args(potentials.potential_config(name))
    kwargs = {k: v for k, v in args.items() if k not in ("element_types", "cutoff", "dtype")}
    model = HybridModel(backbone="m3gnet-matpes-pbe", element_types=args["element_types"], backbone_kwargs=kwargs)
    rate = {id(p): g["lr"] for g in parameter_groups(model, lr=1.0, layer_decay=0.5) for p in g["params"]}
    backbone = model.backbone
    per_block = []
    for three_body, graph_layer in zip(backbone.three_body_interactions, backbone.graph_layers, strict=True):
        rates = {rate[id(p)] for p in [*three_body.parameters(), *graph_layer.parameters()]}
        assert len(rates) == 1
        per_block.extend(rates)
    assert per_block == sorted(per_block)
    assert len(set(per_block)) == len(backbone.graph_layers)


def test_freezing_the_embedding_freezes_it_behind_a_fixed_basis():
    """MEGNet's first child is its Gaussian bond expansion, whose centres are a parameter that never trains."""
    from matgl_hybrid.models import HybridModel

    model = HybridModel(backbone="megnet", element_types=("Na", "Cl"), backbone_kwargs=TINY_MEGNET)
    freeze(model, "embedding")
    assert not any(p.requires_grad for p in model.backbone.embedding.parameters())
    assert all(p.requires_grad for p in model.backbone.blocks.parameters())


def test_an_activation_shared_by_every_block_is_no_block_and_trains_in_one_group():
    """TensorNet registers one activation module and shares it with its embedding and layers: a trainable one
    (softexp) put its weight in several AdamW groups (refused by torch) and `freeze="embedding"` froze it alone."""
    from matgl_hybrid.models import HybridModel
    from matgl_hybrid.training.finetuning import freeze

    model = HybridModel(backbone="tensornet", element_types=("Na", "Cl"),
                        backbone_kwargs={"units": 8, "nblocks": 2, "activation_type": "softexp"})  # fmt: skip
    shared = list(model.backbone.activation.parameters())
    assert shared  # softexp's alpha
    groups = parameter_groups(model, lr=1e-3, layer_decay=0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(p.requires_grad for p in model.parameters())
    torch.optim.AdamW(groups)  # refused when a weight is in two groups
    freeze(model, "embedding")
    assert not any(p.requires_grad for p in model.backbone.tensor_embedding.parameters())


def test_the_fine_tuning_schedule_decays_over_the_batches_that_run(elastic):
    """10 structures in batches of 4 run 3 batches an epoch (4, 4, 2); sized for 2, the cosine reached its floor
    after two of three epochs and the last ran at lr × decay_alpha."""
    from conftest import TINY
    from recorders import LearningRates

    from matgl_hybrid.training import fit
    from matgl_hybrid.training.datamodule import batches_per_epoch

    recorded = LearningRates()
    spec = TrainSpec(max_epochs=3, weight_decay=0.01, lr=1e-2, **{**TINY, "batch_size": 4})
    fit(elastic.subset(range(10)), spec=spec, val_data=elastic.subset(range(10, 14)), callbacks=[recorded])
    assert batches_per_epoch(10, 4) == 3
    assert batches_per_epoch(9, 4) == 2  # a last batch of one structure is dropped
    assert len(recorded.rates) == 9
    assert recorded.rates == sorted(recorded.rates, reverse=True)
    assert recorded.rates[-1] > 2 * spec.lr * spec.decay_alpha


def test_with_gradient_accumulation_the_schedule_counts_optimizer_steps(elastic):
    """3 batches an epoch accumulated 3 at a time make one optimizer step an epoch: over 3 epochs the cosine must
    reach its last quarter (sized in batches, it ended at 0.88 × lr)."""
    from conftest import TINY
    from recorders import LearningRates

    from matgl_hybrid.training import fit

    recorded = LearningRates()
    spec = TrainSpec(max_epochs=3, weight_decay=0.01, lr=1e-2, **{**TINY, "batch_size": 4})
    fit(elastic.subset(range(10)), spec=spec, val_data=elastic.subset(range(10, 14)), callbacks=[recorded],
        trainer_kwargs={"accumulate_grad_batches": 3})  # fmt: skip
    assert len(recorded.rates) == 9
    assert recorded.rates[-1] < 0.3 * spec.lr
    assert recorded.rates[0] == pytest.approx(spec.lr)


def test_the_weight_average_of_equal_weights_is_them_bit_for_bit():
    """Frozen weights (and buffers) are averaged with themselves at every step: they must not drift by rounding."""
    update = warmup_ema_update(0.999)
    weights = torch.randn(100_000)
    for n in (0, 1, 7, 100, 10**6):
        averaged = [weights.clone()]
        update(averaged, [weights], torch.tensor(n))
        assert torch.equal(averaged[0], weights)


def test_with_an_ema_the_kept_weights_are_the_averaged_ones_validation_scored(elastic):
    from conftest import TINY

    from matgl_hybrid.training import fit

    train, val = elastic.subset(range(18)), elastic.subset(range(18, 24))
    result = fit(train, spec=TrainSpec(max_epochs=3, ema_decay=0.5, lr=1e-2, **TINY), val_data=val)
    kept = np.mean(np.abs(result.model.predict(val.structures) - val.targets))
    assert kept == pytest.approx(result.best_val_mae, rel=1e-4)
    plain = fit(train, spec=TrainSpec(max_epochs=3, lr=1e-2, **TINY), val_data=val)
    assert plain.best_val_mae != pytest.approx(result.best_val_mae, rel=1e-3)  # the average is another model


def test_the_weight_average_of_a_short_run_forgets_its_initial_weights():
    """1400 steps (100 epochs of 220 structures, batch 16): a fixed 0.999 average would still hold a quarter of the
    first weights (0.999^1400 = 0.25); the ramped one holds none, and a long run averages at the decay itself."""
    update = warmup_ema_update(0.999)
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    for n in range(1, 1401):
        update(averaged, current, torch.tensor(n))
    assert torch.all(averaged[0] > 0.99)
    late = [torch.zeros(1)]
    update(late, [torch.ones(1)], torch.tensor(10**6))
    assert late[0].item() == pytest.approx(1 - 0.999)


def test_the_tensornet_matpes_set_featurizes_real_structures_and_references_the_pinned_weights(elastic):
    from matgl_hybrid.descriptors import featurize, get_descriptor_set

    frame = featurize(elastic.structures[:4], "tensornet_matpes", progress=False)
    assert frame.shape == (4, 3 * 128)
    assert np.isfinite(frame.to_numpy()).all()
    assert frame.iloc[:, :128].std(axis=0).max() > 0  # the structures differ in their features
    (weights,) = get_descriptor_set("tensornet_matpes").referenced_weights()
    assert weights["sha256"] == potentials.shipped_potentials()[TENSORNET].weights_sha256


@pytest.mark.slow
def test_sim_tensornet_matpes_simulates_a_real_structure_with_finite_values(elastic):
    from matgl_hybrid.descriptors import featurize, get_descriptor_set

    small = min(elastic.structures, key=len)  # 2 sites: seconds
    frame = featurize([small], "sim:tensornet_matpes", progress=False)
    chgnet_columns = get_descriptor_set("sim:chgnet").columns
    assert list(frame.columns) == [c.replace("chgnet", "tensornet_matpes") for c in chgnet_columns]
    assert np.isfinite(frame.to_numpy()).all()
    assert frame.attrs["errors"] == []
    assert 10 < frame["sim_tensornet_matpes_eos_bulk_modulus"].iloc[0] < 1000  # GPa: a solid's
    (weights,) = get_descriptor_set("sim:tensornet_matpes").referenced_weights()
    assert weights["sha256"] == potentials.shipped_potentials()[TENSORNET].weights_sha256


def test_a_malformed_pretrained_reference_is_a_value_error():
    from matgl_hybrid.models import HybridModel

    with pytest.raises(ValueError, match="pretrained_weights must be a dict of str name and sha256"):
        HybridModel(element_types=("Na", "Cl"), pretrained_weights="TensorNet-MatPES-PBE-v2025.1-PES")


def test_the_weight_average_takes_the_dtype_the_trainer_gives_the_model():
    """Lightning builds the average before a precision="64-true" Trainer converts the model: averaging float64
    weights into float32 copies failed at the first update (torch.lerp refuses mixed dtypes)."""
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

    module = Tiny()
    ema = WarmupEMA(0.9)
    ema.setup(None, module, "fit")
    module.double()
    ema.on_fit_start(None, module)
    assert {p.dtype for p in ema._average_model.module.parameters()} == {torch.float64}
    ema._average_model.update_parameters(module)  # raised before


def test_frozen_features_of_concurrent_threads_are_each_their_own_structures(elastic, monkeypatch):
    """A forward pass leaves its per-atom features in the shared model's feature_dict: with two threads (Dask's
    threaded workers) both passing before either read, one read the other structure's features."""
    from matgl_hybrid.descriptors import uip

    first, second = sorted(elastic.structures[:6], key=len)[::5][:2]  # two sizes: another's features differ
    expected = [uip.matpes_atom_features(s) for s in (first, second)]
    calls = [lambda s=s: uip.matpes_atom_features(s) for s in (first, second)]
    found = in_two_threads_meeting_after(monkeypatch, uip.matpes_potential().model, "predict_structure", calls)
    for k in range(2):
        np.testing.assert_array_equal(found[k], expected[k])


def test_importing_the_descriptors_hashes_no_weights(monkeypatch):
    """The sim:tensornet_matpes tag verified the shipped folder on import: one changed file there broke every
    import of the descriptors (and the CLI), MEGNet models included. It is the registry's pinned sha256."""
    from matgl_hybrid.descriptors import simulation, uip

    pinned = potentials.shipped_potentials()[TENSORNET].weights_sha256
    assert potentials.weights_sha256(TENSORNET) == pinned  # the folder as shipped
    monkeypatch.setattr(potentials, "verified_files", lambda *a, **k: pytest.fail("hashed the weights"))
    uip.matpes_reference.cache_clear()
    try:
        assert simulation._matpes_tag() == f"{TENSORNET}-{pinned[:12]}"
    finally:
        uip.matpes_reference.cache_clear()


def _own_potential(tmp_path, edit) -> Path:
    """A copy of the shipped TensorNet-MatPES folder with ``edit(config)`` applied and a consistent manifest."""
    import shutil

    from matgl_hybrid.checkpoint import sha256_file

    folder = Path(shutil.copytree(potentials.potential_folder(TENSORNET), tmp_path / "mine"))
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    names = [line.partition("  ")[2] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    (folder / "SHA256SUMS").write_text("".join(f"{sha256_file(folder / n).upper()} *{n}\n" for n in names))
    return folder


def test_a_potential_folder_of_ones_own_is_bounded_and_named_in_its_errors(tmp_path):
    """A user's folder got none of a checkpoint's checks: n_element_refs 1e10 allocated first, a missing key was a
    bare KeyError; a manifest in sha256sum's binary form with PowerShell's uppercase hashes was 'malformed'."""
    from matgl_hybrid.checkpoint import CheckpointError

    big = _own_potential(tmp_path / "big", lambda c: c.update(n_element_refs=10**10))
    with pytest.raises(CheckpointError, match=r"config\.json: kwargs\.n_element_refs = 10000000000 is out of range"):
        potentials.load_potential(big)
    missing = _own_potential(tmp_path / "missing", lambda c: c.pop("potential_args"))
    with pytest.raises(CheckpointError, match=r"config\.json must be an object with .*; wrong or missing: potential_a"):
        potentials.load_potential(missing)
    same = _own_potential(tmp_path / "same", lambda c: None)  # uppercase hashes, ' *name' lines: read as sha256sum
    assert potentials.load_potential(same) is not None
