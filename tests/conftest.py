"""Shared pytest fixtures."""

import contextlib
import gzip
import json
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from matgl_hybrid import data
from matgl_hybrid.datasets import DE_JONG_2015_PATH

# The real datasets live next to the repository, in ../shared/data (see its README.md).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: The folder of the packaged de Jong et al. 2015 set: tests that need only it run without ../shared.
DEMO_DATA = DE_JONG_2015_PATH.parent


@pytest.fixture(scope="session", autouse=True)
def own_cache_root(tmp_path_factory):
    """Every test's default cache root (descriptors, downloads) is a folder of this session, never the user's
    ``~/.cache/matgl-hybrid``: a test neither reads values cached by another program nor writes into its cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATGL_HYBRID_CACHE", str(tmp_path_factory.mktemp("cache_root")))
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the shared real datasets; the test is skipped when it is absent (fails when ``CI`` is set)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):  # CI has ../shared beside the clone: a wrong path must not skip tests silently
            pytest.fail(f"shared datasets not found at {SHARED_DATA} (CI is set)")
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


def read_records(path: Path, n: int | None = None) -> list[dict]:
    """The first ``n`` records of a record file."""
    with gzip.open(path, "rt") as f:
        return json.load(f)[:n]


def write_small_records(shared: Path, name: str, n: int, out: Path) -> tuple[Path, list[dict]]:
    """Copy the first ``n`` records of ``shared/name`` to ``out/small.json.gz``; returns (path, records)."""
    records = read_records(shared / name, n)
    path = out / "small.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(records, f)
    return path, records


#: A one-block MEGNet small enough for fast tests.
TINY_MEGNET = {
    "dim_node_embedding": 8,
    "dim_edge_embedding": 16,
    "hidden_layer_sizes_input": (16, 8),
    "hidden_layer_sizes_conv": (16, 16, 8),
    "nblocks": 1,
}

#: The columns of the ``lattice`` descriptor set, in order.
LATTICE_COLUMNS = ["a", "b", "c", "alpha", "beta", "gamma", "volume", "natoms", "crystal_system_int"]


#: Training settings small enough for fast tests (a one-block MEGNet, the lattice descriptors).
TINY = {"backbone_kwargs": TINY_MEGNET, "batch_size": 8, "descriptor_set": "lattice", "progress": False}


@pytest.fixture(scope="session")
def elastic() -> data.StructureData:
    """The first 24 structures of the packaged de Jong et al. 2015 set, with K_VRH (GPa)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data.load(DEMO_DATA / "de_jong_2015_elasticity.json.gz", target="K_VRH", limit=24)


def in_two_threads_meeting_after(monkeypatch, owner: object, method: str, calls: list[Callable[[], object]]) -> list:
    """The results of the two ``calls``, each in its own thread, with ``owner.method`` patched to wait for the other
    thread after it returns: both pass before either reads what the pass left behind, unless a lock keeps the
    second out (then the wait times out and each runs alone)."""
    original, meet = getattr(owner, method), threading.Barrier(2)

    def then_meet(*args, **kwargs):
        out = original(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):  # locked out: the other never comes
            meet.wait(timeout=2)
        return out

    monkeypatch.setattr(owner, method, then_meet)
    found: dict[int, object] = {}
    threads = [threading.Thread(target=lambda k=k, c=c: found.update({k: c()})) for k, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [found[k] for k in range(len(calls))]
