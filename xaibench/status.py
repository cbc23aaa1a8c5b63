"""``xaibench status --out DIR``: what a run has done and what it is still doing.

Read-only and safe while a run is going: cells from the store, result files waiting to be
ingested, and — for runs of the Dask and Slurm executors — each planned job's state from
the markers the jobs write and, on Slurm, the scheduler's own state (via submitit).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import XaibenchError, warn
from .lock import held_by
from .store import _db_error

STATES = ("pending", "running", "done", "failed")
SLURM_STATES = {"PENDING": "pending", "REQUEUED": "pending", "CONFIGURING": "pending", "SUSPENDED": "pending",
                "RESIZING": "pending", "RUNNING": "running", "COMPLETING": "running", "COMPLETED": "done"}


@dataclass
class Status:
    out: Path
    cells: dict[str, Counter] = field(default_factory=dict)  # kind -> Counter(status)
    waiting: int = 0  # result files not yet in the store
    suite: str | None = None
    executor: str | None = None
    driver: str | None = None  # "running on HOST (pid N)" / "finished" / "stopped"
    jobs: dict[str, Counter] = field(default_factory=dict)  # stage -> Counter(state)
    job_lines: list[str] = field(default_factory=list)  # running and failed jobs, one line each
    lock: str | None = None  # who holds OUT/.lock

    def counts(self) -> Counter:
        total: Counter = Counter()
        for c in self.cells.values():
            total.update(c)
        return total

    def lines(self) -> list[str]:
        total = self.counts()
        out = [f"{self.out}: " + (f"suite {self.suite}, executor {self.executor}; driver {self.driver}"
                                  if self.executor else "no distributed run recorded here")]
        kinds = ", ".join(f"{k} {c['done']}" for k, c in sorted(self.cells.items()))
        if self.lock:
            out.append(f"in use by {self.lock}")
        out.append(f"cells: {total['done']} done, {total['failed']} failed" + (f" ({kinds} done)" if kinds else ""))
        if self.waiting:
            out.append(f"results waiting to be ingested: {self.waiting} (the running driver or the next run ingests them)")
        for stage, c in self.jobs.items():
            out.append(f"jobs {stage}: " + ", ".join(f"{c[s]} {s}" for s in STATES))
        out.extend(f"  {line}" for line in self.job_lines)
        return out


def _alive(host: str | None, pid: int | None) -> bool | None:
    """Whether a process is alive (None when it runs on another host: cannot tell)."""
    if not pid or host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _slurm_state(out: Path, job_id: str | None) -> str | None:
    if not job_id or not str(job_id)[:1].isdigit():
        return None
    try:
        import submitit

        from .executors.jobs import engine_dir

        return str(submitit.SlurmJob(engine_dir(out, "submitit") / "%j", str(job_id)).state)
    except Exception:  # noqa: BLE001 - no sacct here, or an unknown job: fall back to the markers
        return None


def collect(out: Path) -> Status:
    out = Path(out)
    db_path = out / "results.sqlite"
    if not db_path.exists() and not (out / "executor").is_dir():
        raise XaibenchError(f"status: {out} has no results.sqlite; give the --out folder of a run")
    st = Status(out, lock=held_by(out))
    if db_path.exists():
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
            try:
                for kind, status, n in db.execute("SELECT kind, status, COUNT(*) FROM cells GROUP BY kind, status"):
                    st.cells.setdefault(kind, Counter())[status] += n
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise _db_error(exc, db_path) from None
    from .executors.driver import plan_path
    from .executors.jobs import jobs_dir, pending_files

    st.waiting = len(pending_files(out))
    p = plan_path(out)
    if not p.exists():
        return st
    try:
        plan = json.loads(p.read_text())
        if not isinstance(plan, dict):
            raise ValueError("not a plan")
    except (OSError, ValueError):
        warn(f"{p}: unreadable run plan; skipped (the next distributed run rewrites it)")
        return st
    st.suite, st.executor = plan.get("suite"), plan.get("executor")
    drv = plan.get("driver", {})
    if plan.get("finished"):
        st.driver = f"finished {time.strftime('%Y-%m-%d %H:%M', time.localtime(plan['finished']))}"
    else:
        alive = _alive(drv.get("host"), drv.get("pid"))
        st.driver = {True: "running", False: "stopped (rerun the same command to resume)",
                     None: "running or stopped"}[alive] + f" on {drv.get('host')} (pid {drv.get('pid')})"
    for key, job in plan.get("jobs", {}).items():
        marker = {}
        mp = jobs_dir(out) / f"{key}.json"
        if mp.exists():
            try:
                marker = json.loads(mp.read_text())
            except ValueError:
                marker = {}
        state = marker.get("state", "pending")
        on_slurm = plan.get("executor") == "slurm" and plan.get("cluster", "slurm") == "slurm"
        slurm = _slurm_state(out, job.get("job_id")) if on_slurm and state != "done" and shutil.which("sacct") else None
        if state != "done" and slurm:
            state = SLURM_STATES.get(slurm.split()[0], "failed")
        elif state == "running" and _alive(marker.get("host"), marker.get("pid")) is False:
            state = "failed"  # the process is gone without finishing
            marker["error"] = "its process is gone (killed); rerun to resume"
        st.jobs.setdefault(job.get("stage", "?"), Counter())[state] += 1
        if state in ("running", "failed"):
            where = f" on {marker['host']}" if marker.get("host") else ""
            why = f": {marker['error'].strip()}" if marker.get("error") else f" (slurm {slurm})" if slurm else ""
            st.job_lines.append(f"{state} {job.get('stage')} {job.get('label')}{where}{why}")
    return st
