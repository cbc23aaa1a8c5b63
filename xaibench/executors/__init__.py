"""Executors: where the cells of a run execute — this process (``local``), a Dask cluster
(``dask``) or Slurm through submitit (``slurm``).

Cells are the same pure functions of (config, cached artifacts) everywhere; an executor
only decides where they run. See ``docs/scale-out.md``.
"""
from __future__ import annotations

from typing import Any

from ..cells import RunConfig
from ..errors import XaibenchError
from ..runner import Summary, run_local
from .settings import EXECUTORS, ExecutorSettings, resolve

__all__ = ["run_with", "resolve", "ExecutorSettings", "worker_options"]


def worker_options(settings: ExecutorSettings, auto_device: bool) -> Any:
    """Thread count and device choice the workers apply before any work.

    Bit-identical results to a local run need the same torch thread count (a parallel
    reduction sums in a different order with another count), so by default workers use
    the driver's count; on a real Slurm cluster the job's CPUs instead."""
    import torch

    from .jobs import WorkerOptions

    threads = settings.torch_threads
    if threads is None:
        r = settings.resources
        threads = (r.cpus or 0) if settings.name == "slurm" and (settings.cluster or "slurm") == "slurm" \
            else torch.get_num_threads()
    return WorkerOptions(torch_threads=int(threads), auto_device=auto_device)


def run_with(executor: str, cfg: RunConfig, args: Any = None) -> Summary:
    """Run the suite of ``cfg`` with ``executor`` (``local``, ``dask`` or ``slurm``); the
    executor's settings come from the suite's ``[executor]`` table and the ``run`` flags."""
    if executor not in EXECUTORS:
        raise XaibenchError(f"--executor {executor!r}: one of {', '.join(EXECUTORS)}")
    settings = resolve(executor, cfg.suite.executor, args)
    if executor == "local":
        return run_local(cfg)
    from .driver import run_distributed

    auto = args is not None and getattr(args, "device", None) in (None, "auto")
    if executor == "dask":
        from .dask_backend import DaskBackend as backend
    else:
        from .slurm_backend import SubmititBackend as backend
        from .slurm_backend import check_available

        check_available(settings)  # before any planning work
    return run_distributed(cfg, settings, backend, worker_options(settings, auto))
