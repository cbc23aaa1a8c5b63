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
        return summarise(store.values(suite))
    finally:
        store.close()


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
