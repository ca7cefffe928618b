"""The README's Python quickstart runs as written (so the first code a newcomer copies cannot rot)."""

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a markdown text, in order."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.slow
def test_the_readme_python_quickstart_runs_and_saves_a_model_with_its_card(tmp_path, monkeypatch, capsys):
    (block,) = python_blocks(README.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MATGL_HYBRID_CACHE", str(tmp_path / "cache"))
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert (tmp_path / "my_model" / "model_card.md").is_file()
    printed = capsys.readouterr().out
    assert "chose " in printed  # the selection's one-line summary, printed by the block
    assert "training.json" in os.listdir(tmp_path / "my_model")


def test_library_chatter_is_hidden_unless_verbose(elastic, capfd, caplog, monkeypatch):
    import logging

    from conftest import TINY

    from matgl_hybrid.graphs import build_dataset
    from matgl_hybrid.training import TrainSpec, fit

    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # PyG stays silent under pytest otherwise
    structures = elastic.structures[:3]
    elements = sorted({str(e) for s in structures for e in s.composition.elements})
    build_dataset(structures, elements, 5.0, ["a", "b", "c"])
    assert "Processing..." not in capfd.readouterr().err
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        fit(elastic, spec=TrainSpec(max_epochs=1, **TINY))
    assert not any("available" in r.getMessage() for r in caplog.records)  # "GPU available: False, used: False"

    monkeypatch.setenv("MATGL_HYBRID_VERBOSE", "1")
    build_dataset(structures, elements, 5.0, ["a", "b", "c"])
    assert "Processing..." in capfd.readouterr().err
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        fit(elastic, spec=TrainSpec(max_epochs=1, **TINY))
    assert any("available" in r.getMessage() for r in caplog.records)
