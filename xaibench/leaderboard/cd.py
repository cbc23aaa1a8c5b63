"""Critical-difference diagrams (Demšar 2006): the methods of a table on an axis of their
Friedman mean ranks, with a bar joining every group of methods whose ranks differ by less
than the Nemenyi critical difference (not told apart at α = 0.05)."""
from __future__ import annotations

from pathlib import Path

from ..atomic import save_figure
from .model import Ranking, Table

MAX_PANELS = 12


def cliques(ranking: Ranking) -> list[tuple[int, int]]:
    """Maximal runs (first, last index into the rank-sorted methods) spanning less than
    the CD, of two or more methods."""
    r = [x for _, x in ranking.ranks]
    out: list[tuple[int, int]] = []
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < ranking.cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in out):
            out.append((i, j))
    return out


def draw(ax, ranking: Ranking, title: str) -> None:
    """One diagram on ``ax`` (rank 1, the best, on the left)."""
    names = [n for n, _ in ranking.ranks]
    ranks = [x for _, x in ranking.ranks]
    k = len(names)
    ax.set_xlim(0.5, k + 0.5)
    ax.hlines(0, 1, k, color="k", lw=1)
    for t in range(1, k + 1):
        ax.vlines(t, 0, 0.08, color="k", lw=1)
        ax.text(t, 0.13, str(t), ha="center", va="bottom", fontsize=7)
    ax.hlines(0.45, 1, 1 + ranking.cd, color="k", lw=1.5)
    ax.text(1 + ranking.cd / 2, 0.5, f"CD = {ranking.cd:.2f}", ha="center", va="bottom", fontsize=7)
    half = (k + 1) // 2
    for i, (n, x) in enumerate(zip(names, ranks)):
        left = i < half
        y = -0.25 * (i + 1 if left else k - i)
        end = 0.6 if left else k + 0.4
        ax.plot([x, x, end], [0, y, y], color="k", lw=0.8)
        ax.text(end, y, f"{n} ({x:.2f})" if left else f"({x:.2f}) {n}", ha="right" if left else "left",
                va="center", fontsize=7, parse_math=False)
    for j, (a, b) in enumerate(cliques(ranking)):
        ax.hlines(-0.1 - 0.06 * j, ranks[a] - 0.03, ranks[b] + 0.03, color="tab:red", lw=3)
    ax.set_ylim(-0.25 * (half + 0.6), 0.8)
    ax.axis("off")
    ax.set_title(title, fontsize=8, parse_math=False)  # labels are user text, not mathtext


def ranked(tables: list[Table]) -> list[Table]:
    return [t for t in tables if t.ranking is not None and len(t.ranking.ranks) >= 2]


def figure(t: Table):
    """A matplotlib figure with the diagram of one table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(t.ranking.ranks)
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.16 * k))
    draw(ax, t.ranking, f"{t.title}\nFriedman p = {t.ranking.p:.3g}; {t.ranking.blocks} blocks")
    return fig


def cd_figure(tables: list[Table], path: Path) -> Path | None:
    """All ranked tables' diagrams (up to MAX_PANELS) in one PNG; None when none is ranked."""
    todo = ranked(tables)[:MAX_PANELS]
    if not todo:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [1.2 + 0.16 * len(t.ranking.ranks) for t in todo]
    fig, axes = plt.subplots(len(todo), 1, figsize=(6.5, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, t in zip(axes[:, 0], todo):
        draw(ax, t.ranking, f"{t.title}\nFriedman p = {t.ranking.p:.3g}; {t.ranking.blocks} blocks")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path
