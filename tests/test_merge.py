"""Merging results folders: identical cells are kept once, differing ones are conflicts
(one line each, exit code 1, first version kept), a done result beats a failed one,
result files a killed run left behind are merged, and the caches are merged too."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from xaibench.errors import XaibenchError
from xaibench.merge import merge
from xaibench.store import CellRecord, Store


def _rec(cid: str, value: float, status: str = "done", seconds: float = 1.0, explainer: str = "gradcam") -> CellRecord:
    keys = {"suite": "s", "dataset": "d", "backbone": "b", "attack": "none", "seed": int(cid[1:]), "explainer": explainer,
            "metric": "iou", "split": "clean"}
    vals = [("iou", None, i, value + i, 0.1, True) for i in range(3)] + [("seconds_per_image", None, -1, seconds,
                                                                           None, False)]
    return CellRecord(cid, "metric", keys, cid, {"id": cid}, status, seconds, vals if status == "done" else [],
                      [("iou", None, {"curve": [value, value / 2], "seconds": seconds})] if status == "done" else [],
                      error=None if status == "done" else "RuntimeError: boom")


def _folder(path: Path, *recs: CellRecord, cache: dict[str, bytes] | None = None) -> Path:
    store = Store(path / "results.sqlite")
    for r in recs:
        store.write(r)
    store.close()
    for name, data in (cache or {}).items():
        (path / "cache" / name).parent.mkdir(parents=True, exist_ok=True)
        (path / "cache" / name).write_bytes(data)
    return path


def _rows(out: Path) -> list[tuple]:
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT v.cell_id, c.status, v.name, v.image, v.value FROM cell_values v JOIN cells c "
                       "USING (cell_id) ORDER BY 1, 3, 4").fetchall()
    con.close()
    return rows


def test_identical_cells_merge_once_and_timings_do_not_conflict(tmp_path):
    a = _folder(tmp_path / "a", _rec("c1", 0.5, seconds=1.0), _rec("c2", 0.7), cache={"models/m1.pt": b"w1"})
    b = _folder(tmp_path / "b", _rec("c1", 0.5, seconds=9.0), _rec("c3", 0.9), cache={"models/m1.pt": b"w1",
                                                                                      "maps/x.pt": b"map"})
    rep = merge([a, b], tmp_path / "c")
    assert not rep.conflicts and rep.added == 3 and rep.identical == 1
    rows = _rows(tmp_path / "c")
    assert len(rows) == 3 * 4  # c1 once (not twice), c2, c3: three values and a timing each
    assert {r[0] for r in rows} == {"c1", "c2", "c3"}
    assert (tmp_path / "c" / "cache" / "maps" / "x.pt").read_bytes() == b"map" and rep.files_copied == 2
    again = merge([a, b], tmp_path / "c")  # merging the same folders again changes nothing
    assert again.added == 0 and not again.conflicts and _rows(tmp_path / "c") == rows


def test_different_values_are_a_conflict_not_an_overwrite(tmp_path):
    a = _folder(tmp_path / "a", _rec("c1", 0.5), _rec("c2", 0.7))
    b = _folder(tmp_path / "b", _rec("c1", 0.5 + 1e-9), _rec("c2", 0.7))
    rep = merge([a, b], tmp_path / "c")
    assert len(rep.conflicts) == 1
    line = rep.conflicts[0]
    assert line.startswith("conflict: cell c1 (d/b/none/gradcam/iou/clean/seed1)") and "iou[image 0]: 0.5 vs" in line
    assert [r[4] for r in _rows(tmp_path / "c") if r[0] == "c1" and r[2] == "iou"] == [0.5, 1.5, 2.5]  # first kept
    assert not merge([a, b], tmp_path / "d", rtol=1e-6).conflicts  # a tolerance, when asked for
    c = _folder(tmp_path / "e", _rec("c2", 0.7))
    with sqlite3.connect(c / "results.sqlite") as con:  # same values, different curve in the extras
        con.execute("UPDATE extras SET data = '{\"curve\": [0.7, 0.1]}' WHERE cell_id = 'c2'")
    assert merge([a, c], tmp_path / "f").conflicts[0].endswith("extra iou differs")


def test_done_beats_failed_and_pending_result_files_are_merged(tmp_path):
    a = _folder(tmp_path / "a", _rec("c1", 0.0, status="failed"), _rec("c2", 0.7))
    b = _folder(tmp_path / "b", _rec("c1", 0.5), _rec("c2", 0.0, status="failed"))
    (b / "pending").mkdir()
    (b / "pending" / "c9.json").write_text(_rec("c9", 3.0).to_json())  # a killed run's un-ingested result
    rep = merge([a, b], tmp_path / "c")
    assert not rep.conflicts and rep.replaced_failed == 1
    status = dict(sqlite3.connect(tmp_path / "c" / "results.sqlite").execute("SELECT cell_id, status FROM cells"))
    assert status == {"c1": "done", "c2": "done", "c9": "done"}


def test_cli_merge_exit_code_and_one_line_per_conflict(tmp_path):
    a = _folder(tmp_path / "a", _rec("c1", 0.5), _rec("c2", 0.7))
    b = _folder(tmp_path / "b", _rec("c1", 0.6), _rec("c2", 0.8))
    r = subprocess.run([sys.executable, "-m", "xaibench.cli", "merge", str(a), str(b), "--out", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.strip().splitlines()
    assert sum(line.startswith("conflict: cell ") for line in lines) == 2 and "2 conflicts" in lines[-1]
    r = subprocess.run([sys.executable, "-m", "xaibench.cli", "merge", str(a), str(tmp_path / "nope"), "--out",
                        str(tmp_path / "c")], capture_output=True, text=True)
    assert r.returncode == 2 and "is not a folder" in r.stderr


def test_merge_refuses_its_own_output(tmp_path):
    a = _folder(tmp_path / "a", _rec("c1", 0.5))
    with pytest.raises(XaibenchError, match="also the --out folder"):
        merge([a], a)
