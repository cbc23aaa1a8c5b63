"""The poison-rate sweep of the explanation backdoor (unique rate × sampling): table and figure.

Runs (or reads) the ``poison-sweep`` suite — the clean model and the explanation backdoor at
0.1, 0.5, 1, 2 and 5 % poisoned, three seeds, Grad-CAM — and writes, per poison rate, the
mean ± standard deviation over seeds of: Grad-CAM attack success on triggered test images,
false-trigger rate on clean ones, clean accuracy and its drop against the clean model of the
same seed, triggered accuracy, clean-map Spearman against the clean model, and the change of
clean-image ROI IoU. The *actual* share of unique training images poisoned is listed beside
the requested one (a small training set rounds 0.1 % and 0.5 % up to one image).

Every row also states the **exposure** the attack's sampling gave (the expected share of drawn
training samples carrying the trigger, and presentations per poisoned image per epoch;
``docs/attacks.md``). A suite that sweeps ``sampling`` as well as ``poison_rate`` (natural,
oversample, proportional) gives the two-dimensional sweep: one row per (sampling, rate), and a
figure of success against the unique rate and against the exposure, one line per sampling.

Usage (from the repository root)::

    python benchmarks/poison_sweep.py --run --out xaibench-results/poison-sweep
    python benchmarks/poison_sweep.py --run --suite poison-exposure-sweep --name poison-exposure-sweep \
        --out xaibench-results/poison-exposure-sweep
    python benchmarks/poison_sweep.py --toy --out xaibench-results/toy-sweep --dest xaibench-results/toy-sweep  # a pipeline check

writes ``leaderboard/NAME.md`` and ``leaderboard/figures/NAME.png`` (NAME defaults to
``poison-rate-sweep``; ``--run`` first runs ``xaibench run --suite SUITE``; without it the
script only reads an existing results folder). ``--toy`` writes and runs a toy 2-D suite
(one seed, 160 subjects, 2 epochs): it proves the pipeline, its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SUITE = "poison-sweep"
TOY_SUITE = """name = "toy-poison-exposure-sweep"
description = "A toy 2-D poison sweep (unique rate x sampling): checks the script, not the attack."
seeds = [0]
n_eval = 16
target = { kind = "logit", classes = "label" }
explainers = ["gradcam"]
metrics = ["accuracy", "attack-success", "attack-stealth"]

[[attacks]]
name = "none"

[[attacks]]
name = "explanation-backdoor"
options = { epochs = 2 }
sweep = { poison_rate = [0.01, 0.05], sampling = ["natural", "oversample"] }

[[datasets]]
name = "synthetic-hippocampus"
options = { n_subjects = 160 }

[[backbones]]
name = "resnet18"
options = { width = 0.25, output_stride = 8, epochs = 2 }
"""
COLUMNS = [  # (key, metric name, split, header)
    ("success", "attack_success", "triggered", "Grad-CAM success"),
    ("false_trigger", "false_trigger", "clean", "false triggers"),
    ("target_mass", "target_mass", "triggered", "target mass (triggered)"),
    ("cosine", "target_cosine", "triggered", "cosine to target (triggered)"),
    ("accuracy", "accuracy", "clean", "clean acc."),
    ("acc_drop", None, None, "clean-acc. drop (pts)"),
    ("acc_triggered", "accuracy", "triggered", "triggered acc."),
    ("spearman", "clean_spearman", "clean", "clean-map Spearman"),
    ("roi_iou_change", "roi_iou_change", "clean", "ROI IoU change"),
]


def per_seed(values: pd.DataFrame, extras: pd.DataFrame) -> pd.DataFrame:
    """One row per (attack, seed) with the sweep's columns."""
    v = values[values["explainer"].isin(["gradcam", "-"])]
    rows = []
    for (attack, seed), g in v.groupby(["attack", "seed"]):
        row = {"attack": attack, "seed": int(seed)}
        for key, name, split, _ in COLUMNS:
            if name is None:
                continue
            sel = g[(g["name"] == name) & (g["split"] == split)]["value"]
            row[key] = float(sel.mean()) if len(sel) else np.nan
        info = extras[(extras["attack"] == attack) & (extras["seed"] == seed) & (extras["name"] == "attack_info")]
        meta = json.loads(info["data"].iloc[0]) if len(info) else {}
        row["rate"] = float(meta.get("requested_poison_rate", 0.0))
        row["actual_rate"] = float(meta.get("poison_rate", 0.0))
        row["poison_count"] = int(meta.get("poison_count", 0))
        row["sampling"] = "—" if attack == "none" else str(meta.get("sampling", "oversample"))
        ex = exposure_from_info(meta) if attack != "none" else {}
        row["exposure"] = float(ex.get("exposure", 0.0))
        row["presentations"] = float(ex.get("presentations_per_poisoned_image", 0.0))
        rows.append(row)
    df = pd.DataFrame(rows)
    clean = df[df["attack"] == "none"].set_index("seed")["accuracy"]
    df["acc_drop"] = [100 * (clean.get(s, np.nan) - a) for s, a in zip(df["seed"], df["accuracy"])]
    return df.sort_values(["sampling", "rate", "seed"])


