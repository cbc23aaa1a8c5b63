"""Glue: results folder → summary CSV → tables → files (``leaderboard.{md,tex,csv,html}``)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from ..errors import XaibenchError
from ..store import Store
from .attack_facts import FACTS_FAMILY, FACTS_PLUGIN, attack_fact_values
from .cd import cd_figure
from .render import html_page, latex, markdown
from .summary import summarise
from .sweeps import dataset_sweeps_of, monotonicity_figure
from .table import build_tables

TEXT_COLUMNS = ("seeds", "config", "versions", "per_seed", "ci", "baseline", "blocks", "sweep")
NUMBER_COLUMNS = ("mean", "ci_low", "ci_high", "chance", "p_vs_best", "p_vs_prior", "rank", "friedman_p", "cd")


def summary_of(out: Path, suite: str | None = None, plugin_files: tuple[str, ...] = ()) -> pd.DataFrame:
    """The summary of a results folder. Metric families, explainer baselines and sweeps come
    from the facts each cell recorded at run time; only cells stored before facts fall back to
    the installed plugins (and ``plugin_files``) — the folder itself never names code to load."""
    db = Path(out) / "results.sqlite"
    if not db.exists():
        raise XaibenchError(f"{out}: no results.sqlite here; run `xaibench run --suite NAME --out {out}` first")
    store = Store(db)
    try:
        values, cells = store.values(suite), store.cells()
        values = pd.concat([values, attack_fact_values(store.extras(), cells, suite)], ignore_index=True)
    finally:
        store.close()
    reg = _Fallback(plugin_files)
    old = values["metric_plugin"].notna() & values["metric_family"].isna() & (values["metric_plugin"] != FACTS_PLUGIN)
    families = {**(metric_families(reg()) if old.any() else {}), FACTS_PLUGIN: FACTS_FAMILY}
    return summarise(values, families, explainer_baselines(cells, reg), dataset_sweeps_of(cells))


class _Fallback:
    """The installed registry, loaded only when a cell predates facts (and then once)."""

    def __init__(self, plugin_files: tuple[str, ...]) -> None:
        self.plugin_files, self._reg = plugin_files, None

    def __call__(self):
        if self._reg is None:
            from ..plugins import load

            self._reg = load(self.plugin_files)
        return self._reg


def metric_families(reg) -> dict[str, str]:
    """Metric plugin name → family, from the registered metric records (old cells only)."""
    return {name: getattr(reg.get("metric", name), "family", "other") for name in reg.names("metric")}


def _recorded_baseline(facts: object) -> tuple[bool, str | None]:
    """(recorded?, kind) from a cell's facts JSON."""
    d = json.loads(facts) if isinstance(facts, str) and facts else {}
    return ("baseline" in d, d.get("baseline")) if isinstance(d, dict) else (False, None)


def explainer_baselines(cells: pd.DataFrame, reg) -> dict[str, str]:
    """Explainer label → its ``baseline`` kind, as recorded in the cells' facts (cells stored
    before facts: from the record of the plugin named in the cell config, if registered;
    ``reg`` is a registry or a callable returning one, called only then)."""
    out: dict[str, str] = {}
    facts = cells["facts"] if "facts" in cells else pd.Series([None] * len(cells), index=cells.index)
    for label, cfg, fact in zip(cells["explainer"], cells["config"], facts):
        if label in out or not cfg or '"explainer"' not in cfg:
            continue
        ident = json.loads(cfg).get("explainer")
        name = ident.get("name") if isinstance(ident, dict) else None
        recorded, kind = _recorded_baseline(fact)
        if not recorded and name is not None:
            r = reg() if callable(reg) else reg
            kind = getattr(r.get("explainer", name), "baseline", None) if name in set(r.names("explainer")) else None
        mask = (ident.get("options") or {}).get("mask", "roi") if isinstance(ident, dict) else "roi"
        if kind == "prior" and isinstance(mask, str) and mask != "roi":
            kind = f"prior@{mask}"  # the prior of another mask: compared with that mask's columns
        if kind:
            out[str(label)] = str(kind)
    return out


