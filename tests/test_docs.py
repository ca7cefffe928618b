"""Every code block of the README and the docs runs (so nothing a reader copies can rot), or says why it does not.

A ```python or ```bash block runs unless the line before it is ``<!-- not run: <reason> -->``. The blocks of each
page run in order in one working directory shared by all pages (pages that use ``hc_model`` run after the page
that trains it), with ``HOME`` in a temporary folder and these stand-ins, so every command runs as written:

- the data files the docs name (``my_structures.json.gz``, ``../shared/data/alexandria_heat_capacity.json.gz``, …)
  are the first 24 structures of the embedded de Jong set (``test_set.json.gz``: the next 6), their target renamed
  to the one the command asks for;
- a bash line is one ``matgl-hybrid`` command (``\\`` continuations joined, ``#`` comments dropped, ``~`` and globs
  expanded), run in this process; where the command has ``--max-epochs`` it trains for 1 epoch (see ``QUICK``).
"""

import argparse
import glob
import gzip
import json
import os
import re
import shlex
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymatgen.core import Structure

from matgl_hybrid.cli import build_parser, main
from matgl_hybrid.datasets import DE_JONG_2015_PATH

ROOT = Path(__file__).resolve().parents[1]
#: README.md, CONTRIBUTING.md and the docs site's pages (symlinks into the root are the same files, read once).
PAGES = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if not p.is_symlink()),
]
#: Pages whose blocks use a model another page trains run after it.
FIRST = ("README.md", "train-and-predict.md")
RUNNABLE = ("python", "bash", "sh", "shell", "console")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]+)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$")
#: The target each stand-in data file carries (None: structures only).
DATA_FILES = {
    "my_structures.json.gz": "my_property",
    "new_structures.json.gz": None,
    "structures.json.gz": None,
    "train.json.gz": "K_VRH",
    "heldout.json.gz": "heat_capacity",
    "test_set.json.gz": "K_VRH",
    "../shared/data/alexandria_heat_capacity.json.gz": "heat_capacity",
    "../shared/data/de_jong_2015_elasticity.json.gz": "K_VRH",
}


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None  # the reason, when the block is marked

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a markdown page, in order, with their ``not run`` reason if marked."""
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["body"].splitlines())
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(page, line, match["lang"], code, reason["reason"] if reason else None))
    return blocks


def commands(code: str) -> list[list[str]]:
    """The command lines of a bash block, split into words (continuations joined, comments dropped)."""
    lines = code.replace("\\\n", " ").splitlines()
    words = [shlex.split(line, comments=True) for line in lines]
    return [w for w in words if w]


def expanded(words: list[str]) -> list[str]:
    """``~`` and globs expanded as a shell would (a glob that matches nothing stays as written)."""
    out = []
    for word in words:
        word = os.path.expanduser(word)
        out.extend(sorted(glob.glob(word)) or [word] if any(c in word for c in "*?[") else [word])
    return out


#: The settings that make a documented command quick, each set where the command has the option (replacing a
#: value the docs give): one epoch of training, ridge probes only (the MLP probes are tested in test_probe.py).
QUICK = {"--max-epochs": "1", "--probes": "ridge"}
#: Set only where the docs give the option: no warm-up epochs (they must be fewer than the one epoch).
QUICK_WHERE_GIVEN = {"--warmup-epochs": "0"}


def quick(argv: list[str]) -> list[str]:
    """``argv`` with :data:`QUICK`'s values for the options its command accepts (read from the CLI's parser), and
    :data:`QUICK_WHERE_GIVEN`'s where it has them."""
    if argv[0].startswith("-"):
        return argv
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices.get(argv[0])
    accepted = {o for a in parser._actions for o in a.option_strings} if parser else set()
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in QUICK and word in accepted:
            skip = True
        elif word in QUICK_WHERE_GIVEN and word in accepted:
            out += [word, QUICK_WHERE_GIVEN[word]]
            skip = True
        else:
            out.append(word)
    return out + [w for option, value in QUICK.items() if option in accepted for w in (option, value)]


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in code_blocks(page) if b.language in RUNNABLE]


def test_every_code_block_runs_here_or_says_why_not():
    blocks = all_blocks()
    assert len(blocks) > 15  # the parser finds the docs' blocks
    for block in blocks:
        if block.not_run is not None:
            assert len(block.not_run) > 10, f"{block}: say why the block is not run"
        elif block.language == "python":
            compile(block.code, str(block), "exec")
        elif block.language == "bash":
            for words in commands(block.code):
                assert words[0] == "matgl-hybrid", (
                    f"{block}: only matgl-hybrid commands run here; mark the block `<!-- not run: why -->`"
                )
        else:
            pytest.fail(f"{block}: a {block.language} block is not run here; mark it `<!-- not run: why -->`")


