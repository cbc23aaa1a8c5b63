"""Executors are plugins: an engine defined in one ``--plugin`` file runs a suite end to end
with exactly the local run's values; unknown executor names and keys are one-line errors
naming what is registered or allowed; a record's own keys are accepted and checked."""
from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from xaibench.cli import main
from xaibench.errors import EXIT_USAGE, XaibenchError
from xaibench.executors import resolve, run_with
from xaibench.executors.driver import plan_path
from xaibench.plugins import load
from xaibench.runner import run_local

from .conftest import HERE, TOY_PLUGIN
from .test_executors import _cfg

REVERSE = HERE / "fixtures" / "reverse_executor.py"
SUITE_TOML = ('name = "toy"\nseeds = [0, 1]\nn_eval = 8\ndatasets = ["toy-blobs"]\nattacks = ["none"]\n'
              'explainers = ["toy-grad"]\nmetrics = ["accuracy", "toy-mass"]\n'
              '[[backbones]]\nname = "resnet18"\noptions = { width = 0.125, output_stride = 8, epochs = 1 }\n')


@pytest.fixture(scope="module")
def registry():
    return load([TOY_PLUGIN, REVERSE])


def _values(out: Path) -> list[tuple]:
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT cell_id, name, explainer, image, value FROM cell_values "
                       "WHERE name NOT LIKE '%seconds%' ORDER BY cell_id, name, image").fetchall()
    con.close()
    return rows


def _err(capsys) -> list[str]:
    return [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("xaibench: warning")]


def test_builtin_executors_are_listed_with_their_keys(capsys):
    assert main(["list", "executors", "--options"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("executors:\n")
    for name, provider in (("local", "executors.local"), ("dask", "executors.dask"), ("slurm", "executors.slurm")):
        assert any(line.split()[0] == name and provider in line for line in out.splitlines()), out
    assert "threads_per_worker  int = 1" in out and "cluster  str = 'slurm'" in out
    assert main(["describe", "dask"]) == 0
    assert "executor dask:" in capsys.readouterr().out


def test_out_of_tree_executor_runs_a_suite_exactly_like_local(tmp_path, capsys):
    suite = tmp_path / "toy.toml"
    suite.write_text(SUITE_TOML + '[executor]\nname = "reverse"\nlog_name = "ran.txt"\n')
    out = tmp_path / "rev"
    argv = ["run", "--suite", str(suite), "--plugin", str(TOY_PLUGIN), "--plugin", str(REVERSE), "--out", str(out),
            "--device", "cpu", "--quiet", "--no-leaderboard"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "8 cells computed, 0 already stored, 0 failed" in capsys.readouterr().out
    local = tmp_path / "local"
    assert run_local(_cfg(local)).done == 8
    assert _values(out) == _values(local) and len(_values(out)) > 30  # the same cells, the same numbers
    plan = json.loads(plan_path(out).read_text())
    assert plan["executor"] == "reverse" and plan["finished"]
    planned = list(plan["jobs"])  # in the driver's order
    ran = (out / "executor" / "reverse" / "ran.txt").read_text().split()  # the record's own key was used
    by_stage = lambda keys, st: [k for k in keys if k.startswith(st)]  # noqa: E731
    assert len(by_stage(planned, "train")) == 2
    for st in ("train", "evaluate"):
        assert by_stage(ran, st) == by_stage(planned, st)[::-1]  # the backend really ran them, reversed
    assert all(j["job_id"].startswith("reverse-") for j in plan["jobs"].values())


def test_unknown_executor_names_the_registered_ones(tmp_path, registry, capsys):
    with pytest.raises(XaibenchError, match=r"--executor 'ray': no such executor; registered: dask, local, reverse, "
                                            r"slurm"):
        run_with("ray", _cfg(tmp_path / "o"), registry=registry)
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE_TOML + '[executor]\nname = "ray"\n')
    argv = ["run", "--suite", str(suite), "--plugin", str(TOY_PLUGIN), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == EXIT_USAGE
    lines = _err(capsys)
    assert len(lines) == 1 and "suite [executor] name = 'ray': no such executor; registered: dask, local, slurm" \
        in lines[0], lines
    assert main(argv[:-1] + ["--executor", "reverse", "--quiet"]) == EXIT_USAGE  # not loaded without its --plugin
    assert "--executor 'reverse': no such executor" in _err(capsys)[0]
    assert not (tmp_path / "o").exists()  # nothing was planned or written


def test_a_records_own_keys_are_accepted_checked_and_others_rejected(registry):
    s = resolve("reverse", {"log_name": "x.txt", "refuse": True, "cpus": 2}, None, registry)
    assert s.options.log_name == "x.txt" and s.options.refuse is True and s.resources.cpus == 2
    assert resolve("reverse", {}, None, registry).options.log_name == "order.txt"  # the dataclass default
    with pytest.raises(XaibenchError, match=r"unknown key 'log_nam' \(allowed: .*log_name.*\)"):
        resolve("reverse", {"log_nam": "x.txt"}, None, registry)
    with pytest.raises(XaibenchError, match=r"suite \[executor\] refuse = 'yes': must be true or false"):
        resolve("reverse", {"refuse": "yes"}, None, registry)
    with pytest.raises(XaibenchError, match="executor reverse: option 'log_name' must be a .txt file name"):
        resolve("reverse", {"log_name": "x.csv"}, None, registry)
    # another executor's keys are accepted (one suite may hold settings for several) but still type-checked
    assert resolve("dask", {"log_name": "x.txt", "workers": 3}, None, registry).options.workers == 3
    with pytest.raises(XaibenchError, match="refuse = 1: must be true or false"):
        resolve("dask", {"refuse": 1}, None, registry)
    with pytest.raises(XaibenchError, match="unknown key 'log_name'"):
        resolve("dask", {"log_name": "x.txt"}, None, load([TOY_PLUGIN]))  # without the plugin nobody declares it
    with pytest.raises(XaibenchError, match="--workers: executor 'slurm' has no 'workers' setting"):
        resolve("slurm", {}, argparse.Namespace(workers=3), registry)
    with pytest.raises(XaibenchError, match="executor dask: option 'workers' must be at least 1"):
        resolve("dask", {}, argparse.Namespace(workers=0), registry)


def test_preflight_runs_before_any_planning(tmp_path, registry):
    cfg = _cfg(tmp_path / "o", executor={"name": "reverse", "refuse": True})
    with pytest.raises(XaibenchError, match="refused by its preflight"):
        run_with("reverse", cfg, registry=registry)
    assert not (tmp_path / "o").exists()


def test_an_executor_reusing_a_builtin_name_names_both_providers(tmp_path):
    from xaibench.errors import PluginError

    impostor = tmp_path / "impostor.py"
    impostor.write_text("import xaibench\nfrom xaibench.hookspecs import ExecutorRecord\n\n\n@xaibench.hookimpl\n"
                        "def xaibench_executors():\n    yield ExecutorRecord('dask', 'an impostor', None, in_process=True)\n")
    with pytest.raises(PluginError, match=r"duplicate executor name 'dask'.*executors\.dask.*impostor\.py"):
        load([impostor])
