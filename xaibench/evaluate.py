"""Explain and score one model: every explainer's maps (cached on disk) and every metric
cell (one per explainer × metric × split, or per scope), each returned as a store record.

Cells already in the store are skipped; maps are computed only for explainers that still
have a missing cell, so a resumed run redoes nothing that finished. Scores are checked where
they are made: NaN means "undefined for this image" (stored, read back as NaN, counted by the
leaderboard); an infinite score fails its metric cell. Unusable maps fail the explainer's
maps cell, and the metric cells that needed them say so.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .cells import (ModelTask, Session, cell_id, config_hash, eval_index, explain_context, failed_record, make_target,
                    train_model)
from .maps import MapsError, cached_maps
from .contracts import MetricInput
from .dims import explainers_for, metrics_for
from .errors import StorageError
from .facts import score_facts
from .store import CellRecord, score_rows
from .suite import Entry


@dataclass(frozen=True)
class MetricCell:
    cell_id: str
    metric: Entry
    explainer: Entry | None  # None: model scope; "*" scopes use all explainers
    split: str
    scope: str
    config: dict[str, Any]
    keys: dict[str, Any]


class _Maps:
    """Each explainer's maps of one model (or of its clean reference model), computed once
    per run: a failure is kept and raised again instead of recomputed for every metric."""

    def __init__(self, s: Session, task: ModelTask, model: torch.nn.Module, sets: dict[str, Any],
                 targets: dict[str, Any], splits: Any, ctx: Any, explainers: dict[str, Any]) -> None:
        self.s, self.task, self.model, self.sets, self.targets = s, task, model, sets, targets
        self.splits, self.ctx, self.explainers = splits, ctx, explainers
        self.cache: dict[tuple[str, str, str], torch.Tensor | MapsError] = {}

    def __call__(self, e: Entry, split: str, which: str = "model") -> torch.Tensor:
        key = (e.title, split, which)
        if isinstance(self.cache.get(key), MapsError):
            raise self.cache[key]  # type: ignore[misc]  # the explainer failed once: not rerun per metric
        if key in self.cache:
            return self.cache[key]  # type: ignore[return-value]
        s, task, suite, dev = self.s, self.task, self.s.cfg.suite, self.s.device
        m = self.model if which == "model" else train_model(s, task.clean())[0]
        st = self.sets[split]
        tgt = self.targets[split] if which == "model" else make_target(
            suite.target.kind, suite.target.classes, m, st.images, st.labels, self.splits, dev)
        try:
            out = cached_maps(s, task if which == "model" else task.clean(), m, e, self.explainers[e.title],
                              st, split, tgt, self.ctx, record=which == "model")
        except MapsError as exc:
            self.cache[key] = exc
            raise
        self.cache[key] = out.to(dev)
        return self.cache[key]


@dataclass(frozen=True)
class _State:
    """What every metric cell of one model reads, built once per run."""
    model: torch.nn.Module
    splits: Any
    sets: dict[str, Any]  # the n_eval images of each split
    full: dict[str, Any]  # each whole split, for model-scope cells
    targets: dict[str, Any]
    ctx: Any
    explainers: dict[str, Any]  # title -> explainer instance
    maps: _Maps
    region: torch.Tensor | None
    trigger: torch.Tensor | None


class ModelEvaluation:
    """The cells of one model task and the shared state they read (maps, target, sets)."""

    def __init__(self, session: Session, task: ModelTask) -> None:
        self.s, self.task = session, task
        self.suite = session.cfg.suite
        self.mid = session.model_id(task)
        self.explainers = explainers_for(session.registry, self.suite, task.dataset)  # dims-compatible

    def plan(self, triggered: bool) -> list[MetricCell]:
        cells = []
        splits = ["clean", "triggered"] if triggered else ["clean"]
        base = {"model": self.mid, "n_eval": self.suite.n_eval, "target": vars(self.suite.target),
                "data_seed": self.suite.data_seed}
        for m in metrics_for(self.s.registry, self.suite, self.task.dataset):
            scope = getattr(self.s.make(m), "scope", "explanation")
            if scope == "seeds":
                continue  # across models: planned by the runner
            targets: list[tuple[Entry | None, str]]
            if scope == "explanation":
                targets = [(e, sp) for e in self.explainers for sp in splits if not m.only or e.title in m.only]
            elif scope == "attack":
                targets = [(None, "triggered")] if triggered else []
            else:
                targets = [(None, sp) for sp in splits]
            for e, sp in targets:
                cfg = {**base, "metric": self.s.ident(m), "split": sp, "scope": scope,
                       "explainer": self.s.ident(e) if e else None,
                       "explainers": [self.s.ident(x) for x in self.explainers] if scope in ("explainers", "attack") else None}
                keys = {**self.task.keys(self.suite.name), "metric": m.title, "split": sp,
                        "explainer": e.title if e else "*" if scope in ("explainers", "attack") else "-"}
                cells.append(MetricCell(cell_id("metric", keys, config_hash(cfg)), m, e, sp, scope, cfg, keys))
        return cells

    def run(self, done: set[str]) -> Iterator[CellRecord]:
        """Train (or load) the model, then score each missing cell; the shared state (sets,
        targets, maps) is built only when some cell is still missing."""
        s, task = self.s, self.task
        model, outcome = train_model(s, task)
        yield from s.drain()
        splits = s.dataset(task.dataset)
        todo = [c for c in self.plan(outcome.triggered_test is not None) if c.cell_id not in done]
        if not todo:
            return
        state = self._state(model, outcome, splits)
        for cell in todo:
            yield from self._score(cell, state)

    def _state(self, model: torch.nn.Module, outcome: Any, splits: Any) -> _State:
        """What every cell of this model reads, built once: one target and one maps cache per
        split, so no metric recomputes what another already made."""
        s, task, suite, dev = self.s, self.task, self.suite, self.s.device
        idx = eval_index(splits, suite.n_eval, suite.data_seed)
        sets = {"clean": splits.test.subset(idx)}
        full = {"clean": splits.test}
        if outcome.triggered_test is not None:
            sets["triggered"] = outcome.triggered_test.subset(idx)
            full["triggered"] = outcome.triggered_test
        ctx = explain_context(s, splits, task.seed)
        targets = {sp: make_target(suite.target.kind, suite.target.classes, model, st.images, st.labels, splits, dev)
                   for sp, st in sets.items()}
        explainers = {e.title: s.make(e) for e in self.explainers}
        maps = _Maps(s, task, model, sets, targets, splits, ctx, explainers)
        region = outcome.region.to(dev) if outcome.region is not None else None
        trigger = outcome.trigger.to(dev) if outcome.trigger is not None else None
        return _State(model, splits, sets, full, targets, ctx, explainers, maps, region, trigger)

    def _inputs(self, cell: MetricCell, state: _State) -> MetricInput:
        """The metric's input for one cell: a model-scope cell reads the whole split, the
        others the n_eval images with the maps their scope needs."""
        suite, dev, model, splits = self.suite, self.s.device, state.model, state.splits
        st = state.full[cell.split] if cell.scope == "model" else state.sets[cell.split]
        inp: dict[str, Any] = dict(
            model=model, images=st.images.to(dev), labels=st.labels.to(dev), masks=st.masks.to(dev),
            target=state.targets[cell.split] if cell.scope != "model" else make_target(
                suite.target.kind, suite.target.classes, model, st.images, st.labels, splits, dev),
            context=state.ctx, split=cell.split, region=state.region, trigger=state.trigger, meta=st.meta,
            splits=splits, named_masks={k: v.to(dev) for k, v in st.named_masks.items()})
        maps = state.maps
        if cell.scope == "explanation":
            e = cell.explainer  # planned with one for this scope
            inp.update(attributions=maps(e, cell.split), explainer=state.explainers[e.title], explainer_name=e.title)
            if self.task.attacked and cell.split == "clean":
                inp["reference_maps"] = maps(e, "clean", which="reference")
        elif cell.scope in ("explainers", "attack"):
            inp["maps"] = {e.title: maps(e, "clean") for e in self.explainers}
            if cell.scope == "attack":
                inp["triggered_maps"] = {e.title: maps(e, "triggered") for e in self.explainers}
        return MetricInput(**inp)

    def _score(self, cell: MetricCell, state: _State) -> Iterator[CellRecord]:
        """Score one cell and yield its record (after any records the scoring queued, e.g. a
        maps cell); a failure becomes a failed record unless the store itself cannot be written."""
        s, task, keys = self.s, self.task, cell.keys
        t0 = time.perf_counter()
        versions = s.versions(task.dataset, task.backbone, task.attack, cell.metric,
                              *( [cell.explainer] if cell.explainer else []))
        try:
            metric_input = self._inputs(cell, state)  # maps computed here are timed in their own cell
            t0 = time.perf_counter()
            scores = s.make(cell.metric).score(metric_input)
            yield from s.drain()
            rows, extras = score_rows(scores, f"metric {cell.metric.title}")
            facts = score_facts(s.registry, cell.metric, cell.explainer, scores, f"metric {cell.metric.title}")
            yield CellRecord(cell.cell_id, "metric", keys, config_hash(cell.config), cell.config, "done",
                             time.perf_counter() - t0, rows, extras, versions=versions, git_commit=s.git_commit,
                             facts=facts)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing cell is recorded; the run goes on
            if isinstance(exc, StorageError):
                raise  # the results folder cannot be written: stop with one line
            yield from s.drain()  # e.g. the failed maps cell this metric cell points to
            yield failed_record(cell.cell_id, "metric", keys, cell.config, exc, time.perf_counter() - t0,
                                versions, s.git_commit)