def test_the_parser_sees_markers_continuations_and_indented_blocks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n<!-- not run: it needs a network -->\n```bash\nmake x\n```\n\n"
        "- item\n\n  ```python\n  x = 1\n  ```\n"
    )
    marked, indented = code_blocks(page)
    assert marked.not_run == "it needs a network"
    assert marked.line == 3
    assert indented.not_run is None
    assert indented.code == "x = 1"
    assert commands("a --b 1 \\\n   --c 2  # note\n# only a comment\n") == [["a", "--b", "1", "--c", "2"]]
    assert quick(["train", "--max-epochs", "200", "--out", "m"]) == ["train", "--out", "m", "--max-epochs", "1"]
    assert quick(["probe", "--data", "d", "--out", "p"]) == ["probe", "--data", "d", "--out", "p", "--probes", "ridge"]
    assert quick(["predict", "--model", "m"]) == ["predict", "--model", "m"]
    assert quick(["train", "--warmup-epochs", "5", "--max-epochs", "100"]) == [
        "train", "--warmup-epochs", "0", "--max-epochs", "1"
    ]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The docs' working directory: stand-in data files, a CIF, a CSV of user descriptors and NEGNN's config."""
    root = tmp_path_factory.mktemp("docs")
    work = root / "work"
    (root / "shared" / "data").mkdir(parents=True)
    work.mkdir()
    with gzip.open(DE_JONG_2015_PATH, "rt") as f:
        records = json.load(f)[:30]
    for name, target in DATA_FILES.items():
        chosen = records[24:30] if name == "test_set.json.gz" else records[:24]  # others than those it excludes
        rows = [
            {"id": r["id"], "structure": r["structure"], **({target: r["K_VRH"]} if target else {})} for r in chosen
        ]
        with gzip.open(work / name, "wt") as f:
            json.dump(rows, f)
    (work / "dft_gaps.csv").write_text("id,gap\n" + "".join(f"{r['id']},{i / 10}\n" for i, r in enumerate(records)))
    (work / "negnn.json").write_text(json.dumps({"node_embeddings": "encoder:0,1"}))
    Structure.from_dict(records[0]["structure"]).to(filename=str(work / "my_crystal.cif"))
    (work / "matbench_submissions").symlink_to(ROOT / "matbench_submissions")
    (root / "home").mkdir()
    return work


def run_blocks(page: Path, workdir: Path, capsys) -> None:
    """Run a page's runnable blocks in ``workdir`` (the current folder); a marker says it ran."""
    namespace = {"__name__": "docs"}
    for block in (b for b in code_blocks(page) if b.not_run is None and b.language in RUNNABLE):
        if block.language == "python":
            exec(compile(block.code, str(block), "exec"), namespace)
            continue
        for words in commands(block.code):
            argv = quick(expanded(words[1:]))
            try:
                status = main(argv)
            except SystemExit as exc:  # --help
                status = exc.code
            assert status in (0, None), f"{block}: `{shlex.join(words)}` exited {status}: {capsys.readouterr().err}"
    ran_marker(page, workdir).touch()


def ran_marker(page: Path, workdir: Path) -> Path:
    """The file that says a page's blocks ran in ``workdir``."""
    return workdir / (".ran-" + str(page.relative_to(ROOT)).replace("/", "_"))


