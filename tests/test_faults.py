"""Faults a shared results folder meets: planted payloads are never run, unusable maps and
scores are caught where they are made, cells know their suite, merge does not pool
different suites or configs, and one run at a time holds a folder."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from xaibench.cli import main
from xaibench.errors import StorageError
from xaibench.executors.driver import ingest
from xaibench.executors.jobs import pending_dir
from xaibench.lock import LOCK, FolderLock
from xaibench.merge import merge
from xaibench.store import CellRecord, Store

from .faults_helpers import finished_run, Payload, payload_bytes, run_argv, snapshot, suite_file


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """One tiny finished run (toy data, one epoch, toy-grad, toy-mass), copied per test."""
    return finished_run(tmp_path_factory.mktemp("base"))


def _copy(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(base, out)
    return out


def _cells(out: Path, where: str = "1") -> list[dict]:
    con = sqlite3.connect(out / "results.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute(f"SELECT * FROM cells WHERE {where}")]
    con.close()
    return rows


# ----------------------------------------------------------------- 1. nothing is unpickled

def test_record_json_round_trip_keeps_nan_and_inf():
    rec = CellRecord("c", "metric", {"suite": "s"}, "h", {"a": 1}, "done", 1.0,
                     [("v", None, 0, float("nan"), None, True), ("v", None, 1, float("inf"), 0.5, False)],
                     [("curve", "e", {"x": [1.0, float("nan")]})], versions={"xaibench": "1"})
    back = CellRecord.from_json(rec.to_json())
    assert back.cell_id == "c" and back.keys == {"suite": "s"} and back.versions == {"xaibench": "1"}
    assert math.isnan(back.values[0][3]) and back.values[1][3] == math.inf and back.values[1][4] == 0.5
    assert math.isnan(back.extras[0][2]["x"][1])
    with pytest.raises(ValueError):
        CellRecord.from_json(b"\x80\x04not json")


def test_planted_pickles_in_pending_are_never_loaded(tmp_path, base, capsys):
    out = _copy(base, tmp_path)
    marker = tmp_path / "pwned"
    pending_dir(out).mkdir(exist_ok=True)
    (pending_dir(out) / "evil.pkl").write_bytes(payload_bytes(marker))
    (pending_dir(out) / "evil2.json").write_bytes(payload_bytes(marker))
    assert main(["merge", str(out), "--out", str(tmp_path / "merged")]) == 2  # merge skips them
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "evil.pkl" in err[0] and "evil2.json" in err[1] and not marker.exists()
    store = Store(out / "results.sqlite")
    try:
        n = ingest(store, out)  # the distributed driver's ingest: moved aside, not run
    finally:
        store.close()
    assert n == 0 and not marker.exists()
    assert sorted(p.name for p in pending_dir(out).iterdir()) == ["evil.unreadable", "evil2.unreadable"]


def test_planted_sidecars_and_caches_are_never_loaded(tmp_path, base, capsys):
    """Pickles in place of the maps sidecar, the maps and the model: a second suite on the
    folder (whose cells are not stored yet) reads the cache, refuses them and recomputes."""
    out = _copy(base, tmp_path)
    marker = tmp_path / "pwned"
    caches = list((out / "cache" / "maps").glob("*.pt")) + list((out / "cache" / "models").glob("*.pt"))
    sidecars = list((out / "cache" / "maps").glob("*.cell.json"))
    assert caches and sidecars
    for p in caches:
        torch.save({"state_dict": {}, "x": Payload(marker)}, p)  # what weights_only=False would run
    for p in sidecars:
        p.write_bytes(payload_bytes(marker))
        p.with_suffix("").with_suffix(".cell.pt").write_bytes(payload_bytes(marker))  # an old-style sidecar
    assert main(run_argv(suite_file(tmp_path, name="second"), out)) == 0
    err = capsys.readouterr().err
    assert not marker.exists() and "unusable cached model" in err and "unreadable maps record" in err
    assert {c["suite"] for c in _cells(out, "status = 'done'")} == {"tiny", "second"}


# ----------------------------------------------------------------- 4. maps and scores checked

@pytest.mark.parametrize("explainer, why", [("nan-maps", "4 of 8 maps contain NaN"),
                                            ("small-maps", "maps have shape (8, 16, 16), expected 8x32x32")])
def test_unusable_maps_fail_the_explainers_cell(tmp_path, base, explainer, why):
    out = _copy(base, tmp_path)
    before = snapshot(out)
    s = suite_file(tmp_path, explainers=f'"toy-grad", "{explainer}"')
    assert main(run_argv(s, out)) == 1  # cells failed
    maps = [c for c in _cells(out, "kind = 'maps' AND status = 'failed'")]
    assert len(maps) == 1 and maps[0]["explainer"] == explainer
    assert maps[0]["error"].startswith(f"explainer {explainer}: {why}")
    assert not (out / "cache" / "maps" / f"{maps[0]['config_hash']}.pt").exists()  # not cached as done
    metric = _cells(out, f"kind = 'metric' AND status = 'failed'")
    assert len(metric) == 1 and metric[0]["explainer"] == explainer and metric[0]["metric"] == "toy-mass"
    assert f"explainer {explainer}" in metric[0]["error"] and "the maps cell failed" in metric[0]["error"]
    assert all(snapshot(out).get(c) == v for c, v in before.items())


def test_nan_scores_are_stored_as_undefined_and_inf_fails_the_metric(tmp_path, base):
    out = _copy(base, tmp_path)
    s = suite_file(tmp_path, metrics='"toy-mass", "half-nan", "infinite"')
    assert main(run_argv(s, out)) == 1
    store = Store(out / "results.sqlite")
    try:
        v = store.values()
        half = v[v["name"] == "half-nan"].sort_values("image")
        assert len(half) == 8 and half["value"].isna().sum() == 4  # rows there, value NaN (not missing)
        assert (half["value"].iloc[::2] == 0.5).all() and half["value"].dtype == float
        assert v[v["name"] == "infinite"].empty
        failed = store.failures()
    finally:
        store.close()
    assert list(failed["metric"]) == ["infinite"]
    assert failed["error"].iloc[0] == ("ValueError: metric infinite: value infinite[image 2] is infinite (1 of 8); "
                                       "a score must be finite or NaN (undefined)")


# ----------------------------------------------------------------- 5. cells know their suite

def test_second_suite_in_a_used_folder_gets_its_own_cells_from_the_cache(tmp_path, base):
    out = _copy(base, tmp_path)
    before = snapshot(out)
    s = suite_file(tmp_path, name="other", explainers='{ name = "toy-grad", label = "tg" }')
    assert main(run_argv(s, out)) == 0
    rows = _cells(out, "suite = 'other'")
    assert {r["kind"] for r in rows} == {"model", "maps", "metric"}
    maps = [r for r in rows if r["kind"] == "maps"]
    assert [m["explainer"] for m in maps] == ["tg"]  # restored under the current suite and label
    old = {r["kind"]: r for r in _cells(out, "suite = 'tiny'")}
    new = {r["kind"]: r for r in rows}
    assert new["model"]["config_hash"] == old["model"]["config_hash"]
    con = sqlite3.connect(out / "results.sqlite")
    secs = dict(con.execute("SELECT c.suite, v.value FROM cell_values v JOIN cells c USING (cell_id) "
                            "WHERE v.name = 'train_seconds'").fetchall())
    con.close()
    assert secs["other"] == secs["tiny"]  # the same model from the cache, not retrained
    assert new["maps"]["wall_time"] == old["maps"]["wall_time"]  # the cached maps' own record
    assert snapshot(out).items() >= before.items()


def test_merge_keeps_suites_apart_and_refuses_pooling_different_configs(tmp_path, base, capsys):
    a = _copy(base, tmp_path)
    b = tmp_path / "b"
    assert main(run_argv(suite_file(tmp_path, name="other"), b)) == 0
    c = tmp_path / "c"  # suite "tiny" again, but evaluated on other images: a different config
    s = suite_file(tmp_path, file="tiny2.toml")
    s.write_text(s.read_text().replace("n_eval = 8", "n_eval = 6"))
    assert main(run_argv(s, c)) == 0
    capsys.readouterr()
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "ab")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "suites kept apart: other 3, tiny 3" in line and "0 refused" in line
    assert main(["merge", str(a), str(c), "--out", str(tmp_path / "ac")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert sum(x.startswith("refused: cell ") for x in out) == 2  # maps and metric: same keys, other config
    assert "2 refused (same keys, different config)" in out[-1]
    kept = _cells(tmp_path / "ac", "kind = 'metric'")
    assert len(kept) == 1 and json.loads(kept[0]["config"])["n_eval"] == 8  # the first folder's cells only


# ----------------------------------------------------------------- 7. one run per folder

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_held_lock_refuses_a_second_run_and_a_stale_one_is_taken_over(tmp_path, base, capsys):
    out = _copy(base, tmp_path)
    s = suite_file(tmp_path)
    with FolderLock(out, "xaibench run (the first)"):
        assert main(run_argv(s, out)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by pid {os.getpid()} on {socket.gethostname()}" in err[0]
        assert "--wait" in err[0]
        assert main(["status", "--out", str(out)]) == 0
        assert f"in use by pid {os.getpid()}" in capsys.readouterr().out
    assert not (out / LOCK).exists()
    (out / LOCK).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 0}))
    assert main(run_argv(s, out)) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "took over the stale lock" in err[0] and not (out / LOCK).exists()


def test_wait_blocks_until_the_holder_releases(tmp_path):
    first = FolderLock(tmp_path).acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(FolderLock(tmp_path, wait=True, poll=0.01).acquire()))
    t.start()
    t.join(0.2)
    assert not got  # still waiting while the first holds it
    first.release()
    t.join(30)
    assert got and got[0].held
    got[0].release()
    with FolderLock(tmp_path):
        with pytest.raises(StorageError, match="is in use by"):
            FolderLock(tmp_path).acquire()


# ----------------------------------------------------------------- 3. names

def test_plugin_whose_name_is_a_path_is_skipped(capsys):
    assert main(["list", "explainer", "--plugin", str(Path(__file__).parent / "fixtures" / "path_name_plugin.py")]) == 0
    out, err = capsys.readouterr()
    assert "../evil" not in out and "fine-name" in out
    assert "'../evil' is not a valid name" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------- 6. storage faults

def test_a_full_disk_inside_sqlite_is_one_line_and_keeps_what_was_stored(tmp_path, base, monkeypatch, capsys):
    out = _copy(base, tmp_path)
    before = snapshot(out)

    def full(self, rec):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "_write", full)
    s = suite_file(tmp_path, name="other")  # new cells to write
    assert main(run_argv(s, out)) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disk full while writing" in err[0] and "results.sqlite" in err[0]
    assert snapshot(out) == before and not (out / LOCK).exists()  # the lock is released, too


def test_results_that_read_back_nan_are_distinct_from_missing(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    keys = {"suite": "s", "dataset": "d", "backbone": "b", "attack": "none", "seed": 0, "explainer": "e",
            "metric": "m", "split": "clean"}
    store.write(CellRecord("c", "metric", keys, "h", {}, "done", 1.0, [("m", None, 0, float("nan"), None, True),
                                                                        ("m", None, 1, 0.25, None, True)]))
    v = store.values()
    store.close()
    assert v["value"].dtype == float and len(v) == 2 and math.isnan(v["value"][0]) and v["value"][1] == 0.25


def test_a_cell_replaces_a_stored_cell_with_the_same_keys(tmp_path):
    """An earlier config of the same suite (or an old id) never sits beside the new cell."""
    store = Store(tmp_path / "r.sqlite")
    keys = {"suite": "s", "dataset": "d", "backbone": "b", "attack": "none", "seed": 0, "explainer": "e",
            "metric": "m", "split": "clean"}
    store.write(CellRecord("old", "metric", keys, "h1", {}, "done", 1.0, [("m", None, 0, 0.1, None, True)]))
    store.write(CellRecord("other", "metric", {**keys, "suite": "t"}, "h1", {}, "done", 1.0,
                           [("m", None, 0, 0.3, None, True)]))
    store.write(CellRecord("new", "metric", keys, "h2", {}, "done", 1.0, [("m", None, 0, 0.2, None, True)]))
    v = store.values()
    store.close()
    assert sorted(zip(v["suite"], v["value"])) == [("s", 0.2), ("t", 0.3)]
