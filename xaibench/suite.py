"""Suite files: a declarative TOML grid of datasets × backbones × attacks × explainers ×
metrics × seeds, parsed into frozen dataclasses and validated with one-line errors.

Entries are a plugin name (``"gradcam"``) or a table ``{name, options, label, sweep}``;
``sweep = {opt = [v1, v2]}`` expands one entry into one entry per value (e.g. poison rates
or corruption strengths), each its own column of the grid.
"""
from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import XaibenchError
from .names import bad_label, bad_name

KIND_KEYS = {"datasets": "dataset", "backbones": "backbone", "attacks": "attack",
             "explainers": "explainer", "metrics": "metric"}
TOP_KEYS = {"name", "description", "seeds", "data_seed", "n_eval", "chunk_size", "target", "executor",
            *KIND_KEYS}
ENTRY_KEYS = {"name", "options", "label", "sweep", "explainers"}  # "explainers": metrics only
TARGET_KINDS = ("logit", "margin", "group-direction")
TARGET_CLASSES = ("label", "predicted")
CLEAN_ATTACK = "none"
"""The attack plugin that trains without attacking: the clean model every attacked model is
compared with. The one place the core names it (its default label is this name too)."""


@dataclass(frozen=True)
class Entry:
    """One plugin with its options; ``label`` names it in tables (defaults to the name,
    plus swept options)."""

    kind: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    only: tuple[str, ...] = ()  # a metric applied to these explainers only (empty: all)
    sweep_of: str = ""  # a swept entry: the label it was expanded from (without the swept values)
    swept: tuple[str, ...] = ()  # a swept entry: the options its sweep varies

    @property
    def key(self) -> str:
        """Stable identity: name + options (JSON, sorted)."""
        return f"{self.name}{json.dumps(dict(self.options), sort_keys=True, default=str)}"

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def is_clean(self) -> bool:
        """An attack entry that trains the clean model (:data:`CLEAN_ATTACK`)."""
        return self.kind == "attack" and self.name == CLEAN_ATTACK


@dataclass(frozen=True)
class TargetSpec:
    kind: str = "logit"
    classes: str = "label"  # explain the true label's class, or the predicted one


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: Path | None
    datasets: tuple[Entry, ...]
    backbones: tuple[Entry, ...]
    attacks: tuple[Entry, ...]
    explainers: tuple[Entry, ...]
    metrics: tuple[Entry, ...]
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    n_eval: int = 64
    chunk_size: int = 64
    target: TargetSpec = TargetSpec()
    executor: Mapping[str, Any] = field(default_factory=dict)

    def with_seeds(self, seeds: tuple[int, ...]) -> "Suite":
        return replace(self, seeds=seeds)

    def with_datasets(self, datasets: tuple[Entry, ...]) -> "Suite":
        return replace(self, datasets=datasets)


def _fail(where: str, msg: str) -> XaibenchError:
    return XaibenchError(f"{where}: {msg}")


