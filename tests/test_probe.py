"""Descriptor probes can succeed and fail: natoms from sum vs mean pooling; embeddings and importance of models."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_MEGNET
from matgl.ext.pymatgen import get_element_list
from matgl.models import MEGNet

from matgl_hybrid.checkpoint import save_checkpoint
from matgl_hybrid.data import load_records
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.layers import make_readout
from matgl_hybrid.models import HybridModel
from matgl_hybrid.probe import (
    descriptor_importance,
    embed,
    plot_importance,
    plot_probe,
    probe,
    probe_matrix,
    run_explain,
    run_probe,
    write_importance_report,
)
from matgl_hybrid.training import TrainSpec, fit

SMALL = TINY_MEGNET


@pytest.fixture(scope="module")
def binaries(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_records(shared_data / "mp_binary_elasticity.json.gz", "bulk_modulus_vrh", limit=150)


def test_natoms_is_recovered_from_sum_pooling_but_not_from_mean_pooling(binaries, tmp_path):
    descriptors = featurize(binaries.structures, "lattice", progress=False)
    natoms = descriptors["natoms"].to_numpy()
    assert len(np.unique(natoms)) > 3  # the probe has something to find
    # Constant node features: every atom looks the same, as far as the readout can tell.
    sizes = [len(s) for s in binaries.structures]
    x = torch.ones(sum(sizes), 4)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    embeddings = {
        name: make_readout(name, 4)(x, batch, dim_size=len(sizes)).numpy() for name in ("sum", "mean", "extensive")
    }
    table = probe(embeddings, descriptors[["natoms", "crystal_system_int"]], probes=("ridge",))
    r2 = table[table.descriptor == "natoms"].set_index("embedding")["score"]
    assert r2["sum"] > 0.999
    assert r2["extensive"] > 0.999
    assert r2["mean"] < 0.05  # mean pooling cannot see how many atoms a cell has
    accuracy = table[table.descriptor == "crystal_system_int"].set_index("embedding")["score"]
    assert set(table.metric[table.descriptor == "crystal_system_int"]) == {"accuracy"}
    assert accuracy["mean"] <= accuracy["sum"] + 1e-9
    matrix = probe_matrix(table)
    assert list(matrix.columns) == ["sum", "mean", "extensive"]
    plot_probe(table, tmp_path / "probe.png")
    assert (tmp_path / "probe.png").stat().st_size > 0


@pytest.mark.slow
def test_embeddings_of_a_trained_hybrid_and_descriptor_importance(binaries, tmp_path):
    data = binaries.subset(range(120))
    data.targets = np.log10(np.clip(data.targets, 1, None))
    spec = TrainSpec(max_epochs=3, progress=False, backbone_kwargs=SMALL, descriptor_set="lattice", readout="sum")
    model = fit(data, spec=spec, cache_dir=tmp_path).model
    graph = embed(model, data.structures[:10], cache_dir=tmp_path)
    fused = embed(model, data.structures[:10], tap="fused", cache_dir=tmp_path)
    assert graph.shape == (10, model.readout.out_dim + 8)  # sum readout (8) + MEGNet state (8)
    assert fused.shape[0] == 10
    assert fused.shape[1] == model.fusion.out_dim
    before = model.predict(data.structures[:5], cache_dir=tmp_path)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    importance = descriptor_importance(model, data.structures[:40], data.targets[:40], cache_dir=tmp_path)
    assert list(importance.columns) == ["descriptor", "mae_increase", "mae_increase_std"]
    assert set(importance["descriptor"]) == set(model.descriptor_names)
    assert importance["mae_increase"].abs().sum() > 0  # permuting inputs changes predictions
    # the graph network runs once and only fusion + head see the descriptors: the same predictions as forward
    full = model.predict(data.structures[:40], cache_dir=tmp_path)
    baseline = float(np.mean(np.abs(full - data.targets[:40])))
    assert importance.attrs["baseline_mae"] == pytest.approx(baseline, rel=1e-5)
    # and the model is left as it was: same weights, same predictions
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    np.testing.assert_array_equal(model.predict(data.structures[:5], cache_dir=tmp_path), before)
    plot_importance(importance, tmp_path / "importance.png", units="eV/atom")
    write_importance_report(importance, tmp_path / "report", "m", "d", 40, 3, units="log10 GPa")
    assert f"baseline MAE {baseline:.4g} log10 GPa" in (tmp_path / "report" / "importance.md").read_text()
    with pytest.raises(ValueError, match="tap must be 'graph' or 'fused', got 'head'"):
        embed(model, data.structures[:2], tap="head")


@pytest.mark.slow
def test_cli_probe_and_explain(shared_data, tmp_path, capsys):
    import json

    from conftest import write_small_records

    from matgl_hybrid.cli import main

    path, _ = write_small_records(shared_data, "mp_binary_elasticity.json.gz", 60, tmp_path)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    args = ["probe", "--backbone", "megnet", "--readouts", "mean,sum", "--data", str(path), "--descriptors", "lattice"]
    assert main([*args, "--probes", "ridge", "--out", str(tmp_path / "probe"), "--n-jobs", "1", *cache]) == 0
    table = (tmp_path / "probe" / "probe.md").read_text()
    assert main([*args, "--probes", "ridge", "--out", str(tmp_path / "probe"), *cache]) == 2  # the report is kept
    assert (tmp_path / "probe" / "probe.md").read_text() == table
    assert "megnet/mean (untrained)" in table
    assert "natoms" in table
    assert (tmp_path / "probe" / "probe.png").exists()

    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"backbone_kwargs": SMALL, "descriptor_set": "lattice", "progress": False}))
    train = ["train", "--no-select", "--data", str(path), "--target", "bulk_modulus_vrh", "--config", str(config),
             "--max-epochs", "1"]
    assert main([*train, "--out", str(tmp_path / "model"), *cache]) == 0
    capsys.readouterr()
    saved = ["probe", "--model", str(tmp_path / "model"), "--data", str(path), "--out", str(tmp_path / "p2")]
    assert main([*saved, "--seed", "1"]) == 2  # a fresh backbone's settings, meaningless for a saved model: refused
    assert "--readouts and --seed set up a fresh --backbone" in capsys.readouterr().err
    explain = ["explain", "--model", str(tmp_path / "model"), "--data", str(path), "--target", "bulk_modulus_vrh"]
    assert main([*explain, "--repeats", "0", "--out", str(tmp_path / "none"), *cache]) == 2  # NaN for every one
    assert not (tmp_path / "none").exists()
    assert main([*explain, "--repeats", "1", "--out", str(tmp_path / "explain"), *cache]) == 0
    assert "MAE increase" in (tmp_path / "explain" / "importance.md").read_text()
    assert main([*explain, "--repeats", "1", "--out", str(tmp_path / "explain"), *cache]) == 2
    assert main([*explain, "--repeats", "1", "--out", str(tmp_path / "explain"), *cache, "--overwrite"]) == 0


def test_the_untrained_readouts_sit_on_the_same_backbone_weights():
    from matgl_hybrid.probe import untrained_models

    models = list(untrained_models("megnet", ["mean", "sum", "set2set"], seed=3).values())
    first = models[0].backbone.state_dict()
    for other in models[1:]:
        assert all(torch.equal(first[k], v) for k, v in other.backbone.state_dict().items())


def test_the_mlp_probe_fits_a_descriptor_of_large_values():
    """Descriptors such as the cell volume run to 10⁴: the MLP probe on raw targets stopped early far from them (a
    negative R² for a linear function of the embedding); it fits standardized targets."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    volume = pd.DataFrame({"volume": 5000.0 + 800.0 * x[:, 0] - 300.0 * x[:, 1]})
    table = probe({"embedding": x}, volume, probes=("mlp",))
    assert table.loc[0, "score"] > 0.9  # held-out R² (far below zero on raw targets)


