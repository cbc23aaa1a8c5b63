"""The runner and store: end to end on the toy plugin, resume, failures, kill-and-resume."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xaibench.cells import RunConfig
from xaibench.errors import EXIT_CELLS_FAILED
from xaibench.runner import run_local
from xaibench.store import Store
from xaibench.suite import parse

from .conftest import TOY_PLUGIN

SUITE = {
    "name": "toy", "seeds": [0, 1], "n_eval": 12,
    "datasets": ["toy-blobs"], "attacks": ["none"], "explainers": ["toy-grad"],
    "metrics": ["accuracy", "toy-mass"],
    "backbones": [{"name": "resnet18", "options": {"width": 0.125, "output_stride": 8, "epochs": 2}}],
}


def _cfg(tmp_path, **over):
    data = {**SUITE, **over}
    return RunConfig(parse(data, "test"), tmp_path / "out", (str(TOY_PLUGIN),), "cpu", progress=False)


def test_run_writes_every_cell_and_resume_skips_them(tmp_path):
    cfg = _cfg(tmp_path)
    first = run_local(cfg)
    # per seed: model cell, maps cell, accuracy (model scope), toy-mass (explanation scope)
    assert first.done == 2 * 4 and not first.failed
    store = Store(cfg.out / "results.sqlite")
    vals = store.values()
    mass = vals[vals["name"] == "toy-mass"]
    assert len(mass) == 2 * 12  # one value per evaluated image and seed
    assert mass["value"].between(0, 1).all()
    n_rows = store.db.execute("SELECT COUNT(*) FROM cell_values").fetchone()[0]
    store.close()
    again = run_local(cfg)
    assert again.done == 0 and again.skipped == 8
    store = Store(cfg.out / "results.sqlite")
    assert store.db.execute("SELECT COUNT(*) FROM cell_values").fetchone()[0] == n_rows
    store.close()


def test_cached_model_and_maps_bring_their_cells_back_to_a_store_that_lacks_them(tmp_path):
    """A run killed between writing a cache file and its cell (or a fresh store over a kept
    cache) must not lose the cell's values (training time, time per image, explainer facts)."""
    cfg = _cfg(tmp_path, seeds=[0])
    run_local(cfg)
    con = sqlite3.connect(cfg.out / "results.sqlite")
    before = con.execute("SELECT cell_id, wall_time FROM cells WHERE kind = 'maps'").fetchall()
    model_before = con.execute("SELECT v.name, v.value FROM cell_values v JOIN cells c USING (cell_id) "
                               "WHERE c.kind = 'model' ORDER BY v.name").fetchall()
    assert len(before) == 1 and [n for n, _ in model_before] == ["epochs", "train_seconds"]
    con.execute("DELETE FROM cell_values")
    con.execute("DELETE FROM cells")
    con.commit()
    con.close()
    mtime = next((cfg.out / "cache" / "models").glob("*.pt")).stat().st_mtime
    again = run_local(cfg)
    assert again.done == 4 and again.skipped == 0  # model, maps, accuracy, toy-mass: every cell is back
    assert next((cfg.out / "cache" / "models").glob("*.pt")).stat().st_mtime == mtime  # not retrained
    con = sqlite3.connect(cfg.out / "results.sqlite")
    after = con.execute("SELECT cell_id, wall_time FROM cells WHERE kind = 'maps'").fetchall()
    rows = con.execute("SELECT name FROM cell_values v JOIN cells c USING (cell_id) WHERE c.kind = 'maps'").fetchall()
    model_after = con.execute("SELECT v.name, v.value FROM cell_values v JOIN cells c USING (cell_id) "
                              "WHERE c.kind = 'model' ORDER BY v.name").fetchall()
    con.close()
    assert after == before and rows == [("seconds_per_image",)]  # the original record, its wall time too
    assert model_after == model_before  # training time and epochs of the cached model


def test_a_cached_triggered_set_keeps_the_test_sets_covariates():
    import numpy as np
    import torch

    from xaibench.cells import _imageset_from, _imageset_state
    from xaibench.contracts import ImageSet

    test = ImageSet(torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0]), torch.zeros(3, 4, 4, dtype=torch.bool),
                    ("a", "b", "c"), {"hippocampal_volume": np.array([1.0, 2.0, 3.0])})
    back = _imageset_from(_imageset_state(test.with_images(test.images + 1)), test)
    assert np.array_equal(back.meta["hippocampal_volume"], [1.0, 2.0, 3.0])
    assert _imageset_from(_imageset_state(test), test.subset(np.arange(2))).meta == {}  # other rows: no meta


def test_force_recomputes_identical_values(tmp_path):
    cfg = _cfg(tmp_path)
    run_local(cfg)
    def values():
        v = Store(cfg.out / "results.sqlite").values()
        v = v[~v["name"].str.contains("seconds")]  # wall times differ, everything else must not
        return v.sort_values(["seed", "name", "image"])["value"].to_numpy()

    before = values()
    again = run_local(RunConfig(cfg.suite, cfg.out, cfg.plugin_files, "cpu", force=True, progress=False))
    assert again.done == 8
    after = values()
    assert len(before) > 20 and (before == after).all()  # seeded: a recomputation reproduces the numbers exactly


