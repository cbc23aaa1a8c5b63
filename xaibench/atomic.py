"""One way to write a file: a temporary file beside it, flushed and fsynced, then renamed.

Every artifact of a results folder (models, maps, records, plans, caches) is written here,
so a crash or Ctrl-C leaves the old file or the new one, never half of one, and a full or
read-only disk becomes one user-facing line (:class:`StorageError`) instead of a traceback.
"""
from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from .errors import StorageError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(exc: OSError, path: Path | str) -> StorageError | None:
    """The one-line error for a full or read-only disk, or ``None`` for other OS errors."""
    if exc.errno in _FULL:
        return StorageError(f"disk full while writing {path}; free some space and rerun the same command "
                            "(results stored so far are intact)")
    if exc.errno in _READ_ONLY:
        return StorageError(f"cannot write {path}: the folder is read-only; give a writable --out folder")
    return None


def atomic_write(path: Path | str, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, text, or a function writing to a binary file) to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        err = storage_error(exc, path)
        if err is not None:
            raise err from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_torch(obj: Any, path: Path | str) -> Path:
    """``torch.save`` through :func:`atomic_write` (keep to tensors and plain containers, so
    the file loads with ``weights_only=True``)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def save_arrays(path: Path | str, arrays: Mapping[str, Any]) -> Path:
    """``numpy.savez`` of named arrays through :func:`atomic_write` (loads with ``allow_pickle=False``)."""
    import numpy as np

    return atomic_write(path, lambda f: np.savez(f, **arrays))


def save_figure(fig: Any, path: Path | str, **savefig: Any) -> Path:
    """A matplotlib figure through :func:`atomic_write`; the format comes from the suffix."""
    fmt = savefig.pop("format", None) or Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig))
