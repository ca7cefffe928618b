"""Timed descriptor runs shared by ``descriptor_speed.py`` and ``sim_descriptors.py`` (a helper module, not a
script): cold and cached runs of ``featurize`` on 1 and 2 cores, each cache in its own temporary folder."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from matgl_hybrid.descriptors import featurize


def timed(fn):
    """``(fn(), seconds it took)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def speed_runs(prefix: str, loads_model: bool = False) -> list[tuple[str, int, str]]:
    """``(label, n_jobs, cache folder)`` of the runs of one set: cold on 1 core (when the first run ``loads_model``,
    a second one with the model loaded), cold on 2 cores with and without the workers' start-up, then cached."""
    first = f"{prefix}, 1 core, cold cache"
    runs = [(f"{first}, incl. model load", 1, "one"), (f"{first}, model loaded", 1, "two")] if loads_model else []
    return [
        *(runs or [(first, 1, "one")]),
        (f"{prefix}, 2 cores, cold cache, incl. worker start-up", 2, "three"),
        (f"{prefix}, 2 cores, cold cache, workers running", 2, "four"),
        (f"{prefix}, cached (2nd run)", 1, "one"),
    ]


def featurize_runs(structures, descriptor_set: str, runs) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Seconds and values of ``featurize`` for each ``(label, n_jobs, cache subfolder)`` of ``runs``, in order.

    Cache subfolders live in one temporary folder: a run naming an earlier run's folder reads its cache.
    """
    seconds, values = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, jobs, folder in runs:
            frame, seconds[label] = timed(
                lambda j=jobs, c=Path(tmp) / folder: featurize(structures, descriptor_set, j, c, progress=False)
            )
            values[label] = frame.to_numpy()
            print(f"{label}: {seconds[label] / len(structures) * 1000:.1f} ms/structure")
    return seconds, values
