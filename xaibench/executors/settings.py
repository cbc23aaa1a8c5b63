"""Executor settings: the suite's ``[executor]`` table, overridden by ``xaibench run`` flags.

The core owns the keys every executor shares (``name``, ``torch_threads``, ``poll_s``, the job
resources and their per-stage tables); each executor plugin declares its own keys as the
fields of its ``ExecutorRecord.options`` dataclass (Dask's ``address``, Slurm's ``cluster``, a
Ray plugin's ``ray_address``), so a new engine adds keys without touching this file. A key no
registered executor declares, or a value of the wrong type, fails before any job is submitted.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from ..errors import XaibenchError

STAGES = ("train", "evaluate")  # sub-tables that override the job resources of one stage


@dataclass(frozen=True)
class Resources:
    """What one job asks the cluster for (the engines that schedule jobs read these; Dask ignores them)."""

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
    """Everything an executor's ``factory(settings, out)`` gets; ``options`` is an instance of
    that executor's ``ExecutorRecord.options`` dataclass (``None`` when it declares none)."""

    name: str = "local"
    resources: Resources = Resources()
    stage_resources: Mapping[str, Resources] = field(default_factory=dict)
    torch_threads: int | None = None  # None: the driver's count (bit-identical to a local run); 0: leave as is
    poll_s: float = 2.0  # how often a polling engine checks its jobs, seconds
    options: Any = None

    def for_stage(self, stage: str) -> Resources:
        return self.stage_resources.get(stage, self.resources)


CORE_TYPES: dict[str, Any] = {"name": str, "torch_threads": int, "poll_s": float}
RESOURCE_KEYS = {f.name for f in fields(Resources)}


def key_types(cls: type | None) -> dict[str, Any]:
    """``{key: type}`` of an options dataclass (string annotations resolved)."""
    if cls is None:
        return {}
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}


def _bare(tp: Any) -> Any:
    """``X | None`` → ``X``; ``tuple[str, ...]`` → ``tuple``; ``Mapping[...]`` → ``Mapping``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    return typing.get_origin(tp) or tp


def check_value(key: str, value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the declared type ``tp`` (one line naming the key otherwise)."""
    tp = _bare(tp)
    if tp is bool:
        if not isinstance(value, bool):
            raise XaibenchError(f"{where} {key} = {value!r}: must be true or false")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise XaibenchError(f"{where} {key} = {value!r}: must be a non-negative integer")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise XaibenchError(f"{where} {key} = {value!r}: must be a positive number")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str) or not value:
            raise XaibenchError(f"{where} {key} = {value!r}: must be a non-empty string")
    elif tp in (tuple, list):
        if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
            raise XaibenchError(f"{where} {key}: must be a list of strings")
        value = tuple(value)
    elif isinstance(tp, type) and issubclass(tp, Mapping) or tp in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise XaibenchError(f"{where} {key}: must be a table")
        value = dict(value)
    return value


def _resources(base: Resources, raw: Mapping[str, Any], where: str) -> Resources:
    types_ = key_types(Resources)
    upd = {}
    for k, v in raw.items():
        if k not in RESOURCE_KEYS:
            raise XaibenchError(f"{where}: unknown key {k!r} (allowed: {', '.join(sorted(RESOURCE_KEYS))})")
        upd[k] = check_value(k, v, types_[k], where)
    return replace(base, **upd)


def build_options(cls: type | None, values: Mapping[str, Any], who: str) -> Any:
    """``cls(**values)``; its ``__post_init__`` checks the values (one-line errors)."""
    if cls is None:
        return None
    try:
        return cls(**values)
    except TypeError as exc:
        raise XaibenchError(f"{who}: {exc}") from None


def from_table(table: Mapping[str, Any], name: str, own: type | None, others: Mapping[str, Any] = (),
               where: str = "suite [executor]") -> ExecutorSettings:
    """Settings of executor ``name`` (its options dataclass ``own``) from a suite's
    ``[executor]`` table. ``others`` maps the keys other registered executors declare to their
    types: they are accepted (so one suite can hold Dask and Slurm settings) and type-checked."""
    mine = key_types(own)
    known = {**dict(others), **CORE_TYPES, **mine}
    allowed = sorted({*known, *RESOURCE_KEYS, *STAGES})
    for k in table:
        if k not in allowed:
            raise XaibenchError(f"{where}: unknown key {k!r} (allowed: {', '.join(allowed)})")
    checked = {k: check_value(k, v, known[k], where) for k, v in table.items() if k in known}
    res = _resources(Resources(), {k: v for k, v in table.items() if k in RESOURCE_KEYS}, where)
    stages = {}
    for st in STAGES:
        if st in table:
            if not isinstance(table[st], Mapping):
                raise XaibenchError(f"{where} {st}: must be a table of job resources")
            stages[st] = _resources(res, table[st], f"{where} {st}")
    core = {k: checked[k] for k in ("torch_threads", "poll_s") if k in checked}
    opts = build_options(own, {k: v for k, v in checked.items() if k in mine}, f"{where} (executor {name})")
    return ExecutorSettings(name=name, resources=res, stage_resources=stages, options=opts, **core)


# run flag → resource key (flags win over the suite table, for every stage)
FLAG_KEYS = {"partition": "partition", "gpus": "gpus", "cpus": "cpus", "mem_gb": "mem_gb", "time_min": "time_min",
             "max_parallel": "max_parallel"}
# run flag → an executor's own key (an error for an executor that does not declare it)
FLAG_OPTIONS = {"dask_address": "address", "workers": "workers"}


def apply_flags(s: ExecutorSettings, own: type | None, args: Any) -> ExecutorSettings:
    """``s`` with the ``run`` flags present in ``args`` applied."""
    mine = key_types(own)
    upd = {}
    for attr, key in FLAG_OPTIONS.items():
        value = getattr(args, attr, None)
        if value is None or value == "":
            continue
        flag = f"--{attr.replace('_', '-')}"
        if key not in mine:
            raise XaibenchError(f"{flag}: executor {s.name!r} has no {key!r} setting "
                                f"(its keys: {', '.join(mine) or 'none'})")
        upd[key] = check_value(key, value, mine[key], flag)
    if upd:
        try:
            s = replace(s, options=replace(s.options, **upd))  # the options' own checks run again
        except TypeError as exc:
            raise XaibenchError(f"executor {s.name}: {exc}") from None
    flags = {k: getattr(args, a) for a, k in FLAG_KEYS.items() if getattr(args, a, None) is not None}
    if flags:
        types_ = key_types(Resources)
        flags = {k: check_value(k, v, types_[k], f"--{k.replace('_', '-')}") for k, v in flags.items()}
        s = replace(s, resources=replace(s.resources, **flags),
                    stage_resources={k: replace(r, **flags) for k, r in s.stage_resources.items()})
    return s
