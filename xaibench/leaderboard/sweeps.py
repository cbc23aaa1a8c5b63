"""Sweeps across the grid: when several datasets differ only in one numeric option (the
positive controls' corruption strength), how each explainer's metrics move with it.

The monotonicity of a metric is the Spearman correlation between the option's value and
the metric's mean over levels (the research protocol: statistic ↑, IoU ↑, ΔT ↑ with
strength). Labels carry the swept options (``corrupted-control[strength=0.5]``), so this
works from the published CSV alone.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .model import Column, Row, Table, Value

COST_COLUMNS = ("seconds_per_image", "train_seconds")  # wall times the cells store: not swept metrics

LABEL = re.compile(r"^(?P<base>[^\[]+)\[(?P<opts>.*)\]$")


def parse_label(label: str) -> tuple[str, dict[str, float]]:
    m = LABEL.match(str(label))
    if not m:
        return str(label), {}
    opts = {}
    for part in m["opts"].split(","):
        k, _, v = part.partition("=")
        try:
            opts[k.strip()] = float(v)
        except ValueError:
            opts[k.strip()] = v  # type: ignore[assignment]
    return m["base"], opts


def dataset_sweeps(summary: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(base dataset, option, rows with a numeric ``level`` column) for each swept option."""
    if summary.empty:
        return []
    parsed = summary["dataset"].map(parse_label)
    df = summary.assign(base=[p[0] for p in parsed], opts=[p[1] for p in parsed])
    out = []
    for base, g in df.groupby("base", sort=False):
        keys = {k for o in g["opts"] for k, v in o.items() if isinstance(v, float)}
        for k in sorted(keys):
            levels = {o.get(k) for o in g["opts"]}
            if len(levels) >= 3 and None not in levels:
                out.append((base, k, g.assign(level=[o[k] for o in g["opts"]])))
    return out


def monotonicity_tables(summary: pd.DataFrame) -> list[Table]:
    tables = []
    for base, opt, g in dataset_sweeps(summary):
        per = g[~g["explainer"].isin(["-", "*"]) & ~g["column"].str.split(" [", regex=False).str[0].isin(COST_COLUMNS)]
        for (bb, at), ga in per.groupby(["backbone", "attack"], sort=False):
            cols = list(dict.fromkeys(ga["column"]))
            labels = list(dict.fromkeys(ga["explainer"]))
            rows = []
            for lab in labels:
                vals = []
                for c in cols:
                    s = ga[(ga["explainer"] == lab) & (ga["column"] == c)].sort_values("level")
                    s = s[np.isfinite(s["mean"].astype(float))]
                    if len(s) < 3 or s["mean"].nunique() < 2:
                        vals.append(None)
                        continue
                    rho = float(spearmanr(s["level"], s["mean"]).statistic)
                    vals.append(Value(rho, float("nan"), float("nan"), len(s)))
                rows.append(Row(lab, tuple(vals), None))
            columns = tuple(Column(f"ρ({c}, {opt})", True, None) for c in cols)
            foot = (f"Spearman correlation between {opt} and each metric's mean over the {g['level'].nunique()} "
                    f"levels of {base} (1 = rises monotonically with {opt}); backbone {bb}, attack {at}",)
            tables.append(Table(f"Monotonicity: {base} over {opt} / {bb} / attack: {at}", columns, tuple(rows), foot))
    return tables


def monotonicity_figure(summary: pd.DataFrame, path: Path, columns: tuple[str, ...] = ()) -> Path | None:
    """Curves of each metric over the swept level, one panel per metric, one line per explainer."""
    sweeps = dataset_sweeps(summary)
    if not sweeps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False}):  # labels are user text, not mathtext
        base, opt, g = sweeps[0]
        g = g[~g["explainer"].isin(["-", "*"]) & ~g["column"].str.split(" [", regex=False).str[0].isin(COST_COLUMNS)]
        cols = [c for c in dict.fromkeys(g["column"]) if not columns or c in columns][:6]
        fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.0), squeeze=False)
        for ax, c in zip(axes[0], cols):
            for lab, s in g[g["column"] == c].groupby("explainer", sort=False):
                s = s.sort_values("level")
                ax.errorbar(s["level"], s["mean"], yerr=[s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]],
                            marker="o", ms=3, capsize=2, label=lab)
            ax.set_title(c, fontsize=9)
            ax.set_xlabel(opt)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"Positive controls: {base}", fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return path
