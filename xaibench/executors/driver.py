"""The driver of a distributed run: plan the jobs of each stage, hand them to the executor
plugin's :class:`~xaibench.executors.backend.Backend` (Dask, submitit, …), and ingest the
workers' result files into the store as jobs finish.

Stages: (1) train every unique model once (clean models of attacked tasks included,
deduplicated by model id), (2) explain and score each model, (3) metrics across seeds.
Only the driver writes SQLite, so the store never sees concurrent writers from many nodes
(SQLite over a network file system is unsafe); workers only write files.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..atomic import atomic_write
from ..cells import ModelTask, RunConfig, Session
from ..dims import skip_notes
from ..errors import XaibenchError, warn
from ..evaluate import ModelEvaluation
from ..runner import Summary, _record, model_tasks, store_path
from ..store import Store
from .backend import Backend, Call, OnResult  # noqa: F401 - OnResult re-exported for old imports
from .jobs import (INGESTED, JobResult, PendingError, WorkerOptions, eval_job, jobs_dir, legacy_files, pending_dir,
                   pending_files, read_pending, seed_job, train_job)
from .settings import ExecutorSettings

PLAN = "plan.json"


def plan_path(out: Path) -> Path:
    return Path(out) / "executor" / PLAN


def ingest(store: Store, out: Path, summary: Summary | None = None) -> int:
    """Write every waiting result file into the store (idempotent) and move it aside; a file
    that is not a cell record is never executed, only renamed ``*.unreadable`` with a warning."""
    n = 0
    done_dir = pending_dir(out) / INGESTED
    for p in legacy_files(out):
        warn(f"{p}: old pickled result file, not read (pickles can run code); delete it")
        os.replace(p, p.with_suffix(".unreadable"))
    for p in pending_files(out):
        try:
            rec = read_pending(p)
        except PendingError as exc:  # a damaged file must not stop ingestion of the rest
            bad = p.with_suffix(".unreadable")
            os.replace(p, bad)
            warn(f"{exc} (moved to {bad.name})")
            if summary is not None:
                summary.failed.append(f"result file {p.name} unreadable; moved to {bad.name}")
            continue
        if summary is not None:
            _record(store, rec, summary)
        else:
            store.write(rec)
        done_dir.mkdir(parents=True, exist_ok=True)
        os.replace(p, done_dir / p.name)
        n += 1
    return n


def _label(t: ModelTask) -> str:
    return f"{t.dataset.title}/{t.backbone.title}/{t.attack.title}/seed{t.seed}"


def _all_done(session: Session, task: ModelTask, done: set[str]) -> bool:
    ev = ModelEvaluation(session, task)
    if session.model_cell(task) not in done:
        return False
    cells = {c.cell_id for c in ev.plan(False)}
    if task.attacked:
        cells |= {c.cell_id for c in ev.plan(True)}
    return cells <= done


def plan_calls(cfg: RunConfig, session: Session, done: set[str], opts: WorkerOptions) -> dict[str, list[Call]]:
    """The jobs of each stage that still have work to do."""
    frozen = frozenset(done)
    tasks = model_tasks(cfg)
    models: dict[str, ModelTask] = {}
    for t in tasks:
        for m in ([t, t.clean()] if t.attacked else [t]):
            models.setdefault(session.model_id(m), m)
    train = []
    for mid, m in models.items():
        cached = (session.cache / "models" / f"{mid}.pt").exists()
        if cfg.force or not cached or session.model_cell(m) not in done:
            key = f"train-{mid}"
            train.append(Call(key, "train", _label(m), train_job, (key, cfg, m, frozen, opts)))
    evaluate = []
    for t in tasks:
        if cfg.force or not _all_done(session, t, done):
            key = f"evaluate-{session.model_id(t)}"
            evaluate.append(Call(key, "evaluate", _label(t), eval_job, (key, cfg, t, frozen, opts)))
    seeds = []
    if len(cfg.suite.seeds) > 1 and any(getattr(session.make(m), "scope", "") == "seeds" for m in cfg.suite.metrics):
        seeds.append(Call("seeds", "seeds", "across seeds", seed_job, ("seeds", cfg, frozen, opts)))
    return {"train": train, "evaluate": evaluate, "seeds": seeds}


def _write_plan(out: Path, plan: dict[str, Any]) -> None:
    atomic_write(plan_path(out), json.dumps(plan, indent=1, default=str))


def _new_plan(cfg: RunConfig, settings: ExecutorSettings, stages: dict[str, list[Call]]) -> dict[str, Any]:
    """What ``xaibench status`` reads: the executor, the driver's process and every job."""
    return {"suite": cfg.suite.name, "executor": settings.name, "started": time.time(),
            "cluster": getattr(settings.options, "cluster", None),
            "driver": {"host": socket.gethostname(), "pid": os.getpid()}, "finished": None,
            "jobs": {c.key: {"stage": c.stage, "label": c.label, "job_id": None}
                     for calls in stages.values() for c in calls}}


def run_distributed(cfg: RunConfig, settings: ExecutorSettings, make_backend: Callable[[ExecutorSettings, Path], Backend],
                    opts: WorkerOptions) -> Summary:
    start = time.perf_counter()
    out = Path(cfg.out)
    store = Store(store_path(cfg))
    summary = Summary()
    try:
        ingest(store, out)  # results a killed earlier run left behind
        shutil.rmtree(pending_dir(out) / INGESTED, ignore_errors=True)
        shutil.rmtree(jobs_dir(out), ignore_errors=True)
        done = set() if cfg.force else store.done()
        summary.skipped = len(done)
        session = Session(cfg)
        summary.notes = skip_notes(session.registry, cfg.suite)
        stages = plan_calls(cfg, session, done, opts)
        plan = _new_plan(cfg, settings, stages)
        _write_plan(out, plan)
        if not any(stages.values()):
            plan["finished"] = time.time()
            _write_plan(out, plan)
            summary.seconds = time.perf_counter() - start
            return summary
        backend = make_backend(settings, out)
        try:
            for stage, calls in stages.items():
                if not calls:
                    continue
                bar = tqdm(total=len(calls), desc=f"{cfg.suite.name}: {stage}", unit="job", disable=not cfg.progress)

                def on_submit(call: Call, job_id: str) -> None:
                    plan["jobs"][call.key]["job_id"] = job_id

                def on_result(call: Call, res: JobResult | BaseException) -> None:
                    bar.update(1)
                    ingest(store, out, summary)
                    if isinstance(res, BaseException):
                        summary.failed.append(f"job {call.stage} {call.label}: {type(res).__name__}: "
                                              f"{str(res).strip().splitlines()[-1] if str(res).strip() else ''}")
                    elif res.user_error:
                        err = XaibenchError(res.user_error)
                        err.exit_code = res.user_exit
                        raise err

                try:
                    backend.run(stage, calls, on_result, on_submit)
                finally:
                    bar.close()
                    _write_plan(out, plan)
                ingest(store, out, summary)
        finally:
            backend.close()
        plan["finished"] = time.time()
        _write_plan(out, plan)
        shutil.rmtree(pending_dir(out) / INGESTED, ignore_errors=True)
    finally:
        ingest(store, out, summary)
        store.close()
    summary.seconds = time.perf_counter() - start
    return summary
