"""The report's figures (matplotlib, Agg): training curves, metric curves found in score
extras (ΔT over q, deletion/insertion, randomisation with its pass line, any other curve),
agreement matrices, and curves over swept options (positive-control strengths, poison
rates). Every figure is saved as PNG and vector PDF; figures without data are skipped with
a note instead of failing the report."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..atomic import atomic_write, save_figure  # noqa: E402
from ..leaderboard.sweeps import COST_COLUMNS  # noqa: E402
from .data import Curve, ReportData, curves_in, matrices_in, model_options, sweeps  # noqa: E402

MAX_PANELS = 12


@dataclass(frozen=True)
class Fig:
    slug: str
    title: str
    caption: str
    png: bytes


class Sink:
    """Saves each figure as ``FOLDER/<slug>.png`` and ``.pdf`` and keeps the PNG bytes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.slugs: set[str] = set()

    def save(self, fig: plt.Figure, slug: str, title: str, caption: str) -> Fig:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", slug).strip("-")[:120] or "figure"
        s, i = base, 2
        while s in self.slugs:
            s, i = f"{base}-{i}", i + 1
        self.slugs.add(s)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
        atomic_write(self.folder / f"{s}.png", buf.getvalue())
        save_figure(fig, self.folder / f"{s}.pdf", bbox_inches="tight")
        plt.close(fig)
        return Fig(s, title, caption, buf.getvalue())


