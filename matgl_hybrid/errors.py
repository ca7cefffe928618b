"""Errors in what the user gave: the command line prints them as one line and exits with status 2.

Every other exception is a bug of this package or of a library it uses, and keeps its traceback.
"""

from __future__ import annotations


class UnknownNameError(ValueError, KeyError):
    """A name that is not known (a descriptor set, a registered checkpoint, a setting); also a ``KeyError``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NonFinitePredictions(ValueError):
    """A model predicted NaN or infinity for some structures (diverged weights, a broken target normalization)."""


class TrainingInterrupted(RuntimeError):
    """Training stopped by a signal (SIGTERM, SIGINT) before a model was written; the message names what to resume.

    The command line prints it as one line and exits with status 143 (128 + SIGTERM), never 0.
    """
