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
