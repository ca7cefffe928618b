"""Run independent benchmark commands in parallel, e.g. many GNN folds sharing one GPU, with a deadline.

    python benchmarks/run_units.py units.txt --workers 12 --deadline 540 --logs /tmp/unit_logs

Each non-empty line of the file (``#`` starts a comment) is one shell command; commands start in file order as
workers free up. At the deadline the running commands are stopped: every benchmark here is resumable and writes
each finished fold or model at once, so nothing finished is lost and a rerun continues where this one stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def read_units(path: Path) -> list[str]:
    """The commands of a units file, in order."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def run_units(
    units: list[str], workers: int, deadline_s: float, logs: Path, start_by_s: float | None = None
) -> dict[str, int]:
    """Run ``units`` with ``workers`` at a time until done or ``deadline_s``; returns counts by outcome.

    No unit starts after ``start_by_s`` (default: the deadline), so that the last ones started can still finish
    instead of being stopped half-way.

    Each unit runs in its own process group; whatever ends the runner (deadline, Ctrl-C, SIGTERM) stops them all.
    """
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    start_by_s = deadline_s if start_by_s is None else min(start_by_s, deadline_s)
    pending = list(enumerate(units))
    running: dict[int, subprocess.Popen] = {}
    outcome = {"ok": 0, "failed": 0, "stopped": 0, "not started": 0}
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on SIGTERM too
    try:
        while pending or running:
            elapsed = time.monotonic() - start
            late = elapsed > deadline_s
            while pending and len(running) < workers and elapsed <= start_by_s:
                index, command = pending.pop(0)
                with open(logs / f"unit{index:03d}.log", "w") as log:
                    log.write(f"$ {command}\n")
                    log.flush()
                    running[index] = subprocess.Popen(
                        command, shell=True, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
            for index, process in list(running.items()):
                if late and process.poll() is None:
                    _stop(process)
                    outcome["stopped"] += 1
                elif process.poll() is not None:
                    outcome["ok" if process.returncode == 0 else "failed"] += 1
                else:
                    continue
                del running[index]
                elapsed = time.monotonic() - start
                print(f"[{elapsed:6.0f} s] unit {index} rc={process.returncode}: {units[index][:100]}", flush=True)
            if elapsed > start_by_s:
                outcome["not started"] += len(pending)
                pending.clear()
            time.sleep(1.0)
    finally:
        for process in running.values():
            _stop(process)
        signal.signal(signal.SIGTERM, previous)
    return outcome


def _stop(process: subprocess.Popen) -> None:
    """Kill a unit's whole process group (it may have ended on its own meanwhile)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("units", type=Path, help="file with one shell command per line")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds after which all stop")
    parser.add_argument(
        "--start-by", type=float, default=None, help="seconds after which no new unit starts (default: the deadline)"
    )
    parser.add_argument("--logs", type=Path, default=Path("unit_logs"))
    args = parser.parse_args()
    outcome = run_units(read_units(args.units), args.workers, args.deadline, args.logs, args.start_by)
    print(", ".join(f"{k}: {v}" for k, v in outcome.items()))


if __name__ == "__main__":
    main()
