"""Check the release: build the wheel and sdist, ``twine check`` them, install the wheel (not editable) in a fresh
virtual environment and run the package from there.

The environment sees this machine's packages (``--system-site-packages``: torch, MatGL, … are not downloaded
again), but ``matgl_hybrid`` itself must come from the wheel: the check fails if it is imported from anywhere else.
It runs ``matgl-hybrid --version``, ``pretrained list`` and a prediction of a shipped checkpoint on structures of
the embedded demo set, and checks that the wheel carries every shipped model, MatGL's potentials and the licence
notice of every third-party file it ships.

    python scripts/check_wheel.py        # part of `make test`
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Files the wheel must carry (besides the code), as globs inside it.
REQUIRED = (
    "matgl_hybrid/descriptors/reference_structures.json",
    "matgl_hybrid/evaluation/leaderboard.json",
    "matgl_hybrid/pretrained_models/registry.json",
    "matgl_hybrid/potentials/registry.json",
    "matgl_hybrid/datasets/de_jong_2015_elasticity.json.gz",
)


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, command))}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def check_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in REQUIRED if name not in names]
    registry = json.loads((ROOT / "matgl_hybrid" / "pretrained_models" / "registry.json").read_text())["models"]
    for model in registry:
        if not any(n.startswith(f"matgl_hybrid/pretrained_models/{model}/weights.safetensors") for n in names):
            missing.append(f"the shipped model {model}")
    potentials = json.loads((ROOT / "matgl_hybrid" / "potentials" / "registry.json").read_text())["potentials"]
    for name in potentials:
        for file in ("weights.safetensors", "LICENSE.matgl", "README.md", "SHA256SUMS", "config.json"):
            if f"matgl_hybrid/potentials/{name}/{file}" not in names:
                missing.append(f"matgl_hybrid/potentials/{name}/{file}")
    if not any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names):
        missing.append("the package's LICENSE")
    if missing:
        raise SystemExit(f"{wheel.name} lacks: {', '.join(missing)}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="matgl-hybrid-wheel-") as tmp:
        tmp = Path(tmp)
        # neither --wheel nor --sdist: the sdist first, the wheel built from it (what a user's pip builds from PyPI)
        run(sys.executable, "-m", "build", "--outdir", tmp / "dist", ROOT)
        dists = sorted((tmp / "dist").iterdir())
        run(sys.executable, "-m", "twine", "check", "--strict", *dists)
        (wheel,) = [d for d in dists if d.suffix == ".whl"]
        check_contents(wheel)
        env = tmp / "env"
        venv.create(env, system_site_packages=True, with_pip=True)
        python, cli = env / "bin" / "python", env / "bin" / "matgl-hybrid"
        run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
        where = run(python, "-c", "import matgl_hybrid; print(matgl_hybrid.__file__)", cwd=tmp).strip()
        if not where.startswith(str(env)):
            raise SystemExit(f"matgl_hybrid was imported from {where}, not from the wheel installed in {env}")
        version = run(cli, "--version", cwd=tmp).strip()
        listed = run(cli, "pretrained", "list", cwd=tmp)
        with gzip.open(ROOT / "matgl_hybrid" / "datasets" / "de_jong_2015_elasticity.json.gz", "rt") as f:
            records = json.load(f)[:3]
        data = tmp / "three.json.gz"
        with gzip.open(data, "wt") as f:
            json.dump(records, f)
        name = "hybrid-megnet-log10-bulk-modulus"
        run(cli, "pretrained", "predict", name, "--data", data, "--out", tmp / "out.csv", "--no-cache", cwd=tmp)
        with open(tmp / "out.csv") as f:
            rows = list(csv.DictReader(f))
        finite = all(math.isfinite(float(r["prediction"])) for r in rows)
        if name not in listed or len(rows) != 3 or not finite:
            raise SystemExit(f"the installed wheel did not list or predict with {name}: {rows}")
        print(f"{wheel.name}: twine check passed, installed in a fresh environment: {version}; "
              f"{name} predicted {len(rows)} structures")  # fmt: skip


if __name__ == "__main__":
    main()
