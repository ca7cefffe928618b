# The two set-up commands of the README: `make demo` (install + main job) and `make test` (install, lint, the docs
# site built strictly, the wheel built and run from a fresh environment, the example notebooks executed, tests).
PYTHON ?= python
# tools run through $(PYTHON) where they can (lint-imports has no module entry): those of the environment installed

.PHONY: install demo test lint docs wheel examples

install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev,cluster]"
	$(PYTHON) -m pip install --no-deps matbench==0.6

demo: install
	$(PYTHON) -m matgl_hybrid.cli demo

lint:
	$(PYTHON) -m ruff check .
	lint-imports

docs: install
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict --quiet

wheel: install
	$(PYTHON) scripts/check_wheel.py

examples: install
	$(PYTHON) scripts/run_notebooks.py

test: install lint docs wheel examples
	$(PYTHON) -m pytest -q --durations=15
