"""The ``slurm`` executor (submitit): one job array per stage, resources from the settings.

Each job is a :class:`~xaibench.executors.jobs.Requeueable`: when Slurm preempts it or its
time limit nears, submitit's signal handler resubmits the same callable and the job
resumes from its result files. ``cluster = "local"`` runs the same jobs as local
processes through submitit's local executor (how the tests exercise this path), with the
array parallelism enforced by the driver.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xaibench
from xaibench.errors import XaibenchError
from xaibench.executors import Call, ExecutorSettings, OnResult, OnSubmit
from xaibench.executors.jobs import Requeueable, engine_dir
from xaibench.hookspecs import ExecutorRecord
from xaibench.kit import one_of

CLUSTERS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class SlurmOptions:
    """The ``[executor]`` keys of the ``slurm`` executor (job resources are shared keys)."""

    cluster: str = "slurm"  # slurm, local (submitit's local processes: testing without Slurm) or debug (in-process)

    def __post_init__(self) -> None:
        one_of(self.cluster, CLUSTERS, "executor slurm", "cluster")


def submitit_folder(out: Path) -> Path:
    return engine_dir(out, "submitit")


def check_available(settings: ExecutorSettings) -> str:
    """The submitit cluster to use; a one-line error when Slurm is asked for but absent."""
    cluster = settings.options.cluster
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise XaibenchError("--executor slurm: sbatch is not on PATH (no Slurm here); run from a Slurm login "
                            "node, or set cluster = \"local\" in the suite's [executor] table to test locally")
    return cluster


def worker_threads(settings: ExecutorSettings) -> int | None:
    """On a real cluster each job uses its CPUs; submitit's local processes keep the driver's count."""
    return (settings.resources.cpus or 0) if settings.options.cluster == "slurm" else None


class SubmititBackend:
    def __init__(self, settings: ExecutorSettings, out: Path) -> None:
        import submitit

        cluster = check_available(settings)
        self.settings, self.cluster = settings, cluster
        self.executor = submitit.AutoExecutor(folder=str(submitit_folder(out) / "%j"), cluster=cluster)

    def params(self, stage: str) -> dict[str, Any]:
        r = self.settings.for_stage(stage)
        p: dict[str, Any] = {"name": f"xaibench-{stage}", "timeout_min": int(r.time_min), "gpus_per_node": int(r.gpus),
                             "cpus_per_task": r.cpus, "mem_gb": r.mem_gb}
        if self.cluster == "slurm":
            p.update(slurm_partition=r.partition, slurm_array_parallelism=int(r.max_parallel),
                     slurm_account=r.account, slurm_qos=r.qos, slurm_constraint=r.constraint,
                     slurm_setup=list(r.setup) or None, slurm_additional_parameters=dict(r.additional) or None)
        return {k: v for k, v in p.items() if v is not None}

    def run(self, stage: str, calls: list[Call], on_result: OnResult, on_submit: OnSubmit) -> None:
        try:
            self.executor.update_parameters(**self.params(stage))
        except (ValueError, NameError, AssertionError) as exc:
            raise XaibenchError(f"[executor] settings for stage {stage}: {exc}") from None
        queue = list(calls)
        running: list[tuple[Call, Any]] = []
        limit = max(1, self.settings.for_stage(stage).max_parallel)
        try:
            if self.cluster == "slurm":  # one array; Slurm enforces the parallelism
                with self.executor.batch():
                    jobs = [self.executor.submit(Requeueable(c.fn, *c.args)) for c in queue]
                running = list(zip(queue, jobs))
                queue = []
                for c, j in running:
                    on_submit(c, j.job_id)
            while queue or running:
                while queue and len(running) < limit:  # local processes: the driver enforces it
                    c = queue.pop(0)
                    j = self.executor.submit(Requeueable(c.fn, *c.args))
                    on_submit(c, j.job_id)
                    running.append((c, j))
                finished = [(c, j) for c, j in running if j.done()]
                for c, j in finished:
                    running.remove((c, j))
                    try:
                        res = j.result()
                    except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                        on_result(c, exc)
                        continue
                    on_result(c, res)
                if not finished:
                    time.sleep(self.settings.poll_s)
        except BaseException:
            if self.cluster != "slurm":  # cluster jobs keep running and write their results; local ones stop
                for _, j in running:
                    j.cancel(check=False)
            raise

    def close(self) -> None:
        pass


@xaibench.hookimpl
def xaibench_executors():
    yield ExecutorRecord("slurm", "one Slurm job array per stage, through submitit (requeued on preemption)",
                         SubmititBackend, options=SlurmOptions, preflight=check_available,
                         worker_threads=worker_threads)
