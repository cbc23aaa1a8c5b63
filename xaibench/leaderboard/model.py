"""The table model the renderers draw: titles, columns with direction, chance and prior
levels, rows of values that carry their own marks (best, not worse than the best, does
not beat the prior) and per-seed values; no formatting decisions here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    key: str
    higher_is_better: bool
    chance: float | None
    prior: float | None = None  # the prior baseline row's mean (localisation tables)
    neutral: bool = False  # a stated fact (e.g. an attack's exposure), not a score: no direction, no best


@dataclass(frozen=True)
class Value:
    mean: float
    lo: float
    hi: float
    n: int
    best: bool = False  # the best method of its column (drawn bold)
    n_nan: int = 0  # images where the metric is undefined (not in the mean)
    per_seed: tuple[float, ...] = ()  # aligned with Table.seeds; NaN = no value for that seed
    not_worse: bool = False  # not significantly worse than the best (paired test, Holm)
    beats_prior: bool | None = None  # significantly better than the prior row (None: not tested)


@dataclass(frozen=True)
class Row:
    label: str
    values: tuple[Value | None, ...]
    rank: float | None
    baseline: str | None = None  # a reference row (chance / prior / model-free): apart, unranked


@dataclass(frozen=True)
class Ranking:
    """Friedman's test over the table's methods with the Nemenyi critical difference."""

    ranks: tuple[tuple[str, float], ...]
    p: float
    cd: float
    blocks: str


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    footer: tuple[str, ...]
    row_header: str = "explainer"
    seeds: tuple[str, ...] = ()
    ranking: Ranking | None = None
