"""MatGL's pretrained universal potentials, shipped in the package and loaded offline, without unpickling.

Each potential is a folder: ``weights.safetensors`` (the ``Potential``'s state dict), ``config.json`` (its
constructor arguments), MatGL's model card ``README.md``, its licence notice ``LICENSE.matgl`` (BSD 3-Clause) and
``SHA256SUMS``. ``registry.json`` names the shipped ones with the sha256 of their weights and of their
``SHA256SUMS`` (both pinned: a shipped potential whose weights or any other file differ is refused, by name or by
folder), licence, training data and leakage note; they were converted from
MatGL's own files by ``scripts/ship_matgl_potentials.py``. A folder of your own with the same layout loads too::

    potential = load_potential("TensorNet-MatPES-PBE-v2025.1-PES")   # a matgl.apps.pes.Potential
    potential = load_potential("path/to/my_potential")
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from matgl_hybrid.checkpoint import MANIFEST, CheckpointError, check_config, check_pinned, verify

if TYPE_CHECKING:
    from matgl.apps.pes import Potential

HERE = Path(__file__).resolve().parent
REGISTRY = HERE / "registry.json"
#: The files a potential folder holds (besides ``SHA256SUMS``), all hash-checked before anything is read.
FILES = ("config.json", "weights.safetensors", "README.md", "LICENSE.matgl")


@dataclass(frozen=True)
class PotentialInfo:
    """A shipped potential as ``registry.json`` describes it."""

    name: str
    architecture: str
    backbone: str
    parameters: int
    training_data: str
    weights_sha256: str
    manifest_sha256: str
    licence: str
    source: str
    leakage: str


@cache
def shipped_potentials() -> dict[str, PotentialInfo]:
    """The potentials shipped with the package, by name (their folder's)."""
    entries = json.loads(REGISTRY.read_text())["potentials"]
    return {name: PotentialInfo(name, **{k: v for k, v in e.items() if k != "folder"}) for name, e in entries.items()}


def potential_folder(name: str | Path) -> Path:
    """The folder of a shipped potential's name, or ``name`` itself when it is a folder."""
    if str(name) in shipped_potentials():
        return HERE / str(name)
    if Path(name).is_dir():
        return Path(name)
    shipped = ", ".join(shipped_potentials())
    raise CheckpointError(f"no potential {str(name)!r}: shipped are {shipped}, or give a folder of that layout")


def _shipped_info(folder: Path) -> PotentialInfo | None:
    """The registry's entry of a shipped potential's folder (None: a folder of the user's)."""
    folder = folder.resolve()
    return next((info for name, info in shipped_potentials().items() if (HERE / name).resolve() == folder), None)


def verified_files(name: str | Path) -> tuple[Path, dict[str, str]]:
    """The potential's folder and ``{file: sha256}``, after every file was checked against ``SHA256SUMS``, and a
    shipped potential's weights and ``SHA256SUMS`` against the registry's pinned sha256 (given by name or folder).

    Raises:
        CheckpointError: a missing or modified file, named.
    """
    folder = potential_folder(name)
    digests = verify(folder, required=FILES)
    info = _shipped_info(folder)
    if info is None:
        return folder, digests
    what = f"the shipped potential {info.name}'s"
    check_pinned(folder / "weights.safetensors", info.weights_sha256, what, digests["weights.safetensors"])
    check_pinned(folder / MANIFEST, info.manifest_sha256, what)
    return folder, digests


def potential_config(name: str | Path) -> dict[str, Any]:
    """``config.json`` of a verified potential: ``architecture``, ``model_args``, ``potential_args``."""
    return _config(*verified_files(name))


def _config(folder: Path, digests: dict[str, str]) -> dict[str, Any]:
    """``config.json`` of a potential folder whose files were verified as ``digests``, its sizes bounded as a
    checkpoint's are (:func:`~matgl_hybrid.checkpoint.check_config`): a user's folder may be anyone's.

    Raises:
        CheckpointError: naming the file and what is wrong.
    """
    file = folder / "config.json"
    try:
        config = json.loads(_verified_bytes(folder, digests, "config.json"))
    except ValueError as exc:
        raise CheckpointError(f"{file} is not JSON: {exc}") from None
    fields = {"architecture": str, "model_args": dict, "potential_args": dict, "n_element_refs": int}
    if not isinstance(config, dict) or (wrong := [k for k, t in fields.items() if not isinstance(config.get(k), t)]):
        raise CheckpointError(f"{file} must be an object with {', '.join(fields)}; wrong or missing: "
                              f"{', '.join(wrong) if isinstance(config, dict) else 'all'}")  # fmt: skip
    check_config({k: v for k, v in config.items() if k != "architecture"}, file)
    return config


def _weights(folder: Path, digests: dict[str, str]) -> dict[str, torch.Tensor]:
    """The state dict of a potential folder whose files were verified as ``digests`` (safetensors: no code runs)."""
    from safetensors.torch import load

    return load(_verified_bytes(folder, digests, "weights.safetensors"))


def _verified_bytes(folder: Path, digests: dict[str, str], file: str) -> bytes:
    """The bytes of ``folder/file``, read once and hashed: they must be the ones :func:`verified_files` checked (a
    file replaced after its check and before its read, e.g. by a copy in progress, is refused, not loaded)."""
    content = (folder / file).read_bytes()
    if hashlib.sha256(content).hexdigest() != digests[file]:
        raise CheckpointError(f"{folder / file} changed after it was verified (being written meanwhile?): load again")
    return content


def weights_sha256(name: str | Path) -> str:
    """The sha256 of a verified potential's weights: what a model built on them records."""
    return verified_files(name)[1]["weights.safetensors"]


def check_reference(reference: dict[str, str]) -> None:
    """Warn, one line, when a model's pretrained reference ``{"name", "sha256"}`` is not a potential this package
    ships with those weights (a model fine-tuned from weights since replaced, or from a folder of one's own): the
    model predicts with its own fine-tuned weights all the same; only its provenance is not the shipped file."""
    info = shipped_potentials().get(reference.get("name", ""))
    if info is None:
        warnings.warn(f"the model was fine-tuned from {reference.get('name')!r}, which this package does not ship: "
                      "its provenance cannot be checked here", stacklevel=2)  # fmt: skip
    elif info.weights_sha256 != reference.get("sha256"):
        stated, shipped = str(reference.get("sha256"))[:12], info.weights_sha256[:12]
        warnings.warn(f"the model was fine-tuned from {info.name} weights of sha256 {stated}…, this package ships "
                      f"{shipped}…: the model keeps its own fine-tuned weights, but they did not start from the "
                      "shipped file", stacklevel=2)  # fmt: skip


def architecture_args(config: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of the potential's graph network (``dtype`` as a torch dtype)."""
    args = dict(config["model_args"])
    if isinstance(args.get("dtype"), str):
        args["dtype"] = getattr(torch, args["dtype"])
    return args


def element_types(name: str | Path) -> tuple[str, ...]:
    """The elements the potential embeds, in its order (a graph for it must index these)."""
    return tuple(potential_config(name)["model_args"]["element_types"])


def load_weights(name: str | Path) -> dict[str, torch.Tensor]:
    """The verified potential's state dict (safetensors: no code runs), from the very bytes that were hashed."""
    return _weights(*verified_files(name))


def load_potential(name: str | Path) -> Potential:
    """A shipped potential by name, or one in a folder of that layout, as a ``matgl.apps.pes.Potential`` (eval mode).

    Raises:
        CheckpointError: an unknown name, or a folder whose files are missing or modified (named).
    """
    from matgl.apps.pes import Potential
    from matgl.models import M3GNet, TensorNet

    folder, digests = verified_files(name)  # config and weights of one check
    config = _config(folder, digests)
    classes = {"TensorNet": TensorNet, "M3GNet": M3GNet}
    if config["architecture"] not in classes:
        raise CheckpointError(f"{name}: architecture {config['architecture']!r} is not one of {sorted(classes)}")
    try:
        model = classes[config["architecture"]](**architecture_args(config))
        refs = torch.zeros(config["n_element_refs"], dtype=torch.float64)
        potential = Potential(model=model, element_refs=refs, **config["potential_args"])
        potential.load_state_dict(_weights(folder, digests), strict=True)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:  # RuntimeError: weights of other shapes
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(f"{folder}: config.json and weights.safetensors do not build a potential: {first}") \
            from None
    return potential.eval()


def backbone_weights(name: str | Path) -> dict[str, torch.Tensor]:
    """The potential's graph-network weights (``model.*`` of its state dict, prefix removed)."""
    return {k.removeprefix("model."): v for k, v in load_weights(name).items() if k.startswith("model.")}
