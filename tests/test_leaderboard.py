"""Leaderboard: summary statistics, best/rank marking, four renderers, published tables."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xaibench.leaderboard.build import read_summary_csv, render_summary
from xaibench.leaderboard.summary import bootstrap_ci, summarise
from xaibench.leaderboard.table import build_tables

ROOT = Path(__file__).parents[1]


def _values():
    rng = np.random.default_rng(0)
    rows = []
    spec = {"good": (0.8, 0.1), "bad": (0.2, 0.5), "mid": (0.5, 0.3)}  # (iou mean, error-rate mean)
    for seed in (0, 1):
        for ex, (iou, err) in spec.items():
            for i in range(50):
                for name, mu, hib in (("iou", iou, 1), ("error", err, 0)):
                    rows.append(dict(suite="s", dataset="d", backbone="b", attack="none", seed=seed, metric=name,
                                     split="clean", config_hash="abcdef0123", explainer=ex, name=name, image=i,
                                     value=mu + rng.normal(0, 0.05), chance=0.1, higher_is_better=hib))
        rows.append(dict(suite="s", dataset="d", backbone="b", attack="none", seed=seed, metric="accuracy",
                         split="clean", config_hash="x", explainer="-", name="accuracy", image=-1, value=0.9,
                         chance=0.5, higher_is_better=1))
    return pd.DataFrame(rows)


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small, big = rng.normal(1, 1, 20), rng.normal(1, 1, 2000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(big)
    assert (hi2 - lo2) < (hi - lo) / 5
    # a normal-theory check: half-width ≈ 1.96 σ/√n
    assert abs((hi2 - lo2) / 2 - 1.96 * big.std() / np.sqrt(big.size)) < 0.01


def test_summary_and_tables_mark_best_respecting_direction():
    summary = summarise(_values())
    iou = summary[(summary["column"] == "iou")].set_index("explainer")
    assert iou.loc["good", "n"] == 100 and iou.loc["good", "seeds"] == "0 1"
    assert abs(iou.loc["good", "mean"] - 0.8) < 0.02
    tables = build_tables(summary)
    assert [t.title for t in tables] == ["Models: d / b", "d / b / attack: none — other"]
    t = tables[1]
    assert [r.label for r in t.rows] == ["good", "mid", "bad"]  # ordered by mean rank
    cols = [c.key for c in t.columns]
    best = {cols[j]: r.label for r in t.rows for j, v in enumerate(r.values) if v.best}
    assert best == {"iou": "good", "error": "good"}  # error: lower is better
    assert t.rows[0].rank == 1.0 and t.rows[-1].rank > 2.9  # Friedman mean rank over image×seed blocks


def test_columns_are_grouped_by_metric_family_and_ranked_within_it():
    values = _values()
    values.loc[(values["explainer"] == "bad") & (values["name"] == "error"), "value"] -= 1.0  # bad: best error
    summary = summarise(values, {"iou": "localisation", "error": "faithfulness", "accuracy": "model"})
    assert set(summary["family"]) == {"localisation", "faithfulness", "model"}
    tables = build_tables(summary)
    assert [t.title.split(" — ")[-1].split(" (")[0] for t in tables[1:]] == ["localisation", "faithfulness"]
    loc, faith = tables[1:]
    assert [c.key for c in loc.columns] == ["iou"] and [c.key for c in faith.columns] == ["error"]
    assert [r.label for r in loc.rows] == ["good", "mid", "bad"] and faith.rows[0].label == "bad"
    # maps cells (no metric plugin) hold explainer facts: their own, unranked table
    facts = values.assign(metric_plugin=values["metric"].where(values["name"] != "iou", None))
    fam = build_tables(summarise(facts, {"error": "faithfulness"}))
    t = next(t for t in fam if t.title.endswith("explainer cost and map resolution"))
    assert [c.key for c in t.columns] == ["iou"] and all(r.rank is None for r in t.rows)


def test_renderers(tmp_path):
    summary = summarise(_values())
    md = render_summary(summary, "md")
    assert "| good" in md and "**0.80" in md and "iou ↑ (chance 0.100)" in md and "error ↓" in md
    html = render_summary(summary, "html")
    assert html.count("<table") == 2 and "<b>0.80" in html
    tex = render_summary(summary, "latex")
    assert r"\toprule" in tex and r"\textbf{0.80" in tex and r"$\uparrow$" in tex
    csv = tmp_path / "l.csv"
    csv.write_text(render_summary(summary, "csv"))
    assert render_summary(read_summary_csv(csv), "md") == md  # CSV round-trips to the same table


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (.ci/run installs it)")
def test_latex_compiles_standalone(tmp_path):
    (tmp_path / "t.tex").write_text(render_summary(summarise(_values()), "latex"))
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def test_published_markdown_is_what_the_renderer_makes_of_the_published_csv():
    folder = ROOT / "leaderboard"
    csvs = sorted(folder.glob("*.csv"))
    assert csvs, "no published leaderboard CSV"
    for csv in csvs:
        if csv.stem.endswith("-extra") or not (folder / f"{csv.stem}.md").exists():
            continue
        md = (folder / f"{csv.stem}.md").read_text()
        summary = read_summary_csv(csv)
        rendered = render_summary(summary, "md")
        if "ci" not in summary:
            # written before the renderer escaped table-breaking characters (a label such as
            # ``gradcam|lrp`` left its pipe raw): same cells, padding aside, until republished
            md, rendered = _loose(md), _loose(rendered.replace("\\|", "|"))
        assert rendered in md, f"{csv.name}: committed Markdown differs from what the CSV renders to"


def _loose(md: str) -> str:
    return re.sub(r"-{3,}", "---", re.sub(r"[ \t]+", " ", md))


def test_monotonicity_over_a_swept_dataset_option(tmp_path):
    rows = []
    for level in (0.25, 0.5, 0.75, 1.0):
        for ex, slope in (("good", 1.0), ("bad", -1.0)):
            m = 0.5 + slope * level * 0.3
            rows.append(dict(dataset=f"corrupted-control[strength={level}]", backbone="b", attack="none",
                             explainer=ex, column="iou", mean=m, ci_low=m - 0.01, ci_high=m + 0.01, n=10,
                             seeds="0", chance=0.1, higher_is_better=True, config="c", versions=""))
    from xaibench.leaderboard.sweeps import monotonicity_figure, monotonicity_tables

    summary = pd.DataFrame(rows)
    (t,) = monotonicity_tables(summary)
    assert t.title.startswith("Monotonicity: corrupted-control over strength")
    rho = {r.label: r.values[0].mean for r in t.rows}
    assert rho == {"good": 1.0, "bad": -1.0}
    png = monotonicity_figure(summary, tmp_path / "m.png")
    assert png.stat().st_size > 5000
    assert "Monotonicity" in render_summary(summary, "md")


def test_publish_writes_csv_md_tex_with_the_command_and_links_published_figures(tmp_path, monkeypatch):
    from xaibench.leaderboard import build

    monkeypatch.setattr(build, "summary_of", lambda out, suite=None, plugins=(): summarise(_values()))
    dest = tmp_path / "leaderboard"
    paths = build.publish(tmp_path / "results", dest, "s", "xaibench run --suite s && publish")
    assert [p.name for p in paths] == ["s.csv", "s.md", "s.tex", "s-critical-difference.png"]
    assert (dest / "figures" / "s-critical-difference.png").read_bytes()[:4] == b"\x89PNG"
    md = (dest / "s.md").read_text()
    assert "    xaibench run --suite s && publish" in md and "figures/s/README.md" not in md
    assert render_summary(read_summary_csv(dest / "s.csv"), "md") in md
    assert (dest / "s.tex").read_text().startswith(r"\documentclass")
    (dest / "figures" / "s").mkdir(parents=True)
    (dest / "figures" / "s" / "README.md").write_text("# Figures\n")  # as `xaibench report --publish` leaves it
    (dest / "README.md").write_text("# Published\n")  # the folder's index
    build.publish(tmp_path / "results", dest, "s", "cmd")
    md = (dest / "s.md").read_text()
    assert "[figures/s](figures/s/README.md)" in md and "[README](README.md)" in md


def test_publish_reads_only_its_suite_from_a_folder_that_holds_two(tmp_path):
    """A suite run into another's folder (to share its models) must not pool into the other's
    published rows: n per row is one suite's, whichever ran last."""
    import pandas as pd

    from xaibench.cells import RunConfig
    from xaibench.leaderboard import build
    from xaibench.runner import run_local
    from xaibench.suite import parse

    from .conftest import TOY_PLUGIN

    suite = {"seeds": [0], "n_eval": 6, "datasets": ["toy-blobs"], "attacks": ["none"], "explainers": ["toy-grad"],
             "metrics": ["accuracy", "toy-mass"],
             "backbones": [{"name": "resnet18", "options": {"width": 0.125, "output_stride": 8, "epochs": 1}}]}
    out = tmp_path / "out"
    for name in ("first", "second"):
        run_local(RunConfig(parse({**suite, "name": name}, "test"), out, (str(TOY_PLUGIN),), "cpu", progress=False))
    build.publish(out, tmp_path / "pub", "first", "cmd", (str(TOY_PLUGIN),), suite="first")
    rows = pd.read_csv(tmp_path / "pub" / "first.csv")
    mass = rows[rows["column"] == "toy-mass"]
    assert len(mass) == 1 and int(mass["n"].iloc[0]) == 6  # not 12: the second suite's cells stay out
