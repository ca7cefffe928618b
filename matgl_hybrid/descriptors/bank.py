"""``featurize``: descriptor values for many structures, in parallel, through the disk cache."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import LokyBackend, MultiprocessingBackend, ThreadingBackend, get_active_backend
from pymatgen.core import Structure
from tqdm.auto import tqdm

from matgl_hybrid.data import as_structure, validate_structure
from matgl_hybrid.descriptors.cache import DescriptorCache, Entry, export_archive, structure_key
from matgl_hybrid.descriptors.groups import FeatureGroup, StructureContext, is_transient
from matgl_hybrid.descriptors.sets import DescriptorSpec, get_descriptor_set


def compute_groups(structure: Structure, groups: Sequence[FeatureGroup]) -> list[Entry]:
    """Compute ``groups`` on one structure, sharing its analyses; a group that raises gives NaNs and the error.

    Returns one entry per group, in order (the caller keys them: a group's key needs its value digest, which a
    worker process need not compute).
    """
    ctx = StructureContext(structure)
    out: list[Entry] = []
    for group in groups:
        try:
            values = [float(v) if np.isfinite(float(v)) else float("nan") for v in group.compute(ctx)]  # ±inf: missing
            if len(values) != len(group.labels):
                raise ValueError(f"{group.name} returned {len(values)} values for {len(group.labels)} labels")
            out.append({"values": values, "error": None})
        except Exception as exc:  # matminer raises anything: record it, NaN for this group only
            out.append({"values": [float("nan")] * len(group.labels), "error": f"{type(exc).__name__}: {exc}"})
    return out


def compute_chunk(
    position: int, structures: Sequence[Structure], groups: Sequence[Sequence[FeatureGroup]]
) -> tuple[int, list[list[Entry]]]:
    """:func:`compute_groups` over chunk ``position`` of structures (one parallel task: amortizes dispatch), returned
    with its position: chunks come back as they finish, not in order."""
    return position, [compute_groups(s, g) for s, g in zip(structures, groups, strict=True)]


def _chunks(todo: list[int], n_jobs: int, slow: bool = False) -> list[list[int]]:
    """Split ``todo`` into about four chunks per worker, at most 32 structures each (for progress); one structure
    each when ``slow`` (a pretrained potential's groups: seconds to minutes a structure, each cached as it ends, so
    an interrupt loses one structure's work per worker and the bar moves with each)."""
    workers = effective_n_jobs(n_jobs)
    size = 1 if slow else max(1, min(32, -(-len(todo) // (4 * workers))))
    return [todo[i : i + size] for i in range(0, len(todo), size)]


#: Seconds between two checks, in a local worker process, that the process running ``featurize`` is alive.
PARENT_CHECK_INTERVAL = 0.5


def _make_exit_with_parent():
    """Build :data:`_exit_with_parent`, the initializer of ``featurize``'s loky workers.

    Built inside this function (once), it is a closure that cloudpickle sends to loky's workers by value: a new
    worker runs it right after it starts, without first importing this module and its seconds of matminer and
    pymatgen imports, so a worker whose parent died while it started ends at once too.
    """

    def exit_with_parent(parent_pid: int, interval: float) -> None:
        """End this worker process within ``interval`` seconds of the end of process ``parent_pid``.

        loky's workers wait ``idle_worker_timeout`` (300 s) for their next task, or forever in a half-sent one,
        and so outlive a parent that was killed (SIGKILL, or SIGTERM with its default action); nothing in loky
        watches the parent on POSIX. A daemon thread here does, through the worker's parent pid, which changes
        when the parent dies (the worker is reparented); if the worker was started by a fork server, it asks after
        ``parent_pid`` itself. Nothing changes while the parent lives (the executor stays reusable). Not on
        Windows (no reparenting there, and ``os.kill(pid, 0)`` would not be a harmless probe).
        """
        if os.name != "posix" or os.getpid() == parent_pid:
            return
        ppid = os.getppid()

        def parent_alive() -> bool:
            if os.getppid() != ppid:  # the process that started this worker died: it was reparented
                return False
            if ppid == parent_pid:
                return True
            try:  # started by a fork server (or the parent died before this ran): probe the parent itself
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
            return True

        def watch() -> None:
            while parent_alive():
                time.sleep(interval)
            os._exit(1)

        if not parent_alive():
            os._exit(1)
        threading.Thread(target=watch, name="matgl-hybrid-parent-watch", daemon=True).start()

    return exit_with_parent


#: One object for all calls: joblib reuses its loky executor only while the initializer and its arguments match.
_exit_with_parent = _make_exit_with_parent()


def _run(structures, missing, chunks, n_jobs):
    """Compute the missing groups of the structures in ``chunks``, one task per chunk; yields ``(position, values)``
    as chunks finish (a chunk that takes long holds back none of the others, which are cached at once).

    On joblib's default backend, loky (local worker processes), every worker gets :data:`_exit_with_parent` as its
    initializer, so that no worker outlives this process by more than a second or so.
    That changes loky's reusable executor only in its initializer: consecutive ``featurize`` calls share their
    workers; a joblib call elsewhere with other executor arguments starts fresh workers, as joblib always does
    then. A backend configured with its own initializer, and other backends (dask, ray, threads), are left as they
    are, but for two refusals: joblib's multiprocessing backend (it cannot send the groups' functions), and threads
    for the groups of a pretrained potential (one shared calculator per process).
    """
    backend, _ = get_active_backend()
    shared = any(g.weights is not None for groups in missing.values() for g in groups)
    if isinstance(backend, ThreadingBackend) and shared and effective_n_jobs(n_jobs) > 1:
        raise ValueError(
            "descriptor groups of a pretrained potential (chgnet, tensornet_matpes, sim:) share one calculator per "
            "process: compute them with processes (loky, dask, ray), not threads"
        )
    if type(backend) is MultiprocessingBackend and effective_n_jobs(n_jobs) > 1:  # pickle, not cloudpickle
        raise ValueError("joblib's multiprocessing backend cannot send descriptor groups to its workers (it pickles "
                         "without cloudpickle): use the default backend (loky), dask or ray")  # fmt: skip
    options = {}
    if isinstance(backend, LokyBackend) and "initializer" not in backend.backend_kwargs:
        options = {"initializer": _exit_with_parent, "initargs": (os.getpid(), PARENT_CHECK_INTERVAL)}
    tasks = (
        delayed(compute_chunk)(k, [structures[i] for i in chunk], [missing[i] for i in chunk])
        for k, chunk in enumerate(chunks)
    )
    # results as they come (progress, cache writes per chunk) where the backend can; multiprocessing and ray cannot
    streamed = getattr(backend, "supports_return_generator", True)
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered" if streamed else "list", **options)(tasks)
    return results if streamed else (chunk for chunk in results)  # a generator either way (the caller closes it)


def featurize(
    structures: Sequence,
    descriptor_set: DescriptorSpec = "gong28",
    n_jobs: int = 1,
    cache_dir: str | Path | None = None,
    *,
    ids: Sequence[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Descriptor values of ``structures``, one row per structure in input order.

    Args:
        structures: pymatgen ``Structure`` or ASE ``Atoms`` objects (ordered, non-empty).
        descriptor_set: a set name (``"gong28"``, ``"composition"``, ``"lattice"``, or ``+``-joined), a list of
            matminer featurizers, :class:`~matgl_hybrid.descriptors.UserDescriptors`, or a mix.
        n_jobs: parallel workers through joblib (``-1``: all cores). Wrap the call in
            ``joblib.parallel_config(backend="dask")`` (or ``"ray"``) to run on a cluster; joblib's
            ``multiprocessing`` backend is refused (ValueError), and so are threads for the groups of a pretrained
            potential (``chgnet``, ``tensornet_matpes``, ``sim:``: one calculator per process).
        cache_dir: directory of the on-disk cache; ``None`` disables it. When values are to be computed, it is
            checked to be writable before any is (an OSError naming it otherwise).
        ids: structure ids, used in error reports and to align user descriptors keyed by id.
        progress: show a progress bar.

    Returns:
        DataFrame of shape (n_structures, n_descriptors), columns named as matminer labels them. A feature whose
        featurizer raised for a structure is NaN; ``df.attrs["errors"]`` lists each such case as
        ``{"row", "id", "group", "columns", "error"}``; ``df.attrs["n_computed"]`` counts the structures whose
        values (some or all) were computed rather than read from the cache.
    """
    dset = get_descriptor_set(descriptor_set)
    given_ids = ids is not None  # user descriptors keyed by id need the structures' own, not row numbers
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(structures))]
    if len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids for {len(structures)} structures")
    structures = [as_structure(s, i) for s, i in zip(structures, ids, strict=True)]
    for s, i in zip(structures, ids, strict=True):
        validate_structure(s, i)

    cache = DescriptorCache(cache_dir) if cache_dir is not None else None
    keys = [structure_key(s) for s in structures] if cache else [None] * len(structures)
    entries: list[dict[str, Entry]] = [cache.get(k) if cache else {} for k in keys]
    missing = {i: [g for g in dset.groups if not _usable(e.get(g.key), g)] for i, e in enumerate(entries)}
    todo = [i for i in range(len(entries)) if missing[i]]
    if todo and cache:
        cache.check_writable()  # before any work; a cache that holds every value is only read, and may be read-only

    if todo:
        chunks = _chunks(todo, n_jobs, slow=any(g.weights is not None for i in todo for g in missing[i]))
        bar = tqdm(total=len(todo), desc=f"featurize {dset.name}", unit="structure", disable=not progress)
        # closing: an exception or interrupt (KeyboardInterrupt) raised in this loop, outside joblib's own result
        # loop, closes the generator at once, so that joblib aborts the run and kills its workers instead of leaving
        # them busy with the queued tasks until the generator happens to be garbage collected.
        pending = dict(enumerate(chunks))
        with bar, contextlib.closing(_run(structures, missing, chunks, n_jobs)) as results:
            try:
                for position, computed in results:
                    chunk = pending.pop(position)
                    for i, values in zip(chunk, computed, strict=True):
                        new = {g.key: entry for g, entry in zip(missing[i], values, strict=True)}
                        entries[i].update(new)
                        if cache:
                            cache.put(keys[i], new)
                    bar.update(len(chunk))
            except Exception as exc:
                if type(exc).__name__ != "TerminatedWorkerError":  # joblib's: the OOM killer, a segfault
                    raise
                started = [ids[i] for k in sorted(pending)[: 2 * effective_n_jobs(n_jobs)] for i in pending[k]]
                finished = len(todo) - sum(map(len, pending.values()))
                raise type(exc)(
                    f"a worker process died computing one of the structures {', '.join(started[:8])}"
                    f"{', …' if len(started) > 8 else ''} (out of memory?); the {finished} finished structures' "
                    f"values are {'cached' if cache else 'lost (no cache_dir)'}"
                ) from exc

    frame = _assemble(dset, entries, ids, given_ids)
    frame.attrs["n_computed"] = len(todo)
    return frame


def _usable(entry: Entry | None, group: FeatureGroup) -> bool:
    """Whether a cached ``entry`` holds ``group``'s values (one per label) or a final failure; anything else (a
    transient failure, :func:`~matgl_hybrid.descriptors.groups.is_transient`) is computed again."""
    values = entry.get("values") if isinstance(entry, dict) else None
    error = entry.get("error") if isinstance(entry, dict) else None
    transient = isinstance(error, str) and is_transient(error)
    return isinstance(values, list) and len(values) == len(group.labels) and not transient


def archive_values(
    structures: Sequence[Structure], descriptor_set: str, cache_dir: str | Path, path: str | Path
) -> int:
    """Write the values of ``descriptor_set`` cached in ``cache_dir`` for ``structures`` to the archive ``path``
    (:func:`~matgl_hybrid.descriptors.cache.export_archive`); returns the number of structures archived."""
    keys = [g.key for g in get_descriptor_set(descriptor_set).groups]
    return export_archive(DescriptorCache(cache_dir), structures, keys, path)


def _assemble(dset, entries: list[dict[str, Entry]], ids: list[str], given_ids: bool) -> pd.DataFrame:
    """Lay group entries out as the set's columns and collect the recorded errors; user descriptors keyed by id are
    aligned by ``ids`` only when the caller gave them (``given_ids``)."""
    n = len(entries)
    blocks, errors = [], []
    for group in dset.groups:
        values = np.array([e[group.key]["values"] for e in entries], dtype=float).reshape(n, len(group.labels))
        blocks.append(pd.DataFrame(values, columns=list(group.labels)))
        for row, e in enumerate(entries):
            if e[group.key]["error"] is not None:
                errors.append(
                    {
                        "row": row,
                        "id": ids[row],
                        "group": group.name,
                        "columns": [c for c in group.labels if c in dset.columns],
                        "error": e[group.key]["error"],
                    }
                )
    blocks += [user.align(n, ids if given_ids else None) for user in dset.user]
    frame = pd.concat(blocks, axis=1) if blocks else pd.DataFrame(index=range(n))
    frame = frame.loc[:, ~frame.columns.duplicated()][list(dset.columns)]
    frame.attrs["errors"] = errors
    frame.attrs["descriptor_set"] = dset.name
    frame.attrs["descriptor_version"] = dset.version
    if errors:
        warnings.warn(
            f"{len(errors)} featurizer failure(s) in {len({e['row'] for e in errors})} structure(s) gave NaN "
            f"values; first: row {errors[0]['row']} (id {errors[0]['id']}), {errors[0]['group']}: "
            f"{errors[0]['error']}. See df.attrs['errors'].",
            stacklevel=3,
        )
    return frame
