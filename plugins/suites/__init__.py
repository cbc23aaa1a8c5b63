"""Built-in suites: every ``*.toml`` file in this folder, announced through the plugin hook."""
from __future__ import annotations

import tomllib
from pathlib import Path

import xaibench
from xaibench.hookspecs import SuiteRecord

HERE = Path(__file__).parent


@xaibench.hookimpl
def xaibench_suites():
    for path in sorted(HERE.glob("*.toml")):
        with path.open("rb") as fh:
            desc = tomllib.load(fh).get("description", "")
        yield SuiteRecord(path.stem, desc, path)
