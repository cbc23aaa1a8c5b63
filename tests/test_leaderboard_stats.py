"""Leaderboard statistics: intervals by the right unit of resampling, paired tests with Holm,
Friedman/Nemenyi against Demšar's table, baseline rows, NaN accounting, hostile labels in
every renderer, and a row order that does not depend on the executor."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from xaibench.leaderboard.build import read_summary_csv, render_summary
from xaibench.leaderboard.stats import (bootstrap_ci, critical_difference, friedman, hierarchical_ci, holm,
                                        nemenyi_q, t_interval)
from xaibench.leaderboard.summary import summarise
from xaibench.leaderboard.table import build_tables


def _frame(spec: dict[str, float], seeds=(0, 1, 2), n=30, name="iou", hib=True, noise=0.05, seed_shift=None,
           chance=0.1, rng_seed=0, image_level=True) -> pd.DataFrame:
    """Values as Store.values() returns them; ``spec``: explainer → mean."""
    rng = np.random.default_rng(rng_seed)
    shift = {s: (seed_shift or {}).get(s, 0.0) for s in seeds}
    rows = []
    for s in seeds:
        common = rng.normal(0, 0.2, n)  # image difficulty, shared by the explainers (paired design)
        for ex, mu in spec.items():
            for i in range(n if image_level else 1):
                v = mu + shift[s] + (common[i] if image_level else 0) + rng.normal(0, noise)
                rows.append(dict(suite="s", dataset="d", backbone="b", attack="none", seed=s, metric=name,
                                 metric_plugin=name, split="clean", config_hash=f"c{s}", explainer=ex, name=name,
                                 image=i if image_level else -1, value=v, chance=chance, higher_is_better=int(hib)))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ intervals


def test_hierarchical_interval_is_wider_than_pooled_when_seeds_differ():
    rng = np.random.default_rng(0)
    groups = [rng.normal(mu, 0.1, 50) for mu in (0.3, 0.5, 0.7)]  # seeds differ systematically
    lo_h, hi_h = hierarchical_ci(groups)
    lo_p, hi_p = bootstrap_ci(np.concatenate(groups))
    assert (hi_h - lo_h) > 4 * (hi_p - lo_p)
    assert lo_h < np.concatenate(groups).mean() < hi_h
    same = [rng.normal(0.5, 0.1, 50) for _ in range(3)]  # no seed effect: about the pooled width
    lo_s, hi_s = hierarchical_ci(same)
    lo_q, hi_q = bootstrap_ci(np.concatenate(same))
    assert 0.5 < (hi_s - lo_s) / (hi_q - lo_q) < 2.0


def test_t_interval_matches_scipy_for_a_known_triple():
    x = np.array([0.61, 0.70, 0.64])
    lo, hi = t_interval(x)
    ref = stats.t.interval(0.95, df=2, loc=x.mean(), scale=stats.sem(x))
    assert np.allclose((lo, hi), ref, atol=1e-12)
    assert t_interval(np.array([0.5])) == (0.5, 0.5)


def test_summary_names_the_unit_and_keeps_per_seed_values():
    img = summarise(_frame({"a": 0.5, "b": 0.4}, seed_shift={0: -0.2, 2: 0.2}))
    assert set(img["ci"]) == {"hierarchical"}
    a = img.set_index("explainer").loc["a"]
    per = dict(p.split(":") for p in a["per_seed"].split())
    assert list(per) == ["0", "1", "2"] and float(per["0"]) < float(per["1"]) < float(per["2"])
    agg = summarise(_frame({"a": 0.5, "b": 0.4}, image_level=False)).set_index("explainer")
    assert set(agg["ci"]) == {"seed-t"}
    seeds = np.array([float(p.split(":")[1]) for p in agg.loc["a", "per_seed"].split()])
    assert np.allclose((agg.loc["a", "ci_low"], agg.loc["a", "ci_high"]), t_interval(seeds), atol=1e-3)  # 4 digits
    one = summarise(_frame({"a": 0.5, "b": 0.4}, seeds=(0,)))
    assert set(one["ci"]) == {"image"}
    md = render_summary(img, "md")
    assert "bootstrap over seeds, then images within each resampled seed" in md
    assert re.search(r"\[0\.\d+/0\.\d+/0\.\d+\]", md)  # per-seed means in the cells


def test_a_failed_seed_stays_visible():
    v = _frame({"a": 0.5, "b": 0.4})
    v.loc[(v["seed"] == 1) & (v["explainer"] == "a"), "value"] = np.nan
    s = summarise(v).set_index("explainer")
    assert "1:nan" in s.loc["a", "per_seed"] and s.loc["a", "n_nan"] == 30 and s.loc["a", "n"] == 60
    md = render_summary(s.reset_index(), "md")
    assert re.search(r"\[[0-9.]+/–/[0-9.]+\]", md)
    assert "undefined values (NaN, left out of the mean and interval): iou: a 30 of 90" in md


# ------------------------------------------------------------------ tests between explainers


def test_holm_against_a_hand_example():
    # sorted: .005·4 = .02, .01·3 = .03, .03·2 = .06, .04·1 = .04 → monotone .02 .03 .06 .06
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    got = holm([0.2, np.nan, 0.9])
    assert np.isnan(got[1]) and np.allclose(got[[0, 2]], [0.4, 0.9])
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]  # 0.6·2 capped at 1, and never below an earlier step


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850), (7, 2.949),
                                  (8, 3.031), (9, 3.102), (10, 3.164)])
def test_nemenyi_q_matches_demsar_2006_table(k, q):
    assert abs(nemenyi_q(k) - q) < 2e-3
    assert np.isclose(critical_difference(k, 30), nemenyi_q(k) * np.sqrt(k * (k + 1) / 180))


def test_friedman_matches_scipy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4)) + np.array([0, 0.3, 0.6, 0.2])
    x[:5, 1] = x[:5, 2]  # some ties
    f = friedman(x, ["a", "b", "c", "d"], higher_is_better=True)
    ref = stats.friedmanchisquare(*x.T)
    assert np.isclose(f.statistic, ref.statistic) and np.isclose(f.p, ref.pvalue)
    assert min(f.ranks, key=f.ranks.get) == "c" and f.n_blocks == 40


def test_paired_tests_mark_methods_not_worse_than_the_best():
    s = summarise(_frame({"top": 0.60, "tied": 0.599, "worse": 0.45}), {"iou": "localisation"})
    row = s.set_index("explainer")
    assert np.isnan(row.loc["top", "p_vs_best"]) and row.loc["tied", "p_vs_best"] > 0.05
    assert row.loc["worse", "p_vs_best"] < 1e-6
    (t,) = [t for t in build_tables(s) if "localisation" in t.title]
    marks = {r.label: (r.values[0].best, r.values[0].not_worse) for r in t.rows}
    assert marks == {"top": (True, True), "tied": (False, True), "worse": (False, False)}
    assert [r.label for r in t.rows][-1] == "worse" and t.ranking is not None and t.ranking.blocks == "90 of 90 image-seed"
    md = render_summary(s, "md")
    assert "†" in md and "Holm over this table's 2 comparisons" in md and "Nemenyi" in md


def test_prior_row_sits_apart_and_methods_that_do_not_beat_it_are_marked():
    v = _frame({"good": 0.7, "meh": 0.5, "prior-map": 0.5, "noise": 0.02})
    s = summarise(v, {"iou": "localisation"}, {"prior-map": "prior", "noise": "chance"})
    (t,) = [t for t in build_tables(s) if "localisation" in t.title]
    assert [r.label for r in t.rows] == ["good", "meh", "noise", "prior-map"]  # methods by rank, then references
    assert [r.baseline for r in t.rows] == [None, None, "chance", "prior"]
    assert t.rows[2].rank is None and not any(v.best for r in t.rows[2:] for v in r.values)
    assert {r.label: r.values[0].beats_prior for r in t.rows} == {"good": True, "meh": False, "prior-map": None,
                                                                   "noise": None}
    assert abs(t.columns[0].prior - 0.5) < 0.05 and dict(t.ranking.ranks).keys() == {"good", "meh"}
    md = render_summary(s, "md")
    assert re.search(r"\(chance 0\.100, prior 0\.[45]\d\d\)", md) and "° does not beat the prior of the column's mask (prior-map" in md
    assert "| prior-map (prior)" in md and "| noise (chance)" in md and "\\ " not in md
    tex = render_summary(s, "latex")
    assert tex.count(r"\midrule") == 2  # below the header and above the reference rows
    # without a prior row nothing is tested against one and nothing breaks
    plain = summarise(v[v["explainer"] != "prior-map"], {"iou": "localisation"}, {"noise": "chance"})
    assert plain["p_vs_prior"].isna().all() and "prior" not in render_summary(plain, "md").split("###")[1]


def test_nan_values_are_counted_not_dropped():
    v = _frame({"a": 0.5, "b": 0.4}, seeds=(0,))
    v.loc[v.index[:7], "value"] = np.nan  # 7 images of "a" undefined
    s = summarise(v).set_index("explainer")
    assert (s.loc["a", "n"], s.loc["a", "n_nan"]) == (23, 7) and s.loc["b", "n_nan"] == 0
    assert np.isclose(s.loc["a", "mean"], np.nanmean(v[v["explainer"] == "a"]["value"]))


# ------------------------------------------------------------------ hostile labels, order

HOSTILE = ["<b>x</b><img src=x onerror=alert(1)>", "a|b", "50%_&$#{}~^\\", "# heading", "*star", "`tick`"]


def _hostile_summary() -> pd.DataFrame:
    v = _frame({lab: 0.3 + 0.05 * i for i, lab in enumerate(HOSTILE)}, seeds=(0, 1), n=10)
    v["dataset"] = "<script>alert('d')</script>"
    return summarise(v, {"iou": "localisation"})


def test_html_escapes_every_label():
    page = render_summary(_hostile_summary(), "html")
    assert "<img" not in page and "<script" not in page and "<b>x</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert re.findall(r"<b>[^<]*</b>", page)  # the best value is still bold, from the table model
    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", page))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h3", "table", "thead", "tbody", "tr",
                    "th", "td", "b", "p"}, tags


def test_markdown_table_keeps_its_column_count():
    md = render_summary(_hostile_summary(), "md")
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    counts = {len(re.findall(r"(?<!\\)\|", ln)) for ln in table}
    assert len(counts) == 1, counts
    assert "<img" not in md and "<script" not in md and "\\# heading" in md and "\\*star" in md


def test_latex_escapes_the_ten_specials():
    tex = render_summary(_hostile_summary(), "latex")
    assert r"50\%\_\&\$\#\{\}\textasciitilde{}\textasciicircum{}\textbackslash{}" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (.ci/run installs it)")
def test_latex_with_hostile_labels_compiles(tmp_path):
    (tmp_path / "t.tex").write_text(render_summary(_hostile_summary(), "latex"))
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]


def test_row_order_does_not_depend_on_the_input_order(tmp_path):
    v = pd.concat([_frame({"b": 0.4, "a": 0.5, "c10": 0.3, "c9": 0.2}),
                   _frame({"a": 0.9}, name="accuracy").assign(explainer="-", metric_plugin="accuracy"),
                   _frame({"a": 0.5, "b": 0.4}).assign(attack="backdoor")], ignore_index=True)
    fam = {"iou": "localisation", "accuracy": "model"}
    first = render_summary(summarise(v, fam), "csv")
    shuffled = render_summary(summarise(v.sample(frac=1.0, random_state=7), fam), "csv")
    assert first == shuffled
    s = summarise(v, fam)
    assert list(s["attack"].drop_duplicates()) == ["none", "backdoor"]
    assert list(s[s["attack"] == "none"]["explainer"]) == ["-", "a", "b", "c9", "c10"]
    (tmp_path / "l.csv").write_text(first)
    back = read_summary_csv(tmp_path / "l.csv")
    assert render_summary(back, "md") == render_summary(s, "md")  # the CSV renders to the same tables


# ------------------------------------------------------------------ from a store, with a plugin file

PRIOR_PLUGIN = '''
import xaibench
from xaibench.hookspecs import ExplainerRecord


class Where:
    def explain(self, model, images, target, context):
        raise NotImplementedError


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("where-it-usually-is", "test: the mean training mask", Where, baseline="prior")
'''


def _store(tmp_path, spec: dict[str, tuple[str, float]], dataset: str = "d"):
    """A results folder with one IoU cell per (explainer label, seed): label → (plugin, mean)."""
    from xaibench.cells import config_hash
    from xaibench.store import CellRecord, Store

    out = tmp_path / "out"
    store = Store(out / "results.sqlite")
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        for label, (name, mu) in spec.items():
            cfg = {"metric": {"name": "iou"}, "explainer": {"name": name, "options": {}}, "seed": seed, "l": label}
            cid = config_hash(cfg)
            keys = {"suite": "t", "dataset": dataset, "backbone": "b", "attack": "none", "seed": seed,
                    "explainer": label, "metric": "iou", "split": "clean"}
            rows = [("iou", None, i, float(mu + rng.normal(0, 0.05)), 0.02, True) for i in range(20)]
            store.write(CellRecord(cid, "metric", keys, cid, cfg, "done", 0.1, rows))
    store.close()
    return out


def test_prior_is_found_by_its_record_and_the_report_draws_the_cd_diagram(tmp_path):
    from xaibench.leaderboard.build import summary_of
    from xaibench.report import build_report

    plugin = tmp_path / "prior_plugin.py"
    plugin.write_text(PRIOR_PLUGIN)
    out = _store(tmp_path, {"gradcam": ("gradcam", 0.6), "ig": ("ig", 0.4), "saliency": ("saliency", 0.3),
                            "usual": ("where-it-usually-is", 0.5)})  # the prior known by its record, not its label
    assert set(summary_of(out)["baseline"]) == {""}  # without the plugin file its kind is unknown
    s = summary_of(out, plugin_files=(str(plugin),)).set_index("explainer")
    assert s.loc["usual", "baseline"] == "prior" and s.loc["gradcam", "p_vs_prior"] < 0.05
    assert s.loc["ig", "p_vs_prior"] > 0.05 and np.isnan(s.loc["usual", "rank"])
    page = build_report(out, plugin_files=(str(plugin),)).read_text()
    assert "Critical-difference diagrams" in page and "Critical difference: d / b / attack: none" in page
    assert list((out / "figures").glob("cd-*.png")) and "usual (prior)" in page


def test_report_escapes_hostile_labels(tmp_path):
    from xaibench.report import build_report

    bad = "<b>x</b><img src=x onerror=alert(1)>"
    out = _store(tmp_path, {bad: ("gradcam", 0.6), "$x$ a|b": ("ig", 0.4), "50%_&$#{}~^\\": ("saliency", 0.3)},
                 dataset="<script>d</script>")
    page = build_report(out).read_text()
    assert "onerror=alert(1)>" not in page and "<script>" not in page and "<b>x</b>" not in page
    index = (out / "figures" / "README.md").read_text()
    assert "<img" not in index and "<script" not in index


def test_each_localisation_column_is_compared_with_the_prior_of_its_own_mask():
    from xaibench.leaderboard.paired import column_mask, prior_of

    assert column_mask("iou") == "roi" and column_mask("iou@5%") == "roi"
    assert column_mask("iou@5%@evidence") == "evidence" and column_mask("pointing-game@evidence [triggered]") == "evidence"
    kinds = {"roi-prior": "prior", "evidence-prior": "prior@evidence", "random": "chance"}
    assert prior_of("iou", kinds) == "roi-prior"
    assert prior_of("auprc@evidence", kinds) == "evidence-prior"
    assert prior_of("iou@roi-left", kinds) is None  # no prior of that mask: nothing is marked
