"""The report page: one self-contained HTML file (figures embedded as base64 PNG, links to
the PNG/PDF files beside it), readable offline and attachable to an email or a review."""
from __future__ import annotations

import base64
import html
import re

from .figures import Fig

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#555;font-size:90%}nav ul{columns:2;font-size:90%}
table{border-collapse:collapse;margin-bottom:.5em;font-size:85%}
td,th{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.footer{font-size:80%;color:#555}
figure{margin:1.2em 0;padding:.5em;border:1px solid #eee}figure img{max-width:100%;height:auto}
figcaption{font-size:85%;color:#444;margin-top:.4em}.note{color:#8a5a00;font-size:90%}
.tables{overflow-x:auto}
"""


def _id(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def figure_html(f: Fig) -> str:
    b64 = base64.b64encode(f.png).decode("ascii")
    return (f"<figure id='fig-{html.escape(f.slug)}'><img alt='{html.escape(f.title)}' "
            f"src='data:image/png;base64,{b64}'><figcaption><b>{html.escape(f.title)}.</b> "
            f"{html.escape(f.caption)} <a href='../figures/{html.escape(f.slug)}.pdf'>PDF</a> · "
            f"<a href='../figures/{html.escape(f.slug)}.png'>PNG</a></figcaption></figure>")


def page(title: str, meta: list[str], tables_html: str, sections: list[tuple[str, list[Fig]]],
         notes: list[str]) -> str:
    toc = ["<li><a href='#leaderboard'>Leaderboard</a></li>"]
    body = [f"<h2 id='leaderboard'>Leaderboard</h2>\n<div class='tables'>{tables_html}</div>"]
    for name, figs in sections:
        if not figs:
            continue
        sid = _id(name)
        toc.append(f"<li><a href='#{sid}'>{html.escape(name)}</a> ({len(figs)})</li>")
        body.append(f"<h2 id='{sid}'>{html.escape(name)}</h2>")
        body.extend(figure_html(f) for f in figs)
    if notes:
        toc.append("<li><a href='#not-shown'>Not shown</a></li>")
        body.append("<h2 id='not-shown'>Not shown</h2><ul>" +
                    "".join(f"<li class='note'>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='meta'>{'<br>'.join(html.escape(m) for m in meta)}</p>"
            f"<nav><ul>{''.join(toc)}</ul></nav>\n" + "\n".join(body) + "\n</body></html>\n")
