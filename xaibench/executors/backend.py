"""The contract between the driver and an execution engine (Dask, Slurm, yours).

An executor plugin's ``factory(settings, out)`` returns a :class:`Backend`. The driver plans
the jobs of each stage (train, evaluate, seeds) and hands them over as :class:`Call` objects;
the backend runs each ``call.fn(*call.args)`` somewhere that sees the results folder and
reports back. It never touches the store: jobs write their cells to result files and the
driver ingests them, so an engine only decides *where* a function runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from .jobs import JobResult


@dataclass(frozen=True)
class Call:
    """One job: run ``fn(*args)``; it returns a :class:`~xaibench.executors.jobs.JobResult`.

    ``fn`` and ``args`` are picklable (module-level functions and frozen dataclasses), so a
    backend may send them to another process or machine."""

    key: str  # unique in the run: stage + model id
    stage: str
    label: str  # for people: dataset/backbone/attack/seed
    fn: Callable[..., "JobResult"]
    args: tuple


OnResult = Callable[[Call, "JobResult | BaseException"], None]
OnSubmit = Callable[[Call, str], None]


class Backend(Protocol):
    """What the driver needs from an engine.

    ``run`` executes every call of one stage and returns when all have finished: call
    ``on_submit(call, job_id)`` when a call is handed to the engine (the id shows in
    ``xaibench status``) and ``on_result(call, result)`` once per call as it finishes — with
    the job's return value, or the exception it raised (the run goes on; the driver reports
    it). ``on_result`` may raise (a user error in a job stops the run): let it propagate,
    cancelling what you can. ``close`` releases the engine (cluster, client); it is called
    once, also after an error."""

    def run(self, stage: str, calls: list[Call], on_result: OnResult, on_submit: OnSubmit) -> None: ...

    def close(self) -> None: ...