def run_order(page: Path) -> tuple[int, str]:
    return (0 if page.name in FIRST else 1, str(page))


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [p for p in sorted(PAGES, key=run_order) if any(b.not_run is None for b in all_blocks() if b.page == p)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_blocks_of_each_page_run(page, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HOME", str(workdir.parent / "home"))
    monkeypatch.setenv("MATGL_HYBRID_CACHE", str(workdir.parent / "cache"))
    # the pages that train the models others use (hc_model, my_model) run first, also when a page runs alone (-k)
    producers = [ROOT / "README.md", ROOT / "docs" / "guide" / "train-and-predict.md"]
    for first in producers[: producers.index(page)] if page in producers else producers:
        if not ran_marker(first, workdir).exists():
            run_blocks(first, workdir, capsys)
    run_blocks(page, workdir, capsys)
    if page.name == "README.md":  # the quickstart saves a model with its card and prints the selection's summary
        assert (workdir / "my_model" / "model_card.md").is_file()
        assert "chose " in capsys.readouterr().out


def test_library_chatter_is_hidden_unless_verbose(elastic, capfd, caplog, monkeypatch, tmp_path):
    import logging

    from conftest import TINY
    from tqdm import tqdm

    from matgl_hybrid.graphs import build_dataset
    from matgl_hybrid.training import TrainSpec, fit

    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # PyG stays silent under pytest otherwise
    structures = elastic.structures[:3]
    elements = sorted({str(e) for s in structures for e in s.composition.elements})
    build_dataset(structures, elements, 5.0, ["a", "b", "c"])
    err = capfd.readouterr().err
    assert "Processing..." not in err
    assert "3/3" not in err  # MatGL's graph-conversion bar, which would arrive complete after the fact
    with tqdm(total=1, desc="outer stage"):  # below a running bar it is printed with cursor moves ("\x1b[A")
        build_dataset(structures, elements, 5.0, ["a", "b", "c"])
    assert "/3 [" not in capfd.readouterr().err
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"), warnings.catch_warnings(
        record=True
    ) as caught:
        warnings.simplefilter("always")
        caplog.set_level(logging.INFO, logger="lightning.pytorch.trainer.connectors.checkpoint_connector")
        fit(elastic, spec=TrainSpec(max_epochs=1, **TINY), checkpoint_dir=tmp_path / "run")
    assert not any("available" in r.getMessage() for r in caplog.records)  # "GPU available: False, used: False"
    assert not any("weights_only" in r.getMessage() for r in caplog.records)  # at every checkpoint save
    assert not any("LeafSpec" in str(w.message) for w in caught)  # torch's notice about Lightning's own code

    monkeypatch.setenv("MATGL_HYBRID_VERBOSE", "1")
    build_dataset(structures, elements, 5.0, ["a", "b", "c"])
    err = capfd.readouterr().err
    assert "Processing..." in err
    assert "3/3" in err
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        fit(elastic, spec=TrainSpec(max_epochs=1, **TINY))
    assert any("available" in r.getMessage() for r in caplog.records)


def test_the_notebook_runner_fails_on_a_failing_cell_and_stores_outputs(tmp_path, monkeypatch, capsys):
    """``scripts/run_notebooks.py`` (``make examples``): outputs are written; a cell that raises fails the run."""
    import importlib.util

    import nbformat
    from nbclient.exceptions import CellExecutionError
    from nbformat.v4 import new_code_cell, new_notebook

    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    cell = "import sys\nfrom pathlib import Path\nprint(Path.cwd().name, sys.executable)"
    nbformat.write(new_notebook(cells=[new_code_cell(cell)]), good)
    nbformat.write(new_notebook(cells=[new_code_cell("raise ValueError('broken example')")]), bad)
    other = tmp_path / "jupyter" / "kernels" / "python3"  # a python3 kernel registered for another environment
    other.mkdir(parents=True)
    (other / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-f", "{connection_file}"],
                                                   "display_name": "other", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    stopped = []  # each notebook's kernel is shut down when it ends (with its trained models in memory)

    class Recorded(runner.AsyncKernelManager):
        async def shutdown_kernel(self, *args, **kwargs):
            stopped.append(self.kernel_name)
            return await super().shutdown_kernel(*args, **kwargs)

    monkeypatch.setattr(runner, "AsyncKernelManager", Recorded)
    runner.execute(good, tmp_path / "out" / "good.ipynb")
    assert stopped == [runner.KERNEL_NAME]
    (output,) = nbformat.read(tmp_path / "out" / "good.ipynb", as_version=4).cells[0].outputs
    folder, python = output.text.split()
    assert folder.startswith("notebook-")  # ran in its own fresh folder, not in the repository
    assert python == sys.executable  # on this Python, not the kernel registered as python3
    with pytest.raises(CellExecutionError, match="broken example"):
        runner.execute(bad, tmp_path / "out" / "bad.ipynb")
    assert not (tmp_path / "out" / "bad.ipynb").exists()
    for argv, said in (([str(bad)], "a cell failed with ValueError: broken example"), ([str(tmp_path / "no.ipynb")],
                                                                                      "no such notebook")):
        monkeypatch.setattr(sys, "argv", ["run_notebooks.py", *argv])
        assert runner.main() == 1
        (line,) = capsys.readouterr().err.strip().splitlines()  # one line, naming the notebook
        assert line.startswith(argv[0])
        assert said in line
