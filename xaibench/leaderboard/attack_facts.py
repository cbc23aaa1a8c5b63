"""How much poison each model saw, as columns of the model table.

Why: "1% poisoned" is a count of *unique* images; published explanation backdoors count the
share of *drawn training samples* that carry the trigger (exposure). A reader comparing rows,
or our row with a paper, needs both beside the accuracy — so every attack row states them.

The facts come from the ``info`` an attack returns (:class:`xaibench.contracts.AttackOutcome`),
stored as JSON data with the model cell (``attack_info``): nothing is re-run or unpickled. The
keys are a convention any attack plugin can follow (documented in ``docs/attacks.md``):

* ``poison_rate`` — unique poisoned share of the training images;
* ``exposure`` — expected share of drawn training samples carrying the trigger;
* ``presentations_per_poisoned_image`` — expected draws of one poisoned image per epoch.

The clean model (no attack, empty info) states 0 for all three. An attack that states none of
them gets no such columns (blank cells): the table does not guess.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

FACTS_FAMILY = "facts"  # their family: the table shows them without a direction or a best
FACTS_PLUGIN = "attack-facts"  # the metric-plugin name these rows carry (no such plugin runs)
FACTS = {  # info key → the column the model table shows
    "poison_rate": "poisoned share (unique images)",
    "exposure": "exposure (share of drawn samples)",
    "presentations_per_poisoned_image": "presentations per poisoned image per epoch",
}
VALUE_COLUMNS = ("suite", "dataset", "backbone", "attack", "seed", "metric", "split", "config_hash",
                 "metric_plugin", "explainer", "name", "image", "value", "chance", "higher_is_better", "versions")


def _info(data: object) -> dict | None:
    """The stored info, or None when it is not a JSON object (then nothing is stated)."""
    try:
        out = json.loads(data) if isinstance(data, (str, bytes)) else data
    except (TypeError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def attack_fact_values(extras: pd.DataFrame, cells: pd.DataFrame, suite: str | None = None) -> pd.DataFrame:
    """Rows shaped like ``Store.values()`` (one per model cell and fact) from the stored
    ``attack_info`` extras; empty when no model states any fact."""
    ex = extras[extras["name"] == "attack_info"] if len(extras) else extras
    if suite is not None and len(ex):
        ex = ex[ex["suite"] == suite]
    if ex is None or ex.empty:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    infos = [_info(d) for d in ex["data"]]
    if not any(k in i for i in infos if i for k in FACTS):
        return pd.DataFrame(columns=VALUE_COLUMNS)
    model_cells = cells[cells["kind"] == "model"].set_index(["suite", "dataset", "backbone", "attack", "seed"]) \
        if "kind" in cells else pd.DataFrame()
    rows = []
    for (_, r), info in zip(ex.iterrows(), infos):
        if info is None:
            continue
        attacked = bool(info)
        key = (r["suite"], r["dataset"], r["backbone"], r["attack"], r["seed"])
        cfg = model_cells["config_hash"].get(key, "") if "config_hash" in model_cells else ""
        ver = model_cells["versions"].get(key, "") if "versions" in model_cells else ""
        for k, col in FACTS.items():
            if k not in info and attacked:
                continue
            v = float(info.get(k, 0.0)) if attacked else 0.0
            rows.append({"suite": r["suite"], "dataset": r["dataset"], "backbone": r["backbone"],
                         "attack": r["attack"], "seed": r["seed"], "metric": r["metric"], "split": r["split"],
                         "config_hash": cfg if isinstance(cfg, str) else "", "metric_plugin": FACTS_PLUGIN,
                         "explainer": r["explainer"], "name": col, "image": -1, "value": v, "chance": np.nan,
                         "higher_is_better": False, "versions": ver if isinstance(ver, str) else ""})
    return pd.DataFrame(rows, columns=VALUE_COLUMNS)
