"""Renderers of the table model: Markdown (tabulate, GitHub style), LaTeX (booktabs,
compiles standalone), HTML, and CSV (the summary frame itself).

Every string that reaches a file comes from user-controlled names (datasets, attacks,
explainer labels, metric names), so each renderer escapes every cell, header, title and
footer for its format; emphasis (bold best value) comes from ``Value.best``, never from
markup inside a string."""
from __future__ import annotations

import html
import math

from tabulate import tabulate

from .model import Column, Table, Value


def _num(x: float, digits: int = 3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def fmt(v: Value | None, digits: int = 3) -> str:
    """'mean ± half-width [s0/s1/s2] †°' (per-seed means and marks when the table has them)."""
    if v is None or math.isnan(v.mean):
        return "–"
    s = f"{v.mean:.{digits}f}" if math.isnan(v.lo) or v.lo == v.hi else f"{v.mean:.{digits}f} ± {(v.hi - v.lo) / 2:.{digits}f}"
    if v.per_seed:
        s += " [" + "/".join("–" if math.isnan(x) else f"{x:.{digits}f}" for x in v.per_seed) + "]"
    marks = ("†" if v.not_worse and not v.best else "") + ("°" if v.beats_prior is False else "")
    return f"{s} {marks}" if marks else s


def header(c: Column) -> str:
    arrow = "" if c.neutral else " ↑" if c.higher_is_better else " ↓"
    levels = [] if c.chance is None or math.isnan(c.chance) else [f"chance {c.chance:.3f}"]
    if c.prior is not None and not math.isnan(c.prior):
        levels.append(f"prior {c.prior:.3f}")
    return f"{c.key}{arrow}" + (f" ({', '.join(levels)})" if levels else "")


def _body(t: Table) -> tuple[list[str], list[list[tuple[str, bool]]], int | None]:
    """Header strings, rows of (text, bold) cells, and the index of the first reference row."""
    has_rank = any(r.rank is not None for r in t.rows)
    heads = [t.row_header] + [header(c) for c in t.columns] + (["rank"] if has_rank else [])
    rows, first_ref = [], None
    for i, r in enumerate(t.rows):
        if r.baseline and first_ref is None:
            first_ref = i
        label = f"{r.label} ({r.baseline})" if r.baseline else r.label
        cells = [(label, False)] + [(fmt(v), v is not None and v.best) for v in r.values]
        rows.append(cells + ([(f"{r.rank:.1f}" if r.rank is not None else "", False)] if has_rank else []))
    return heads, rows, first_ref


def md_escape(s: str, inline: bool = False) -> str:
    """Table-safe Markdown: pipes, backticks and angle brackets (raw HTML) escaped, and a
    leading ``#``/``*``/``+``/``>`` that would start a heading or list. ``inline`` (titles,
    footers) escapes every emphasis character too."""
    s = str(s).replace("\\", "\\\\").replace("|", r"\|").replace("`", r"\`")
    s = s.replace("<", "&lt;").replace(">", "&gt;")
    if inline:
        s = s.replace("*", r"\*").replace("_", r"\_")
    elif s[:1] and s[:1] in "#*+":
        s = "\\" + s
    return s


def markdown(tables: list[Table]) -> str:
    out = []
    for t in tables:
        heads, rows, _ = _body(t)
        cells = [[f"**{md_escape(s)}**" if b else md_escape(s) for s, b in r] for r in rows]
        out.append(f"### {md_escape(t.title, inline=True)}\n")
        out.append(tabulate(cells, headers=[md_escape(h) for h in heads], tablefmt="github", disable_numparse=True))
        out.append("")
        out.extend(f"*{md_escape(f, inline=True)}*" for f in t.footer)
        out.append("")
    return "\n".join(out)


TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
       "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
       "|": r"\textbar{}", "[": "{[}", "]": "{]}", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
       "–": "--", "—": "---", "≤": r"$\leq$", "≥": r"$\geq$", "…": r"\ldots{}", "†": r"$^{\dagger}$",
       "°": r"$^{\circ}$", "ρ": r"$\rho$", "Δ": r"$\Delta$", "δ": r"$\delta$", "α": r"$\alpha$", "×": r"$\times$",
       "≈": r"$\approx$", "→": r"$\rightarrow$"}


def tex_escape(s: str) -> str:
    """All ten LaTeX specials and the symbols the tables use; any other character beyond
    Latin Extended-A (which T1 + UTF-8 input may not set) becomes '?' so the document compiles."""
    return "".join(TEX.get(ch, ch if ord(ch) < 0x180 else "?") for ch in str(s))


def latex(tables: list[Table]) -> str:
    """A standalone document (``pdflatex`` compiles it) with one booktabs table per block."""
    out = [r"\documentclass{article}", r"\usepackage[margin=1cm,landscape]{geometry}", r"\usepackage{booktabs}",
           r"\usepackage[T1]{fontenc}", r"\begin{document}", r"\scriptsize"]
    for t in tables:
        heads, rows, first_ref = _body(t)
        out.append(r"\begin{table}[h]\centering")
        out.append(r"\caption{" + tex_escape(t.title) + "}")
        out.append(r"\begin{tabular}{l" + "r" * (len(heads) - 1) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(tex_escape(h) for h in heads) + r" \\")
        out.append(r"\midrule")
        for i, row in enumerate(rows):
            if i == first_ref and i > 0:
                out.append(r"\midrule")
            out.append(" & ".join(r"\textbf{" + tex_escape(s) + "}" if b else tex_escape(s) for s, b in row) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
        for f in t.footer:
            out.append(r"\par\footnotesize " + tex_escape(f))
        out.append(r"\end{table}")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def html_tables(tables: list[Table]) -> str:
    e = html.escape
    out = []
    for t in tables:
        heads, rows, first_ref = _body(t)
        out.append(f"<h3>{e(t.title)}</h3>\n<table class='leaderboard'>")
        out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr></thead><tbody>")
        for i, row in enumerate(rows):
            cls = " class='reference'" if i == first_ref else ""
            out.append(f"<tr{cls}>" + "".join(f"<td><b>{e(s)}</b></td>" if b else f"<td>{e(s)}</td>" for s, b in row)
                       + "</tr>")
        out.append("</tbody></table>")
        out.extend(f"<p class='footer'>{e(f)}</p>" for f in t.footer)
    return "\n".join(out)


def html_page(tables: list[Table], title: str = "xaibench leaderboard") -> str:
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:.5em}"
             "td,th{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
             "{text-align:left}.footer{font-size:80%;color:#555}tr.reference td{border-top:2px solid #888}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{html_tables(tables)}\n</body></html>\n")
