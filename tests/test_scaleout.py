"""Scale-out of the descriptor bank: ``featurize`` on a real dask cluster, and no orphaned workers when killed."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

import joblib
import pandas as pd
import psutil
import pytest
from conftest import DEMO_DATA

from matgl_hybrid.data import load
from matgl_hybrid.descriptors import bank as bank_module
from matgl_hybrid.descriptors import featurize, get_descriptor_set, structure_key
from matgl_hybrid.descriptors.cache import DescriptorCache

DE_JONG = "de_jong_2015_elasticity.json.gz"

#: How long the worker processes of a killed ``featurize`` may survive it (the issue's "not for minutes").
ORPHAN_GRACE_S = 10.0


# ------------------------------------------------------------------------------------------------------------ dask


@pytest.fixture(scope="module")
def dask_client():
    """A real ``LocalCluster``: 2 worker processes of 1 thread each, closed after the module's tests."""
    distributed = pytest.importorskip("distributed", reason="the [cluster] extra (dask[distributed]) is not installed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    try:
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@pytest.mark.slow
def test_featurize_on_dask_cluster_matches_serial_and_writes_a_valid_cache(tmp_path, dask_client, monkeypatch):
    from distributed import get_task_stream

    data = load(DEMO_DATA / DE_JONG, limit=12)
    serial = featurize(data.structures, "gong28", n_jobs=1, cache_dir=None, ids=data.ids, progress=False)

    cache_dir = tmp_path / "cache"
    with get_task_stream(dask_client) as stream, joblib.parallel_config(backend="dask"):
        on_dask = featurize(data.structures, "gong28", n_jobs=-1, cache_dir=cache_dir, ids=data.ids, progress=False)

    pd.testing.assert_frame_equal(on_dask, serial)  # NaNs in the same places count as equal
    assert on_dask.attrs["errors"] == serial.attrs["errors"]

    # The work ran as dask tasks on the cluster's worker processes (not in this process, not on loky).
    workers = set(dask_client.scheduler_info()["workers"])
    assert stream.data, "no dask task ran: featurize did not use the dask backend"
    assert {task["worker"] for task in stream.data} <= workers
    assert os.getpid() not in set(dask_client.run(os.getpid).values())
    assert any("compute_chunk" in str(task["key"]) for task in stream.data), [t["key"] for t in stream.data]

    # A valid cache: one file per structure holding every gong28 group, and a cached run recomputes nothing.
    cache = DescriptorCache(cache_dir)
    group_keys = {g.key for g in get_descriptor_set("gong28").groups}
    keys = {structure_key(s) for s in data.structures}
    assert len(list(cache_dir.rglob("*.json"))) == len(keys)
    for key in keys:
        assert group_keys <= set(cache.get(key)), key

    def fail(*args, **kwargs):
        raise AssertionError("a cached structure was recomputed")

    monkeypatch.setattr(bank_module, "compute_groups", fail)
    cached = featurize(data.structures, "gong28", n_jobs=1, cache_dir=cache_dir, ids=data.ids, progress=False)
    pd.testing.assert_frame_equal(cached, serial)


# ------------------------------------------------------------------------------------------- no orphaned workers


def _alive(process: psutil.Process) -> bool:
    """Whether ``process`` still runs (a dead one whose new parent has not reaped it yet counts as ended)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_loky_worker(process: psutil.Process) -> bool:
    try:
        return "popen_loky" in " ".join(process.cmdline())
    except psutil.Error:
        return False


#: Featurizes real structures on 2 loky workers, with a cache (its first file: the workers are computing).
_FEATURIZE_CHILD = """
from matgl_hybrid.data import load
from matgl_hybrid.descriptors import featurize
data = load({path!r}, limit=96)
featurize(data.structures, "gong28", n_jobs=2, cache_dir={cache!r}, ids=data.ids, progress=False)
print("finished", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "moment"),
    [(signal.SIGTERM, "computing"), (signal.SIGKILL, "computing"), (signal.SIGKILL, "starting")],
    ids=["SIGTERM-computing", "SIGKILL-computing", "SIGKILL-starting"],
)
@pytest.mark.slow
def test_killed_featurize_leaves_no_worker_processes(tmp_path, sig, moment):
    """Kill a featurizing process; none of its processes (loky workers, resource trackers) may outlive it for long.

    ``computing``: once the first results are cached; ``starting``: as soon as both loky workers exist (still
    importing, before any task reached them).
    """
    cache_dir = tmp_path / "cache"
    code = _FEATURIZE_CHILD.format(path=os.fspath(DEMO_DATA / DE_JONG), cache=os.fspath(cache_dir))
    log = tmp_path / "child.log"
    descendants: list[psutil.Process] = []
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    try:
        parent = psutil.Process(child.pid)

        def ready() -> bool:
            if moment == "computing":
                return any(cache_dir.rglob("*.json"))
            return sum(_is_loky_worker(p) for p in parent.children()) >= 2

        deadline = time.monotonic() + 120
        while not ready():
            assert child.poll() is None, f"featurize ended before it was killed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"featurize not {moment} after 120 s:\n{log.read_text()}"
            time.sleep(0.05)
        descendants = parent.children(recursive=True)
        workers = [p for p in descendants if _is_loky_worker(p)]
        assert len(workers) == 2, [p.cmdline() for p in descendants]

        child.send_signal(sig)
        assert child.wait(timeout=30) == -sig, f"featurize was not ended by {sig.name}:\n{log.read_text()}"
        killed = time.monotonic()
        while any(_alive(p) for p in descendants) and time.monotonic() - killed < ORPHAN_GRACE_S:
            time.sleep(0.1)
        survivors = [(p.pid, " ".join(p.cmdline())) for p in descendants if _alive(p)]
        assert not survivors, f"{ORPHAN_GRACE_S:.0f} s after {sig.name} these processes still run: {survivors}"
    finally:  # leave nothing behind, whatever failed
        if child.poll() is None:
            with contextlib.suppress(psutil.Error):
                descendants += psutil.Process(child.pid).children(recursive=True)
            child.kill()
            child.wait(timeout=30)
        for process in descendants:
            with contextlib.suppress(psutil.Error):
                if _alive(process):
                    process.kill()


@pytest.mark.slow
def test_interrupt_inside_featurize_loop_shuts_the_workers_down(tmp_path, monkeypatch):
    """Ctrl-C while results are stored (outside joblib's own result loop) stops the workers at once.

    The caught exception keeps featurize's traceback alive, as an interactive session does after Ctrl-C; the
    workers must not go on with the queued tasks (and then idle for minutes) meanwhile.
    """
    data = load(DEMO_DATA / DE_JONG, limit=64)
    seen: list[psutil.Process] = []
    original_put = DescriptorCache.put

    def interrupted(self, key, entries):
        original_put(self, key, entries)
        seen.extend(p for p in psutil.Process().children(recursive=True) if _is_loky_worker(p))
        raise KeyboardInterrupt

    monkeypatch.setattr(DescriptorCache, "put", interrupted)
    with pytest.raises(KeyboardInterrupt) as excinfo:
        featurize(data.structures, "gong28", n_jobs=2, cache_dir=tmp_path / "cache", ids=data.ids, progress=False)
    assert len(seen) == 2, "featurize did not run on 2 loky workers"
    stopped = time.monotonic()
    while any(_alive(p) for p in seen) and time.monotonic() - stopped < ORPHAN_GRACE_S:
        time.sleep(0.1)
    assert not [p.pid for p in seen if _alive(p)], "loky workers still run after the interrupt"
    del excinfo  # kept until here: the traceback (and featurize's frame) lived through the check
