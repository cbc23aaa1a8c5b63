"""User-facing errors: one line, no traceback, a documented exit code.

Exit codes (also in the README):
  0  everything ran (or was already stored)
  1  the run finished but some cells failed (listed in the summary and the store)
  2  bad input: unknown name, invalid suite file, bad data file, bad option, unusable
     results folder (a file, read-only, not a database, disk full, in use by another run)
  3  a plugin could not be loaded and the run needs it
  130 interrupted (Ctrl-C); what was stored stays, rerun to resume
"""
from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable

EXIT_OK = 0
EXIT_CELLS_FAILED = 1
EXIT_USAGE = 2
EXIT_PLUGIN = 3
EXIT_INTERRUPTED = 130


class XaibenchError(Exception):
    """An error caused by the user's input; printed as one line."""

    exit_code = EXIT_USAGE


class PluginError(XaibenchError):
    exit_code = EXIT_PLUGIN


class StorageError(XaibenchError):
    """The results folder cannot be written (full, read-only, not a database, locked):
    the run stops with one line; what was stored stays."""


class MapsError(Exception):
    """An explainer returned unusable maps (non-finite or the wrong shape): its maps cell
    fails with this message, and the metric cells that needed the maps point to it."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or an empty string."""
    choices = sorted(choices)
    hits = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if hits:
        return f" (did you mean: {', '.join(hits)}?)"
    return f" (known: {', '.join(choices)})" if choices else ""


def warn(message: str) -> None:
    """One warning line on standard error (a skipped file, a taken-over lock)."""
    print(f"xaibench: warning: {message}", file=sys.stderr, flush=True)
