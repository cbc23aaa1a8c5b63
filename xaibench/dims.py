"""Which explainers run on which datasets: the spatial dimensions each record declares.

Why in the planner: a 2-D-only explainer on a volume dataset would fail cell by cell with
shape errors; instead its pairs are left out of the plan and the run summary says so once
per pair. Every record declares ``spatial_dims`` (default ``(2,)``: H×W slices); an
explainer runs on a dataset when it supports every dimensionality the dataset declares.

A dataset whose dimensionality depends on an option (``dims = 3``) says so on its *instance*:
an instance attribute ``spatial_dims`` is preferred over the record's, so the planner asks the
dataset built from the suite's options rather than a record that has to list every case.
"""
from __future__ import annotations

from .errors import XaibenchError
from .plugins import Registry, instantiate
from .suite import Entry, Suite


def _instance_dims(registry: Registry, e: Entry) -> tuple[int, ...] | None:
    """``spatial_dims`` of the dataset instance the suite's options build, if it has one.
    Invalid options give None: the record's dims stand and the dataset's cell reports the error."""
    if e.kind != "dataset" or not callable(getattr(registry.get(e.kind, e.name), "factory", None)):
        return None
    try:
        inst = instantiate(registry, e.kind, e.name, dict(e.options))
    except XaibenchError:
        return None
    dims = getattr(inst, "spatial_dims", None)
    return None if dims is None else tuple(int(d) for d in dims)


def dims_of(registry: Registry, e: Entry) -> tuple[int, ...]:
    """The spatial dimensionalities plugin ``e`` declares (a dataset instance's own first)."""
    own = _instance_dims(registry, e)
    return own if own is not None else tuple(getattr(registry.get(e.kind, e.name), "spatial_dims", (2,)))


def fits(registry: Registry, dataset: Entry, explainer: Entry) -> bool:
    """True when ``explainer`` supports every dimensionality ``dataset`` may produce."""
    return set(dims_of(registry, dataset)) <= set(dims_of(registry, explainer))


def explainers_for(registry: Registry, suite: Suite, dataset: Entry) -> list[Entry]:
    """The suite's explainers that run on ``dataset``, in suite order."""
    return [e for e in suite.explainers if fits(registry, dataset, e)]


def metrics_for(registry: Registry, suite: Suite, dataset: Entry) -> list[Entry]:
    """The suite's metrics that run on ``dataset``, in suite order (a 2-D-only metric is
    left out on volumes instead of failing or, worse, scoring shapes it does not know)."""
    return [m for m in suite.metrics if fits(registry, dataset, m)]


def skip_notes(registry: Registry, suite: Suite) -> list[str]:
    """One line per (dataset, explainer or metric) pair the plan leaves out."""
    notes = []
    for d in suite.datasets:
        for e in [*suite.explainers, *suite.metrics]:
            if not fits(registry, d, e):
                want = "/".join(f"{k}-D" for k in dims_of(registry, d))
                have = "/".join(f"{k}-D" for k in dims_of(registry, e))
                notes.append(f"skipped {e.kind} {e.title} on dataset {d.title}: the dataset is {want}, "
                             f"the {e.kind} supports {have}")
    return notes