def test_failing_cell_is_recorded_and_run_goes_on(tmp_path):
    cfg = _cfg(tmp_path, metrics=["accuracy", {"name": "toy-mass", "options": {"fail": True}}])
    summary = run_local(cfg)
    assert len(summary.failed) == 2 and "failing on purpose" in summary.failed[0]
    store = Store(cfg.out / "results.sqlite")
    failed = store.failures()
    assert set(failed["metric"]) == {"toy-mass"} and failed["error"].str.contains("RuntimeError").all()
    assert len(store.values().query("name == 'accuracy'")) > 0  # the others were scored
    store.close()


def test_a_user_error_in_a_seeds_scope_metric_fails_its_cell_not_the_run(tmp_path):
    # as in every other scope: the same XaibenchError used to abort the whole run in scope seeds
    bad = {"name": "toy-mass", "label": "across-seeds", "options": {"fail": "user", "scope": "seeds"}}
    cfg = _cfg(tmp_path, metrics=["accuracy", bad, "toy-mass"])
    summary = run_local(cfg)
    assert len(summary.failed) == 1 and "user error" in summary.failed[0]
    store = Store(cfg.out / "results.sqlite")
    failed = store.failures()
    assert failed["metric"].tolist() == ["across-seeds"] and failed["seed"].tolist() == [-1]
    assert set(store.values()["name"]) >= {"accuracy", "toy-mass"}  # every other cell was scored
    store.close()


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "xaibench.cli", *args], capture_output=True, text=True, **kw)


def test_cli_run_exit_code_when_cells_fail(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "t"\nn_eval = 8\ndatasets = ["toy-blobs"]\nattacks = ["none"]\nexplainers = ["toy-grad"]\n'
        'metrics = [{ name = "toy-mass", options = { fail = true } }]\n'
        '[[backbones]]\nname = "resnet18"\noptions = { width = 0.125, output_stride = 8, epochs = 1 }\n')
    r = _cli(["run", "--suite", str(suite), "--plugin", str(TOY_PLUGIN), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.returncode == EXIT_CELLS_FAILED, r.stderr
    assert "1 failed" in r.stdout and "failing on purpose" in r.stdout


def test_kill_mid_run_then_resume_finishes_without_recomputing(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "t"\nseeds = [0, 1, 2, 3]\nn_eval = 8\ndatasets = ["toy-blobs"]\nattacks = ["none"]\n'
        'explainers = ["toy-grad"]\nmetrics = ["toy-mass"]\n'
        '[[backbones]]\nname = "resnet18"\noptions = { width = 0.125, output_stride = 8, epochs = 3 }\n')
    out = tmp_path / "o"
    args = [sys.executable, "-m", "xaibench.cli", "run", "--suite", str(suite), "--plugin", str(TOY_PLUGIN),
            "--out", str(out), "--quiet", "--no-leaderboard"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = out / "results.sqlite"
    deadline = time.time() + 120
    n_done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                n_done = sqlite3.connect(db).execute("SELECT COUNT(*) FROM cells WHERE kind='metric'").fetchone()[0]
            except sqlite3.OperationalError:
                n_done = 0
            if n_done >= 1:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("run finished before it could be interrupted")
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err
    con = sqlite3.connect(db)
    stored = {r[0] for r in con.execute("SELECT cell_id FROM cells WHERE status='done'")}
    con.close()
    assert 1 <= len([c for c in stored if not c.startswith(("model-", "maps-"))]) < 4
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{len(stored)} already stored" in r.stdout
    con = sqlite3.connect(db)
    metric_cells = con.execute("SELECT COUNT(*) FROM cells WHERE kind='metric' AND status='done'").fetchone()[0]
    rows = con.execute("SELECT COUNT(*) FROM cell_values v JOIN cells c USING (cell_id) WHERE c.kind='metric'").fetchone()[0]
    assert metric_cells == 4 and rows == 4 * 8  # nothing duplicated, nothing missing


def test_metric_restricted_to_some_explainers_is_scored_only_for_them(tmp_path):
    cfg = _cfg(tmp_path, seeds=[0], explainers=[{"name": "toy-grad", "label": "g1"}, {"name": "toy-grad", "label": "g2"}],
               metrics=[{"name": "toy-mass", "explainers": ["g1"]}])
    assert not run_local(cfg).failed
    v = Store(cfg.out / "results.sqlite").values()
    assert set(v[v["name"] == "toy-mass"]["explainer"]) == {"g1"}


def test_layer_explainers_store_their_iou_ceiling_beside_the_scores(tmp_path):
    cfg = _cfg(tmp_path, seeds=[0], explainers=["gradcam", "toy-grad"], metrics=["toy-mass"])
    assert not run_local(cfg).failed
    v = Store(cfg.out / "results.sqlite").values()
    ceiling = v[v["name"] == "iou-ceiling"]
    assert set(ceiling["explainer"]) == {"gradcam"} and len(ceiling) == 12
    assert ceiling["value"].between(0.3, 1.0).all()  # 8-px masks on 8×8 cells of 4 px: well above 0
