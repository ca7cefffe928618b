"""Settings that cannot train are refused in one line before any work: wrong JSON types in a config, names and
combinations that failed only after featurization, devices this machine lacks, elements the model does not embed;
``none`` turns an optional number off from the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY

from matgl_hybrid.cli import build_parser, main
from matgl_hybrid.cli.spec import train_spec
from matgl_hybrid.evaluation.matbench.datasets import DatasetFileError
from matgl_hybrid.evaluation.matbench.runner import MatbenchRun
from matgl_hybrid.training import TrainSpec, fit, smallest_cutoff, train_file


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": "1e-3"}, r"values of the wrong type in TrainSpec: lr='1e-3' \(float\)"),
        ({"head_hidden": 64}, r"head_hidden=64"),
        ({"weight_decay": None}, r"weight_decay=None \(float\)"),
        ({"max_epochs": True}, r"max_epochs=True \(int\)"),
    ],
    ids=["lr-string", "head-int", "weight-decay-null", "epochs-bool"],
)
def test_a_config_value_of_the_wrong_type_is_a_one_line_value_error(values, message):
    """They raised TypeError deep in validate (``"1e-3" > 0``), which the CLI shows as a traceback."""
    with pytest.raises(ValueError, match=message):
        TrainSpec.from_dict(values)


def test_a_spec_round_trips_through_from_dict():
    spec = TrainSpec(head_hidden=(8, 4), element_types=["Si", "O"], ema_decay=0.99, devices=[0])
    assert TrainSpec.from_dict(spec.to_dict()) == spec
    assert TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"readout": "native"}, "readout 'native' keeps the backbone's own head, which cannot fuse descriptors"),
        ({"readout": "pool"}, "unknown readout 'pool'"),
        ({"fusion": "add"}, "unknown fusion 'add'"),
        ({"activation": "tanhh"}, "unknown activation 'tanhh'"),
        ({"descriptor_dim": 0}, "descriptor_dim and head_hidden must be integers >= 1"),
        ({"head_hidden": (64, -1)}, "descriptor_dim and head_hidden must be integers >= 1"),
        ({"cutoff": 0.0}, "cutoff must be a distance > 0"),
        ({"decay_alpha": -0.5}, r"decay_alpha must be in \[0, 1\]"),
        ({"lr": math.inf}, "lr must be a finite number > 0"),
        ({"weight_decay": math.nan}, "weight_decay must be >= 0"),
        ({"task_type": "classification", "loss": "mse_loss"}, "a classifier trains on binary cross-entropy"),
        ({"devices": 0}, "devices must be 'auto', a count >= 1"),
        ({"devices": "0"}, "devices must be 'auto', a count >= 1"),
    ],
)
def test_settings_that_cannot_train_as_asked_are_refused_on_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainSpec(**changes)


@pytest.mark.parametrize("devices", ["auto", 1, 4, -1, [0, 1], "0,1", "3"])
def test_lightning_device_values_are_accepted(devices):
    assert TrainSpec(devices=devices).devices == devices


def test_none_turns_an_optional_number_off_over_the_config(tmp_path):
    """``--ema-decay none`` was refused ("invalid float value"), so a config's average could not be turned off."""
    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"ema_decay": 0.999, "gradient_clip": 1.0}))
    parser = build_parser(["train"])
    common = ["train", "--data", "d.json", "--target", "K", "--out", "m", "--config", str(config)]
    assert train_spec(parser.parse_args(common)).ema_decay == 0.999
    spec = train_spec(parser.parse_args([*common, "--ema-decay", "none", "--gradient-clip", "None"]))
    assert spec.ema_decay is None
    assert spec.gradient_clip is None
    assert train_spec(parser.parse_args([*common, "--ema-decay", "0.99"])).ema_decay == 0.99


def test_a_missing_gpu_is_refused_before_any_work(elastic, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="accelerator 'gpu': there is no CUDA GPU here"):
        fit(elastic, spec=TrainSpec(**TINY, max_epochs=1, accelerator="gpu"))


