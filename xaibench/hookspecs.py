"""Hook specifications: one hook per plugin kind, each yielding typed records.

A plugin module implements any of these with ``@xaibench.hookimpl`` and is announced
through the ``xaibench`` entry-point group (built-ins use the same door), or passed as a
single file with ``--plugin``. Unknown hook names are rejected at load time.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pluggy

PROJECT = "xaibench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class PluginRecord:
    """A named factory. ``factory(**options)`` builds the plugin instance from the
    suite's options; ``version`` enters every cache key, so bump it when results change;
    ``conformance`` holds options that make the plugin small and fast for the conformance
    test every registered plugin must pass (e.g. fewer RISE masks). ``spatial_dims`` says
    which image dimensionalities the plugin handles (2 = H×W slices, 3 = D×H×W volumes); the
    planner leaves an explainer out on a dataset whose dimensionality it does not support."""

    name: str
    description: str
    factory: Callable[..., Any]
    version: str = "1"
    spatial_dims: tuple[int, ...] = (2,)
    # small/fast options for the conformance test, or a function of a scratch folder that
    # writes what the plugin needs there (e.g. a tiny cohort) and returns the options
    conformance: Mapping[str, Any] | Callable[[Path], Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ExplainerRecord(PluginRecord):
    """``factory(**options) -> contracts.Explainer``."""

    # a model-free reference row rather than a method: "chance" (uniform random maps),
    # "prior" (the mean training mask: where the ROI usually is) or "model-free" (an
    # image-only map such as edges or intensity). The leaderboard shows these apart and
    # marks methods that do not beat the prior.
    baseline: str | None = None


@dataclass(frozen=True)
class MetricRecord(PluginRecord):
    """``factory(**options) -> contracts.Metric``. ``family`` groups the metric's columns
    into one leaderboard table with the other metrics of that family (e.g. ``localisation``,
    ``faithfulness``, ``attack``); a new family gets a table of its own."""

    family: str = "other"


@dataclass(frozen=True)
class DatasetRecord(PluginRecord):
    """``factory(**options) -> contracts.Dataset``."""


@dataclass(frozen=True)
class BackboneRecord(PluginRecord):
    """``factory(**options) -> contracts.BackboneBuilder``."""


@dataclass(frozen=True)
class AttackRecord(PluginRecord):
    """``factory(**options) -> contracts.Attack``."""


@dataclass(frozen=True)
class SuiteRecord:
    """A named suite file (TOML)."""

    name: str
    description: str
    path: Path


@dataclass(frozen=True)
class ExecutorRecord:
    """Where a run's cells execute (``xaibench run --executor NAME`` or the suite's
    ``[executor] name``). Executors never change results, so there is no ``version``.

    * ``factory(settings, out)`` builds the engine: an object following
      :class:`xaibench.executors.Backend` (``run`` one stage's calls, ``close``), given the
      :class:`xaibench.executors.ExecutorSettings` and the results folder; ``None`` for an
      ``in_process`` executor.
    * ``options`` — a frozen dataclass whose fields are the extra keys this executor accepts in
      the ``[executor]`` table (type, default, a comment as help); its ``__post_init__`` checks
      values. The instance is ``settings.options``. The shared keys (``torch_threads``,
      ``poll_s``, job resources) need no declaring.
    * ``preflight(settings)`` runs before any planning: fail early in one line (e.g. "no
      ``sbatch`` here") instead of after the plan is written.
    * ``in_process`` — run the cells in this process, without the driver (``local``).
    * ``worker_threads(settings)`` — torch threads of each job when the suite sets no
      ``torch_threads``; ``None`` keeps the driver's count (bit-identical to a local run).
    """

    name: str
    description: str
    factory: Callable[[Any, Path], Any] | None
    options: type | None = None
    preflight: Callable[[Any], None] | None = None
    in_process: bool = False
    worker_threads: Callable[[Any], int | None] | None = None


@hookspec
def xaibench_explainers() -> Iterable[ExplainerRecord]:
    """Yield explainers.

    Example::

        @xaibench.hookimpl
        def xaibench_explainers():
            yield ExplainerRecord("input-x-grad", "gradient × input", InputXGrad)
    """


@hookspec
def xaibench_metrics() -> Iterable[MetricRecord]:
    """Yield metrics.

    Example::

        @xaibench.hookimpl
        def xaibench_metrics():
            yield MetricRecord("map-max", "largest attribution value", MapMax)
    """


@hookspec
def xaibench_datasets() -> Iterable[DatasetRecord]:
    """Yield datasets.

    Example::

        @xaibench.hookimpl
        def xaibench_datasets():
            yield DatasetRecord("my-cohort", "our 3T scans", MyCohort)
    """


@hookspec
def xaibench_backbones() -> Iterable[BackboneRecord]:
    """Yield backbones.

    Example::

        @xaibench.hookimpl
        def xaibench_backbones():
            yield BackboneRecord("densenet121", "timm densenet121", build_densenet)
    """


@hookspec
def xaibench_attacks() -> Iterable[AttackRecord]:
    """Yield attacks.

    Example::

        @xaibench.hookimpl
        def xaibench_attacks():
            yield AttackRecord("blend", "blended-trigger backdoor", Blend)
    """


@hookspec
def xaibench_suites() -> Iterable[SuiteRecord]:
    """Yield suite files.

    Example::

        @xaibench.hookimpl
        def xaibench_suites():
            yield SuiteRecord("my-grid", "our paper's grid", Path(__file__).with_name("grid.toml"))
    """


@hookspec
def xaibench_executors() -> Iterable[ExecutorRecord]:
    """Yield executors (engines that run a suite's jobs).

    Example::

        @xaibench.hookimpl
        def xaibench_executors():
            yield ExecutorRecord("ray", "jobs as Ray tasks", RayBackend, options=RayOptions)
    """
