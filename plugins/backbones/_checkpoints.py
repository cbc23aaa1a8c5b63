"""Load encoder checkpoints in the layouts users actually have, without user code.

Why: a user's encoder comes from torchvision, timm, a hand-built
``nn.Sequential(*list(resnet50().children())[:-1])`` or a self-supervised library
(lightly, solo-learn, the reference SimCLR code, MoCo, BYOL), each naming the same tensors
differently. Rather than a list of known layouts, :func:`encoder_state` *searches* for the
encoder: it unwraps ``state_dict`` / ``model`` / ``encoder`` / ``backbone`` containers, then
tries every key prefix (``backbone.``, ``module.encoder_q.``, ``encoder.0.``, …) and maps
numeric ``nn.Sequential`` child indices (``4.0.conv1.weight``) onto the encoder's named
children (``layer1.0.conv1.weight``). The prefix that supplies the most encoder tensors wins;
on ties an online network beats its momentum / target copy. Everything else (projector,
predictor, prototypes, classifier ``fc``) is dropped. ``key_map`` (prefix → prefix) renames
keys first, for any layout the search does not find.

Files are read with ``weights_only=True`` (no code runs), allowing only
``argparse.Namespace`` beside tensors, since training scripts commonly store their arguments.
"""
from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xaibench.errors import XaibenchError

WRAPPERS = ("state_dict", "model", "model_state_dict", "model_state", "state", "network", "net",
            "encoder", "backbone")
"""Container keys unwrapped (outermost first) until a flat mapping of tensors remains."""
MOMENTUM = ("momentum", "encoder_k", "target", "ema", "key_encoder", "teacher")
"""Prefix words of the second (slow) network in MoCo / BYOL / DINO style checkpoints."""
SKIP = ("num_batches_tracked",)  # BatchNorm counters: absent from many checkpoints, unused in eval
RESAVE = "re-save only the tensors: torch.save(model.state_dict(), path) (for an SSL module, its encoder's)"


def _fail(who: str, what: str) -> XaibenchError:
    return XaibenchError(f"{who}: {what}")


def read_checkpoint(path: Path, who: str) -> Any:
    """``torch.load`` with ``weights_only=True``; a refusal becomes one line with the remedy."""
    if not path.is_file():
        raise _fail(who, f"weights file {path} does not exist; give a local checkpoint path")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"a pickled {found.group(1)}" if found else "pickled Python objects"
        raise _fail(who, f"weights {path} hold {what}, which the safe (weights-only) loader refuses; "
                         f"{RESAVE}") from None
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise _fail(who, f"cannot read weights {path} ({type(exc).__name__}: {msg}); is it a file "
                         "written by torch.save?") from None


def _unwrap(obj: Any) -> Mapping[str, Any]:
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        obj = inner
    return obj


def flat_tensors(obj: Any, who: str, path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by name, after unwrapping training-script containers."""
    state = _unwrap(obj)
    if not isinstance(state, Mapping):
        raise _fail(who, f"weights {path} hold a {type(obj).__name__}, not a state dict; {RESAVE}")
    flat: dict[str, torch.Tensor] = {}
    _flatten(state, "", flat)
    if not flat:
        keys = ", ".join(map(str, list(state)[:5]))
        raise _fail(who, f"weights {path} hold no tensors (top-level keys: {keys or 'none'}); {RESAVE}")
    return flat


def _flatten(obj: Mapping, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Nested mappings (``{"online": {...}, "target": {...}}``) become dotted keys."""
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, Mapping):
            _flatten(v, f"{prefix}{k}.", out)


def apply_key_map(state: Mapping[str, torch.Tensor], key_map: Mapping[str, str] | None) -> dict[str, torch.Tensor]:
    """Rename keys by the longest matching prefix of ``key_map`` (``{"trunk." = ""}`` strips)."""
    if not key_map:
        return dict(state)
    order = sorted(key_map, key=len, reverse=True)
    out = {}
    for k, v in state.items():
        p = next((p for p in order if k.startswith(p)), None)
        out[k if p is None else key_map[p] + k[len(p):]] = v
    return out


def _renamer(children: list[str]):
    """``4.0.conv1.weight`` → ``layer1.0.conv1.weight`` (index of the encoder's children)."""
    def rename(suffix: str) -> str:
        head, dot, rest = suffix.partition(".")
        if head.isdigit() and int(head) < len(children):
            return children[int(head)] + dot + rest
        return suffix
    return rename


def _candidates(keys: list[str], targets: set[str], rename) -> dict[str, dict[str, str]]:
    """prefix → {checkpoint key: encoder key} for every prefix that yields encoder keys."""
    found: dict[str, dict[str, str]] = {}
    for k in keys:
        cuts = [0] + [i + 1 for i, c in enumerate(k) if c == "."]
        for i in cuts:
            name = rename(k[i:])
            if name in targets:
                found.setdefault(k[:i], {})[k] = name
    return found


def _rank(prefix: str, hits: int) -> tuple:
    slow = any(w in prefix.lower() for w in MOMENTUM)
    return hits, not slow, -len(prefix), prefix


def encoder_state(state: Mapping[str, torch.Tensor], encoder: torch.nn.Module, who: str, path: Path,
                  key_map: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The encoder's state dict found in ``state`` (see the module docstring); a mismatch is
    one line naming the first unmatched keys on both sides and the option that fixes it."""
    own = encoder.state_dict()
    targets = {k for k in own if not k.endswith(SKIP)}
    children = [n for n, _ in encoder.named_children()]
    rename = _renamer(children)
    state = apply_key_map(state, key_map)
    found = _candidates(list(state), targets, rename)
    prefix = max(found, key=lambda p: _rank(p, len(found[p]))) if found else ""
    chosen = found.get(prefix, {})
    out = {name: state[k] for k, name in chosen.items()}
    missing = sorted(targets - set(out), key=list(own).index)
    structural = tuple(f"{c}." for c in children if c != "fc")
    unused = [k for k in state if k.startswith(prefix) and k not in chosen
              and rename(k[len(prefix):]).startswith(structural) and not k.endswith(SKIP)]
    if missing or unused:
        theirs = unused or [k for k in state if k not in chosen]
        where = f" under prefix {prefix!r}" if prefix else ""
        raise _fail(who, f"weights {path} do not fit the encoder: {len(missing)} encoder tensors not found "
                         f"(first: {', '.join(missing[:3]) or '-'}); {len(theirs)} checkpoint tensors unmatched"
                         f"{where} (first: {', '.join(theirs[:3]) or '-'}); rename them with the backbone "
                         "option key_map = {\"their.prefix.\" = \"layer1.\"}, or set arch/width to the trained network")
    bad = [(n, tuple(v.shape), tuple(own[n].shape)) for n, v in out.items() if v.shape != own[n].shape]
    if bad:
        n, theirs, ours = bad[0]
        raise _fail(who, f"weights {path}: {len(bad)} tensors have other shapes than the encoder (first: {n} "
                         f"{list(theirs)} in the checkpoint, {list(ours)} here); set the backbone's arch and "
                         "width to the network that was trained")
    return out


def load_encoder(encoder: torch.nn.Module, path: Path, who: str,
                 key_map: Mapping[str, str] | None = None) -> None:
    """Read ``path`` and load its encoder tensors into ``encoder`` (in place)."""
    state = encoder_state(flat_tensors(read_checkpoint(path, who), who, path), encoder, who, path, key_map)
    encoder.load_state_dict(state, strict=False)