def test_descriptor_importance_of_a_model_of_several_targets_scores_the_named_one(binaries):
    """A model of two targets: the importance of its descriptors is measured on the output the data holds (it used
    the first output whatever the data's target was)."""
    structures = binaries.structures[:12]
    frame = featurize(structures, "lattice", progress=False)
    two = HybridModel(element_types=get_element_list(structures), cutoff=5.0, backbone_kwargs=SMALL,
                      descriptor_set="lattice", descriptor_version=get_descriptor_set("lattice").version,
                      descriptor_transform=DescriptorTransform().fit(frame).to_dict(), head_hidden=(4,),
                      n_targets=2, target_names=("K", "G")).eval()  # fmt: skip
    predicted = two.predict(structures)
    for k, name in enumerate(("K", "G")):
        table = descriptor_importance(two, structures, predicted[:, k], target=name, n_repeats=1)
        assert table.attrs["baseline_mae"] == pytest.approx(0.0, abs=1e-5)  # scored against its own output
    with pytest.raises(ValueError, match="the model predicts K, G: name the target the data holds"):
        descriptor_importance(two, structures, predicted[:, 0], n_repeats=1)


def test_descriptor_importance_of_a_bf16_model(binaries):
    """A model trained with ``precision="bf16-true"``: its graph vectors came back float32 and met bf16 descriptors
    and head, a dtype error."""
    structures = binaries.structures[:8]
    frame = featurize(structures, "lattice", progress=False)
    model = HybridModel(element_types=get_element_list(structures), cutoff=5.0, backbone_kwargs=SMALL,
                        descriptor_set="lattice", descriptor_version=get_descriptor_set("lattice").version,
                        descriptor_transform=DescriptorTransform().fit(frame).to_dict(),
                        head_hidden=(4,)).eval().to(torch.bfloat16)  # fmt: skip
    predicted = model.predict(structures)
    table = descriptor_importance(model, structures, predicted, n_repeats=1)
    assert np.isfinite(table.attrs["baseline_mae"])


