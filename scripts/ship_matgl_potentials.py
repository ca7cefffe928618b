"""Ship MatGL's pretrained universal potentials in the package, in a format that loads without unpickling.

Reads the offline copies in ``../shared/weights/<folder>/`` (MatGL's ``model.pt``, ``state.pt``, ``README.md``;
checked against that folder's ``SHA256SUMS`` first, the licence notice against its pinned sha256) and writes
``matgl_hybrid/potentials/<folder>/`` (assembled beside it, then swapped in whole):
``weights.safetensors`` (the ``Potential``'s state dict), ``config.json`` (its constructor arguments as JSON),
MatGL's model card and licence notice, and ``SHA256SUMS``; then ``matgl_hybrid/potentials/registry.json``.

    python scripts/ship_matgl_potentials.py [--source ../shared/weights]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from matgl_hybrid.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "matgl_hybrid" / "potentials"
#: What each shipped potential is (MatGL's README of the folder and ../shared/weights/README.md).
ABOUT = {
    "TensorNet-MatPES-PBE-v2025.1-PES": {
        "backbone": "tensornet-matpes-pbe",
        "parameters": 837378,
        "training_data": "MatPES v2025.1 PBE: 300 K MD snapshots and Materials Project ground states (391 k "
        "training structures)",
    },
    "M3GNet-MatPES-PBE-v2025.1-PES": {
        "backbone": "m3gnet-matpes-pbe",
        "parameters": 664221,
        "training_data": "MatPES v2025.1 PBE: 300 K MD snapshots and Materials Project ground states (391 k "
        "training structures)",
    },
}
SOURCE = "github.com/materialyzeai/matgl, commit e9cde2291acd0b4c4a342428e7dd5e4d596b7bf9 (2025-12-01), "
SOURCE += "pretrained_models/"
LEAKAGE = (
    "MatPES samples MD trajectories started from Materials Project structures: the potential has seen MP-derived "
    "structures (not the labels of property tasks); an honest estimate for new materials needs test structures "
    "outside MP."
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: sha256 of MatGL's licence notice as copied into ``../shared/weights`` (its SHA256SUMS does not list it).
LICENCE_SHA256 = "a1f95e08d7efe8e911aed04b891d51b90ba46291585f43939134806670ee2a38"


def check_source(source: Path) -> None:
    if sha256(source / "LICENSE.matgl") != LICENCE_SHA256:
        raise SystemExit(f"{source / 'LICENSE.matgl'} is not MatGL's licence notice as pinned here")
    for line in (source / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.partition("  ")
        name = name.lstrip("*").removeprefix("./")
        if sha256(source / name) != digest:
            raise SystemExit(f"{source / name} differs from {source / 'SHA256SUMS'}")


def json_value(value):
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, tuple):
        return list(value)
    return value


def ship(source: Path, folder: str) -> dict:
    """Write the package's folder of potential ``folder`` (assembled in a hidden folder, then swapped in: an
    interrupted run leaves the shipped folder as it was); returns its registry entry."""
    src, out = source / folder, OUT / f".shipping.{folder}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    header = torch.load(src / "model.pt", map_location="cpu", weights_only=True)
    state = torch.load(src / "state.pt", map_location="cpu", weights_only=True)
    model = header["model"]
    config = {
        "architecture": model["@class"],
        "model_args": {k: json_value(v) for k, v in model["init_args"].items()},
        "potential_args": {k: v for k, v in header.items() if isinstance(v, bool)},
        "n_element_refs": int(header["element_refs"].numel()),
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    # AtomRef.onehot is derived by today's MatGL, not a weight (its loader skips it too: matgl.utils.io).
    weights = {k: v.contiguous() for k, v in state.items() if not k.endswith(".onehot")}
    save_file(weights, str(out / "weights.safetensors"))
    shutil.copyfile(src / "README.md", out / "README.md")
    shutil.copyfile(source / "LICENSE.matgl", out / "LICENSE.matgl")
    files = ["config.json", "weights.safetensors", "README.md", "LICENSE.matgl"]
    (out / "SHA256SUMS").write_text("".join(f"{sha256(out / f)}  {f}\n" for f in files))
    (out / "weights.safetensors").chmod(0o644)
    entry = {
        "folder": folder,
        "architecture": config["architecture"],
        **ABOUT[folder],
        "weights_sha256": sha256(out / "weights.safetensors"),
        "manifest_sha256": sha256(out / "SHA256SUMS"),
        "licence": "BSD-3-Clause, copyright Materials Virtual Lab (LICENSE.matgl)",
        "source": SOURCE + folder,
        "leakage": LEAKAGE,
    }
    old = OUT / f".replaced.{folder}"
    shutil.rmtree(old, ignore_errors=True)
    if (OUT / folder).exists():
        (OUT / folder).rename(old)
    out.rename(OUT / folder)
    shutil.rmtree(old, ignore_errors=True)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "weights")
    args = parser.parse_args()
    check_source(args.source)
    registry = {"potentials": {folder: ship(args.source, folder) for folder in ABOUT}}
    atomic_write_text(OUT / "registry.json", json.dumps(registry, indent=1) + "\n")
    print(f"wrote {', '.join(ABOUT)} and registry.json in {OUT}")


if __name__ == "__main__":
    main()
