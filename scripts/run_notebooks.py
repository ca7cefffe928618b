"""Execute the notebooks of ``examples/`` from top to bottom; any error fails (``make test`` runs this).

Each notebook runs in its own fresh working folder (its ``features/`` cache and figures land there, never in the
repository) on a kernel of this very Python (``sys.executable``; a ``python3`` kernel that Jupyter has registered
for another environment is not used). By default the executed copies go to ``build/notebooks/``;
``--in-place`` writes the outputs (tables, figures) back into ``examples/`` to be committed.

    python scripts/run_notebooks.py              # check: execute, keep the executed copies in build/notebooks/
    python scripts/run_notebooks.py --in-place   # refresh the outputs stored in examples/
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: Seconds one cell may run before the notebook fails (the slowest cell trains two small models).
CELL_TIMEOUT_S = 900
#: The kernel the notebooks run on: this Python, registered in a temporary folder for the run.
KERNEL_NAME = "this-python"


def this_python_kernel(folder: Path) -> AsyncKernelManager:
    """A kernel manager for ``sys.executable``, its kernel spec written under ``folder``."""
    spec = folder / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL_NAME, "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(folder)])
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def execute(path: Path, out: Path) -> float:
    """Run the notebook ``path`` in a fresh folder and write the executed notebook to ``out``; returns seconds."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="notebook-") as workdir, tempfile.TemporaryDirectory() as kernels:
        client = NotebookClient(
            notebook,
            km=this_python_kernel(Path(kernels)),
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": workdir}},
        )
        client.execute(cleanup_kc=True)  # a kernel manager given in is not shut down unless asked
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        nbformat.write(notebook, tmp)
        tmp.replace(out)  # atomic: an interrupted run leaves the earlier file as it was
    finally:
        tmp.unlink(missing_ok=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-place", action="store_true", help="store the outputs in examples/ (to commit them)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every examples/*.ipynb")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted(EXAMPLES.glob("*.ipynb"))
    if not notebooks:
        print(f"no notebooks in {EXAMPLES}", file=sys.stderr)
        return 1
    for path in notebooks:
        if not path.is_file():
            print(f"{path}: no such notebook", file=sys.stderr)
            return 1
        out = path if args.in_place else ROOT / "build" / "notebooks" / path.name
        try:
            seconds = execute(path, out)
        except CellExecutionError as exc:  # one line; the cell's traceback is the notebook's to show when run
            print(f"{path}: a cell failed with {exc.ename}: {exc.evalue}", file=sys.stderr)
            return 1
        except (CellTimeoutError, DeadKernelError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"{path}: {type(exc).__name__}: {first} (a cell may run {CELL_TIMEOUT_S} s)", file=sys.stderr)
            return 1
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: ran in {seconds:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