def test_explain_scores_a_log10_model_on_the_log10_of_the_data(binaries, tmp_path):
    """`train --log10-target` learns log10_<target>; `explain --target <target>` compared its log10 predictions with
    the raw values (a baseline MAE in GPa, labelled log10 GPa): the data's values are taken to log10 as in training."""
    structures = binaries.structures[:12]
    frame = featurize(structures, "lattice", progress=False)
    model = HybridModel(element_types=get_element_list(structures), cutoff=5.0, backbone_kwargs=SMALL,
                        descriptor_set="lattice", descriptor_version=get_descriptor_set("lattice").version,
                        descriptor_transform=DescriptorTransform().fit(frame).to_dict(), head_hidden=(4,),
                        target_names=("log10_K",)).eval()  # fmt: skip
    save_checkpoint(model, tmp_path / "model")
    rows = [{"id": str(i), "structure": s.as_dict(), "K": float(10**p)}
            for i, (s, p) in enumerate(zip(structures, model.predict(structures), strict=True))]  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(rows))
    table = run_explain(tmp_path / "model", tmp_path / "data.json", "K", tmp_path / "explain", repeats=1)
    assert table.attrs["baseline_mae"] == pytest.approx(0.0, abs=1e-5)


def test_a_probe_is_never_scored_on_a_copy_of_a_structure_it_was_fitted_on():
    """Each of 60 structures twice (equal embeddings, under two ids) with a descriptor that is pure noise: with the
    copies on both sides of a fold, the probe recalled the copy it was fitted on (a high held-out R²)."""
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(60, 200)), 2, axis=0)
    noise = pd.DataFrame({"noise": np.repeat(rng.normal(size=60), 2)})
    keys = [f"structure {i // 2}" for i in range(120)]
    apart = probe({"embedding": x}, noise, probes=("ridge",))
    together = probe({"embedding": x}, noise, probes=("ridge",), copies=keys)
    assert apart.loc[0, "score"] > 0.5  # what the copies did
    assert together.loc[0, "score"] < 0.1  # noise cannot be recovered


