"""Datasets embedded in the package (rebuilt by scripts/build_demo_dataset.py)."""

from pathlib import Path

DE_JONG_2015_PATH = Path(__file__).with_name("de_jong_2015_elasticity.json.gz")
