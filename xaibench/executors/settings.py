"""Executor settings: the suite's ``[executor]`` table, overridden by ``xaibench run`` flags.

Kept in one frozen dataclass so the driver, the workers and the docs agree on one list of
keys; an unknown key or a bad value fails before any job is submitted.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from ..errors import XaibenchError

EXECUTORS = ("local", "dask", "slurm")
STAGES = ("train", "evaluate")  # sub-tables that override the job resources of one stage
CLUSTERS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class Resources:
    """What one job asks the cluster for (Slurm; Dask ignores these)."""

    partition: str | None = None
    gpus: int = 0  # GPUs per job
    cpus: int | None = None  # CPUs per job
    mem_gb: float | None = None
    time_min: int = 120  # time limit per job, minutes
    max_parallel: int = 64  # jobs of one array running at once
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load, conda activate…)
    additional: Mapping[str, Any] = field(default_factory=dict)  # any other sbatch option


@dataclass(frozen=True)
class ExecutorSettings:
    name: str = "local"
    # dask
    address: str | None = None  # scheduler address; None starts a LocalCluster
    workers: int = 2  # LocalCluster worker processes
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    # slurm (submitit)
    cluster: str | None = None  # None: detect Slurm; "local": submitit's local executor (testing)
    resources: Resources = Resources()
    stage_resources: Mapping[str, Resources] = field(default_factory=dict)
    # both
    torch_threads: int | None = None  # None: the driver's count (bit-identical to a local run); 0: leave as is
    poll_s: float = 2.0

    def for_stage(self, stage: str) -> Resources:
        return self.stage_resources.get(stage, self.resources)


RESOURCE_KEYS = {f.name for f in fields(Resources)}
TOP_KEYS = {"name", "address", "workers", "threads_per_worker", "memory_limit", "cluster", "torch_threads",
            "poll_s", *RESOURCE_KEYS, *STAGES}
ALLOWED = ", ".join(sorted(TOP_KEYS))

_INT = {"gpus", "cpus", "time_min", "max_parallel", "workers", "threads_per_worker", "torch_threads"}
_FLOAT = {"mem_gb", "poll_s"}
_STR = {"partition", "account", "qos", "constraint", "address", "memory_limit", "cluster", "name"}


def _check(key: str, value: Any, where: str) -> Any:
    if key in _INT:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise XaibenchError(f"{where} {key} = {value!r}: must be a non-negative integer")
    elif key in _FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise XaibenchError(f"{where} {key} = {value!r}: must be a positive number")
        value = float(value)
    elif key in _STR:
        if not isinstance(value, str) or not value:
            raise XaibenchError(f"{where} {key} = {value!r}: must be a non-empty string")
    elif key == "setup":
        if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
            raise XaibenchError(f"{where} setup: must be a list of shell lines")
        value = tuple(value)
    elif key == "additional":
        if not isinstance(value, Mapping):
            raise XaibenchError(f"{where} additional: must be a table of sbatch options")
        value = dict(value)
    return value


def _resources(base: Resources, raw: Mapping[str, Any], where: str) -> Resources:
    upd = {}
    for k, v in raw.items():
        if k not in RESOURCE_KEYS:
            raise XaibenchError(f"{where}: unknown key {k!r} (allowed: {', '.join(sorted(RESOURCE_KEYS))})")
        upd[k] = _check(k, v, where)
    return replace(base, **upd)


def from_table(table: Mapping[str, Any], where: str = "suite [executor]") -> ExecutorSettings:
    """Parse a suite's ``[executor]`` table (see ``docs/scale-out.md`` for the keys)."""
    for k in table:
        if k not in TOP_KEYS:
            raise XaibenchError(f"{where}: unknown key {k!r} (allowed: {ALLOWED})")
    top = {k: _check(k, v, where) for k, v in table.items() if k not in RESOURCE_KEYS and k not in STAGES}
    if top.get("name", "local") not in EXECUTORS:
        raise XaibenchError(f"{where} name = {top['name']!r}: one of {', '.join(EXECUTORS)}")
    if top.get("cluster") is not None and top["cluster"] not in CLUSTERS:
        raise XaibenchError(f"{where} cluster = {top['cluster']!r}: one of {', '.join(CLUSTERS)}")
    if top.get("workers", 1) < 1 or top.get("threads_per_worker", 1) < 1:
        raise XaibenchError(f"{where}: workers and threads_per_worker must be at least 1")
    res = _resources(Resources(), {k: v for k, v in table.items() if k in RESOURCE_KEYS}, where)
    stages = {}
    for st in STAGES:
        if st in table:
            if not isinstance(table[st], Mapping):
                raise XaibenchError(f"{where} {st}: must be a table of job resources")
            stages[st] = _resources(res, table[st], f"{where} {st}")
    return ExecutorSettings(**top, resources=res, stage_resources=stages)


# run flag → resource key (flags win over the suite table, for every stage)
FLAG_KEYS = {"partition": "partition", "gpus": "gpus", "cpus": "cpus", "mem_gb": "mem_gb", "time_min": "time_min",
             "max_parallel": "max_parallel"}


def resolve(name: str, table: Mapping[str, Any], args: Any) -> ExecutorSettings:
    """Settings for ``name`` from the suite table and the ``run`` flags present in ``args``."""
    s = from_table({k: v for k, v in table.items()})
    s = replace(s, name=name)
    if getattr(args, "dask_address", None):
        s = replace(s, address=args.dask_address)
    if getattr(args, "workers", None) is not None:
        s = replace(s, workers=_check("workers", args.workers, "--workers"))
    flags = {k: getattr(args, a) for a, k in FLAG_KEYS.items() if getattr(args, a, None) is not None}
    if flags:
        flags = {k: _check(k, v, f"--{k.replace('_', '-')}") for k, v in flags.items()}
        s = replace(s, resources=replace(s.resources, **flags),
                    stage_resources={k: replace(r, **flags) for k, r in s.stage_resources.items()})
    return s