def _entries(where: str, key: str, raw: Any) -> tuple[Entry, ...]:
    kind = KIND_KEYS[key]
    if not isinstance(raw, list) or not raw:
        raise _fail(where, f"'{key}' must be a non-empty list of plugin names or tables")
    out: list[Entry] = []
    for i, item in enumerate(raw):
        at = f"{key}[{i}]"
        if isinstance(item, str):
            if (why := bad_label(item)) is not None:
                raise _fail(where, f"{at}: {why}")
            out.append(Entry(kind, item))
            continue
        if not isinstance(item, dict) or "name" not in item:
            raise _fail(where, f"{at} must be a name or a table with 'name'")
        extra = set(item) - ENTRY_KEYS
        if extra:
            raise _fail(where, f"{at}: unknown key {sorted(extra)[0]!r} (allowed: {', '.join(sorted(ENTRY_KEYS))})")
        opts = item.get("options", {})
        sweep = item.get("sweep", {})
        only = item.get("explainers", [])
        if only and (kind != "metric" or not isinstance(only, list) or not all(isinstance(x, str) for x in only)):
            raise _fail(where, f"{at}: 'explainers' is a list of explainer labels, allowed on metrics only")
        if not isinstance(opts, dict) or not isinstance(sweep, dict):
            raise _fail(where, f"{at}: 'options' and 'sweep' must be tables")
        for k, v in sweep.items():
            if not isinstance(v, list) or not v:
                raise _fail(where, f"{at}: sweep.{k} must be a non-empty list of values")
        names = list(sweep)
        for combo in itertools.product(*(sweep[k] for k in names)) if names else [()]:
            o = {**opts, **dict(zip(names, combo))}
            tag = ",".join(f"{k}={v}" for k, v in zip(names, combo))
            if "label" in item and (why := bad_label(item["label"])):
                raise _fail(where, f"{at}.label: {why}")
            label = str(item.get("label", item["name"])) + (f"[{tag}]" if tag else "")  # for display
            if (why := bad_label(label)) is not None:
                raise _fail(where, f"{at}: label {why}")
            base = str(item.get("label", item["name"]))
            out.append(Entry(kind, str(item["name"]), o, label, tuple(only), base if names else "", tuple(names)))
    labels = [e.title for e in out]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise _fail(where, f"'{key}' lists {sorted(dup)[0]!r} twice; give the entries distinct 'label's")
    return tuple(out)


def _check_only(where: str, suite: "Suite") -> None:
    labels = {e.title for e in suite.explainers}
    for m in suite.metrics:
        for x in m.only:
            if x not in labels:
                raise _fail(where, f"metric {m.title!r}: explainer {x!r} in 'explainers' is not in the suite's explainers")


def parse(data: Mapping[str, Any], where: str, path: Path | None = None) -> Suite:
    extra = set(data) - TOP_KEYS
    if extra:
        raise _fail(where, f"unknown key {sorted(extra)[0]!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in KIND_KEYS:
        if key not in data:
            raise _fail(where, f"missing key '{key}' (a list of {KIND_KEYS[key]} plugins)")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise _fail(where, "'seeds' must be a non-empty list of integers")
    for key in ("n_eval", "chunk_size", "data_seed"):
        v = data.get(key, 1)
        if not isinstance(v, int) or v < 0:
            raise _fail(where, f"'{key}' must be a non-negative integer, not {v!r}")
    t = data.get("target", {})
    if isinstance(t, str):
        t = {"kind": t}
    if not isinstance(t, dict) or set(t) - {"kind", "classes"}:
        raise _fail(where, "'target' must be a kind or a table with 'kind' and 'classes'")
    target = TargetSpec(**t)
    if target.kind not in TARGET_KINDS:
        raise _fail(where, f"target.kind {target.kind!r} is not one of {', '.join(TARGET_KINDS)}")
    if target.classes not in TARGET_CLASSES:
        raise _fail(where, f"target.classes {target.classes!r} is not one of {', '.join(TARGET_CLASSES)}")
    name = data.get("name", path.stem if path else "suite")
    if (why := bad_name(name)) is not None:  # the name becomes a folder: xaibench-results/NAME
        raise _fail(where, f"'name': {why}")
    suite = Suite(
        name=str(name),
        description=str(data.get("description", "")),
        path=path,
        seeds=tuple(seeds),
        data_seed=int(data.get("data_seed", 0)),
        n_eval=int(data.get("n_eval", 64)),
        chunk_size=int(data.get("chunk_size", 64)),
        target=target,
        executor=dict(data.get("executor", {})),
        **{key: _entries(where, key, data[key]) for key in KIND_KEYS},
    )
    _check_only(where, suite)
    return suite


def load_file(path: Path) -> Suite:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise XaibenchError(f"suite file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise XaibenchError(f"suite file {path}: invalid TOML: {exc}") from None
    return parse(data, f"suite file {path}", path)


def resolve(name_or_path: str, registry: Any) -> Suite:
    """A built-in / plugin suite name, or a path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return load_file(p)
    rec = registry.get("suite", name_or_path)
    return load_file(Path(rec.path))
