"""Start-up time of the command line: ``matgl-hybrid --version``, ``--help`` and one command's ``--help``.

Each command runs ``--repeats`` times as a fresh process (the installed console script); the median and the
slowest wall time are reported against the 2 s target of issue "Reliability v2" (before: 9.6 s and 12 s, when the
command line imported the whole package). Writes ``benchmarks/results/cli_startup.{md,json,png}``.

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from matgl_hybrid.figures import Entry, Reference, bars, panels, save
from matgl_hybrid.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
#: The commands timed, and whether the 2 s target applies (a command's own help imports what its options list).
COMMANDS = {"--version": True, "--help": True, "train --help": False}
TARGET_S = 2.0


def time_command(words: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` fresh runs of ``matgl-hybrid words``."""
    exe = shutil.which("matgl-hybrid")
    if exe is None:
        raise SystemExit("matgl-hybrid is not installed: run `make install` first")
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([exe, *words], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per command (default: 5)")
    args = parser.parse_args()
    rows = []
    for command, targeted in COMMANDS.items():
        seconds = time_command(command.split(), args.repeats)
        rows.append(
            {
                "command": f"matgl-hybrid {command}",
                "median_s": statistics.median(seconds),
                "max_s": max(seconds),
                "runs_s": seconds,
                "target_s": TARGET_S if targeted else None,
                "meets_target": (max(seconds) < TARGET_S) if targeted else None,
            }
        )
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "cli_startup.json", json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Command-line start-up time",
        "",
        f"`python benchmarks/cli_startup.py --repeats {args.repeats}` on {machine}; fresh process each run.",
        "",
        "| command | median (s) | slowest (s) | target |",
        "|---|---:|---:|---|",
    ]
    for r in rows:
        target = "—" if r["target_s"] is None else f"< {TARGET_S:g} s: {'met' if r['meets_target'] else 'MISSED'}"
        lines.append(f"| `{r['command']}` | {r['median_s']:.2f} | {r['max_s']:.2f} | {target} |")
    lines += ["", "Before the command line imported lazily: `--version` 9.6 s, `--help` 12 s (issue's measurement)."]
    atomic_write_text(RESULTS / "cli_startup.md", "\n".join(lines) + "\n")
    fig, (ax,) = panels(1, size=(6.5, 2.8))
    entries = [Entry(r["command"], r["median_s"], r["runs_s"]) for r in rows]
    bars(ax, entries, quantity="wall time (bars: median, dots: runs)", units="s",
         references=[Reference("target", TARGET_S)], title="Command-line start-up")  # fmt: skip
    save(fig, RESULTS / "cli_startup.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
