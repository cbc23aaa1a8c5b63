"""Explainer maps: computed once per (model, explainer, split), checked where they are made,
cached under ``OUT/cache/maps`` with their cell's record beside them as plain JSON.

Maps that are not N×H×W or not finite fail the explainer's own maps cell and are never
cached; a cached file that does not load as a valid tensor (damaged, foreign, a planted
pickle: ``weights_only=True`` refuses it) is recomputed with a warning.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write, save_torch
from .cells import ModelTask, Session, cell_id, config_hash, failed_record
from .contracts import ExplainContext, ImageSet, Target
from .errors import MapsError, warn
from .facts import plugin_facts, score_facts
from .store import CellRecord, score_rows
from .suite import Entry

__all__ = ["MapsError", "cached_maps", "check_maps"]


def check_maps(maps: torch.Tensor, st: ImageSet, who: str) -> None:
    """Raise :class:`MapsError` unless ``maps`` is N×*S (the images' N and spatial shape) and finite."""
    want = (len(st), *st.images.shape[2:])
    if tuple(maps.shape) != want:
        raise MapsError(f"explainer {who}: maps have shape {tuple(maps.shape)}, expected "
                        f"{'x'.join(map(str, want))} (N x H x W)")
    bad = int((~torch.isfinite(maps)).flatten(1).any(1).sum()) if maps.numel() else 0
    if bad:
        raise MapsError(f"explainer {who}: {bad} of {len(st)} maps contain NaN or infinite values")


def _read_sidecar(path: Path) -> CellRecord | None:
    try:
        return CellRecord.from_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        warn(f"{path}: unreadable maps record ({str(exc)[:80]}); skipped, the maps are recomputed")
        return None


def _load_maps(path: Path, st: ImageSet, who: str, dev: torch.device) -> torch.Tensor | None:
    """Cached maps, or ``None`` when the file is not a valid map tensor for ``st``."""
    try:
        out = torch.load(path, map_location=dev, weights_only=True)
        if not isinstance(out, torch.Tensor):
            raise MapsError("not a tensor")
        check_maps(out, st, who)
        return out
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign cache file is recomputed
        warn(f"{path}: unusable cached maps ({str(exc)[:80]}); recomputed")
        return None


def cached_maps(session: Session, task: ModelTask, model: torch.nn.Module, e: Entry, explainer: Any,
                st: ImageSet, split: str, target: Target, ctx: ExplainContext, record: bool = True) -> torch.Tensor:
    """Maps of explainer ``e`` for ``st`` under ``task``'s model, from ``OUT/cache/maps`` or
    computed, checked and cached (the maps cell, with its wall time, goes to
    ``session.pending``). Maps that fail :func:`check_maps` record a failed maps cell, are
    not cached, and raise :class:`MapsError`."""
    suite, dev = session.cfg.suite, session.device
    mcfg = {"model": session.model_id(task), "explainer": session.ident(e), "split": split, "n_eval": suite.n_eval,
            "target": vars(suite.target), "data_seed": suite.data_seed, "seed": task.seed}
    mh = config_hash(mcfg)
    keys = {**task.keys(suite.name), "explainer": e.title, "split": split, "metric": "maps"}
    cid = cell_id("maps", keys, mh)
    path = session.cache / "maps" / f"{mh}.pt"
    sidecar = path.with_suffix(".cell.json")  # the maps cell's record (plain JSON), kept with the maps
    if path.exists() and not session.cfg.force:
        rec = None
        if record and cid not in session.stored:
            # maps cached but their cell not in this store (a run killed between the two
            # writes, a fresh store over a kept cache, another suite): the record comes back
            # with them, under the current suite and label
            rec = _read_sidecar(sidecar) if sidecar.exists() else None
        if not record or cid in session.stored or rec is not None:
            out = _load_maps(path, st, e.title, dev)
            if out is not None:
                if rec is not None:
                    session.pending.append(replace(rec, cell_id=cid, keys=keys,
                                                   facts=rec.facts or plugin_facts(session.registry, explainer=e)))
                    session.stored.add(cid)
                return out
    t0 = time.perf_counter()
    out = explainer.explain(model, st.images.to(dev), target, ctx).detach().float()
    wall = time.perf_counter() - t0
    try:
        check_maps(out, st, e.title)
    except MapsError as exc:
        if record:
            session.pending.append(failed_record(cid, "maps", keys, mcfg, exc, wall, session.versions(e),
                                                 session.git_commit))
        raise MapsError(f"{exc} (the maps cell failed; not cached)") from None
    rec = None
    if record:
        rows: list = [("seconds_per_image", None, -1, wall / max(1, len(st)), None, False)]
        describe = getattr(explainer, "describe", None)
        described = []
        if describe is not None and split == "clean":  # e.g. the IoU ceiling of a layer map
            described = describe(model, st.images.to(dev), st.masks.to(dev))
            rows += score_rows(described, f"explainer {e.title}")[0]
        facts = score_facts(session.registry, None, e, described, f"explainer {e.title}")
        rec = CellRecord(cid, "maps", keys, mh, mcfg, "done", wall, rows, versions=session.versions(e),
                         git_commit=session.git_commit, facts=facts)
        atomic_write(sidecar, rec.to_json())  # before the maps: a cache hit always finds it
    save_torch(out.cpu(), path)
    if rec is not None:
        session.pending.append(rec)
        session.stored.add(rec.cell_id)
    return out
