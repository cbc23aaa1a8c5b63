"""Executors: where the cells of a run execute — this process (``local``), a Dask cluster
(``dask``), Slurm through submitit (``slurm``), or any engine a plugin adds.

Cells are the same pure functions of (config, cached artifacts) everywhere; an executor
only decides where they run. Executors are plugins (``xaibench_executors()`` yielding an
:class:`~xaibench.hookspecs.ExecutorRecord`); the built-ins live in ``xaibench_plugins.executors``
and go through the same registry. See ``docs/scale-out.md`` and ``docs/plugins.md``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..errors import XaibenchError
from .backend import Backend, Call, OnResult, OnSubmit
from .settings import ExecutorSettings, Resources, apply_flags, from_table, key_types

if TYPE_CHECKING:
    from ..cells import RunConfig
    from ..hookspecs import ExecutorRecord
    from ..plugins import Registry
    from ..runner import Summary

__all__ = ["Backend", "Call", "OnResult", "OnSubmit", "ExecutorSettings", "Resources", "lookup", "resolve",
           "run_with", "worker_options"]


def lookup(registry: Registry, name: str, where: str = "--executor") -> ExecutorRecord:
    """The executor record named ``name``; a one-line error listing the registered ones."""
    records = registry.records["executor"]
    if name not in records:
        raise XaibenchError(f"{where} {name!r}: no such executor; registered: {', '.join(sorted(records))} "
                            "(a new engine is a plugin: see docs/plugins.md)")
    return records[name]


def _other_keys(registry: Registry, name: str) -> Mapping[str, Any]:
    """Keys (and their types) of every other registered executor: a suite may hold settings
    for several executors and be run with any of them."""
    out: dict[str, Any] = {}
    for other, rec in sorted(registry.records["executor"].items()):
        if other != name:
            for k, tp in key_types(rec.options).items():
                out.setdefault(k, tp)
    return out


def resolve(name: str, table: Mapping[str, Any], args: Any = None,
            registry: Registry | None = None) -> ExecutorSettings:
    """Settings for executor ``name`` from the suite's ``[executor]`` table and the ``run``
    flags present in ``args`` (flags win). Without ``registry``, the installed plugins'."""
    if registry is None:
        from ..plugins import load

        registry = load()
    rec = lookup(registry, name)
    s = from_table(table, name, rec.options, _other_keys(registry, name))
    return apply_flags(s, rec.options, args)


def worker_options(settings: ExecutorSettings, auto_device: bool, record: ExecutorRecord | None = None) -> Any:
    """Thread count and device choice the workers apply before any work.

    Bit-identical results to a local run need the same torch thread count (a parallel
    reduction sums in a different order with another count), so by default workers use
    the driver's count; an executor may choose otherwise (Slurm: the job's CPUs)."""
    import torch

    from .jobs import WorkerOptions

    threads = settings.torch_threads
    if threads is None and record is not None and record.worker_threads is not None:
        threads = record.worker_threads(settings)
    if threads is None:
        threads = torch.get_num_threads()
    return WorkerOptions(torch_threads=int(threads), auto_device=auto_device)


def run_with(executor: str, cfg: RunConfig, args: Any = None, registry: Registry | None = None) -> Summary:
    """Run the suite of ``cfg`` with the registered executor ``executor``; its settings come
    from the suite's ``[executor]`` table and the ``run`` flags. ``registry`` defaults to the
    installed plugins plus the run's ``--plugin`` files (where an executor may live too)."""
    if registry is None:
        from ..plugins import load

        registry = load(cfg.plugin_files)
    rec = lookup(registry, executor)
    settings = resolve(executor, cfg.suite.executor, args, registry)
    if rec.preflight is not None:
        rec.preflight(settings)  # before any planning work
    if rec.in_process:
        from ..runner import run_local

        return run_local(cfg)
    if rec.factory is None:
        raise XaibenchError(f"executor {executor!r} ({registry.provider('executor', executor)}): "
                            "its record has no factory and is not in_process")
    from .driver import run_distributed

    auto = args is not None and getattr(args, "device", None) in (None, "auto")
    return run_distributed(cfg, settings, rec.factory, worker_options(settings, auto, rec))
