"""Helpers of the fault and bad-input tests: tiny suites, a payload, store snapshots."""
from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

from .conftest import HERE, TOY_PLUGIN

FAULT_PLUGIN = HERE / "fixtures" / "fault_plugins.py"

SUITE = """name = "{name}"
seeds = [0]
n_eval = 8
datasets = [{{ name = "toy-blobs", options = {{ n = 40 }} }}]
attacks = ["none"]
explainers = [{explainers}]
metrics = [{metrics}]
[[backbones]]
name = "resnet18"
options = {{ width = 0.125, output_stride = 8, epochs = {epochs} }}
"""


def suite_file(folder: Path, name: str = "tiny", explainers: str = '"toy-grad"', metrics: str = '"toy-mass"',
               epochs: str = "1", file: str | None = None, extra: str = "") -> Path:
    p = Path(folder) / (file or f"{name.replace('/', '_')}.toml")
    p.write_text(extra + SUITE.format(name=name, explainers=explainers, metrics=metrics, epochs=epochs))
    return p


def run_argv(suite: Path, out: Path, *more: str) -> list[str]:
    return ["run", "--suite", str(suite), "--plugin", str(TOY_PLUGIN), "--plugin", str(FAULT_PLUGIN),
            "--out", str(out), "--quiet", "--no-leaderboard", "--device", "cpu", *more]


class Payload:
    """Unpickling this creates ``marker``: proof that loading a file ran its code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def finished_run(root: Path) -> Path:
    """One tiny finished run under ``root`` (toy data, one epoch, toy-grad, toy-mass): the
    results folder the fault and bad-input tests copy per case."""
    from xaibench.cli import main

    assert main(run_argv(suite_file(root), root / "out")) == 0
    return root / "out"


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps({"cell_id": "x", "boom": Payload(marker)})


def snapshot(out: Path) -> dict[str, tuple]:
    """Done cells of a store: id -> (status, sorted values)."""
    con = sqlite3.connect(Path(out) / "results.sqlite")
    try:
        cells = dict(con.execute("SELECT cell_id, status FROM cells WHERE status = 'done'").fetchall())
        vals: dict[str, list] = {c: [] for c in cells}
        for cid, name, image, value in con.execute("SELECT cell_id, name, image, value FROM cell_values "
                                                   "WHERE name NOT LIKE '%seconds%'"):
            if cid in vals:
                vals[cid].append((name, image, value))
    finally:
        con.close()
    return {c: (cells[c], tuple(sorted(vals[c], key=str))) for c in cells}


def survives(before: dict[str, tuple], out: Path) -> bool:
    after = snapshot(out)
    return all(after.get(c) == v for c, v in before.items())
