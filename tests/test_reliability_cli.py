"""The command line never destroys an input, replaces an output only when told to, and never reports a stopped
training as a success (issue "Reliability v2", bugs 2-4 and the weak cases of overwriting and start-up time)."""

import gzip
import json
import subprocess
import sys
import textwrap
import warnings

import pytest
from pymatgen.core import Lattice, Structure

import matgl_hybrid.cli.featurize
from matgl_hybrid.cli import EXIT_INTERRUPTED, main
from matgl_hybrid.datasets import DE_JONG_2015_PATH
from matgl_hybrid.descriptors import featurize_file
from matgl_hybrid.inference import predict_file


@pytest.fixture
def records(tmp_path):
    """Six de Jong structures with K_VRH as a record file; returns its path and its bytes."""
    with gzip.open(DE_JONG_2015_PATH, "rt") as f:
        rows = json.load(f)[:6]
    path = tmp_path / "data.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(rows, f)
    return path, path.read_bytes()


def _featurize(path, out, tmp_path, *extra):
    cache = str(tmp_path / "cache")
    options = ["--descriptors", "lattice", "--out", str(out), "--n-jobs", "1", "--cache-dir", cache]
    return main(["featurize", "--data", str(path), *options, *extra])


@pytest.mark.parametrize("flag", ["--out", "--archive"])
def test_featurize_refuses_to_write_over_its_input(records, tmp_path, capsys, flag):
    path, before = records
    out = tmp_path / "x.csv"
    args = ["--overwrite"] + (["--archive", str(path)] if flag == "--archive" else [])
    code = _featurize(path, path if flag == "--out" else out, tmp_path, *args)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert f"{flag} {path} is the input --data" in err
    assert "\n" not in err
    assert path.read_bytes() == before
    assert not out.exists()


def test_featurize_refuses_an_archive_at_the_csv_path(records, tmp_path, capsys):
    path, _ = records
    out = tmp_path / "x.csv"
    assert _featurize(path, out, tmp_path, "--archive", str(tmp_path / "." / "x.csv")) == 2
    assert "--out" in capsys.readouterr().err
    assert not out.exists()  # refused before any work: nothing written and then overwritten


def test_predict_refuses_to_write_over_its_input(records, tmp_path, capsys):
    path, before = records
    code = main(["predict", "--model", str(tmp_path / "no-model"), "--data", str(path), "--out", str(path)])
    assert code == 2
    assert "is the input --data" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_existing_output_files_are_replaced_only_with_overwrite(records, tmp_path, capsys):
    path, _ = records
    out, archive = tmp_path / "x.csv", tmp_path / "x.json.gz"
    out.write_text("mine\n")
    assert _featurize(path, out, tmp_path) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == "mine\n"
    assert _featurize(path, out, tmp_path, "--overwrite") == 0
    assert out.read_text().startswith("id,")
    archive.write_text("mine\n")
    assert _featurize(path, tmp_path / "y.csv", tmp_path, "--archive", str(archive)) == 2
    assert archive.read_text() == "mine\n"
    assert not (tmp_path / "y.csv").exists()
    predictions = tmp_path / "p.csv"
    predictions.write_text("mine\n")
    code = main(["predict", "--model", str(tmp_path / "m"), "--data", str(path), "--out", str(predictions)])
    assert code == 2
    assert predictions.read_text() == "mine\n"
    assert "--overwrite" in capsys.readouterr().err