def test_training_data_with_an_element_the_model_does_not_embed_is_refused_naming_entries(elastic, monkeypatch):
    """MatGL's graph converter failed with a bare KeyError ('Po') after the whole featurization."""
    import matgl_hybrid.training.datamodule as datamodule

    monkeypatch.setattr(datamodule, "featurize", lambda *a, **k: pytest.fail("featurized before the check"))
    elements = sorted({e.symbol for s in elastic.structures[:2] for e in s.elements})
    with pytest.raises(ValueError, match=rf"\(in \d+ entries: '.+'.*\) are not among the {len(elements)} elements"):
        fit(elastic, spec=TrainSpec(**TINY, max_epochs=1, element_types=elements))


def test_the_smallest_cutoff_of_the_candidates_decides_which_structures_are_connected():
    """With --skip-invalid, structures were checked at the run's cutoff only: a candidate with a shorter one failed
    on them mid-selection, after others had trained."""
    from matgl_hybrid.training import DescriptorForest

    spec = TrainSpec(cutoff=5.0)
    candidates = {"short": TrainSpec(cutoff=4.0), "forest": DescriptorForest("gong28")}
    assert smallest_cutoff(spec, candidates) == 4.0
    assert smallest_cutoff(spec) == 5.0


def test_log10_of_a_classifiers_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="log10_target takes the log10 of a regression target"):
        train_file("no such data.json", "is_metal", tmp_path / "m", TrainSpec(task_type="classification"),
                   log10_target=True)  # fmt: skip


def test_matbench_refuses_inner_folds_0_and_registers_candidates_before_training(tmp_path):
    """``inner_folds=0`` was taken for "no inner K-fold"; candidates.json was written only when the run finished,
    so a run killed midway accepted other candidates on its rerun."""
    with pytest.raises(ValueError, match="inner K-fold needs an integer k >= 2, got 0"):
        MatbenchRun(out=tmp_path / "a", tasks=["matbench_jdft2d"], inner_folds=0).run()
    candidates = {"fast": {"max_epochs": 2}, "slow": {"max_epochs": 4}}
    run = MatbenchRun(out=tmp_path / "b", tasks=["matbench_jdft2d"], candidates=candidates,
                      data_dir=tmp_path / "no data", download=False)  # fmt: skip
    with pytest.raises(DatasetFileError, match=r"matbench_jdft2d"):  # no dataset here: stops before any training
        run.run()
    assert json.loads((tmp_path / "b" / "candidates.json").read_text()) == candidates
    other = MatbenchRun(out=tmp_path / "b", tasks=["matbench_jdft2d"], candidates={"fast": {"max_epochs": 2}},
                        data_dir=tmp_path / "no data", download=False)  # fmt: skip
    with pytest.raises(ValueError, match="records candidates fast, slow, this run has candidates fast"):
        other.run()


