"""Expand a suite into model tasks and run them, writing each cell as it completes.

The local executor runs tasks in order in this process; other executors hand the same
pure task functions to workers. A rerun skips stored cells (``--force`` recomputes).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .cells import (ModelTask, RunConfig, Session, cell_id, config_hash, eval_index, explain_context, failed_record,
                    make_target, train_model)
from .maps import cached_maps
from .contracts import MetricInput
from .dims import explainers_for, skip_notes
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


def seed_cells(session: Session, done: set[str]) -> Iterator[CellRecord]:
    """Metrics of scope ``seeds``: one explainer's maps from models of every seed."""
    session.stored = done
    suite = session.cfg.suite
    if len(suite.seeds) < 2:
        return
    for m in suite.metrics:
        metric = session.make(m)
        if getattr(metric, "scope", "") != "seeds":
            continue
        for d in suite.datasets:
            for b in suite.backbones:
                for a in suite.attacks:
                    for e in explainers_for(session.registry, suite, d):
                        if m.only and e.title not in m.only:
                            continue
                        tasks = [ModelTask(d, b, a, sd) for sd in suite.seeds]
                        cfg = {"models": [session.model_id(t) for t in tasks], "metric": session.ident(m),
                               "explainer": session.ident(e), "n_eval": suite.n_eval, "target": vars(suite.target)}
                        keys = {"suite": suite.name, "dataset": d.title, "backbone": b.title, "attack": a.title,
                                "seed": -1, "explainer": e.title, "metric": m.title, "split": "clean"}
                        cid = cell_id("metric", keys, config_hash(cfg))
                        if cid in done:
                            continue
                        t0 = time.perf_counter()
                        versions = session.versions(d, b, a, m, e)
                        try:
                            splits = session.dataset(d)
                            st = splits.test.subset(eval_index(splits, suite.n_eval, suite.data_seed))
                            dev = session.device
                            maps, model, tgt, ctx = {}, None, None, None
                            for t in tasks:
                                model, _ = train_model(session, t)
                                ctx = explain_context(session, splits, t.seed)
                                tgt = make_target(suite.target.kind, suite.target.classes, model, st.images,
                                                  st.labels, splits, dev)
                                maps[t.seed] = cached_maps(session, t, model, e, session.make(e), st, "clean", tgt,
                                                           ctx)
                            scores = metric.score(MetricInput(
                                model=model, images=st.images.to(dev), labels=st.labels.to(dev),
                                masks=st.masks.to(dev), target=tgt, context=ctx, seed_maps=maps,
                                explainer_name=e.title, meta=st.meta, splits=splits,
                                named_masks={k: v.to(dev) for k, v in st.named_masks.items()}))
                            rows, extras = score_rows(scores, f"metric {m.title}")
                            yield from session.drain()
                            yield CellRecord(cid, "metric", keys, config_hash(cfg), cfg, "done", time.perf_counter() - t0, rows,
                                             extras, versions=versions, git_commit=session.git_commit,
                                             facts=score_facts(session.registry, m, e, scores, f"metric {m.title}"))
                        except KeyboardInterrupt:
                            raise
                        except Exception as exc:
                            if getattr(exc, "exit_code", None) is not None:
                                raise
                            yield from session.drain()
                            yield failed_record(cid, "metric", keys, cfg, exc, time.perf_counter() - t0, versions,
                                                session.git_commit)


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
