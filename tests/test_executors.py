"""Executors: Dask LocalCluster and submitit's local executor give exactly the local run's
values; a distributed run killed mid-way resumes without recomputing or duplicating; jobs
skip cells whose result files exist; settings are validated."""
from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from xaibench.cells import ModelTask, RunConfig
from xaibench.errors import XaibenchError
from xaibench.executors import resolve, run_with
from xaibench.executors.jobs import (INGESTED, Requeueable, WorkerOptions, eval_job, finished_ids, pending_dir,
                                     read_pending, train_job)
from xaibench.runner import model_tasks, run_local
from xaibench.status import collect
from xaibench.store import Store
from xaibench.suite import parse

from .conftest import TOY_PLUGIN

THREADS = 2  # bit-identical results need the same torch thread count everywhere (docs/scale-out.md)
SUITE = {
    "name": "toy", "seeds": [0, 1], "n_eval": 8,
    "datasets": ["toy-blobs"], "attacks": ["none"], "explainers": ["toy-grad"],
    "metrics": ["accuracy", "toy-mass"],
    "backbones": [{"name": "resnet18", "options": {"width": 0.125, "output_stride": 8, "epochs": 1}}],
    "executor": {"cluster": "local", "poll_s": 0.2, "max_parallel": 2, "time_min": 10,
                 "torch_threads": THREADS},  # the autouse fixture sets 1 thread in the driver
}
N_CELLS = 2 * 4  # per seed: model, maps, accuracy, toy-mass


def _cfg(out: Path, **over) -> RunConfig:
    return RunConfig(parse({**SUITE, **over}, "test"), out, (str(TOY_PLUGIN),), "cpu", progress=False)


def _values(out: Path) -> list[tuple]:
    """Every stored value with its cell id (timings excluded: they differ between any two runs)."""
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT cell_id, name, explainer, image, value FROM cell_values "
                       "WHERE name NOT LIKE '%seconds%' ORDER BY cell_id, name, image").fetchall()
    con.close()
    return rows


@pytest.fixture(scope="module")
def local_values(tmp_path_factory):
    import torch

    torch.set_num_threads(THREADS)
    out = tmp_path_factory.mktemp("local") / "out"
    s = run_local(_cfg(out))
    assert s.done == N_CELLS and not s.failed
    vals = _values(out)
    assert len(vals) > 30
    return vals


