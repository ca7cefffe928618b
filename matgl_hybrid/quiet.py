"""Library chatter kept off the user's screen: PyG's "Processing... Done!", MatGL's graph-conversion bar, Lightning's
device lines and tips.

The package's own output (progress bars, results, warnings that matter) is untouched. ``MATGL_HYBRID_VERBOSE=1``
(``matgl-hybrid --verbose``) lets everything through.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator

#: Lines PyG prints to stderr around building a dataset.
PYG_CHATTER = frozenset({"Processing...", "Done!"})
#: A tqdm bar's text ("100%|##########| 216/216 [00:00<00:00, 3510.69it/s]"): MatGL's per-structure bar of graph
#: conversion, which, held back with the chatter, would only arrive complete after the fact.
#: Terminal control sequences (a bar printed below another one moves the cursor: "\x1b[A").
ANSI_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TQDM_BAR = re.compile(r"\s*\d+%\|.*\|\s*\d+/\d+\s*\[.*\]\s*")
#: Lightning's loggers of device summaries, tips, "`Trainer.fit` stopped" and checkpoint-saving notes (INFO level,
#: shown wherever the program logs INFO, e.g. beside matbench).
LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",  # "`weights_only` was not set" at every save
)


#: Deprecation notices Lightning's own code triggers in torch (not the user's to act on), as message regexes.
LIGHTNING_DEPRECATIONS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


def verbose() -> bool:
    """Whether the user asked for the libraries' own messages (``MATGL_HYBRID_VERBOSE=1``)."""
    return os.environ.get("MATGL_HYBRID_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def quiet_pyg() -> Iterator[None]:
    """Hide PyG's "Processing..." / "Done!" while a dataset is built; any other stderr output is passed on."""
    if verbose():
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        segments = (part for line in captured.getvalue().splitlines() for part in line.split("\r"))
        rest = [part for part in segments if part.strip() and part.strip() not in PYG_CHATTER
                and not TQDM_BAR.fullmatch(ANSI_CONTROL.sub("", part))]  # fmt: skip
        if rest:
            print("\n".join(rest), file=sys.stderr)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's INFO messages (device availability, tips, why fit stopped) and the deprecation notices it
    triggers in torch (:data:`LIGHTNING_DEPRECATIONS`) held back during a training."""
    if verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in LIGHTNING_DEPRECATIONS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
