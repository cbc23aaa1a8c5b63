"""Pure cell functions: train (or load) one model; explain and score one model.

Each takes a frozen task and a :class:`Session` that can be rebuilt anywhere from the
run's :class:`RunConfig` (plugin files, output folder, device), so any executor can run
them; their only side effects are the artifact cache under ``OUT/cache`` (written
atomically, content-addressed) and the store rows they return.
"""
from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .atomic import save_torch as _save_atomic  # the name train_model() uses
from .errors import MapsError, warn
from .contracts import AttackContext, AttackOutcome, DatasetSplits, ExplainContext, ImageSet, Target, TrainResult
from .plugins import Registry, instantiate, load, using_registry
from .facts import sweep_facts
from .store import CellRecord
from .suite import CLEAN_ATTACK, Entry, Suite
from .training import fast_layout, settings, train

NONE_ATTACK = Entry("attack", CLEAN_ATTACK, {}, CLEAN_ATTACK)


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cell_id(kind: str, keys: dict[str, Any], cfg_hash: str) -> str:
    """A cell's id: its computation (``cfg_hash``) *and* where it is stored (suite, labels),
    so a second suite in a used folder gets cells of its own, under its own name; the
    computation itself (models, maps) is still shared through the content-addressed cache."""
    return f"{kind}-{config_hash({'keys': keys, 'config': cfg_hash})}"



@dataclass(frozen=True)
class RunConfig:
    suite: Suite
    out: Path
    plugin_files: tuple[str, ...] = ()
    device: str = "cpu"
    force: bool = False
    progress: bool = True


@dataclass(frozen=True)
class ModelTask:
    dataset: Entry
    backbone: Entry
    attack: Entry
    seed: int

    def keys(self, suite: str) -> dict[str, Any]:
        return {"suite": suite, "dataset": self.dataset.title, "backbone": self.backbone.title,
                "attack": self.attack.title, "seed": self.seed}

    def model_keys(self, suite: str) -> dict[str, Any]:
        """Keys of the model's own cell (its values sit in the leaderboard's model table)."""
        return {**self.keys(suite), "explainer": "-", "metric": "model", "split": "clean"}

    @property
    def attacked(self) -> bool:
        """Trained through a real attack (it then has a clean reference model of its own)."""
        return not self.attack.is_clean

    def clean(self) -> "ModelTask":
        return ModelTask(self.dataset, self.backbone, NONE_ATTACK, self.seed)


@dataclass
class Session:
    """Per-process state: the plugin registry and in-memory caches of loaded artifacts."""

    cfg: RunConfig
    registry: Registry = field(init=False)
    _datasets: dict[str, DatasetSplits] = field(default_factory=dict)
    _models: dict[str, tuple[torch.nn.Module, AttackOutcome]] = field(default_factory=dict)
    pending: list[CellRecord] = field(default_factory=list)  # records made as side products
    stored: set[str] = field(default_factory=set)  # cell ids the store already has (set by run_task)
    _fingerprints: dict[tuple, str] = field(default_factory=dict)

    def drain(self) -> list[CellRecord]:
        out, self.pending = self.pending, []
        return out

    def __post_init__(self) -> None:
        self.registry = load(self.cfg.plugin_files)

    @property
    def device(self) -> torch.device:
        return torch.device(self.cfg.device)

    @property
    def cache(self) -> Path:
        return self.cfg.out / "cache"

    @cached_property
    def git_commit(self) -> str | None:
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                 text=True, timeout=5)
            return out.stdout.strip() or None if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    # -- plugins -----------------------------------------------------------------
    def version(self, e: Entry) -> str:
        rec = self.registry.get(e.kind, e.name)
        return f"{self.registry.provider(e.kind, e.name)}:{rec.version}"

    def ident(self, e: Entry) -> dict[str, Any]:
        return {"name": e.name, "options": dict(e.options), "version": self.version(e)}

    def make(self, e: Entry) -> Any:
        return instantiate(self.registry, e.kind, e.name, dict(e.options))

    def versions(self, *entries: Entry) -> dict[str, str]:
        v = {"xaibench": __version__, "torch": torch.__version__}
        v.update({f"{e.kind}:{e.name}": self.version(e) for e in entries})
        return v

    # -- artifacts ---------------------------------------------------------------
    def dataset(self, e: Entry) -> DatasetSplits:
        key = e.key
        if key not in self._datasets:
            ds = self.make(e)
            cache = self.cache / "datasets"
            cache.mkdir(parents=True, exist_ok=True)
            with using_registry(self.registry):  # a dataset built on another finds the run's plugins
                self._datasets[key] = ds.load(seed=self.cfg.suite.data_seed, cache_dir=cache)
        return self._datasets[key]

    def fingerprint(self, e: Entry) -> str:
        """Hash of the dataset's actual contents, so edited data never reuse stale models."""
        key = ("fp", e.key)
        if key not in self._fingerprints:
            sp = self.dataset(e)
            h = hashlib.sha256()
            for part in (sp.train, sp.val, sp.test):
                for t in (part.images, part.labels, part.masks):
                    h.update(t.contiguous().cpu().numpy().tobytes())
            self._fingerprints[key] = h.hexdigest()[:16]
        return self._fingerprints[key]

    def model_config(self, t: ModelTask) -> dict[str, Any]:
        return {"dataset": self.ident(t.dataset), "data": self.fingerprint(t.dataset),
                "data_seed": self.cfg.suite.data_seed,
                "backbone": self.ident(t.backbone), "attack": self.ident(t.attack), "seed": t.seed}

    def model_id(self, t: ModelTask) -> str:
        return config_hash(self.model_config(t))

    def model_cell(self, t: ModelTask) -> str:
        """The id of ``t``'s model cell in this suite."""
        return cell_id("model", t.model_keys(self.cfg.suite.name), self.model_id(t))


