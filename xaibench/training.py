"""The standard trainer: AdamW, cross-entropy, early stopping on validation loss.

Attacks reuse it: a training-time attack adds ``extra_loss`` (computed on the same batch,
with a flag per image saying whether it carries the trigger), ``sample_weights`` (to
oversample poisoned images) and ``val_extra`` (its own objective on held-out data, added to
the validation loss that early stopping and checkpoint selection use: an attacker who
controls training selects on its whole objective); a data-only attack just passes a
poisoned training set.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .contracts import Classifier, ExtraLoss, ImageSet, TrainResult


def settings(builder: Any, **override: Any) -> dict[str, Any]:
    """The trainer's lr/epochs/batch_size/patience/weight_decay for ``builder`` (the
    backbone plugin), with ``override`` on top: what a model of that backbone is trained with."""
    base = {"lr": 1e-3, "epochs": 30, "batch_size": 32, "patience": 5, "weight_decay": 1e-4}
    for k in base:
        if builder is not None and hasattr(builder, k):
            base[k] = getattr(builder, k)
        if override.get(k) is not None:
            base[k] = override[k]
    return base


def fast_layout(model: torch.nn.Module) -> torch.memory_format:
    """The memory layout the model is trained and evaluated in: channels-last for 2-D
    convolutions; unchanged (contiguous) for a model with 3-D ones, where ``channels_last_3d``
    was no faster on CPU and ``Module.to`` refuses it on the 4-D normalisation buffers."""
    volumetric = any(p.ndim == 5 for p in model.parameters())
    return torch.contiguous_format if volumetric else torch.channels_last


def _param_groups(model: Classifier, builder: Any, lr: float) -> list[dict]:
    """The backbone's optimiser groups, their learning rates scaled so that an overridden
    ``lr`` (an attack's fine-tune) keeps the backbone's ratios between groups."""
    if builder is None or not hasattr(builder, "param_groups"):
        return [{"params": list(model.parameters()), "lr": lr}]
    base = getattr(builder, "lr", lr)
    groups = builder.param_groups(model)
    if lr != base:  # (left untouched otherwise: x * lr / lr is not always x in floating point)
        for g in groups:
            g["lr"] = g.get("lr", base) * (lr / base)
    return groups


@torch.no_grad()
def evaluate(model: Classifier, data: ImageSet, device: torch.device, batch_size: int = 128) -> dict[str, float]:
    """Loss, accuracy and AUROC of ``model`` on ``data`` (eval mode)."""
    from sklearn.metrics import roc_auc_score

    was = model.training
    model.eval()
    logits = torch.cat([model(data.images[i:i + batch_size].to(device)).float().cpu()
                        for i in range(0, len(data), batch_size)])
    model.train(was)
    y = data.labels.cpu()
    loss = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    prob = logits.softmax(1)[:, 1].numpy()
    auroc = float(roc_auc_score(y.numpy(), prob)) if len(set(y.tolist())) == 2 else float("nan")
    return {"loss": loss, "accuracy": acc, "auroc": auroc}


def _train_epoch(model: Classifier, train_set: ImageSet, order: torch.Tensor, opt: torch.optim.Optimizer,
           batch_size: int, device: torch.device, extra_loss: ExtraLoss | None, flags: torch.Tensor) -> float:
    """One pass over ``train_set`` in ``order``; the summed loss (for the epoch's mean). A batch
    of one is skipped: batch norm cannot train on it."""
    total = 0.0
    for i in range(0, len(train_set), batch_size):
        idx = order[i:i + batch_size]
        if len(idx) < 2:
            continue
        xb = train_set.images[idx].to(device)
        yb = train_set.labels[idx].to(device)
        loss = F.cross_entropy(model(xb), yb)
        if extra_loss is not None:
            loss = loss + extra_loss(model, xb, yb, flags[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total


def _finish(model: Classifier, best_state: dict | None) -> None:
    """Keep the best weights, back in the default layout with gradients on, in eval mode: the
    explainers expect a model in that state."""
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()


def train(
    model: Classifier,
    train_set: ImageSet,
    val_set: ImageSet,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    builder: Any = None,
    extra_loss: ExtraLoss | None = None,
    poisoned: torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
    val_extra: Callable[[Classifier], float] | None = None,
    progress: bool = True,
    desc: str = "train",
    **override: Any,
) -> TrainResult:
    """Train ``model`` in place and return it with its history; the best validation-loss
    weights are kept. ``builder`` (the backbone plugin) supplies param groups and
    train-mode rules; ``override`` replaces lr/epochs/batch_size/patience/weight_decay."""
    device = torch.device(device)
    cfg = settings(builder, **override)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # channels-last convolutions train about 25% faster on CPU (oneDNN) and on GPUs with
    # tensor cores; the weights go back to the default layout for the explainers below
    model.to(device, memory_format=fast_layout(model))
    groups = _param_groups(model, builder, cfg["lr"])
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    n = len(train_set)
    flags = poisoned if poisoned is not None else torch.zeros(n, dtype=torch.bool)
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    if val_extra is not None:
        history["val_extra"] = []
    best, best_state, bad = float("inf"), None, 0
    start = time.perf_counter()
    bar = tqdm(range(cfg["epochs"]), desc=desc, disable=not progress, leave=False, unit="ep")
    for _epoch in bar:
        if builder is not None and hasattr(builder, "set_train"):
            builder.set_train(model)
        else:
            model.train()
        if sample_weights is not None:
            order = torch.multinomial(sample_weights.double(), n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        total = _train_epoch(model, train_set, order, opt, cfg["batch_size"], device, extra_loss, flags)
        val = evaluate(model, val_set, device)
        history["train_loss"].append(total / n)
        history["val_loss"].append(val["loss"])
        history["val_accuracy"].append(val["accuracy"])
        bar.set_postfix(loss=f"{total / n:.3f}", val_acc=f"{val['accuracy']:.2f}")
        objective = val["loss"]
        if val_extra is not None:
            extra = float(val_extra(model))
            history["val_extra"].append(extra)
            objective += extra
        if objective < best - 1e-4:
            best, bad = objective, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg["patience"]:
                break
    _finish(model, best_state)
    return TrainResult(model=model, history=history, seconds=time.perf_counter() - start)
