"""Names are names: what a suite, entry label or plugin may be called.

Suite names become folders (``xaibench-results/NAME``, ``--publish DIR/NAME.csv``) and
labels become table cells and figure names, so both are checked against a small safe
character set *before* they reach a path: no separators, no ``..``, no markup characters.
"""
from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
# labels may carry a sweep tag such as ``explanation-backdoor[poison_rate=0.01]`` or
# ``region=[0, 12, 4, 20]``: brackets, = , : % ( ) and spaces, but nothing that is markup or a path
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-=,:%@()\[\] ]{0,199}")

NAME_RULE = "letters, digits and _ . + - (starting with a letter or digit, no '..')"
LABEL_RULE = "letters, digits, spaces and _ . + - = , : % @ ( ) [ ] (starting with a letter, digit or _)"


def bad_name(name: object) -> str | None:
    """Why ``name`` is not a safe name (suite or plugin), or ``None`` when it is."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        return f"{name!r} is not a valid name: use {NAME_RULE}"
    return None


def bad_label(label: object) -> str | None:
    """Why ``label`` is not a safe entry label, or ``None`` when it is."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label) or ".." in label:
        return f"{label!r} is not a valid label: use {LABEL_RULE}"
    return None
