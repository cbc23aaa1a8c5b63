"""Worker side: the jobs an executor runs, and the per-cell result files they leave.

Every record a job produces is written to ``OUT/pending/<cell_id>.json`` (plain JSON, never
a pickle: reading a results folder must not run anyone's code; temporary file, fsync,
rename) the moment it exists, before the job reports anything; the driver ingests
these files into SQLite (``Store.write`` replaces a cell in one transaction, so ingesting a
file twice is harmless) and then moves them to ``pending/ingested/``. A job that restarts
(preemption, a killed worker, a rerun) skips every cell that already has a file, so a
finished cell is never computed twice.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_write
from ..cells import ModelTask, RunConfig, Session, failed_record, train_model
from ..errors import XaibenchError
from ..store import CellRecord

PENDING = "pending"
INGESTED = "ingested"
SUFFIX = ".json"


# --------------------------------------------------------------------------- files


def pending_dir(out: Path) -> Path:
    return Path(out) / PENDING


def jobs_dir(out: Path) -> Path:
    return Path(out) / "executor" / "jobs"


def engine_dir(out: Path, engine: str) -> Path:
    """Where an execution engine keeps its own files (logs, submission pickles), e.g. ``submitit``."""
    return Path(out) / "executor" / engine


def write_pending(out: Path, rec: CellRecord) -> Path:
    return atomic_write(pending_dir(out) / f"{rec.cell_id}{SUFFIX}", rec.to_json())


class PendingError(XaibenchError):
    """A result file that is not a cell record (damaged, foreign, or an old pickle)."""


def read_pending(path: Path) -> CellRecord:
    """The record in ``path``; :class:`PendingError` (one line naming it) when it is not one."""
    try:
        rec = CellRecord.from_json(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise PendingError(f"{path}: not a readable cell record ({str(exc)[:80]}); skipped: "
                           "delete it, or rerun the job that wrote it") from None
    if Path(path).name != f"{rec.cell_id}{SUFFIX}":
        raise PendingError(f"{path}: holds cell {rec.cell_id}, not the one its name says; skipped: delete it")
    return rec


def pending_files(out: Path) -> list[Path]:
    d = pending_dir(out)
    return sorted(d.glob(f"*{SUFFIX}")) if d.is_dir() else []


def legacy_files(out: Path) -> list[Path]:
    """Old ``pending/*.pkl`` files: never unpickled (they could run code), only reported."""
    d = pending_dir(out)
    return sorted(d.glob("*.pkl")) if d.is_dir() else []


def finished_ids(out: Path) -> set[str]:
    """Cells with a result file (waiting or already ingested) and status done."""
    ids = set()
    for d in (pending_dir(out), pending_dir(out) / INGESTED):
        if d.is_dir():
            ids.update(p.name[:-len(SUFFIX)] for p in d.iterdir() if p.name.endswith(SUFFIX))
    return ids


def write_marker(out: Path, key: str, **info: Any) -> None:
    path = jobs_dir(out) / f"{key}.json"
    old = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
    atomic_write(path, json.dumps({**old, **info, "updated": time.time()}, default=str))


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class WorkerOptions:
    torch_threads: int = 0  # 0: leave the process's default
    auto_device: bool = False  # pick cuda when the worker sees one (the driver may sit on a login node)


@dataclass
class JobResult:
    key: str
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    user_error: str | None = None  # an XaibenchError: the driver stops with this line
    user_exit: int = 2
    cells: list[str] = field(default_factory=list)


_SESSIONS: dict[tuple[bytes, int], Session] = {}


def _session(cfg: RunConfig, opts: WorkerOptions) -> Session:
    """One Session per (config, thread) in a worker process: plugins and datasets load once."""
    import torch

    if opts.torch_threads:
        torch.set_num_threads(opts.torch_threads)
    if opts.auto_device:
        cfg = replace(cfg, device="cuda" if torch.cuda.is_available() else "cpu")
    k = (pickle.dumps(cfg), threading.get_ident())
    if k not in _SESSIONS:
        _SESSIONS.clear()  # one run at a time per worker; do not keep other runs' data alive
        _SESSIONS[k] = Session(cfg)
    s = _SESSIONS[k]
    s.cfg = cfg
    s._models.clear()  # models come from the cache; holding every model of the grid would fill memory
    s.pending.clear()
    return s


def _run(key: str, cfg: RunConfig, body: Callable[[Session, set[str], JobResult], None], done: frozenset[str],
         opts: WorkerOptions) -> JobResult:
    t0 = time.perf_counter()
    res = JobResult(key)
    write_marker(cfg.out, key, state="running", host=socket.gethostname(), pid=os.getpid(), started=time.time())
    have = set(done) | (set() if cfg.force else finished_ids(cfg.out))
    try:
        body(_session(cfg, opts), have, res)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if getattr(exc, "exit_code", None) is None:
            write_marker(cfg.out, key, state="failed", error=traceback.format_exception_only(type(exc), exc)[-1])
            raise
        res.user_error, res.user_exit = str(exc), int(exc.exit_code)
    res.seconds = time.perf_counter() - t0
    write_marker(cfg.out, key, state="failed" if res.user_error else "done", finished=time.time(),
                 cells=res.done, failed_cells=res.failed, error=res.user_error)
    return res


def _emit(cfg: RunConfig, rec: CellRecord, res: JobResult) -> None:
    write_pending(cfg.out, rec)
    res.cells.append(rec.cell_id)
    if rec.status == "done":
        res.done += 1
    else:
        res.failed += 1


def train_job(key: str, cfg: RunConfig, task: ModelTask, done: frozenset[str], opts: WorkerOptions) -> JobResult:
    """Stage 1: train one model (or load it) and record its model cell."""

    def body(s: Session, have: set[str], res: JobResult) -> None:
        cid = s.model_cell(task)
        t0 = time.perf_counter()
        s.stored = have  # a cached model whose cell is missing gets its record back (train_model)
        try:
            train_model(s, task)
            recs = s.drain()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if getattr(exc, "exit_code", None) is not None:
                raise
            recs = [failed_record(cid, "model", task.model_keys(s.cfg.suite.name), s.model_config(task), exc,
                                  time.perf_counter() - t0, s.versions(task.dataset, task.backbone, task.attack),
                                  s.git_commit)]
        for r in recs:
            _emit(s.cfg, r, res)

    return _run(key, cfg, body, done, opts)


def eval_job(key: str, cfg: RunConfig, task: ModelTask, done: frozenset[str], opts: WorkerOptions) -> JobResult:
    """Stage 2: every explainer's maps and every metric cell of one (trained) model."""
    from ..runner import run_task

    def body(s: Session, have: set[str], res: JobResult) -> None:
        if cfg.force:
            # --force: the models were retrained by stage 1; load them, then recompute maps and cells
            forced = s.cfg  # (with the worker's device)
            s.cfg = replace(forced, force=False)
            for t in ([task, task.clean()] if task.attacked else [task]):
                try:
                    train_model(s, t)
                except Exception:  # noqa: BLE001 - run_task records the failure below
                    pass
            for r in s.drain():
                _emit(s.cfg, r, res)
            s.cfg = forced
        for rec in run_task(s, task, have):
            _emit(s.cfg, rec, res)

    return _run(key, cfg, body, done, opts)


def seed_job(key: str, cfg: RunConfig, done: frozenset[str], opts: WorkerOptions) -> JobResult:
    """Stage 3: metrics across the models of every seed (scope ``seeds``)."""
    from ..runner import seed_cells

    def body(s: Session, have: set[str], res: JobResult) -> None:
        for rec in seed_cells(s, have):
            _emit(s.cfg, rec, res)

    return _run(key, cfg, body, done, opts)


class Requeueable:
    """A job callable that submitit requeues on preemption or timeout: it is resubmitted
    with the same arguments and, thanks to the result files, resumes where it stopped."""

    def __init__(self, fn: Callable[..., JobResult], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __call__(self) -> JobResult:
        return self.fn(*self.args)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)