def eval_index(splits: DatasetSplits, n: int, seed: int) -> np.ndarray:
    """The test images every explainer and metric sees: stratified by label, the same for
    every seed and attack so comparisons are paired."""
    labels = splits.test.labels.numpy()
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(n * len(idx) / len(labels)))
        picks.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(picks))


def _imageset_state(s: ImageSet | None) -> dict | None:
    if s is None:
        return None
    return {"images": s.images, "labels": s.labels, "masks": s.masks, "subject_ids": list(s.subject_ids),
            "named_masks": dict(s.named_masks)}


def _imageset_from(d: dict | None, rows_of: ImageSet | None = None) -> ImageSet | None:
    """The cached set; ``rows_of`` is the set it is a (triggered) copy of, row for row, whose
    per-image covariates it shares (they are not cached twice)."""
    if d is None:
        return None
    meta = dict(rows_of.meta) if rows_of is not None and len(rows_of) == len(d["labels"]) else {}
    return ImageSet(d["images"], d["labels"], d["masks"], tuple(d["subject_ids"]), meta,
                    dict(d.get("named_masks") or {}))


def _load_state(path: Path) -> dict | None:
    """A cached model's state (tensors and plain data only: ``weights_only=True``), or
    ``None`` with a warning when the file is damaged or foreign (the model is retrained)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "state_dict" not in state:
            raise ValueError("not a model state")
        return state
    except Exception as exc:  # noqa: BLE001 - e.g. a planted pickle: refused, never run
        warn(f"{path}: unusable cached model ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}); "
             "retrained")
        return None


def _to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on ``device`` in eval mode, convolutions channels-last: about 1.5× the
    forward throughput on CPU (oneDNN) for the many passes explainers and metrics make."""
    return model.to(device, memory_format=fast_layout(model)).eval()