def test_the_cli_says_a_wrong_config_type_in_one_line(tmp_path, capsys):
    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"lr": "1e-3"}))
    code = main(["train", "--data", "d.json", "--target", "K", "--out", str(tmp_path / "m"), "--config", str(config)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "lr='1e-3' (float)" in err
    assert "\n" not in err


def test_too_few_structures_for_the_processes_is_refused_before_training(elastic):
    """Two processes and two training structures: each got one, its only batch (of one) was dropped, no epoch
    trained, and fit returned the random initial weights with a validation MAE of inf."""
    tiny = elastic.subset(range(3))
    spec = TrainSpec(**TINY, max_epochs=1, val_fraction=0.34, accelerator="cpu", devices=2)
    with pytest.raises(ValueError, match="cannot train 2 training and 1 validation structures on 2 processes"):
        fit(tiny, spec=spec)


def test_a_config_with_a_field_under_both_its_names_is_refused():
    """The 0.1 name was dropped silently in favour of the new one (the constructor refuses both)."""
    with pytest.raises(ValueError, match=r"spec\.json gives both 'descriptors' and its new name 'descriptor_set'"):
        TrainSpec.from_dict({"descriptors": "gong28", "descriptor_set": "lattice"}, source="spec.json")


def test_a_candidate_is_checked_as_it_changes_the_runs_spec_not_the_defaults(tmp_path):
    """Checked alone against the defaults, MatGL's own MEGNet ({"readout": "native"}) in a run without descriptors
    was refused for the default descriptors, and a warm-up above the default budget for a run of a larger one."""
    from matgl_hybrid.training import candidate_specs, read_candidates

    path = tmp_path / "candidates.json"
    path.write_text(json.dumps({"megnet": {"readout": "native"}, "warm": {"warmup_epochs": 130}}))
    found = candidate_specs(TrainSpec(descriptor_set=None, max_epochs=200), read_candidates(path))
    assert found["megnet"].readout == "native"
    assert found["warm"].warmup_epochs == 130
    with pytest.raises(ValueError, match=r"candidate 'megnet'.*cannot fuse descriptors"):  # with the default ones
        candidate_specs(TrainSpec(), read_candidates(path))
    path.write_text(json.dumps({"a": {"max_epochs": 0}}))
    with pytest.raises(ValueError, match=r"candidates\.json: candidate 'a': invalid training settings: max_epochs"):
        read_candidates(path)  # a value no spec may hold: refused as the file is read


def test_a_pretrained_backbones_cutoff_and_missing_elements_are_refused_before_featurizing(elastic, monkeypatch):
    """A cutoff other than the potential's was refused only when the model was built, after every descriptor was
    computed; an element the potential lacks was refused without naming an entry."""
    import matgl_hybrid.training.datamodule as datamodule

    monkeypatch.setattr(datamodule, "featurize", lambda *a, **k: pytest.fail("featurized before the check"))
    spec = TrainSpec(**TINY | {"backbone_kwargs": {}}, backbone="tensornet-matpes-pbe", max_epochs=1, cutoff=6.0)
    with pytest.raises(ValueError, match=r"was pretrained with a 5\.0 Å cutoff, not 6\.0"):
        fit(elastic, spec=spec)
    monkeypatch.setattr(datamodule.potentials, "element_types", lambda name: ["O"])
    with pytest.raises(ValueError, match=r"\(in \d+ entries: '.+'.*\) are not among the 1 elements the pretrained"):
        fit(elastic, spec=TrainSpec(**TINY | {"backbone_kwargs": {}}, backbone="tensornet-matpes-pbe", max_epochs=1))


def test_more_inputs_that_were_tracebacks_are_one_line_errors(tmp_path, monkeypatch, capsys):
    """demo --n-structures 5 divided by a MAD of 0; pretrain --accelerator gpu without one and a Trainer Lightning
    refuses; backbone_kwargs that MatGL's class does not take (after featurizing); a bad info.json in validate."""
    from matgl_hybrid.models import HybridModel

    assert main(["demo", "--n-structures", "5", "--out", str(tmp_path / "demo")]) == 2
    assert "the demo needs at least 10 structures, got 5" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "d.json").write_text("[]")
    pretrain = ["pretrain", "--data", str(tmp_path / "d.json"), "--out", str(tmp_path / "enc")]
    assert main([*pretrain, "--accelerator", "gpu"]) == 2
    assert "there is no CUDA GPU here" in capsys.readouterr().err
    with pytest.raises(ValueError, match="backbone_kwargs may not set cutoff"):
        TrainSpec(backbone_kwargs={"cutoff": 4.0})
    with pytest.raises(ValueError, match="element_types must list distinct element symbols"):
        TrainSpec(element_types=["Fe", "O", "Fe"])
    with pytest.raises(ValueError, match="element_types must list distinct element symbols"):
        TrainSpec(element_types=["Fe", "Xx"])
    with pytest.raises(ValueError, match=r"backbone_kwargs \{'hidden_layer_sizes_input': 64\} do not build MatGL's"):
        HybridModel(element_types=("Na", "Cl"), descriptor_set=None, backbone_kwargs={"hidden_layer_sizes_input": 64})
    root = tmp_path / "submissions"
    (root / "matbench_v0.1_A").mkdir(parents=True)
    (root / "matbench_v0.1_A" / "info.json").write_text("[]")  # not an object: the folder's own finding
    assert main(["validate", str(root)]) in (0, 1, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_running_out_of_memory_is_one_line(monkeypatch, capsys):
    """torch.OutOfMemoryError (a RuntimeError) and joblib's TerminatedWorkerError were tracebacks."""
    import matgl_hybrid.cli.train as cli_train

    def out_of_memory(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli_train, "cmd_train", out_of_memory)
    parser_main = main(["train", "--data", "d.json", "--target", "K", "--out", "m"])
    assert parser_main == 2
    assert "out of memory (OutOfMemoryError: CUDA out of memory" in capsys.readouterr().err
