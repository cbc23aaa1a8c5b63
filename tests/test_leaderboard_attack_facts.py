"""Every attack row of the model table states its unique poisoned share and its exposure."""
from __future__ import annotations

import json
import math

import pandas as pd

from xaibench.leaderboard.attack_facts import FACTS, attack_fact_values
from xaibench.leaderboard.build import read_summary_csv, render_summary
from xaibench.leaderboard.render import header
from xaibench.leaderboard.summary import summarise
from xaibench.leaderboard.table import build_tables

from .test_leaderboard import _values

SHARE, EXPOSURE, PRESENT = FACTS.values()


def _store_frames(info_by_attack: dict[str, dict]):
    ex, cells = [], []
    for attack, info in info_by_attack.items():
        for seed in (0, 1):
            key = dict(suite="s", dataset="d", backbone="b", attack=attack, seed=seed)
            ex.append({**key, "metric": "model", "split": "clean", "explainer": "-", "name": "attack_info",
                       "data": json.dumps(info)})
            cells.append({**key, "kind": "model", "config_hash": f"m{attack}{seed}", "versions": "{}"})
    return pd.DataFrame(ex), pd.DataFrame(cells)


def test_attack_rows_state_share_and_exposure_as_neutral_columns():
    ex, cells = _store_frames({"none": {}, "poison": {"poison_rate": 0.01, "exposure": 0.125,
                                                     "presentations_per_poisoned_image": 12.0}})
    facts = attack_fact_values(ex, cells)
    values = _values()
    values = pd.concat([values, values[values["name"] == "accuracy"].assign(attack="poison"), facts],
                       ignore_index=True)
    summary = summarise(values, {"attack-facts": "facts"})
    models = build_tables(summary)[0]
    cols = [c.key for c in models.columns]
    assert SHARE in cols and EXPOSURE in cols and PRESENT in cols
    by = {r.label: dict(zip(cols, r.values)) for r in models.rows}
    assert by["poison"][EXPOSURE].mean == 0.125 and by["poison"][SHARE].mean == 0.01
    assert by["none"][EXPOSURE].mean == 0.0 and by["none"][PRESENT].mean == 0.0  # the clean model saw none
    fact_cols = [c for c in models.columns if c.key in FACTS.values()]
    assert all(c.neutral for c in fact_cols) and "↑" not in header(fact_cols[0]) and "↓" not in header(fact_cols[0])
    assert not any(by[a][EXPOSURE].best for a in by)  # a fact has no "best"
    md = render_summary(summary, "md")
    head = next(line for line in md.splitlines() if EXPOSURE in line)
    assert f"{EXPOSURE} ↑" not in head and f"{EXPOSURE} ↓" not in head and f"{EXPOSURE} " in head


def test_the_facts_survive_the_published_csv(tmp_path):
    ex, cells = _store_frames({"none": {}, "poison": {"poison_rate": 0.01, "exposure": 0.125,
                                                     "presentations_per_poisoned_image": 12.0}})
    summary = summarise(pd.concat([_values(), attack_fact_values(ex, cells)], ignore_index=True),
                        {"attack-facts": "facts"})
    summary.to_csv(tmp_path / "s.csv", index=False)
    back = read_summary_csv(tmp_path / "s.csv")
    models = build_tables(back)[0]
    col = next(c for c in models.columns if c.key == EXPOSURE)
    assert col.neutral
    row = back[(back["attack"] == "poison") & (back["column"] == EXPOSURE)]
    assert math.isclose(float(row["mean"].iloc[0]), 0.125)


def test_an_attack_that_states_no_facts_gets_no_columns_and_bad_json_is_ignored():
    ex, cells = _store_frames({"none": {}, "quiet": {"something": 1}})
    facts = attack_fact_values(ex, cells)
    assert facts.empty  # nobody states a fact: no columns, no zeros invented
    ex.loc[0, "data"] = "{not json"
    ex2, cells2 = _store_frames({"poison": {"poison_rate": 0.05}})
    both = attack_fact_values(pd.concat([ex, ex2]), pd.concat([cells, cells2]))
    assert "quiet" not in set(both["attack"])  # states nothing: blank, not 0
    assert both[both["attack"] == "poison"]["name"].tolist() == [SHARE, SHARE]  # only what it states
    clean = both[both["attack"] == "none"]
    assert set(clean["name"]) == {SHARE, EXPOSURE, PRESENT} and set(clean["seed"]) == {1}  # seed 0's info unreadable
    assert (clean["value"] == 0).all()