@pytest.mark.slow  # job processes each import torch and the plugins
def test_submitit_local_executor_gives_exactly_the_local_values(local_values, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(out, seeds=[0])  # one model: two job processes (train, evaluate) keep the test short
    s = run_with("slurm", cfg)
    assert s.done == N_CELLS // 2 and not s.failed, s.failed
    con = sqlite3.connect(out / "results.sqlite")
    ids = {r[0] for r in con.execute("SELECT cell_id FROM cells WHERE status = 'done'")}
    con.close()
    assert len(ids) == N_CELLS // 2
    assert _values(out) == [r for r in local_values if r[0] in ids]  # bit-identical, cell ids included
    st = collect(out)
    assert st.executor == "slurm" and st.waiting == 0
    assert dict(st.jobs["train"]) == {"done": 1} and dict(st.jobs["evaluate"]) == {"done": 1}


@pytest.mark.slow  # job processes each import torch and the plugins
def test_dask_run_killed_midway_resumes_to_exactly_the_local_values(local_values, tmp_path):
    suite = tmp_path / "toy.toml"
    suite.write_text(
        'name = "toy"\nseeds = [0, 1]\nn_eval = 8\ndatasets = ["toy-blobs"]\nattacks = ["none"]\n'
        'explainers = ["toy-grad"]\nmetrics = ["accuracy", "toy-mass"]\n'
        '[[backbones]]\nname = "resnet18"\noptions = { width = 0.125, output_stride = 8, epochs = 1 }\n'
        f'[executor]\nname = "dask"\nworkers = 2\nthreads_per_worker = 1\ntorch_threads = {THREADS}\n')
    out = tmp_path / "out"
    args = [sys.executable, "-m", "xaibench.cli", "run", "--suite", str(suite), "--plugin", str(TOY_PLUGIN),
            "--out", str(out), "--device", "cpu", "--quiet", "--no-leaderboard"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None and not finished_ids(out):
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("run finished before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers, with no chance to clean up
    proc.communicate(timeout=60)
    store = Store(out / "results.sqlite")
    kept = store.done() | finished_ids(out)  # stored, or durable in a result file
    store.close()
    assert 1 <= len(kept) < N_CELLS
    assert collect(out).driver.startswith("stopped")
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{N_CELLS - len(kept)} cells computed, {len(kept)} already stored" in r.stdout, r.stdout
    assert _values(out) == local_values  # nothing missing, nothing duplicated, the same numbers
    st = collect(out)
    assert st.driver.startswith("finished") and st.waiting == 0 and st.counts()["done"] == N_CELLS
    assert not (pending_dir(out) / INGESTED).exists()  # tidied after a complete run
    again = run_with("dask", _cfg(out))  # nothing left: no cluster is even started
    assert again.done == 0 and again.skipped == N_CELLS and collect(out).jobs == {}


def test_job_skips_cells_with_result_files_and_rebuilds_a_lost_model_row(tmp_path):
    cfg = _cfg(tmp_path / "out", seeds=[0])
    task = model_tasks(cfg)[0]
    opts = WorkerOptions()
    first = train_job("train-x", cfg, task, frozenset(), opts)
    assert first.done == 1 and first.cells[0].startswith("model-")
    model_file = pending_dir(cfg.out) / f"{first.cells[0]}.json"
    original = read_pending(model_file)
    # a job killed after saving the weights but before writing the row: the row is rebuilt, not retrained
    model_file.unlink()
    again = train_job("train-x", cfg, task, frozenset(), opts)
    rebuilt = read_pending(model_file)
    assert again.done == 1 and rebuilt.values == original.values and rebuilt.extras == original.extras
    ev = eval_job("evaluate-x", cfg, task, frozenset(), opts)
    assert ev.done == 3 and not ev.failed  # maps, accuracy, toy-mass
    requeued = Requeueable(eval_job, "evaluate-x", cfg, task, frozenset(), opts)
    resubmission = requeued.checkpoint()  # what submitit runs after a preemption
    assert resubmission.function is requeued
    assert requeued().done == 0  # every cell has its result file: nothing is recomputed
    # --force: stage 1 retrains, stage 2 reloads that model and recomputes maps and cells, same numbers
    before = {c: read_pending(pending_dir(cfg.out) / f"{c}.json").values for c in ev.cells}
    forced = replace(cfg, force=True)
    assert train_job("train-x", forced, task, frozenset(), opts).done == 1
    ev2 = eval_job("evaluate-x", forced, task, frozenset(), opts)
    assert sorted(ev2.cells) == sorted(ev.cells)
    after = {c: read_pending(pending_dir(cfg.out) / f"{c}.json").values for c in ev.cells}
    strip = lambda rows: [r for r in rows if "seconds" not in r[0]]  # noqa: E731
    assert all(strip(before[c]) == strip(after[c]) for c in before) and any(strip(v) for v in before.values())


def slow_cells(folder: Path, n: int) -> int:
    """A stand-in job: writes ``n`` result files one by one, skipping those that exist (as the
    real jobs skip cells with result files); returns how many this attempt wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "attempts", "a") as f:
        f.write("start\n")
    wrote = 0
    for i in range(n):
        p = folder / f"cell{i}"
        if not p.exists():
            time.sleep(0.4)
            p.write_text("done")
            wrote += 1
    return wrote


@pytest.mark.slow  # two job processes
def test_preempted_submitit_job_is_requeued_and_resumes(tmp_path):
    import submitit

    ex = submitit.AutoExecutor(folder=str(tmp_path / "submitit" / "%j"), cluster="local")
    ex.update_parameters(timeout_min=10)
    cells = tmp_path / "cells"
    job = ex.submit(Requeueable(slow_cells, cells, 8))
    deadline = time.time() + 120
    while time.time() < deadline and not (cells / "cell1").exists() and not job.done():
        time.sleep(0.05)
    assert not job.done(), job.stderr()
    task = subprocess.run(["pgrep", "-P", str(job._process.pid)], capture_output=True, text=True).stdout.split()
    os.kill(int(task[0]), signal.SIGUSR2)  # what Slurm sends before preempting or at the time limit
    wrote_after_requeue = job.result()
    assert (cells / "attempts").read_text().count("start") == 2  # requeued once, by submitit
    assert sorted(p.name for p in cells.glob("cell*")) == [f"cell{i}" for i in range(8)]
    assert 0 < wrote_after_requeue < 8  # the requeued job resumed: it skipped what was done before


def test_settings_from_suite_table_and_flags():
    args = argparse.Namespace(partition="gpu", gpus=1, cpus=None, mem_gb=None, time_min=None, max_parallel=None,
                              workers=None, dask_address=None)
    s = resolve("slurm", {"cpus": 4, "time_min": 30, "evaluate": {"time_min": 90}}, args)
    assert s.resources.partition == "gpu" and s.resources.gpus == 1 and s.resources.cpus == 4
    assert s.for_stage("train").time_min == 30 and s.for_stage("evaluate").time_min == 90
    assert s.for_stage("evaluate").partition == "gpu"  # flags win in every stage
    with pytest.raises(XaibenchError, match="unknown key 'gpu'.*allowed:.*gpus"):
        resolve("slurm", {"gpu": 1}, None)
    with pytest.raises(XaibenchError, match="time_min = -5"):
        resolve("slurm", {"time_min": -5}, None)
    with pytest.raises(XaibenchError, match="evaluate: unknown key 'workers'"):
        resolve("slurm", {"evaluate": {"workers": 3}}, None)


def test_slurm_without_slurm_is_a_one_line_error(tmp_path, monkeypatch):
    from xaibench_plugins.executors.slurm import SubmititBackend

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    with pytest.raises(XaibenchError, match="sbatch is not on PATH"):
        SubmititBackend(resolve("slurm", {}, None), tmp_path)
    with pytest.raises(XaibenchError, match="sbatch is not on PATH"):
        run_with("slurm", _cfg(tmp_path / "o", executor={}))  # fails before planning anything
    assert not (tmp_path / "o").exists()
    with pytest.raises(XaibenchError, match="--executor 'ray'"):
        run_with("ray", _cfg(tmp_path / "o"))
