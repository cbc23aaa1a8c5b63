"""Which explainers run on which datasets: the spatial dimensions each record declares.

Why in the planner: a 2-D-only explainer on a volume dataset would fail cell by cell with
shape errors; instead its pairs are left out of the plan and the run summary says so once
per pair. Every record declares ``spatial_dims`` (default ``(2,)``: H×W slices); an
explainer runs on a dataset when it supports every dimensionality the dataset declares.
"""
from __future__ import annotations

from .plugins import Registry
from .suite import Entry, Suite


def dims_of(registry: Registry, e: Entry) -> tuple[int, ...]:
    """The spatial dimensionalities plugin ``e`` declares."""
    return tuple(getattr(registry.get(e.kind, e.name), "spatial_dims", (2,)))


def fits(registry: Registry, dataset: Entry, explainer: Entry) -> bool:
    """True when ``explainer`` supports every dimensionality ``dataset`` may produce."""
    return set(dims_of(registry, dataset)) <= set(dims_of(registry, explainer))


def explainers_for(registry: Registry, suite: Suite, dataset: Entry) -> list[Entry]:
    """The suite's explainers that run on ``dataset``, in suite order."""
    return [e for e in suite.explainers if fits(registry, dataset, e)]


def skip_notes(registry: Registry, suite: Suite) -> list[str]:
    """One line per (dataset, explainer) pair the plan leaves out."""
    notes = []
    for d in suite.datasets:
        for e in suite.explainers:
            if not fits(registry, d, e):
                want = "/".join(f"{k}-D" for k in dims_of(registry, d))
                have = "/".join(f"{k}-D" for k in dims_of(registry, e))
                notes.append(f"skipped explainer {e.title} on dataset {d.title}: the dataset is {want}, "
                             f"the explainer supports {have}")
    return notes
