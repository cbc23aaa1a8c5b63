"""The ``dask`` executor: jobs are futures on a scheduler (``--dask-address``) or on a LocalCluster.

Workers must see the results folder (a shared file system) and have xaibench and the
same plugins installed; ``--plugin`` files are read by path on the workers. A worker that
dies mid-job is replaced by the scheduler, which reruns the job; the rerun skips the cells
whose result files exist.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import xaibench
from xaibench.errors import XaibenchError
from xaibench.executors import Call, ExecutorSettings, OnResult, OnSubmit
from xaibench.hookspecs import ExecutorRecord
from xaibench.kit import require

WHO = "executor dask"


@dataclass(frozen=True)
class DaskOptions:
    """The ``[executor]`` keys of the ``dask`` executor."""

    address: str | None = None  # scheduler address (--dask-address), unset: start a LocalCluster
    workers: int = 2  # LocalCluster worker processes (--workers)
    threads_per_worker: int = 1  # jobs a LocalCluster worker runs at once
    memory_limit: str = "auto"  # per-worker memory limit of the LocalCluster

    def __post_init__(self) -> None:
        require(self.workers >= 1, WHO, "workers", "at least 1", self.workers)
        require(self.threads_per_worker >= 1, WHO, "threads_per_worker", "at least 1", self.threads_per_worker)


class DaskBackend:
    def __init__(self, settings: ExecutorSettings, out: Path) -> None:
        from distributed import Client, LocalCluster

        o: DaskOptions = settings.options
        self.cluster = None
        if o.address:
            try:
                self.client = Client(o.address, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise XaibenchError(f"--dask-address {o.address}: cannot connect to the scheduler ({exc})") from None
        else:
            self.cluster = LocalCluster(n_workers=o.workers, threads_per_worker=o.threads_per_worker,
                                        processes=True, dashboard_address=None, memory_limit=o.memory_limit,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.run_id = uuid.uuid4().hex[:8]

    def run(self, stage: str, calls: list[Call], on_result: OnResult, on_submit: OnSubmit) -> None:
        from distributed import as_completed

        futures = {}
        for c in calls:
            f = self.client.submit(c.fn, *c.args, key=f"xaibench-{c.key}-{self.run_id}", pure=False)
            futures[f] = c
            on_submit(c, f.key)
        try:
            for f in as_completed(list(futures)):
                c = futures[f]
                try:
                    res = f.result()
                except Exception as exc:  # noqa: BLE001 - the job's failure is reported, the run goes on
                    on_result(c, exc)
                    continue
                on_result(c, res)
        except BaseException:
            self.client.cancel(list(futures))
            raise

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


@xaibench.hookimpl
def xaibench_executors():
    yield ExecutorRecord("dask", "jobs as futures on a Dask scheduler or a LocalCluster", DaskBackend,
                         options=DaskOptions)
