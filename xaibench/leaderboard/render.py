"""Renderers of the table model: Markdown (tabulate, GitHub style), LaTeX (booktabs,
compiles standalone), HTML, and CSV (the summary frame itself)."""
from __future__ import annotations

import html
import math

from tabulate import tabulate

from .table import Column, Table, Value


def fmt(v: Value | None, digits: int = 3) -> str:
    if v is None or math.isnan(v.mean):
        return "–"
    if math.isnan(v.lo) or v.lo == v.hi:
        return f"{v.mean:.{digits}f}"
    return f"{v.mean:.{digits}f} ± {(v.hi - v.lo) / 2:.{digits}f}"


def header(c: Column) -> str:
    arrow = "↑" if c.higher_is_better else "↓"
    chance = "" if c.chance is None or math.isnan(c.chance) else f" (chance {c.chance:.3f})"
    return f"{c.key} {arrow}{chance}"


def _body(t: Table, bold) -> tuple[list[str], list[list[str]]]:
    has_rank = any(r.rank is not None for r in t.rows)
    heads = [t.row_header] + [header(c) for c in t.columns] + (["rank"] if has_rank else [])
    rows = []
    for r in t.rows:
        cells = [bold(fmt(v)) if v is not None and v.best else fmt(v) for v in r.values]
        rows.append([r.label] + cells + ([f"{r.rank:.1f}" if r.rank is not None else ""] if has_rank else []))
    return heads, rows


def markdown(tables: list[Table]) -> str:
    out = []
    for t in tables:
        heads, rows = _body(t, lambda s: f"**{s}**")
        out.append(f"### {t.title}\n")
        out.append(tabulate(rows, headers=heads, tablefmt="github", disable_numparse=True))
        out.append("")
        out.extend(f"*{f}*" for f in t.footer)
        out.append("")
    return "\n".join(out)


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"), ("–", "--"), ("≤", r"$\leq$"),
                 ("…", r"\ldots{}"), ("[", "{[}"), ("]", "{]}")):
        s = s.replace(a, b)
    return s


def latex(tables: list[Table]) -> str:
    """A standalone document (``pdflatex`` compiles it) with one booktabs table per block."""
    out = [r"\documentclass{article}", r"\usepackage[margin=1cm,landscape]{geometry}", r"\usepackage{booktabs}",
           r"\usepackage[T1]{fontenc}", r"\begin{document}", r"\scriptsize"]
    for t in tables:
        heads, rows = _body(t, lambda s: f"@@B{s}@@E")
        out.append(r"\begin{table}[h]\centering")
        out.append(r"\caption{" + _tex(t.title) + "}")
        out.append(r"\begin{tabular}{l" + "r" * (len(heads) - 1) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(_tex(h) for h in heads) + r" \\")
        out.append(r"\midrule")
        for row in rows:
            cells = [_tex(c).replace("@@B", r"\textbf{").replace("@@E", "}") for c in row]
            out.append(" & ".join(cells) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
        for f in t.footer:
            out.append(r"\par\footnotesize " + _tex(f))
        out.append(r"\end{table}")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def html_tables(tables: list[Table]) -> str:
    out = []
    for t in tables:
        heads, rows = _body(t, lambda s: f"<b>{html.escape(s)}</b>")
        out.append(f"<h3>{html.escape(t.title)}</h3>\n<table class='leaderboard'>")
        out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr></thead><tbody>")
        for row in rows:
            out.append("<tr>" + "".join(f"<td>{c if c.startswith('<b>') else html.escape(c)}</td>" for c in row) + "</tr>")
        out.append("</tbody></table>")
        out.extend(f"<p class='footer'>{html.escape(f)}</p>" for f in t.footer)
    return "\n".join(out)


def html_page(tables: list[Table], title: str = "xaibench leaderboard") -> str:
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:.5em}"
             "td,th{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
             "{text-align:left}.footer{font-size:80%;color:#555}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{html_tables(tables)}\n</body></html>\n")
