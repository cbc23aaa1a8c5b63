"""Glue: results folder → summary CSV → tables → files (``leaderboard.{md,tex,csv,html}``)."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ..errors import XaibenchError
from ..store import Store
from .render import html_page, latex, markdown
from .summary import summarise
from .table import build_tables


def summary_of(out: Path, suite: str | None = None) -> pd.DataFrame:
    db = Path(out) / "results.sqlite"
    if not db.exists():
        raise XaibenchError(f"{out}: no results.sqlite here; run `xaibench run --suite NAME --out {out}` first")
    store = Store(db)
    try:
        return summarise(store.values(suite), metric_families())
    finally:
        store.close()


def metric_families(plugin_files: tuple[str, ...] = ()) -> dict[str, str]:
    """Metric plugin name → family, from the registered metric records."""
    from ..plugins import load

    reg = load(plugin_files)
    return {name: getattr(reg.get("metric", name), "family", "other") for name in reg.names("metric")}


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


def render_store(out: Path, fmt: str, suite: str | None = None) -> str:
    return render_summary(summary_of(out, suite), fmt)


def read_summary_csv(path: Path) -> pd.DataFrame:
    """The published CSV read back exactly as it renders (strings stay strings)."""
    df = pd.read_csv(path, dtype={"seeds": str, "config": str, "versions": str}, keep_default_na=False,
                     na_values={c: ["", "nan"] for c in ("mean", "ci_low", "ci_high", "chance")})
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    if "family" not in df:
        df["family"] = "other"  # a CSV written before metric families
    return df


def write_all(out: Path, suite: str | None = None) -> list[Path]:
    """Write leaderboard.{csv,md,tex,html} into the results folder. The Markdown, LaTeX and
    HTML are rendered from the CSV as written, so they always agree with it."""
    out = Path(out)
    csv_path = out / "leaderboard.csv"
    csv_path.write_text(render_summary(summary_of(out, suite), "csv"))
    summary = read_summary_csv(csv_path)
    paths = [csv_path]
    for fmt, ext in (("md", "md"), ("latex", "tex"), ("html", "html")):
        p = out / f"leaderboard.{ext}"
        p.write_text(render_summary(summary, fmt))
        paths.append(p)
    from .sweeps import monotonicity_figure

    fig = monotonicity_figure(summary, out / "figures" / "monotonicity.png")
    if fig is not None:
        paths.append(fig)
    return paths


def publish(out: Path, dest: Path, name: str, command: str) -> list[Path]:
    """Write ``dest/NAME.{csv,md,tex}`` (and the monotonicity figure) for a paper or a repo:
    the Markdown opens with the command that regenerates it and is rendered from the CSV."""
    dest.mkdir(parents=True, exist_ok=True)
    csv_path = dest / f"{name}.csv"
    csv_path.write_text(render_summary(summary_of(out, None), "csv"))
    summary = read_summary_csv(csv_path)
    figures = dest / "figures" / name / "README.md"  # written by `xaibench report --publish`
    head = (f"# {name}: leaderboard\n\nRegenerate with:\n\n    {command}\n\n"
            f"Tables: mean ± half-width of the 95% bootstrap CI; chance levels in the headers; "
            f"also as [CSV]({name}.csv) and [LaTeX]({name}.tex)."
            + (f" Figures (heatmaps, curves, agreement matrices): [figures/{name}](figures/{name}/README.md)."
               if figures.exists() else "")
            + (" Everything published beside it: [README](README.md)." if (dest / "README.md").exists() else "")
            + "\n\n")
    (dest / f"{name}.md").write_text(head + render_summary(summary, "md"))
    (dest / f"{name}.tex").write_text(render_summary(summary, "latex"))
    paths = [csv_path, dest / f"{name}.md", dest / f"{name}.tex"]
    from .sweeps import monotonicity_figure

    fig = monotonicity_figure(summary, dest / "figures" / f"{name}-monotonicity.png")
    return paths + ([fig] if fig else [])
