"""The ``local`` executor: every cell in this process, one after another (the default).

No driver, no jobs, no result files: the runner writes the store directly.
"""
from __future__ import annotations

import xaibench
from xaibench.hookspecs import ExecutorRecord


@xaibench.hookimpl
def xaibench_executors():
    yield ExecutorRecord("local", "every cell in this process (the default)", None, in_process=True)