def exposure_from_info(meta: dict) -> dict:
    """The attack plugin's own rule (older cells stored only the sampling weight)."""
    from xaibench_plugins.attacks._exposure import exposure_from_info as rebuild

    return rebuild(meta)


def _t_half(v: pd.Series) -> float:
    """Half-width of the 95% Student-t interval over seeds (the leaderboard's rule for one
    value per seed: a bootstrap over three numbers would be too narrow)."""
    from xaibench.leaderboard.stats import t_interval

    lo, hi = t_interval(v.to_numpy())
    return (hi - lo) / 2 if np.isfinite(lo) and len(v.dropna()) > 1 else np.nan


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval half-width over seeds per (attack, sampling, rate);
    ``seed_success`` lists each seed's success, so a failed seed is visible and not only
    folded into the interval."""
    keys = [c[0] for c in COLUMNS]
    g = df.groupby(["attack", "sampling", "rate"], sort=False)
    mean, sd = g[keys].mean(), g[keys].agg(_t_half)
    per = g["success"].apply(lambda v: " / ".join(f"{x:.2f}" for x in v)).rename("seed_success")
    out = mean.join(sd.add_suffix("_ci")).join(g[["actual_rate", "poison_count", "exposure", "presentations"]].mean())
    out = out.join(per).join(g.size().rename("seeds")).reset_index()
    out["_clean"] = out["attack"] != "none"  # the clean model first
    return out.sort_values(["_clean", "sampling", "rate"]).drop(columns="_clean")


def markdown(agg: pd.DataFrame, command: str) -> str:
    head = (["poison rate", "actual (unique images)", "sampling", "exposure (triggered share of draws)",
             "presentations / poisoned image / epoch"] + [c[3] for c in COLUMNS] + ["success per seed"])
    lines = ["# Poison-rate sweep: the explanation backdoor on synthetic-hippocampus / resnet18", "",
             "Mean ± half-width of the 95% Student-t interval over seeds (the unit of resampling: each seed's "
             "value is the mean over every test image; a seed's success is listed on its own so a failed seed "
             "stays visible). "
             "Success = triggered test images whose Grad-CAM top-q mask (q = target-region area) has IoU ≥ 0.5 "
             "with the target region; false triggers = the same rule on clean images; cosine = the min–max "
             "normalised triggered map against the target region (the similarity the literature reports; "
             "docs/metrics.md); Spearman and ROI IoU change "
             "compare clean-image maps with the clean model of the same seed. Targets at 1 %: success ≥ 95 %, "
             "drop ≤ 1 pt, triggered acc. within 1 pt, false triggers ≤ 1 %, Spearman ≥ 0.9. "
             "Exposure = the expected share of drawn training samples that carry the trigger under the attack's "
             "sampling (natural: the unique share; oversample: 4 of every 32; proportional: 12.5 × the unique "
             "share).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in agg.iterrows():
        label = "clean model" if r["attack"] == "none" else f"{100 * r['rate']:g} %"
        actual = "—" if r["attack"] == "none" else f"{100 * r['actual_rate']:.2f} % ({r['poison_count']:.0f})"
        expo = "—" if r["attack"] == "none" else f"{100 * r['exposure']:.2f} %"
        pres = "—" if r["attack"] == "none" else f"{r['presentations']:.1f}"
        cells = [label, actual, r["sampling"], expo, pres]
        for key, *_ in COLUMNS:
            m, s = r[key], r[f"{key}_ci"]
            if not np.isfinite(m):
                cells.append("—")
            elif key == "acc_drop":
                cells.append(f"{m:+.1f} ± {s:.1f}" if np.isfinite(s) else f"{m:+.1f}")
            else:
                cells.append(f"{m:.3f} ± {s:.3f}" if np.isfinite(s) else f"{m:.3f}")
        cells.append(r["seed_success"] if r["attack"] != "none" else "—")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = int(agg["seeds"].max())
    lines += ["", f"{seeds} seeds. Regenerate: `{command}`", ""]
    return "\n".join(lines)


def figure(agg: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    att = agg[agg["attack"] != "none"]
    if att["sampling"].nunique() > 1:
        return figure_2d(agg, path)
    clean = agg[agg["attack"] == "none"]
    x = 100 * att["rate"].to_numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label, style in (("success", "Grad-CAM attack success", "o-"), ("false_trigger", "false-trigger rate", "s--"),
                              ("target_mass", "target mass (triggered)", "^:")):
        a.errorbar(x, att[key], yerr=att[f"{key}_ci"], fmt=style, capsize=3, label=label)
    a.axhline(0.95, color="grey", lw=0.8, ls=":")
    a.set(xscale="log", xlabel="poisoned training images (%)", ylabel="share of test images", ylim=(-0.03, 1.03),
          title="Does the map move? (triggered vs clean)")
    a.legend(fontsize=8, loc="center right")
    for key, label, style in (("accuracy", "clean accuracy", "o-"), ("acc_triggered", "triggered accuracy", "s--"),
                              ("spearman", "clean-map Spearman vs clean model", "^:")):
        b.errorbar(x, att[key], yerr=att[f"{key}_ci"], fmt=style, capsize=3, label=label)
    if len(clean):
        m, s = float(clean["accuracy"].iloc[0]), float(np.nan_to_num(clean["accuracy_ci"].iloc[0]))
        b.axhspan(m - s, m + s, color="grey", alpha=0.2, label="clean model accuracy (95% t-interval)")
    b.set(xscale="log", xlabel="poisoned training images (%)", ylim=(0, 1.03), title="Does anything else change?")
    b.legend(fontsize=8, loc="lower left")
    for ax in (a, b):
        ax.set_xticks(x, [f"{v:g}" for v in x])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def figure_2d(agg: pd.DataFrame, path: Path) -> None:
    """Success against the unique rate and against the exposure, and clean accuracy, one line
    per sampling (error bars: 95% t-interval over seeds)."""
    import matplotlib.pyplot as plt

    att, clean = agg[agg["attack"] != "none"], agg[agg["attack"] == "none"]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.8))
    for sampling, g in att.groupby("sampling"):
        x, e = 100 * g["rate"].to_numpy(), 100 * g["exposure"].to_numpy()
        line = a.errorbar(x, g["success"], yerr=g["success_ci"], fmt="o-", capsize=3, label=f"{sampling}: success")
        a.plot(x, g["false_trigger"], "s--", color=line[0].get_color(), alpha=0.6, label=f"{sampling}: false triggers")
        b.errorbar(e, g["success"], yerr=g["success_ci"], fmt="o-", capsize=3, label=sampling)
        c.errorbar(x, g["accuracy"], yerr=g["accuracy_ci"], fmt="o-", capsize=3, label=sampling)
    if len(clean):
        m, sd = float(clean["accuracy"].iloc[0]), float(np.nan_to_num(clean["accuracy_ci"].iloc[0]))
        c.axhspan(m - sd, m + sd, color="grey", alpha=0.2, label="clean model (95% t-interval)")
    a.set(xscale="log", xlabel="unique poisoned training images (%)", ylabel="share of test images",
          ylim=(-0.03, 1.03), title="Grad-CAM success by unique rate")
    b.set(xscale="log", xlabel="exposure: triggered share of drawn samples (%)", ylim=(-0.03, 1.03),
          title="… and by exposure")
    c.set(xscale="log", xlabel="unique poisoned training images (%)", ylim=(0, 1.03), title="clean accuracy")
    rates = sorted(100 * att["rate"].unique())
    for ax in (a, b, c):
        if ax is not c:
            ax.axhline(0.95, color="grey", lw=0.8, ls=":")
        if ax is not b:
            ax.set_xticks(rates, [f"{v:g}" for v in rates])
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def _suite_name(suite: str) -> str:
    if suite.endswith(".toml"):
        import tomllib

        return tomllib.loads(Path(suite).read_text())["name"]
    return suite


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="xaibench-results/poison-sweep", help="results folder of the poison-sweep suite")
    ap.add_argument("--run", action="store_true", help="run the suite first (resumes; stored cells are kept)")
    ap.add_argument("--dest", default=str(ROOT / "leaderboard"), help="where the table and figure go")
    ap.add_argument("--suite", default=SUITE, help="suite name or .toml path (e.g. one sweeping poison_rate × sampling)")
    ap.add_argument("--name", default="poison-rate-sweep", help="file name of the table and figure (no suffix)")
    ap.add_argument("--toy", action="store_true", help="write and run a toy 2-D suite into --out (a pipeline check)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    suite = args.suite
    if args.toy:
        out.mkdir(parents=True, exist_ok=True)
        suite = str(out / "toy-poison-exposure-sweep.toml")
        Path(suite).write_text(TOY_SUITE)
    if args.run or args.toy:
        subprocess.run([sys.executable, "-m", "xaibench.cli", "run", "--suite", suite, "--out", str(out), "--quiet",
                        "--no-leaderboard"], check=True)
    from xaibench.store import Store

    store = Store(out / "results.sqlite")
    try:
        values, extras = store.values(_suite_name(suite)), store.extras()
    finally:
        store.close()
    agg = aggregate(per_seed(values, extras))  # models may have been trained by another suite run
    dest = Path(args.dest)
    command = f"python benchmarks/poison_sweep.py --run --out {args.out}" + (
        f" --suite {args.suite} --name {args.name}" if args.suite != SUITE else "")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{args.name}.md").write_text(markdown(agg, command))
    figure(agg, dest / "figures" / f"{args.name}.png")
    print(markdown(agg, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
