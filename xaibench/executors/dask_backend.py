"""Dask backend: jobs are futures on a scheduler (``--dask-address``) or on a LocalCluster.

Workers must see the results folder (a shared file system) and have xaibench and the
same plugins installed; ``--plugin`` files are read by path on the workers. A worker that
dies mid-job is replaced by the scheduler, which reruns the job; the rerun skips the cells
whose result files exist.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

from ..errors import XaibenchError
from .driver import Call, OnResult
from .settings import ExecutorSettings


class DaskBackend:
    def __init__(self, settings: ExecutorSettings, out: Path) -> None:
        from distributed import Client, LocalCluster

        self.cluster = None
        if settings.address:
            try:
                self.client = Client(settings.address, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise XaibenchError(f"--dask-address {settings.address}: cannot connect to the scheduler ({exc})") from None
        else:
            self.cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=settings.threads_per_worker,
                                        processes=True, dashboard_address=None, memory_limit=settings.memory_limit,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.run_id = uuid.uuid4().hex[:8]

    def run(self, stage: str, calls: list[Call], on_result: OnResult, on_submit) -> None:
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
