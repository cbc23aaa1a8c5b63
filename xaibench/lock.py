"""One run per results folder: ``OUT/.lock`` holds the pid, host and start time of its owner.

A plain ``O_CREAT | O_EXCL`` file rather than ``fcntl``/``filelock``: it works the same on
local disks and network file systems (where ``flock`` is often a no-op), its content tells
the second run *who* holds the folder, and a lock left by a killed run (pid gone on this
host) is recognised and taken over. A lock held from another host cannot be checked and is
reported with what to do.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .atomic import storage_error
from .errors import StorageError, warn

LOCK = ".lock"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _holder(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(h: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if isinstance(
        h.get("started"), (int, float)) else "?"
    return f"pid {h.get('pid', '?')} on {h.get('host', '?')} (started {started}, `{h.get('command', '?')}`)"


def held_by(out: Path) -> str | None:
    """Who holds ``out`` (for ``xaibench status``), or ``None`` when nobody does."""
    path = Path(out) / LOCK
    if not path.exists():
        return None
    h = _holder(path)
    stale = h.get("host") == socket.gethostname() and isinstance(h.get("pid"), int) and not _alive(h["pid"])
    return f"{_describe(h)}" + (" — stale: that process no longer runs; the next run takes it over" if stale else "")


class FolderLock:
    """``with FolderLock(out, "xaibench run ..."):`` — exclusive use of ``out``."""

    def __init__(self, out: Path, command: str = "", wait: bool = False, poll: float = 2.0) -> None:
        self.path = Path(out) / LOCK
        self.command, self.wait, self.poll = command, wait, poll
        self.held = False

    def _try(self) -> bool:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": self.command}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise storage_error(exc, self.path) or exc from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return True

    def _stale(self, h: dict) -> bool:
        pid = h.get("pid")
        return h.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)

    def acquire(self) -> "FolderLock":
        while not self._try():
            h = _holder(self.path)
            if not h and self.path.exists() and time.time() - self.path.stat().st_mtime > 60:
                h = {"host": socket.gethostname(), "pid": -1}  # an empty lock file from a crash mid-write
            if self._stale(h):
                warn(f"took over the stale lock {self.path} of {_describe(h)}: that process no longer runs")
                self.path.unlink(missing_ok=True)
                continue
            if not self.wait:
                raise StorageError(f"{self.path.parent} is in use by {_describe(h)}; wait for it, rerun with --wait, "
                                   f"or delete {self.path} if that run is dead")
            time.sleep(self.poll)
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            h = _holder(self.path)
            if h.get("pid") == os.getpid() and h.get("host") == socket.gethostname():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()