def render_summary(summary: pd.DataFrame, fmt: str, title: str = "xaibench leaderboard") -> str:
    if fmt == "csv":
        buf = io.StringIO()
        summary.to_csv(buf, index=False, float_format="%.6g")
        return buf.getvalue()
    tables = build_tables(summary)
    if fmt == "md":
        return markdown(tables)
    if fmt == "latex":
        return latex(tables)
    if fmt == "html":
        return html_page(tables, title)
    raise XaibenchError(f"unknown format {fmt!r}; use md, latex, csv or html")


def render_store(out: Path, fmt: str, suite: str | None = None, plugin_files: tuple[str, ...] = ()) -> str:
    return render_summary(summary_of(out, suite, plugin_files), fmt)


def read_summary_csv(path: Path) -> pd.DataFrame:
    """The published CSV read back exactly as it renders (strings stay strings)."""
    df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                     na_values={c: ["", "nan"] for c in NUMBER_COLUMNS})
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    if "family" not in df:
        df["family"] = "other"  # a CSV written before metric families
    return df


def write_all(out: Path, suite: str | None = None, plugin_files: tuple[str, ...] = ()) -> list[Path]:
    """Write leaderboard.{csv,md,tex,html} into the results folder. The Markdown, LaTeX and
    HTML are rendered from the CSV as written, so they always agree with it."""
    out = Path(out)
    csv_path = out / "leaderboard.csv"
    atomic_write(csv_path, render_summary(summary_of(out, suite, plugin_files), "csv"))
    summary = read_summary_csv(csv_path)
    paths = [csv_path]
    for fmt, ext in (("md", "md"), ("latex", "tex"), ("html", "html")):
        p = out / f"leaderboard.{ext}"
        atomic_write(p, render_summary(summary, fmt))
        paths.append(p)
    for fig in (monotonicity_figure(summary, out / "figures" / "monotonicity.png"),
                cd_figure(build_tables(summary), out / "figures" / "critical-difference.png")):
        if fig is not None:
            paths.append(fig)
    return paths


def publish(out: Path, dest: Path, name: str, command: str, plugin_files: tuple[str, ...] = (),
            suite: str | None = None) -> list[Path]:
    """Write ``dest/NAME.{csv,md,tex}`` (and the monotonicity figure) for a paper or a repo:
    the Markdown opens with the command that regenerates it and is rendered from the CSV.
    Only ``suite``'s cells are read: a results folder may hold several suites (one that shares
    another's models), and their values must not pool into one row."""
    dest.mkdir(parents=True, exist_ok=True)
    csv_path = dest / f"{name}.csv"
    atomic_write(csv_path, render_summary(summary_of(out, suite, plugin_files), "csv"))
    summary = read_summary_csv(csv_path)
    figures = dest / "figures" / name / "README.md"  # written by `xaibench report --publish`
    tables = build_tables(summary)
    cd = cd_figure(tables, dest / "figures" / f"{name}-critical-difference.png")
    head = (f"# {name}: leaderboard\n\nRegenerate with:\n\n    {command}\n\n"
            f"Tables: mean ± half-width of the 95% interval (each table's footer names its unit of resampling), "
            f"chance levels in the headers; "
            f"also as [CSV]({name}.csv) and [LaTeX]({name}.tex)."
            + (f" Critical-difference diagrams of the ranked tables: [figures/{cd.name}](figures/{cd.name})."
               if cd is not None else "")
            + (f" Figures (heatmaps, curves, agreement matrices): [figures/{name}](figures/{name}/README.md)."
               if figures.exists() else "")
            + (" Everything published beside it: [README](README.md)." if (dest / "README.md").exists() else "")
            + "\n\n")
    atomic_write(dest / f"{name}.md", head + render_summary(summary, "md"))
    atomic_write(dest / f"{name}.tex", render_summary(summary, "latex"))
    paths = [csv_path, dest / f"{name}.md", dest / f"{name}.tex"]
    fig = monotonicity_figure(summary, dest / "figures" / f"{name}-monotonicity.png")
    return paths + [f for f in (fig, cd) if f is not None]