def grid(n: int, ncols: int = 3, w: float = 4.2, h: float = 3.2):
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _colors(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


# --------------------------------------------------------------------------- training


def training_curves(data: ReportData, sink: Sink) -> list[Fig]:
    """One figure per dataset plugin × backbone (a swept dataset's entries share one), a
    line per model: colour = dataset entry and attack, line style = seed."""
    ex = data.extras[(data.extras["name"] == "history") & (data.extras["metric"] == "model")]
    if ex.empty:
        data.skip("Training curves", "no model histories in the store")
        return []
    family = {t: name for t, (name, _) in model_options(data, "dataset").items()}
    ex = ex.assign(family=[family.get(d, d) for d in ex["dataset"]])
    figs = []
    for (fam, bb), g in ex.groupby(["family", "backbone"], sort=False):
        keys = [k for k in ("train_loss", "val_loss", "val_accuracy")
                if any(isinstance(o, dict) and o.get(k) for o in g["obj"])]
        if not keys:
            continue
        fig, axes = grid(len(keys), ncols=3, w=4.0, h=3.0)
        several = g["dataset"].nunique() > 1
        who = [f"{d} · {a}" if several else a for d, a in zip(g["dataset"], g["attack"])]
        seeds = sorted(set(g["seed"]))
        col = _colors(list(dict.fromkeys(who)))
        for ax, k in zip(axes, keys):
            for w_, (_, r) in zip(who, g.iterrows()):
                y = (r["obj"] or {}).get(k) or []
                ax.plot(np.arange(1, len(y) + 1), y, ["-", "--", ":", "-."][seeds.index(r["seed"]) % 4],
                        color=col[w_], alpha=0.85, lw=1.3, label=f"{w_} seed {r['seed']}")
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_title(k.replace("_", " "))
        axes[0].legend(fontsize=6 if len(g) > 8 else 7)
        fig.suptitle(f"Training: {fam} / {bb}")
        figs.append(sink.save(fig, f"training-{fam}-{bb}", f"Training curves: {fam} / {bb}",
                              "One line per model (colour: " + ("dataset entry and " if several else "")
                              + "attack; style: seed): training loss, validation loss and validation accuracy per "
                              "epoch; the weights of the best validation loss are kept."))
    return figs


# --------------------------------------------------------------------------- metric curves

SECTIONS = (("ΔT curves over q", ("delta-t", "delta_t", "deltat", "δt", "Δt")),
            ("Deletion, insertion and ROAD curves", ("deletion", "insertion", "road")),
            ("Randomisation curves", ("random",)),
            ("Other metric curves", ("",)))


def section_of(metric: str) -> str:
    m = metric.lower()
    for title, keys in SECTIONS:
        if any(k.lower() in m for k in keys) and not (title.startswith("Random") and m.startswith("random-map")):
            return title
    return SECTIONS[-1][0]


def _mean_curves(rows: pd.DataFrame) -> dict[tuple[str, str], Curve]:
    """(explainer, curve name) → curve averaged over seeds (and images)."""
    acc: dict[tuple[str, str], list[Curve]] = {}
    for _, r in rows.iterrows():
        for c in curves_in(r["obj"], ""):
            acc.setdefault((str(r["explainer"]), c.name or str(r["name"])), []).append(c)
    out = {}
    for k, cs in acc.items():
        same = [c for c in cs if c.x == cs[0].x]
        y = np.nanmean(np.vstack([c.y for c in same]), axis=0)
        pls = [c.pass_line for c in same if c.pass_line is not None]
        out[k] = Curve(cs[0].x, y, k[1], cs[0].xlabel, float(np.mean(pls)) if pls else None)
    return out


def metric_curves(data: ReportData, sink: Sink) -> dict[str, list[Fig]]:
    ex = data.extras[~data.extras["metric"].isin(["model", "maps"])]
    found: dict[str, list[Fig]] = {}
    for metric, g in ex.groupby("metric", sort=False):
        panels = []
        for key, gp in g.groupby(["dataset", "backbone", "attack", "split"], sort=False):
            curves = _mean_curves(gp)
            if curves:
                panels.append((key, curves))
        if not panels:
            continue
        section = section_of(str(metric))
        panels = panels[:MAX_PANELS]
        fig, axes = grid(len(panels))
        explainers = list(dict.fromkeys(e for _, cs in panels for e, _ in cs))
        col = _colors(explainers)
        styles = ["-", "--", ":", "-."]
        for ax, ((ds, bb, at, sp), curves) in zip(axes, panels):
            names = list(dict.fromkeys(n for _, n in curves))
            for (e, n), c in curves.items():
                numeric = all(isinstance(v, (int, float)) for v in c.x)
                x = c.x if numeric else np.arange(len(c.x))
                ax.plot(x, c.y, styles[names.index(n) % 4], color=col[e], marker="o", ms=3, lw=1.4,
                        label=e if len(names) == 1 else f"{e} · {n}")
                if not numeric:
                    ax.set_xticks(np.arange(len(c.x)), [str(v) for v in c.x], rotation=45, ha="right", fontsize=7)
                ax.set_xlabel(c.xlabel)
            pls = [c.pass_line for c in curves.values() if c.pass_line is not None]
            if pls:
                ax.axhline(float(np.mean(pls)), color="k", ls="--", lw=1, label="pass line")
            ax.set_title(f"{ds} / {bb}\nattack {at}" + (f" · {sp}" if sp != "clean" else ""), fontsize=9)
            ax.set_ylabel(str(metric))
        axes[0].legend(fontsize=7)
        cap = f"{metric}: mean over images and seeds, one line per explainer."
        if section.startswith("Random"):
            cap += " The dashed line is the pass line: a sanity-passing explainer falls below it as layers are randomised."
        found.setdefault(section, []).append(sink.save(fig, f"curves-{metric}", f"{metric}", cap))
    return found


AT_Q = re.compile(r"^(?P<base>.+)@(?P<q>[0-9]*\.?[0-9]+)%$")


def swept_levels(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` (store values or extras) that are one level of a swept metric
    parameter, with ``base`` (the family: the metric's label), ``param`` and ``level``, from
    the ``Score.param`` each cell recorded. Rows stored before params are the one place a
    name is parsed: ``<metric>@<q>%`` (``delta-t@1%``) is level ``q`` = 1 of ``<metric>``."""
    if df.empty:
        return df.assign(base=[], param=[], level=[])
    key = df["param_key"] if "param_key" in df else pd.Series([None] * len(df), index=df.index)
    value = df["param_value"] if "param_value" in df else pd.Series(np.nan, index=df.index)
    parsed = df["name"].astype(str).str.extract(AT_Q.pattern)
    recorded = key.notna()
    out = df.assign(base=df["metric"].where(recorded, parsed["base"]), param=key.where(recorded, "q"),
                    level=pd.to_numeric(value.where(recorded, parsed["q"]), errors="coerce"))
    return out.dropna(subset=["base", "level"])


def value_curves(data: ReportData, sink: Sink) -> dict[str, list[Fig]]:
    """Curves over a swept metric parameter (``Score.param``: ``delta-t@1%``, ``@5%``… are
    levels of q): mean ± 95% normal CI over images and seeds, one line per explainer; for ΔT
    also the two drops it subtracts (top-q and random, from the extras) when stored."""
    v = swept_levels(data.values).rename(columns={"level": "q"})
    extras = swept_levels(data.extras).rename(columns={"level": "q"})
    found: dict[str, list[Fig]] = {}
    for (base, param), g in v.groupby(["base", "param"], sort=False):
        if g["q"].nunique() < 2:
            continue
        panels = list(g.groupby(["dataset", "backbone", "attack", "split"], sort=False))[:MAX_PANELS]
        ex = extras[(extras["base"] == base) & (extras["param"] == param)]
        parts = ex.assign(top=[o.get("delta_top") if isinstance(o, dict) else None for o in ex["obj"]],
                          rnd=[o.get("delta_random") if isinstance(o, dict) else None for o in ex["obj"]]).dropna(
            subset=["top", "rnd", "q"]) if not ex.empty else ex
        xlabel = "q (% of pixels removed)" if param == "q" else str(param)
        rows = 2 if len(parts) else 1
        fig, axes = grid(len(panels) * rows, ncols=len(panels) if rows == 2 and len(panels) <= 4 else 3)
        explainers = list(dict.fromkeys(g["explainer"]))
        col = _colors(explainers)
        for k, ((ds, bb, at, sp), gp) in enumerate(panels):
            ax = axes[k]
            for e, ge in gp.groupby("explainer", sort=False):
                st = ge.groupby("q")["value"].agg(["mean", "std", "count"]).reset_index().sort_values("q")
                half = 1.96 * st["std"].fillna(0) / np.sqrt(st["count"].clip(lower=1))
                ax.plot(st["q"], st["mean"], "-o", ms=3, color=col[e], label=e)
                ax.fill_between(st["q"], st["mean"] - half, st["mean"] + half, color=col[e], alpha=0.12, lw=0)
            ax.axhline(0, color="k", lw=0.6)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(str(base))
            ax.set_title(f"{ds} / {bb}\nattack {at}" + (f" · {sp}" if sp != "clean" else ""), fontsize=9)
            if rows == 2:
                ax2 = axes[len(panels) + k]
                pp = parts[(parts["dataset"] == ds) & (parts["backbone"] == bb) & (parts["attack"] == at)
                           & (parts["split"] == sp)]
                for e, ge in pp.groupby("explainer", sort=False):
                    m = ge.groupby("q")[["top", "rnd"]].mean().reset_index().sort_values("q")
                    ax2.plot(m["q"], m["top"], "-o", ms=3, color=col.get(e, "k"), label=f"{e}: top-q")
                    ax2.plot(m["q"], m["rnd"], ":", color=col.get(e, "k"), label=f"{e}: random")
                ax2.set_xlabel(xlabel)
                ax2.set_ylabel("drop of the target")
                ax2.set_title(f"attack {at}" + (f" · {sp}" if sp != "clean" else "")
                              + ": top-q (solid) vs random (dotted)", fontsize=9)
        axes[0].legend(fontsize=7)
        cap = (f"{base} over {param}: mean over images and seeds with a 95% confidence band, one line per explainer"
               + ("; second row: the two drops it subtracts, removing the top-q attributed pixels vs q random "
                  "pixels." if rows == 2 else "."))
        found.setdefault(section_of(str(base)), []).append(sink.save(fig, f"curves-{base}-over-{param}", f"{base} over {param}", cap))
    return found


def agreement(data: ReportData, sink: Sink) -> list[Fig]:
    figs = []
    ex = data.extras[~data.extras["metric"].isin(["model", "maps"])]
    for (metric, ds, bb, at, sp), g in ex.groupby(["metric", "dataset", "backbone", "attack", "split"], sort=False):
        mats = {}
        for obj in g["obj"]:
            for m in matrices_in(obj):
                mats.setdefault((m.name, tuple(m.labels)), []).append(m.values)
        if not mats:
            continue
        fig, axes = grid(len(mats), ncols=3, w=3.8, h=3.4)
        for ax, ((name, labels), vals) in zip(axes, mats.items()):
            a = np.nanmean(np.stack(vals), axis=0)
            im = ax.imshow(a, cmap="viridis", vmin=min(0.0, float(np.nanmin(a))), vmax=1.0)
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            if len(labels) <= 12:
                for i in range(len(labels)):
                    for j in range(len(labels)):
                        ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="w" if a[i, j] < 0.6 else "k")
            ax.set_title(name, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(f"{metric}: {ds} / {bb} / attack {at}" + (f" · {sp}" if sp != "clean" else ""))
        figs.append(sink.save(fig, f"agreement-{metric}-{ds}-{bb}-{at}-{sp}", f"{metric}: {ds} / {bb} / {at}",
                              "Pairwise agreement between explainers on the same images (mean over seeds)."))
    if not figs:
        data.skip("Agreement matrix", "no metric in the store recorded an explainer × explainer matrix")
    return figs


# --------------------------------------------------------------------------- sweeps


def sweep_curves(data: ReportData, sink: Sink, kind: str) -> list[Fig]:
    """Metric means over a swept option, one line per explainer (positive-control strength
    for datasets, poison rate for attacks)."""
    figs = []
    v = data.values[~data.values["name"].isin(COST_COLUMNS)]
    other = "attack" if kind == "dataset" else "dataset"
    for name, option, members in sweeps(data, kind):
        sub = v[v[kind].isin(members)].copy()
        if sub.empty:
            continue
        sub["x"] = sub[kind].map(members)
        sub["col"] = [n if s == "clean" else f"{n} [{s}]" for n, s in zip(sub["name"], sub["split"])]
        sub["who"] = sub["explainer"].replace({"-": "model", "*": "all"})
        for (bb, ot), g in sub.groupby(["backbone", other], sort=False):
            cols = list(dict.fromkeys(g["col"]))[:MAX_PANELS]
            fig, axes = grid(len(cols), ncols=4, w=3.6, h=2.9)
            who = list(dict.fromkeys(g["who"]))
            color = _colors(who)
            for ax, c in zip(axes, cols):
                m = g[g["col"] == c].groupby(["who", "x"])["value"].mean().reset_index()
                for w, mw in m.groupby("who", sort=False):
                    mw = mw.sort_values("x")
                    ax.plot(mw["x"], mw["value"], "-o", ms=3, color=color[w], label=w)
                ax.set_title(c, fontsize=8)
                ax.set_xlabel(option)
            handles = {w: h for ax in axes for h, w in zip(*ax.get_legend_handles_labels())}
            fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7)  # every series
            what = "Positive controls" if kind == "dataset" else "Attack sweep"
            fig.suptitle(f"{what}: {name} over {option} ({bb}, {other} {ot})")
            cap = (f"Mean of each metric (over images and seeds) as {name}'s {option} grows, one line per explainer"
                   + ("; a faithful explainer's localisation and ΔT rise monotonically with the strength of the "
                      "injected signal." if kind == "dataset" else "."))
            figs.append(sink.save(fig, f"sweep-{kind}-{name}-{option}-{bb}-{ot}", f"{what}: {name} over {option}", cap))
    if not figs:
        data.skip("Positive-control monotonicity" if kind == "dataset" else "Attack sweeps",
                  f"no {kind} in the grid is swept over one numeric option")
    return figs
