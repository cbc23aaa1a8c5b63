"""``xaibench report``: a visual report of a results folder — the leaderboard tables and
the figures a paper needs — as one self-contained HTML file plus every figure as PNG and
PDF. Built only from what the run stored (the SQLite store, score extras, the map and model
caches), so it can be regenerated at any time and never retrains anything. See
``docs/report.md``."""
from __future__ import annotations

import time
from pathlib import Path

from ..atomic import atomic_write
from ..leaderboard import cd
from ..leaderboard.build import summary_of
from ..leaderboard.model import Table
from ..leaderboard.render import html_tables, md_escape
from ..leaderboard.table import build_tables
from .data import ReportData
from .figures import SECTIONS, Fig, Sink, agreement, metric_curves, sweep_curves, training_curves, value_curves
from .heatmaps import heatmap_grids
from .html import page

__all__ = ["build_report"]


def _tables(out: Path, suite: str | None, plugin_files: tuple[str, ...]) -> tuple[list[Table], str, str | None]:
    tables = build_tables(summary_of(out, suite, plugin_files))
    if not tables:
        return [], "<p class='note'>No scored cells yet.</p>", "Leaderboard: no scored cells in the store"
    return tables, html_tables(tables), None


def cd_diagrams(tables: list[Table], sink: Sink) -> list[Fig]:
    """One critical-difference diagram per ranked leaderboard table."""
    figs = []
    for t in cd.ranked(tables):
        r = t.ranking
        cap = (f"Friedman mean ranks of the methods (1 = best) over {r.blocks} blocks, Friedman p = {r.p:.3g}; "
               f"a red bar joins methods whose ranks differ by less than the Nemenyi critical difference "
               f"CD = {r.cd:.3f} (α = 0.05): those are not told apart. Baseline rows are not ranked.")
        figs.append(sink.save(cd.figure(t), f"cd-{t.title}", f"Critical difference: {t.title}", cap))
    return figs


def figures_index(folder: Path, sections: list[tuple[str, list[Fig]]], command: str = "xaibench report --out DIR",
                  pdf: bool = True) -> Path:
    """``figures/README.md``: every figure with its caption, for a published results folder."""
    kinds = "PNG (shown) and vector PDF" if pdf else "PNG (the vector PDFs come with the command)"
    lines = ["# Figures", "", f"Each figure as {kinds}. Regenerate with `{command}`.", ""]
    for name, figs in sections:
        if figs:
            lines += [f"## {name}", ""]
            for f in figs:
                link = f" [PDF]({f.slug}.pdf)" if pdf else ""
                title = md_escape(f.title, inline=True)  # titles and captions hold user labels
                alt = title.replace("[", r"\[").replace("]", r"\]")
                caption = md_escape(f.caption, inline=True)
                lines += [f"### {title}", "", f"![{alt}]({f.slug}.png)", "", f"{caption}{link}", ""]
    path = folder / "README.md"
    atomic_write(path, "\n".join(lines))
    return path


def publish_figures(sections: list[tuple[str, list[Fig]]], dest: Path, command: str) -> Path:
    """Copy every figure's PNG into ``dest`` with a captioned index (for a repository's
    published leaderboard folder: PNGs render on the forge, PDFs stay with the results)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.png"):
        old.unlink()  # figures of an earlier report that this one no longer has
    for _, figs in sections:
        for f in figs:
            atomic_write(dest / f"{f.slug}.png", _palette_png(f.png))
    return figures_index(dest, sections, command, pdf=False)


def _palette_png(png: bytes) -> bytes:
    """The PNG with a 256-colour adaptive palette: a third of the bytes for heatmap grids
    (noisy MRI under a colour map compresses badly), which matters in a git history."""
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue() if buf.tell() < len(png) else png


def build_report(out: Path, suite: str | None = None, plugin_files: tuple[str, ...] = (), n_images: int = 4,
                 publish: Path | None = None, command: str = "") -> Path:
    """Write ``OUT/report/report.html`` and ``OUT/figures/*.{png,pdf}`` (and, with
    ``publish``, the PNGs and their index there); returns the HTML path."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):  # labels are user text, "$x$" is not mathtext
        return _build(Path(out), suite, plugin_files, n_images, publish, command)


def _build(out: Path, suite: str | None, plugin_files: tuple[str, ...], n_images: int, publish: Path | None,
           command: str) -> Path:
    data = ReportData.load(out, suite)
    sink = Sink(out / "figures")
    tables, tables_html, note = _tables(out, suite, plugin_files)
    if note:
        data.skip(*note.split(": ", 1))
    diagrams = cd_diagrams(tables, sink)
    if tables and not diagrams:
        data.skip("Critical-difference diagrams", "no leaderboard table has Friedman ranks (two or more methods "
                  "with paired values)")
    curves = value_curves(data, sink)
    for section, figs in metric_curves(data, sink).items():
        curves.setdefault(section, []).extend(figs)
    for title, _ in SECTIONS[:3]:
        if title not in curves:
            data.skip(title, "no metric in the store recorded these curves")
    sections: list[tuple[str, list[Fig]]] = [
        ("Critical-difference diagrams", diagrams),
        ("Heatmaps", heatmap_grids(data, sink, plugin_files, n_images)),
        *[(title, curves.get(title, [])) for title in ("ΔT curves over q", "Deletion, insertion and ROAD curves")],
        ("Agreement between explainers", agreement(data, sink)),
        ("Randomisation curves", curves.get("Randomisation curves", [])),
        ("Positive controls: metrics over corruption strength", sweep_curves(data, sink, "dataset")),
        ("Attack sweeps", sweep_curves(data, sink, "attack")),
        ("Other metric curves", curves.get("Other metric curves", [])),
        ("Training curves", training_curves(data, sink)),
    ]
    suites = sorted(set(data.cells["suite"].dropna()))
    c = data.cells
    meta = [f"suite{'s' if len(suites) > 1 else ''}: {', '.join(suites) or '–'}; "
            f"{int((c['status'] == 'done').sum())} cells done, {int((c['status'] == 'failed').sum())} failed",
            f"generated {time.strftime('%Y-%m-%d %H:%M')} by xaibench; figures as PNG and PDF in ../figures/"]
    title = f"xaibench report: {', '.join(suites)}" if suites else "xaibench report"
    dest = out / "report" / "report.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, page(title, meta, tables_html, sections, data.notes).encode("utf-8"))
    figures_index(sink.folder, sections)
    if publish is not None:
        publish_figures(sections, Path(publish), command or f"xaibench report --out {out}")
    return dest
