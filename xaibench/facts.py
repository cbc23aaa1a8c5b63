"""Facts about a cell's plugins, recorded as data when the cell is made.

The leaderboard and the report read a results folder without loading plugin code (a folder
must never run code, and a ``--plugin`` file of the run may not be at hand), so what they
need to know about a cell's plugins is stored with it (``CellRecord.facts``, not hashed):
the metric's ``family``, the explainer's ``baseline`` kind, a swept entry's ``sweep`` (the
label it was expanded from and the options it varies). The swept ``params`` of a metric's
scores are added where the scores are stored (:func:`score_facts`).
"""
from __future__ import annotations

import math
from typing import Any

from .suite import Entry


def plugin_facts(registry: Any, metric: Entry | None = None, explainer: Entry | None = None) -> dict[str, Any]:
    """``family`` of ``metric`` and ``baseline`` (None: not a baseline) of ``explainer``."""
    out: dict[str, Any] = {}
    if metric is not None:
        out["family"] = str(getattr(registry.get("metric", metric.name), "family", "other") or "other")
    if explainer is not None:
        kind = getattr(registry.get("explainer", explainer.name), "baseline", None)
        out["baseline"] = str(kind) if kind else None
    return out


def sweep_facts(*entries: Entry) -> dict[str, Any]:
    """``{"sweep": {kind: {"of": label, "options": [...]}}}`` for the swept ones of ``entries``
    (a model cell's dataset and attack; empty when none is), so readers find sweeps from the
    stored options, not from labels."""
    return {"sweep": {e.kind: {"of": e.sweep_of, "options": list(e.swept)} for e in entries if e.swept}}


def score_params(scores: list[Any], who: str = "metric") -> dict[str, list]:
    """Score name → ``[parameter, value]`` for the scores that are one level of a swept
    parameter (``Score.param``, e.g. ``("q", 5.0)`` for ``delta-t@5%``); kept in the cell's facts."""
    out: dict[str, list] = {}
    for s in scores:
        p = getattr(s, "param", None)
        if p is None:
            continue
        ok = isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], (int, float))
        if not ok or isinstance(p[1], bool) or not math.isfinite(float(p[1])):
            raise ValueError(f"{who}: score {s.name}: param must be (name, finite number), not {p!r}")
        out[s.name] = [p[0], float(p[1])]
    return out


def score_facts(registry: Any, metric: Entry | None, explainer: Entry | None, scores: list[Any],
                who: str) -> dict[str, Any]:
    """The facts of a cell that stored ``scores``: its plugins' facts and the scores' params."""
    params = score_params(scores, who)
    return {**plugin_facts(registry, metric, explainer), **({"params": params} if params else {})}