def test_a_training_stopped_by_sigterm_exits_143_naming_the_folder_to_resume(records, tmp_path):
    """A real SIGTERM, sent by the process to itself at the end of the first validation epoch."""
    path, _ = records
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from matgl_hybrid.training import modules as callbacks
        original = callbacks.KeepBestWeights.on_validation_epoch_end
        def stop(self, trainer, module):
            original(self, trainer, module)
            os.kill(os.getpid(), signal.SIGTERM)
        callbacks.KeepBestWeights.on_validation_epoch_end = stop
        from matgl_hybrid.cli import main
        sys.exit(main(["train", "--no-select", "--data", {str(path)!r}, "--target", "K_VRH", "--out", {str(out)!r},
            "--checkpoint-dir", {str(ckpt)!r}, "--descriptors", "none", "--readout", "mean", "--max-epochs", "3",
            "--batch-size", "4", "--val-fraction", "0.34", "--cache-dir", {str(tmp_path / "cache")!r},
            "--n-jobs", "1", "--accelerator", "cpu"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_INTERRUPTED, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("matgl-hybrid train: interrupted:")
    assert str(ckpt) in last
    assert not (out / "SHA256SUMS").exists()


def test_version_and_help_import_no_heavy_library():
    """``--version`` and ``--help`` answer without importing torch, matgl or matminer (seconds each)."""
    script = (
        "import sys, contextlib, io\n"
        "from matgl_hybrid.cli import main\n"
        "for argv in (['--version'], ['--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('torch', 'matgl', 'matminer', 'lightning') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_command_has_its_entry_point_and_every_entry_point_a_command():
    """The command table and pyproject's entry points name the same commands (a new command needs both)."""
    from importlib.metadata import entry_points

    from matgl_hybrid.cli import COMMANDS, ENTRY_POINTS

    assert sorted(ep.name for ep in entry_points(group=ENTRY_POINTS)) == sorted(COMMANDS)


def test_the_library_workflows_refuse_to_write_over_their_input(records):
    """featurize_file and predict_file check it too, for Python users (before any model or descriptor is used)."""
    path, before = records
    with pytest.raises(ValueError, match="is the input source"):
        featurize_file(path, "lattice", out=path)
    with pytest.raises(ValueError, match="is the input source"):
        predict_file(object(), path, path)
    assert path.read_bytes() == before


def test_ctrl_c_while_featurizing_is_one_line_and_the_interrupted_status(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("matgl_hybrid.cli.featurize.featurize_file", interrupted)
    args = ["featurize", "--data", str(DE_JONG_2015_PATH), "--out", str(tmp_path / "d.csv"), "--no-cache"]
    assert main(args) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "featurize: interrupted; no output was half-written" in err


def test_a_target_named_as_a_descriptor_column_is_refused_before_featurizing(tmp_path, monkeypatch):
    structure = {"@module": "pymatgen.core.structure", "@class": "Structure", "lattice": {"matrix": [[4, 0, 0],
                 [0, 4, 0], [0, 0, 4]]}, "sites": [{"species": [{"element": "Cs", "occu": 1}], "abc": [0, 0, 0]},
                 {"species": [{"element": "Cl", "occu": 1}], "abc": [0.5, 0.5, 0.5]}]}  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"id": "x", "structure": structure, "a": 4.0}]))
    monkeypatch.setattr("matgl_hybrid.descriptors.table.featurize", None)  # never reached
    with pytest.raises(ValueError, match="target 'a' has the name of a descriptor column"):
        featurize_file(path, "lattice", target="a")


def test_a_command_prints_warnings_on_one_line_and_restores_the_format(monkeypatch, tmp_path):
    """Python shows a warning on two lines (source file and line, then the code that raised it): a command shows
    ``matgl-hybrid <command>: warning: <message>``, one line, and leaves the format as it found it."""
    shown = []

    def warn_and_stop(args):
        shown.append(warnings.formatwarning("3 entries (a, b):\n  rounded", UserWarning, "loading.py", 99))
        return 0

    monkeypatch.setattr(matgl_hybrid.cli.featurize, "cmd_cache_import", warn_and_stop)
    before = warnings.formatwarning
    assert main(["cache-import", str(tmp_path / "x.json.gz")]) == 0
    assert shown == ["matgl-hybrid cache-import: warning: 3 entries (a, b): rounded\n"]
    assert warnings.formatwarning is before


def test_pretrain_refuses_to_write_its_encoder_into_a_data_folder(tmp_path, capsys):
    """The encoder's files among the structure files: no command could load that folder again."""
    folder = tmp_path / "structures"
    folder.mkdir()
    Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(folder / "a.cif"))
    assert main(["pretrain", "--data", str(folder), "--out", str(folder), "--overwrite"]) == 2
    assert f"--out {folder} is the input --data {folder}" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["a.cif"]


def test_train_refuses_a_checkpoint_folder_that_is_its_out_folder_before_any_work(tmp_path, capsys):
    """Training wrote member_0/ and selection/ into --out, whose save then refused the folder as not empty."""
    out = tmp_path / "m"
    code = main(["train", "--data", str(DE_JONG_2015_PATH), "--target", "K_VRH", "--out", str(out),
                 "--checkpoint-dir", str(out)])  # fmt: skip
    assert code == 2
    assert f"--checkpoint-dir {out} is --out: give a folder of its own" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_a_missing_matbench_package_is_one_line_saying_how_to_install_it(tmp_path, capsys, monkeypatch):
    """matbench is no dependency (its pins are older): a wheel install met a ModuleNotFoundError traceback, and
    validate called a valid submission invalid."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matbench" else real(name, *a))
    out = tmp_path / "matbench_v0.1_Missing"
    assert main(["matbench", "--tasks", "matbench_jdft2d", "--out", str(out)]) == 2
    assert "pip install --no-deps matbench==0.6" in capsys.readouterr().err
    out.mkdir()
    (out / "results.json.gz").write_bytes(b"\x1f\x8b")
    assert main(["validate", str(out)]) == 2
    assert "pip install --no-deps matbench==0.6" in capsys.readouterr().err
