"""The matgl-hybrid command line: featurize and demo end to end, help texts, errors as one line and exit status 2."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_DATA, LATTICE_COLUMNS, TINY_MEGNET, write_small_records
from pymatgen.core import Structure

from matgl_hybrid import data
from matgl_hybrid.checkpoint import load_checkpoint, save_checkpoint
from matgl_hybrid.cli import build_parser, main
from matgl_hybrid.model_card import regression_metrics
from matgl_hybrid.models import HybridModel
from matgl_hybrid.training import TrainSpec
from matgl_hybrid.version import __version__


def _small_records(shared_data, tmp_path, n=6):
    return write_small_records(shared_data, "alexandria_heat_capacity.json.gz", n, tmp_path)


def test_featurize_writes_id_descriptors_and_target(shared_data, tmp_path, capsys):
    path, records = _small_records(shared_data, tmp_path)
    out = tmp_path / "desc.csv"
    args = [
        "featurize",
        "--data",
        str(path),
        "--target",
        "heat_capacity",
        "--descriptors",
        "lattice",
        "--out",
        str(out),
    ]
    assert main([*args, "--n-jobs", "1", "--cache-dir", str(tmp_path / "cache"), "--summary"]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", *LATTICE_COLUMNS, "heat_capacity"]
    assert frame["id"].tolist() == [r["id"] for r in records]
    assert frame["heat_capacity"].tolist() == [r["heat_capacity"] for r in records]
    assert frame["natoms"].tolist() == [len(r["structure"]["sites"]) for r in records]
    printed = capsys.readouterr().out
    assert "wrote 6 rows" in printed
    assert "spearman target" in printed  # --summary ranks the descriptors by correlation with the target
    assert "heat_capacity " not in printed  # the target itself is not ranked as a descriptor


def test_bad_input_prints_one_line_and_exits_2(shared_data, tmp_path, capsys):
    path, _ = _small_records(shared_data, tmp_path)
    code = main(["featurize", "--data", str(path), "--descriptors", "gong29", "--out", str(tmp_path / "x.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown descriptor set" in err
    assert "gong29" in err
    assert not (tmp_path / "x.csv").exists()
    code = main(["featurize", "--data", str(path), "--target", "band_gap", "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert "band_gap" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_trains_both_models_writes_its_files_and_ends_with_next_steps(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("mine")  # a file of the user's: left alone
    args = ["demo", "--out", str(out), "--n-structures", "30", "--max-epochs", "1", "--n-jobs", "1"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "| MEGNet (as MatGL ships it) |" in printed
    assert "| hybrid MEGNet + gong28+composition+chgnet_noenergy |" in printed
    assert "GaAs (zinc blende)" in printed
    assert "matgl-hybrid train --data" in printed
    assert (out / "notes.txt").read_text() == "mine"
    table = (out / "demo_results.md").read_text()
    assert "held-out test split of 6 structures" in table
    assert (out / "demo_parity.png").stat().st_size > 0
    # the saved hybrid reproduces the test predictions of the table's run
    record = json.loads((out / "hybrid_model" / "training.json").read_text())
    (weights,) = record["referenced_weights"]  # CHGNet's, referenced by digest, not embedded
    assert weights["model"] == "CHGNet 0.3.0"
    assert f"sha256 `{weights['sha256']}`" in (out / "hybrid_model" / "model_card.md").read_text()
    model = load_checkpoint(out / "hybrid_model")
    dataset = data.log10_targets(data.load_demo("K_VRH"))
    test = dataset.subset([dataset.ids.index(i) for i in record["test"]["ids"]])
    np.testing.assert_allclose(model.predict(test.structures, ids=test.ids), record["test"]["predictions"], rtol=1e-5)
    assert record["units"] == "log10 GPa"  # the card's units (it said "target units")
    # a second run replaces the demo's own model and keeps the user's file
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_the_demo_refuses_files_and_models_no_demo_wrote_before_any_work(tmp_path, capsys, monkeypatch):
    """It replaced any demo_results.md / demo_parity.png in --out, and any model saved in --out/hybrid_model (the
    user's own, trained there with `train --out demo/hybrid_model`), after training."""
    from matgl_hybrid import demo

    monkeypatch.setattr(demo.data, "load_demo", lambda *a, **k: pytest.fail("worked before checking --out"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "demo_results.md").write_text("# my results\n")
    assert main(["demo", "--out", str(mine)]) == 2
    assert "holds demo_results.md, which no earlier demo wrote" in capsys.readouterr().err
    assert (mine / "demo_results.md").read_text() == "# my results\n"
    model = tmp_path / "with_model"
    save_checkpoint(HybridModel(element_types=("Si", "O"), backbone_kwargs=TINY_MEGNET, descriptor_set=None),
                    model / "hybrid_model", {"training": {"command": "matgl-hybrid train --out demo/hybrid_model"}})
    assert main(["demo", "--out", str(model)]) == 2
    assert "holds hybrid_model, which no earlier demo wrote" in capsys.readouterr().err


def _option_helps(parser: argparse.ArgumentParser) -> dict[str, dict[str, str]]:
    """``{command: {option: rendered help text}}`` of every subcommand."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    helps = {}
    for name, sub in commands.items():
        formatter = sub._get_formatter()
        helps[name] = {
            action.option_strings[-1]: " ".join(formatter._expand_help(action).split())
            for action in sub._actions
            if action.option_strings and action.dest != "help"
        }
    return helps


def test_every_option_of_every_command_names_its_default_or_says_it_is_required():
    helps = _option_helps(build_parser())
    assert set(helps) >= {"demo", "featurize", "train", "cv", "matbench", "probe", "predict", "pretrained"}
    for command, options in helps.items():
        for option, text in options.items():
            assert "default" in text or "(required)" in text, f"{command} {option}: {text!r}"
            assert not text.startswith(("(default", "(required")), f"{command} {option} does not say what it is"


def test_training_options_show_the_recipe_defaults_and_their_allowed_values():
    spec = TrainSpec()
    train = _option_helps(build_parser())["train"]
    assert f"(default: {spec.descriptor_set})" in train["--descriptors"]
    assert f"(default: {spec.lr})" in train["--lr"]
    assert f"(default: {spec.max_epochs})" in train["--max-epochs"]
    assert "gong28+composition" in train["--descriptors"]
    assert "sim:chgnet" in train["--descriptors"]
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "x", "--target", "y", "--out", "z", "--readout", "median"])
    assert exc.value.code == 2  # argparse refuses a value outside the choices, before any work


def test_top_level_help_lists_each_command_on_one_line_and_version_prints(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"matgl-hybrid {__version__}"
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code in (0, None)
    printed = capsys.readouterr().out
    for command in ("demo", "train", "matbench", "predict"):
        assert f"\n    {command} " in printed or f"\n    {command}\n" in printed


@pytest.mark.slow
def test_train_then_predict_end_to_end(shared_data, tmp_path, capsys):
    import matgl

    from matgl_hybrid.models import HybridEnsemble, HybridModel

    path, records = _small_records(shared_data, tmp_path, n=40)
    config = tmp_path / "spec.json"
    small = {
        "dim_node_embedding": 8,
        "dim_edge_embedding": 16,
        "hidden_layer_sizes_input": [16, 8],
        "hidden_layer_sizes_conv": [16, 16, 8],
        "nblocks": 1,
    }
    config.write_text(json.dumps({"backbone_kwargs": small, "head_hidden": [8], "progress": False}))
    common = ["--data", str(path), "--target", "heat_capacity", "--config", str(config), "--max-epochs", "2"]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    code = main(
        [
            "train",
            "--no-select",
            *common,
            "--backbone",
            "megnet",
            "--readout",
            "extensive",
            "--descriptors",
            "gong28",
            "--fusion",
            "concat",
            "--out",
            str(tmp_path / "model"),
            *cache,
        ]
    )
    assert code == 0
    model = matgl.load_model(tmp_path / "model")
    assert type(model) is HybridModel
    assert model.descriptor_set == "gong28"
    training = json.loads((tmp_path / "model" / "training.json").read_text())
    assert training["spec"]["max_epochs"] == 2  # the flag overrides the config file's default
    assert training["spec"]["backbone_kwargs"]["nblocks"] == 1  # the config file is applied
    member = training["members"][0]  # the epoch counted from 1, as in the card
    assert f"at epoch {member['best_epoch'] + 1} of {member['epochs_run']} (" in capsys.readouterr().out

    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "model"), "--data", str(path), "--out", str(out), *cache]) == 0
    assert f"wrote {len(records)} predictions of heat_capacity (J/K/mol) to {out}" in capsys.readouterr().out
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", "prediction"]
    assert frame["id"].tolist() == [r["id"] for r in records]
    structures, ids = [Structure.from_dict(r["structure"]) for r in records], [r["id"] for r in records]
    expected = model.predict(structures, ids=ids, cache_dir=tmp_path / "cache")  # the command is the library's
    np.testing.assert_allclose(frame["prediction"], expected, rtol=1e-6)

    ensemble_args = ["--no-select", "--descriptors", "none", "--ensemble", "2", "--out", str(tmp_path / "ens")]
    code = main(["train", *common, *ensemble_args, *cache])
    assert code == 0
    ensemble = matgl.load_model(tmp_path / "ens")
    assert type(ensemble) is HybridEnsemble
    assert all(m.descriptor_set is None for m in ensemble.members)
    assert (
        main(
            ["predict", "--model", str(tmp_path / "ens"), "--data", str(path), "--out", str(out), "--overwrite", *cache]
        )
        == 0
    )
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", "prediction", "std"]
    assert (frame["std"] > 0).all()
    mean, std = ensemble.predict(structures, ids=ids, cache_dir=tmp_path / "cache", return_std=True)
    np.testing.assert_allclose(frame[["prediction", "std"]].to_numpy(), np.column_stack([mean, std]), rtol=1e-6)


@pytest.mark.slow
def test_train_with_a_held_out_test_split_writes_a_true_model_card(shared_data, tmp_path):
    from matgl.ext.pymatgen import get_element_list

    from matgl_hybrid.checkpoint import load_checkpoint
    from matgl_hybrid.model_card import heldout_split, holdout_metrics, training_figure, training_split
    from matgl_hybrid.training import device_name

    path, records = write_small_records(shared_data, "mp_binary_elasticity.json.gz", 40, tmp_path)
    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"backbone_kwargs": TINY_MEGNET, "head_hidden": [8], "progress": False}))
    out = tmp_path / "model"
    args = ["--data", str(path), "--target", "bulk_modulus_vrh", "--log10-target", "--units", "log10(GPa)"]
    args += ["--test-fraction", "0.25", "--config", str(config), "--max-epochs", "2", "--elements", "all"]
    assert main(["train", *args, "--no-select", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0

    record = json.loads((out / "training.json").read_text())
    test = record["test"]
    assert test["n"] == 10
    assert record["n_structures"] == 30
    assert not set(test["ids"]) & set(record["val_ids"])  # never used for early stopping
    assert set(test["ids"]) <= {r["id"] for r in records}
    held_out = heldout_split(record)
    expected = np.log10([r["bulk_modulus_vrh"] for r in records if r["id"] in set(test["ids"])])
    assert np.allclose(np.sort(held_out.targets), np.sort(expected))
    model = load_checkpoint(out)
    rescored = holdout_metrics(model, held_out, cache_dir=None)
    assert rescored["mae"] == pytest.approx(test["mae"], abs=1e-9)
    # the training part, rebuilt from the record (for models saved before they recorded their elements)
    trained = training_split(record)
    assert len(trained) == 30 - len(record["val_ids"])
    assert set(trained.ids) == {r["id"] for r in records} - set(test["ids"]) - set(record["val_ids"])
    assert model.trained_elements == tuple(get_element_list(trained.structures))
    without = {k: v for k, v in record.items() if k != "val_ids"}  # would count the validation rows as trained
    with pytest.raises(ValueError, match="names no validation ids"):
        training_split(without)
    with pytest.raises(ValueError, match="another version of the data"):
        training_split({**record, "n_structures": 31})
    card = (out / "model_card.md").read_text()
    assert f"| {test['mae']:.6g} |" in card
    assert "matgl-hybrid train --data" in card
    assert "--log10-target --units 'log10(GPa)'" in card
    assert record["device"] == device_name()
    assert record["device"] in card
    # the card's figure: MAE per epoch and the test parity, hash-checked with every file of the checkpoint
    assert "![training curves and test parity](training.png)" in card
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "  training.png\n" in (out / "SHA256SUMS").read_text()
    by_id = dict(zip(held_out.ids, held_out.targets, strict=True))
    targets = [by_id[i] for i in test["ids"]]
    fig = training_figure(record, targets)
    curves, parity_panel = fig.axes
    kept, training_curve, validation_curve = curves.get_lines()
    assert [line.get_label() for line in (training_curve, validation_curve)] == ["training", "validation"]
    assert validation_curve.get_ydata().tolist() == [r["val_MAE"] for r in record["members"][0]["history"]]
    assert kept.get_xdata()[0] == record["members"][0]["best_epoch"] + 1
    points = parity_panel.collections[0].get_offsets()
    np.testing.assert_allclose(points, np.column_stack([targets, test["predictions"]]))


def test_regression_metrics_of_the_model_card():
    # errors 0.5, 0, -1, 1; y_true mean 2.5, total sum of squares 5, residual sum of squares 2.25
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0]))
    assert metrics == {"mae": 0.625, "rmse": 0.75, "r2": pytest.approx(0.55, abs=1e-15), "max_abs_error": 1.0, "n": 4}
    assert all(type(metrics[k]) is float for k in ("mae", "rmse", "r2", "max_abs_error"))
    assert type(metrics["n"]) is int
    constant = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])  # R² undefined for a constant y_true
    assert np.isnan(constant["r2"])
    assert constant["mae"] == pytest.approx(2 / 3)
    assert constant["rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert constant["max_abs_error"] == 1.0
    assert np.isnan(regression_metrics([2.0, 2.0], [2.0, 2.0])["r2"])  # even when exact (r2_score says 1.0)


def test_pretrain_excludes_evaluation_structures_by_id_and_by_material(shared_data, tmp_path):
    import gzip

    from conftest import read_records

    from matgl_hybrid.data import as_structure, material_key

    records = read_records(DEMO_DATA / "de_jong_2015_elasticity.json.gz", 16)
    keys = [material_key(as_structure(r["structure"])) for r in records]
    assert len(set(keys)) == 16  # precondition: 16 different materials

    def write(name, rows):
        path = tmp_path / name
        with gzip.open(path, "wt") as f:
            json.dump(rows, f)
        return str(path)

    corpus_a = write("a.json.gz", records[:12])
    copies = [{**r, "id": f"copy-{r['id']}"} for r in records[:6]]  # the same crystals under other ids
    corpus_b = write("b.json.gz", copies + records[12:16])
    evaluated = write("eval.json.gz", records[:6])
    out = tmp_path / "encoder"
    args = ["pretrain", "--data", corpus_a, corpus_b, "--exclude", evaluated, "--max-epochs", "1", "--out", str(out)]
    assert main([*args, "--batch-size", "4", "--accelerator", "cpu"]) == 0
    record = json.loads((out / "pretraining.json").read_text())
    assert record["n_excluded"] == 12  # 6 by id, 6 by material
    assert record["n_structures"] == 10
    assert record["exclude"] == [evaluated]


def test_an_archive_of_featurized_values_fills_another_cache_and_a_bad_one_is_refused(tmp_path, capsys):
    import gzip

    from matgl_hybrid.descriptors import featurize

    source, _ = write_small_records(DEMO_DATA, "de_jong_2015_elasticity.json.gz", 40, tmp_path)
    archive = tmp_path / "values.json.gz"
    first = ["featurize", "--data", str(source), "--descriptors", "lattice", "--n-jobs", "1"]
    first += ["--cache-dir", str(tmp_path / "here"), "--out", str(tmp_path / "d.csv"), "--archive", str(archive)]
    assert main(first) == 0
    assert "archived the lattice values of 40 structures" in capsys.readouterr().out
    assert main(["cache-import", str(archive), "--cache-dir", str(tmp_path / "there")]) == 0
    structures = data.load(source, limit=30).structures
    imported = featurize(structures, "lattice", cache_dir=tmp_path / "there", progress=False)
    assert imported.attrs["n_computed"] == 0  # every value came from the archive
    computed = featurize(structures, "lattice", cache_dir=None, progress=False)
    pd.testing.assert_frame_equal(imported, computed)

    escaping = tmp_path / "escaping.json.gz"
    entry = {"lattice@3": {"values": [1.0], "error": None}}
    escaping.write_bytes(gzip.compress(json.dumps({"format": 1, "entries": {"../../x" + "0" * 58: entry}}).encode()))
    for bad, message in ((escaping, "malformed entry"), (tmp_path / "d.csv", "not a descriptor cache archive")):
        assert main(["cache-import", str(bad), "--cache-dir", str(tmp_path / "third")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "third").exists()


def test_a_config_file_and_the_flags_are_checked_together(tmp_path):
    """``--config`` holding ``readout: native`` with ``--descriptors none`` on the command line: the file was
    checked alone first and refused ("set descriptors to none"), though the flag does exactly that."""
    from matgl_hybrid.cli import build_parser
    from matgl_hybrid.cli.spec import train_spec

    config = tmp_path / "native.json"
    config.write_text(json.dumps({"readout": "native", "max_epochs": 7}))
    args = build_parser().parse_args(["train", "--data", "d.json", "--target", "y", "--out", str(tmp_path / "m"),
                                      "--config", str(config), "--descriptors", "none"])  # fmt: skip
    spec = train_spec(args)
    assert (spec.readout, spec.descriptor_set, spec.max_epochs) == ("native", None, 7)


def test_a_classifier_s_card_figure_shows_the_log_loss_that_chose_its_epoch():
    """A classifier's ``training.png`` plotted the MAE of its probabilities (its epoch was chosen by log loss) and
    a parity plot of probabilities against 0/1 labels."""
    from matgl_hybrid.model_card import training_figure

    history = [{"epoch": e, "train_Total_Loss": 0.7 - 0.1 * e, "val_Total_Loss": 0.69 - 0.05 * e,
                "train_MAE": 0.5, "val_MAE": 0.5} for e in range(3)]  # fmt: skip
    record = {"target_name": "is_metal", "units": None, "spec": {"task_type": "classification"},
              "members": [{"history": history, "best_epoch": 2}],
              "test": {"n": 2, "predictions": [0.2, 0.9]}}  # fmt: skip
    (ax,) = training_figure(record, [0.0, 1.0]).axes  # no parity panel
    assert ax.get_ylabel() == "log loss of is_metal"
    validation = next(line for line in ax.get_lines() if line.get_label() == "validation")
    assert validation.get_ydata().tolist() == [r["val_Total_Loss"] for r in history]