def test_a_class_all_in_one_test_fold_is_scored_not_a_crash():
    """19 cubic structures and 1 tetragonal one: the four folds without it have a single class, which no classifier
    fits; the probe predicts that class there."""
    rng = np.random.default_rng(0)
    classes = pd.DataFrame({"crystal_system_int": [7.0] * 19 + [4.0]})
    table = probe({"embedding": rng.normal(size=(20, 4))}, classes, probes=("ridge", "mlp"))
    assert set(table["metric"]) == {"accuracy"}
    assert (table["score"] >= 0.9).all()  # at most the tetragonal one missed


def test_the_probe_refuses_what_it_cannot_do_before_any_work():
    rng = np.random.default_rng(0)
    x = {"embedding": rng.normal(size=(8, 4))}
    with pytest.raises(ValueError, match=r"has 10 finite values that are not all equal \(8 structures\)"):
        probe(x, pd.DataFrame({"natoms": np.arange(8.0)}))
    with pytest.raises(ValueError, match="unknown probe 'lasso': choose from ridge, mlp"):
        probe(x, pd.DataFrame({"natoms": np.arange(8.0)}), probes=("ridge", "lasso"))
    with pytest.raises(ValueError, match="unknown probe 'lasso'"):  # before loading or featurizing anything
        run_probe("no such file.json", "out", backbone="megnet", probes=("lasso",))


def test_descriptor_importance_refuses_targets_that_do_not_match_the_structures(binaries):
    structures = binaries.structures[:12]
    frame = featurize(structures, "lattice", progress=False)
    model = HybridModel(element_types=get_element_list(structures), cutoff=5.0, backbone_kwargs=SMALL,
                        descriptor_set="lattice", descriptor_version=get_descriptor_set("lattice").version,
                        descriptor_transform=DescriptorTransform().fit(frame).to_dict(), head_hidden=(4,)).eval()
    with pytest.raises(ValueError, match="11 targets for 12 structures"):
        descriptor_importance(model, binaries.structures[:12], np.zeros(11))


def test_a_native_model_is_probed_an_ensemble_refused(binaries, tmp_path):
    """MatGL's own head (readout native) exposes its graph vector for probing; only ensembles have none of their own."""
    from matgl_hybrid.models import HybridEnsemble

    structures = binaries.structures[:12]
    native = HybridModel(element_types=get_element_list(structures), cutoff=5.0, backbone_kwargs=SMALL,
                         readout="native", target_names=("K",)).eval()  # fmt: skip
    save_checkpoint(native, tmp_path / "native")
    save_checkpoint(HybridEnsemble.from_models([native, native]), tmp_path / "ensemble")
    rows = [{"id": str(i), "structure": s.as_dict()} for i, s in enumerate(structures)]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    matrix = run_probe(tmp_path / "data.json", tmp_path / "probe", model=tmp_path / "native", descriptor_set="lattice",
                       probes=("ridge",), n_jobs=1)  # fmt: skip
    assert "native" in matrix.columns
    with pytest.raises(ValueError, match="probe takes one model, not an ensemble of 2"):
        run_probe(tmp_path / "data.json", tmp_path / "p2", model=tmp_path / "ensemble", probes=("ridge",))
    # a pretrain encoder (a bare MatGL model) is refused with what to do, before the data is read or featurized
    save_checkpoint(MEGNet(element_types=native.element_types, cutoff=5.0, **SMALL), tmp_path / "encoder")
    with pytest.raises(ValueError, match=r"encoder: a MEGNet without targets .* descriptors: ssl:.*encoder:<layers>"):
        run_probe(tmp_path / "no such data.json", tmp_path / "p3", model=tmp_path / "encoder", probes=("ridge",))
