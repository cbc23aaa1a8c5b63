"""Structure from data, not from names or re-loaded plugins: a ``--plugin`` metric's family,
explainer baseline, swept dataset options and swept score parameters are recorded when the
cells are made, so a leaderboard or report read without the plugin file still knows them."""
from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from xaibench.cells import RunConfig
from xaibench.leaderboard.build import summary_of
from xaibench.leaderboard.sweeps import dataset_sweeps
from xaibench.leaderboard.table import build_tables
from xaibench.report.data import ReportData, sweeps
from xaibench.report.figures import swept_levels
from xaibench.runner import run_local
from xaibench.store import Store
from xaibench.suite import parse

from .conftest import TOY_PLUGIN

PLUGIN = '''
import numpy as np
import torch
import xaibench
from xaibench.contracts import Score
from xaibench.hookspecs import ExplainerRecord, MetricRecord


class Share:
    scope = "explanation"

    def score(self, inp):
        a = inp.attributions.abs().flatten(1)
        m = inp.masks.flatten(1).float()
        share = ((a * m).sum(1) / a.sum(1).clamp_min(1e-12)).cpu().numpy()
        # two levels of q, named without "@q%": only the recorded param says they are a sweep
        return [Score("leak-share-lo", share, True, param=("q", 1.0)),
                Score("leak-share-hi", share * 0.5, True, param=("q", 5.0))]


class Flat:
    def explain(self, model, x, target, context):
        return torch.ones(x.shape[0], *x.shape[-2:], device=x.device)


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("leak-share", "test: share in the mask", Share, family="localisation")


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("leak-flat", "test: a flat map", Flat, baseline="chance")
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leaks")
    plugin = tmp / "leak_plugin.py"
    plugin.write_text(PLUGIN)
    suite = parse({"name": "leaks", "seeds": [0], "n_eval": 8, "attacks": ["none"],
                   "datasets": [{"name": "toy-blobs", "label": "blobs", "options": {"n": 48},
                                 "sweep": {"contrast": [0.2, 0.4, 0.6]}}],
                   "explainers": ["toy-grad", "leak-flat"], "metrics": ["leak-share"],
                   "backbones": [{"name": "resnet18", "options": {"width": 0.125, "output_stride": 8,
                                                                  "epochs": 1}}]}, "test")
    cfg = RunConfig(suite, tmp / "out", (str(TOY_PLUGIN), str(plugin)), "cpu", progress=False)
    res = run_local(cfg)
    assert not res.failed
    return cfg.out, plugin


def test_plugin_metric_lands_in_its_family_table_without_the_plugin_file(run):
    out, _ = run
    summary = summary_of(out)  # no plugin files: the family comes from the store
    rows = summary[summary["column"].str.startswith("leak-share")]
    assert len(rows) and set(rows["family"]) == {"localisation"}
    titles = [t.title for t in build_tables(summary) if any(c.key.startswith("leak-share") for c in t.columns)]
    assert titles and all("localisation" in t for t in titles)
    assert set(summary.loc[summary["explainer"] == "leak-flat", "baseline"]) == {"chance"}


def test_sweeps_come_from_stored_options_not_labels(run):
    out, _ = run
    con = sqlite3.connect(out / "results.sqlite")
    try:  # labels that say nothing about the sweep: display only
        for i, level in enumerate(("0.2", "0.4", "0.6")):
            con.execute("UPDATE cells SET dataset = ? WHERE dataset = ?", (f"plain-{i}", f"blobs[contrast={level}]"))
        con.commit()
        sweeps = dataset_sweeps(summary_of(out))
    finally:
        for i, level in enumerate(("0.2", "0.4", "0.6")):
            con.execute("UPDATE cells SET dataset = ? WHERE dataset = ?", (f"blobs[contrast={level}]", f"plain-{i}"))
        con.commit()
        con.close()
    assert [(b, k) for b, k, _ in sweeps] == [("blobs", "contrast")]
    levels = dict(zip(sweeps[0][2]["dataset"], sweeps[0][2]["level"]))
    assert levels == {"plain-0": 0.2, "plain-1": 0.4, "plain-2": 0.6}


def _copy(out, dst_dir, *sql):
    """A copy of the run's store with ``sql`` applied (the shared fixture stays untouched)."""
    dst_dir.mkdir()
    src, dst = sqlite3.connect(out / "results.sqlite"), sqlite3.connect(dst_dir / "results.sqlite")
    src.backup(dst)
    src.close()
    for q in sql:
        dst.execute(q)
    dst.commit()
    dst.close()
    return dst_dir


RENAME = "UPDATE cells SET dataset = 'plain-' || substr(dataset, 16, 3) WHERE dataset LIKE 'blobs[contrast=%]'"


def test_report_sweeps_come_from_the_recorded_sweep_not_labels(run, tmp_path):
    out, _ = run
    renamed = _copy(out, tmp_path / "renamed", RENAME)
    found = sweeps(ReportData.load(renamed), "dataset")
    assert found == [("blobs", "contrast", {"plain-0.2": 0.2, "plain-0.4": 0.4, "plain-0.6": 0.6})]
    # the leaderboard reads the same recorded sweep
    assert [(b, k) for b, k, _ in dataset_sweeps(summary_of(renamed))] == [("blobs", "contrast")]


def test_report_sweeps_of_old_folders_fall_back_to_labels(run, tmp_path):
    out, _ = run
    old = _copy(out, tmp_path / "old", "UPDATE cells SET facts = NULL")
    assert sweeps(ReportData.load(old), "dataset") == [
        ("blobs", "contrast", {"blobs[contrast=0.2]": 0.2, "blobs[contrast=0.4]": 0.4, "blobs[contrast=0.6]": 0.6})]
    # without facts and with uninformative labels only the plugin name is left to group by
    blind = _copy(out, tmp_path / "blind", "UPDATE cells SET facts = NULL", RENAME)
    assert [(b, k) for b, k, _ in sweeps(ReportData.load(blind), "dataset")] == [("toy-blobs", "contrast")]


def test_swept_score_params_are_stored_with_the_values(run):
    out, _ = run
    store = Store(out / "results.sqlite")
    try:
        values = store.values()
    finally:
        store.close()
    lv = swept_levels(values[values["metric"] == "leak-share"])
    assert set(zip(lv["name"], lv["param"], lv["level"])) == {("leak-share-lo", "q", 1.0),
                                                             ("leak-share-hi", "q", 5.0)}
    assert set(lv["base"]) == {"leak-share"}


def test_cells_stored_before_facts_fall_back(run, tmp_path):
    out, plugin = run
    old = tmp_path / "old"
    old.mkdir()
    src, dst = sqlite3.connect(out / "results.sqlite"), sqlite3.connect(old / "results.sqlite")
    src.backup(dst)
    src.close()
    dst.execute("UPDATE cells SET facts = NULL")
    dst.commit()
    dst.close()
    summary = summary_of(old, plugin_files=(str(plugin),))  # the installed registry (+ the given file)
    assert set(summary.loc[summary["column"].str.startswith("leak-share"), "family"]) == {"localisation"}
    assert set(summary.loc[summary["explainer"] == "leak-flat", "baseline"]) == {"chance"}
    assert [(b, k) for b, k, _ in dataset_sweeps(summary)] == [("blobs", "contrast")]  # parsed from labels


def test_old_rows_are_parsed_in_one_place():
    v = pd.DataFrame({"metric": ["delta-t"] * 3, "name": ["delta-t@1%", "delta-t@5%", "delta-t-roi"],
                      "value": [0.1, 0.2, 0.3]})
    lv = swept_levels(v)
    assert list(zip(lv["base"], lv["param"], lv["level"])) == [("delta-t", "q", 1.0), ("delta-t", "q", 5.0)]


def test_a_store_written_before_facts_opens_and_reads(tmp_path):
    from xaibench.store import SCHEMA

    db = tmp_path / "results.sqlite"
    con = sqlite3.connect(db)
    con.executescript(_old_schema(SCHEMA))
    con.execute("INSERT INTO cells (cell_id, kind, metric, status, config) VALUES ('c', 'metric', 'm', 'done', '{}')")
    con.execute("INSERT INTO cell_values VALUES ('c', 'x@5%', NULL, -1, 0.5, NULL, 1)")
    con.commit()
    con.close()
    store = Store(db)
    try:
        v = store.values()
    finally:
        store.close()
    assert v["param_key"].isna().all() and np.isnan(v["param_value"]).all() and v["metric_family"].isna().all()
    assert list(swept_levels(v)["level"]) == [5.0]


def _old_schema(schema: str) -> str:
    """The schema as it was before the ``facts`` column."""
    lines = [ln for ln in schema.splitlines() if not ln.strip().startswith("facts TEXT")]
    text = "\n".join(lines)
    assert "git_commit TEXT,\n);" in text
    return text.replace("git_commit TEXT,\n);", "git_commit TEXT\n);")
