"""Sweeps across the grid: when several datasets differ only in one numeric option (the
positive controls' corruption strength), how each explainer's metrics move with it.

The monotonicity of a metric is the Spearman correlation between the option's value and
the metric's mean over levels (the research protocol: statistic ↑, IoU ↑, ΔT ↑ with
strength). The sweep of each dataset (the entry it was expanded from, the option values) is
read from the store and published in the CSV's ``sweep`` column, so this works from the
published CSV alone; labels (``corrupted-control[strength=0.5]``) are only displayed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .model import Column, Row, Table, Value

COST_COLUMNS = ("seconds_per_image", "train_seconds")  # wall times the cells store: not swept metrics

LABEL = re.compile(r"^(?P<base>[^\[]+)\[(?P<opts>.*)\]$")


def label_sweep(label: str) -> dict:
    """The sweep a label names (``corrupted-control[strength=0.5]`` → of ``corrupted-control``,
    strength 0.5). Only for results stored before sweeps were recorded (cells without facts,
    CSVs without the ``sweep`` column); everything newer reads the recorded sweep."""
    m = LABEL.match(str(label))
    if not m:
        return {}
    levels = {}
    for part in m["opts"].split(","):
        k, _, v = part.partition("=")
        try:
            levels[k.strip()] = float(v)
        except ValueError:
            continue  # not a numeric level
    return {"of": m["base"], "levels": levels}


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def entry_sweeps(cells: pd.DataFrame, kind: str = "dataset") -> dict[str, dict]:
    """Label of each ``kind`` entry (``dataset`` or ``attack``) → its sweep (``{"of": LABEL,
    "levels": {option: value}}``; ``{}`` when not swept), from the model cells: the sweep recorded
    at run time (the label it was expanded from, the options it varies) with the entry's options
    stored in the cell config. Labels are parsed only for cells stored before sweeps were recorded.
    The leaderboard and the report both read sweeps here, so they cannot disagree."""
    out: dict[str, dict] = {}
    models = cells[(cells["kind"] == "model") & (cells["status"] == "done")]
    facts = models["facts"] if "facts" in models else pd.Series([None] * len(models), index=models.index)
    for label, cfg, fact in zip(models[kind], models["config"], facts):
        if str(label) in out:
            continue
        d = json.loads(fact) if isinstance(fact, str) and fact else {}
        if "sweep" not in d:
            sweep = label_sweep(label)  # a cell stored before facts
        elif kind in d["sweep"]:
            opts = (json.loads(cfg).get(kind) or {}).get("options") or {}
            rec = d["sweep"][kind]
            sweep = {"of": rec["of"], "levels": {k: float(opts[k]) for k in rec["options"] if _number(opts.get(k))}}
        else:
            sweep = {}
        out[str(label)] = sweep
    return out


def dataset_sweeps_of(cells: pd.DataFrame) -> dict[str, str]:
    """Dataset label → its sweep as JSON (the CSV's ``sweep`` column; "" when not swept)."""
    return {label: json.dumps(sweep, sort_keys=True) if sweep.get("levels") else ""
            for label, sweep in entry_sweeps(cells, "dataset").items()}


def _sweeps(summary: pd.DataFrame) -> list[dict]:
    if "sweep" not in summary:  # a CSV written before the sweep column
        return [label_sweep(x) for x in summary["dataset"]]
    return [json.loads(x) if isinstance(x, str) and x else {} for x in summary["sweep"]]


def dataset_sweeps(summary: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(swept label, option, rows with a numeric ``level`` column) for each swept option."""
    if summary.empty:
        return []
    sw = _sweeps(summary)
    df = summary.assign(base=[x.get("of", d) for x, d in zip(sw, summary["dataset"])],
                        opts=[x.get("levels", {}) for x in sw])
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