def _clean_copy(session: Session, task: ModelTask) -> torch.nn.Module:
    """A trainable copy of ``task``'s clean model (trained and cached first if need be), so
    an attack that fine-tunes never alters the cached clean model."""
    model = copy.deepcopy(train_model(session, task.clean())[0]).to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def train_model(session: Session, task: ModelTask) -> tuple[torch.nn.Module, AttackOutcome]:
    """Load the model of ``task`` from the cache, or train it (through its attack); a
    freshly trained model's store record goes to ``session.pending``."""
    mid = session.model_id(task)
    if mid in session._models:
        return session._models[mid]
    path = session.cache / "models" / f"{mid}.pt"
    splits = session.dataset(task.dataset)
    builder = session.make(task.backbone)
    state = _load_state(path) if path.exists() and not session.cfg.force else None
    if state is not None:
        model = builder(num_classes=2, image_size=splits.image_size)
        model.load_state_dict(state["state_dict"])
        _to_device(model, session.device)
        outcome = AttackOutcome(
            train=TrainResult(model, state["history"], state["seconds"]),
            triggered_test=_imageset_from(state["triggered_test"], splits.test), region=state["region"],
            trigger=state["trigger"], info=json.loads(state["info"]))
        session._models[mid] = (model, outcome)
        if session.model_cell(task) not in session.stored:
            # weights cached but no model cell in this store (killed between the two writes,
            # a fresh store over a kept cache, another suite): rebuilt from the cached state
            session.pending.append(model_record(session, task, outcome, outcome.train.seconds))
            session.stored.add(session.model_cell(task))
        return model, outcome
    start = time.perf_counter()
    attack = session.make(task.attack)
    desc = f"train {task.dataset.title}/{task.backbone.title}/{task.attack.title}/seed{task.seed}"
    ctx = AttackContext(
        splits=splits,
        build_model=lambda: builder(num_classes=2, image_size=splits.image_size),
        train=partial(train, seed=task.seed, device=session.device, builder=builder,
                      progress=session.cfg.progress, desc=desc),
        seed=task.seed, device=session.device,
        clean_model=None if not task.attacked else partial(_clean_copy, session, task),
        batch_size=int(settings(builder)["batch_size"]))
    torch.manual_seed(task.seed)
    outcome = attack.run(ctx)
    model = _to_device(outcome.train.model, session.device)
    _save_atomic({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                  "history": dict(outcome.train.history), "seconds": outcome.train.seconds,
                  "triggered_test": _imageset_state(outcome.triggered_test), "region": outcome.region,
                  "trigger": outcome.trigger, "info": json.dumps(dict(outcome.info), default=str)}, path)
    session._models[mid] = (model, outcome)
    session.pending.append(model_record(session, task, outcome, time.perf_counter() - start))
    session.stored.add(session.model_cell(task))
    return model, outcome


def model_record(session: Session, task: ModelTask, outcome: AttackOutcome, wall: float) -> CellRecord:
    """The model cell: training time and epochs, the training history, the attack's facts and
    the dataset card (the split and sizes: what a paper states)."""
    mid = session.model_id(task)
    hist = dict(outcome.train.history)
    return CellRecord(
        cell_id=session.model_cell(task), kind="model", keys=task.model_keys(session.cfg.suite.name), config_hash=mid,
        config=session.model_config(task), status="done", wall_time=wall,
        values=[("train_seconds", None, -1, outcome.train.seconds, None, False),
                ("epochs", None, -1, len(hist.get("val_loss", [])), None, False)],
        extras=[("history", None, hist), ("attack_info", None, dict(outcome.info)),
                ("dataset_card", None, dict(session.dataset(task.dataset).card))],
        versions=session.versions(task.dataset, task.backbone, task.attack), git_commit=session.git_commit,
        facts=sweep_facts(task.dataset, task.attack))


def make_target(kind: str, classes: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                splits: DatasetSplits, device: torch.device) -> Target:
    with torch.no_grad():
        if classes == "predicted":
            cls = torch.cat([model(images[i:i + 128].to(device)).argmax(1).cpu() for i in range(0, len(images), 128)])
        else:
            cls = labels.clone()
        direction = None
        if kind == "group-direction":
            tr = splits.train
            emb = torch.cat([model.embed(tr.images[i:i + 128].to(device)) for i in range(0, len(tr), 128)])
            lab = tr.labels.to(device)
            d = emb[lab == 0].mean(0) - emb[lab == 1].mean(0)
            direction = d / d.norm().clamp_min(1e-12)
    return Target(kind, cls.to(device), direction)


def failed_record(cell_id: str, kind: str, keys: dict, config: dict, exc: BaseException, wall: float,
                  versions: dict, commit: str | None) -> CellRecord:
    # unusable maps are the explainer's fault, said in its own words (no exception type)
    tb = str(exc) if isinstance(exc, MapsError) else traceback.format_exception_only(type(exc), exc)[-1].strip()
    return CellRecord(cell_id, kind, keys, config_hash(config), config, "failed", wall, error=tb,
                      versions=versions, git_commit=commit)


def explain_context(session: Session, splits: DatasetSplits, seed: int) -> ExplainContext:
    g = torch.Generator().manual_seed(seed)
    n = min(32, len(splits.train))
    ref = splits.train.images[torch.randperm(len(splits.train), generator=g)[:n]].to(session.device)
    tr = splits.train
    priors = {name: tr.mask(name).float().mean(0).to(session.device) for name in ["roi", *tr.named_masks]}
    return ExplainContext(reference=ref, seed=seed, chunk_size=session.cfg.suite.chunk_size, mask_priors=priors)
