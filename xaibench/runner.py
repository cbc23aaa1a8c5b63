"""Expand a suite into model tasks and run them, writing each cell as it completes.

The local executor runs tasks in order in this process; other executors hand the same
pure task functions to workers. A rerun skips stored cells (``--force`` recomputes).
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .cells import (ModelTask, RunConfig, Session, cell_id, config_hash, eval_index, explain_context, failed_record,
                    make_target, train_model)
from .maps import cached_maps
from .contracts import MetricInput
from .dims import explainers_for, fits, skip_notes
from .errors import StorageError
from .evaluate import ModelEvaluation
from .facts import score_facts
from .store import CellRecord, Store, score_rows


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. explainer × dataset pairs left out of the plan

    def line(self) -> str:
        s = f"{self.done} cells computed, {self.skipped} already stored, {len(self.failed)} failed ({self.seconds:.0f} s)"
        return s


def model_tasks(cfg: RunConfig) -> list[ModelTask]:
    s = cfg.suite
    return [ModelTask(d, b, a, seed) for d in s.datasets for b in s.backbones for a in s.attacks for seed in s.seeds]


def store_path(cfg: RunConfig):
    return cfg.out / "results.sqlite"


def run_task(session: Session, task: ModelTask, done: set[str]) -> Iterator[CellRecord]:
    """All cells of one model (training included); the unit an executor schedules."""
    session.stored = done  # what is stored already (e.g. cached maps whose cell is missing get it back)
    t0 = time.perf_counter()
    try:
        yield from ModelEvaluation(session, task).run(done)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if getattr(exc, "exit_code", None) is not None:
            raise  # user errors (bad options, bad data) stop the run with their one line
        cfg = session.model_config(task)
        yield from session.drain()
        yield failed_record(session.model_cell(task), "model", task.model_keys(session.cfg.suite.name), cfg,
                            exc, time.perf_counter() - t0, session.versions(task.dataset, task.backbone, task.attack),
                            session.git_commit)


@dataclass(frozen=True)
class SeedCell:
    """One metric of scope ``seeds``: an explainer's maps from the models of every seed."""

    cell_id: str
    metric: Any  # the suite's metric entry
    explainer: Any  # the suite's explainer entry
    tasks: tuple[ModelTask, ...]
    keys: dict[str, Any]
    config: dict[str, Any]


def plan_seed_cells(session: Session) -> list[SeedCell]:
    """Every (metric of scope seeds × dataset × backbone × attack × explainer) cell; none
    with fewer than two seeds."""
    suite = session.cfg.suite
    if len(suite.seeds) < 2:
        return []
    out = []
    for m in suite.metrics:
        if getattr(session.make(m), "scope", "") != "seeds":
            continue
        for d, b, a in itertools.product(suite.datasets, suite.backbones, suite.attacks):
            if not fits(session.registry, d, m):
                continue
            for e in explainers_for(session.registry, suite, d):
                if m.only and e.title not in m.only:
                    continue
                tasks = tuple(ModelTask(d, b, a, sd) for sd in suite.seeds)
                cfg = {"models": [session.model_id(t) for t in tasks], "metric": session.ident(m),
                       "explainer": session.ident(e), "n_eval": suite.n_eval, "target": vars(suite.target)}
                keys = {"suite": suite.name, "dataset": d.title, "backbone": b.title, "attack": a.title,
                        "seed": -1, "explainer": e.title, "metric": m.title, "split": "clean"}
                out.append(SeedCell(cell_id("metric", keys, config_hash(cfg)), m, e, tasks, keys, cfg))
    return out


def _seed_scores(session: Session, cell: SeedCell) -> list:
    """The metric's scores on one explainer's maps from every seed's model (same test images)."""
    suite, dev = session.cfg.suite, session.device
    d, e = cell.tasks[0].dataset, cell.explainer
    splits = session.dataset(d)
    st = splits.test.subset(eval_index(splits, suite.n_eval, suite.data_seed))
    maps, model, tgt, ctx = {}, None, None, None
    for t in cell.tasks:
        model, _ = train_model(session, t)
        ctx = explain_context(session, splits, t.seed)
        tgt = make_target(suite.target.kind, suite.target.classes, model, st.images, st.labels, splits, dev)
        maps[t.seed] = cached_maps(session, t, model, e, session.make(e), st, "clean", tgt, ctx)
    return session.make(cell.metric).score(MetricInput(
        model=model, images=st.images.to(dev), labels=st.labels.to(dev), masks=st.masks.to(dev), target=tgt,
        context=ctx, seed_maps=maps, explainer_name=e.title, meta=st.meta, splits=splits,
        named_masks={k: v.to(dev) for k, v in st.named_masks.items()}))


def seed_cells(session: Session, done: set[str]) -> Iterator[CellRecord]:
    """Score the cells of scope ``seeds`` not yet stored. A failing metric fails its cell
    and the run goes on (as in every other scope); only an unwritable results folder stops it."""
    session.stored = done
    for cell in plan_seed_cells(session):
        if cell.cell_id in done:
            continue
        t0 = time.perf_counter()
        t = cell.tasks[0]
        versions = session.versions(t.dataset, t.backbone, t.attack, cell.metric, cell.explainer)
        try:
            scores = _seed_scores(session, cell)
            rows, extras = score_rows(scores, f"metric {cell.metric.title}")
            yield from session.drain()
            yield CellRecord(cell.cell_id, "metric", cell.keys, config_hash(cell.config), cell.config, "done",
                             time.perf_counter() - t0, rows, extras, versions=versions, git_commit=session.git_commit,
                             facts=score_facts(session.registry, cell.metric, cell.explainer, scores,
                                               f"metric {cell.metric.title}"))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as a failed cell
            if isinstance(exc, StorageError):
                raise
            yield from session.drain()
            yield failed_record(cell.cell_id, "metric", cell.keys, cell.config, exc, time.perf_counter() - t0,
                                versions, session.git_commit)


def run_local(cfg: RunConfig) -> Summary:
    """Run the whole suite in this process."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    store = Store(store_path(cfg))
    session = Session(cfg)
    summary = Summary(notes=skip_notes(session.registry, cfg.suite))
    done = set() if cfg.force else store.done()
    summary.skipped = len(done)
    tasks = model_tasks(cfg)
    bar = tqdm(total=len(tasks), desc=f"{cfg.suite.name}: models", unit="model", disable=not cfg.progress)
    try:
        for task in tasks:
            bar.set_postfix_str(f"{task.attack.title}/seed{task.seed}")
            for rec in run_task(session, task, done):
                _record(store, rec, summary)
            bar.update(1)
        for rec in seed_cells(session, done):
            _record(store, rec, summary)
    finally:
        bar.close()
        store.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _record(store: Store, rec: CellRecord, summary: Summary) -> None:
    store.write(rec)
    if rec.status == "done":
        summary.done += 1
    else:
        summary.failed.append(f"{rec.keys.get('attack')}/{rec.keys.get('explainer')}/{rec.keys.get('metric')}"
                              f"/{rec.keys.get('split')}/seed{rec.keys.get('seed')}: {rec.error}")


__all__ = ["RunConfig", "Summary", "run_local", "model_tasks", "run_task", "seed_cells"]
