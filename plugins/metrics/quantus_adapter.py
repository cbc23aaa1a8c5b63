"""``quantus.<Class>`` — every Quantus metric the benchmark does not compute natively, run by
Quantus itself on the cell's model, images, maps and explainer.

Why an adapter: Quantus has some forty metrics; the ones our tables lean on are native
(batched, N-D, tested equal to Quantus: :data:`NATIVE` says which metric replaces which
class); the rest stay one option away instead of being rewritten. Each class is one metric
named ``quantus.<ClassName>`` (``quantus.Infidelity``) in the leaderboard family of its
Quantus category (:data:`FAMILIES`). ``:`` is not allowed in plugin names (they become file
names), hence the dot.

Options are the Quantus constructor's keyword arguments (``features_in_step``,
``nr_samples``, ``abs``, ``normalise``, …, as its documentation lists them), plus
``softmax`` and ``batch_size`` (passed to the call) and ``seed`` (numpy and torch are seeded
with ``seed + context.seed`` around the call and restored after it: Quantus draws from the
global generators). An unknown name is a one-line error listing the allowed ones. Quantus
is called with its own defaults otherwise, ``disable_warnings`` and no progress bar.

What is handed over: ``x_batch`` the images (``N×1×H×W``), ``y_batch`` the explained
classes (``target.classes``: Quantus scores the logit, or the softmax with ``softmax =
true``, of that class — not a margin or group direction), ``a_batch`` the maps, ``s_batch``
the ROI masks, and ``explain_func`` the cell's explainer (for the classes Quantus asks for,
with the cell's target kind).

Scores: one, named like the metric, with Quantus' ``score_direction``. Quantus returns one
number per image (kept), one curve per image (reduced to its mean over the curve's points,
the normalised area under it; the curves go to ``extra["curves"]``), a ``{step: value}``
curve over the batch (ROAD: the mean, as one aggregate value, curve in ``extra``), a
``{layer: per-image}`` cascade (the last layer per image) or a single aggregate. Errors are
one line: 3-D inputs (Quantus' image metrics are 2-D; the native complexity and
randomisation metrics take volumes), a localisation metric on masks that are all empty, a
re-explaining metric without an explainer, and the classes :data:`UNAVAILABLE` names, which
cannot run here at all (the conformance test asserts exactly that error). Anything Quantus
itself raises becomes ``metric quantus.X: Quantus failed: …``.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable, Mapping

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord
from xaibench.kit.batching import seeded
from xaibench.kit.checks import check_maps
from xaibench.kit.stats import nanmean

CATALOGUE = {  # Quantus 0.6's quantus.AVAILABLE_METRICS by class (pinned by the tests)
    "faithfulness": ("FaithfulnessCorrelation", "FaithfulnessEstimate", "PixelFlipping", "RegionPerturbation",
                     "Monotonicity", "MonotonicityCorrelation", "Selectivity", "SensitivityN", "IROF", "ROAD",
                     "Infidelity", "Sufficiency"),
    "robustness": ("Continuity", "LocalLipschitzEstimate", "MaxSensitivity", "AvgSensitivity", "Consistency",
                   "RelativeInputStability", "RelativeOutputStability", "RelativeRepresentationStability"),
    "localisation": ("PointingGame", "TopKIntersection", "RelevanceMassAccuracy", "RelevanceRankAccuracy",
                     "AttributionLocalisation", "AUC", "Focus"),
    "complexity": ("Sparseness", "Complexity", "EffectiveComplexity"),
    "randomisation": ("MPRT", "SmoothMPRT", "EfficientMPRT", "RandomLogit"),
    "axiomatic": ("Completeness", "NonSensitivity", "InputInvariance"),
}
"""Quantus category → its metric classes."""

FAMILIES = {"faithfulness": "faithfulness", "robustness": "stability", "localisation": "localisation",
            "complexity": "complexity", "randomisation": "sanity", "axiomatic": "axiomatic"}
"""Quantus category → our leaderboard family."""

NATIVE = {
    "FaithfulnessCorrelation": "faithfulness-correlation",
    "PixelFlipping": "deletion (units_per_step = 1)",
    "RegionPerturbation": "deletion (patch > 1)",
    "MaxSensitivity": "noise-stability (its max-sensitivity score)",
    "PointingGame": "pointing-game",
    "TopKIntersection": "rank-accuracy (k = a pixel count)",
    "RelevanceMassAccuracy": "energy-in-roi (mode = signed)",
    "AttributionLocalisation": "energy-in-roi (mode = absolute)",
    "RelevanceRankAccuracy": "rank-accuracy",
    "Sparseness": "sparseness",
    "Complexity": "complexity",
    "EffectiveComplexity": "effective-complexity",
    "MPRT": "randomization (granularity = module)",
    "RandomLogit": "random-logit",
}
"""Quantus classes computed natively (tested equal) → the metric that replaces them; the
adapter does not register these."""


def _numpy_lacks_trapz() -> str | None:
    return None if hasattr(np, "trapz") else "Quantus 0.6's IROF calls numpy.trapz, which NumPy 2 removed"


UNAVAILABLE: Mapping[str, Callable[[], str | None]] = {
    "IROF": _numpy_lacks_trapz,
    "Focus": lambda: "needs mosaics of 2×2 images and the target's positions in them (p_batch), which the "
                     "benchmark does not build",
    "InputInvariance": lambda: "shifts the input and folds the shift into the model's first layer, which a "
                               "Classifier's own input preparation (1 → 3 channels, normalisation) breaks",
    "SmoothMPRT": lambda: "explains through quantus.explain (captum by method name), not the cell's explainer",
}
"""Classes that cannot run on the benchmark's inputs: class → why (None once they can)."""

CONFORMANCE: Mapping[str, Mapping[str, Any]] = {
    "FaithfulnessEstimate": {"features_in_step": 64},
    "Monotonicity": {"features_in_step": 64},
    "MonotonicityCorrelation": {"features_in_step": 64, "nr_samples": 3},
    "SensitivityN": {"features_in_step": 64},
    "ROAD": {"percentages": [10, 50, 90]},
    "Infidelity": {"n_perturb_samples": 2},
    "Continuity": {"nr_steps": 4},
    "LocalLipschitzEstimate": {"nr_samples": 2},
    "AvgSensitivity": {"nr_samples": 2},
    "RelativeInputStability": {"nr_samples": 2},
    "RelativeOutputStability": {"nr_samples": 2},
    "RelativeRepresentationStability": {"nr_samples": 2},
    "EfficientMPRT": {"layer_order": "top_down"},
}
"""Small settings that keep each class to about a second on the conformance inputs."""

CALL_OPTIONS = ("softmax", "batch_size")
FIXED = ("self", "kwargs", "disable_warnings", "display_progressbar", "return_aggregate", "aggregate_func",
         "default_plot_func")
RE_EXPLAINS = ("robustness", "randomisation")


def category_of(cls_name: str) -> str:
    return next(c for c, names in CATALOGUE.items() if cls_name in names)


def quantus_class(cls_name: str) -> type:
    """The Quantus class (imported on first use: ``import quantus`` takes seconds)."""
    return getattr(import_module("quantus"), cls_name)


@dataclass(frozen=True)
class QuantusMetric:
    cls_name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    scope: str = "explanation"

    @property
    def who(self) -> str:
        return f"metric quantus.{self.cls_name}"

    @property
    def unavailable(self) -> str | None:
        """Why this class cannot run on the benchmark's inputs (None when it can)."""
        why = UNAVAILABLE.get(self.cls_name, lambda: None)()
        return f"{self.who}: cannot run here: {why}" if why else None

    def _check(self, inp: MetricInput) -> torch.Tensor:
        if self.unavailable:
            raise XaibenchError(self.unavailable)
        if inp.images.ndim != 4:
            raise XaibenchError(f"{self.who}: Quantus' image metrics take 2-D images N×1×H×W, got "
                                f"{'×'.join(map(str, inp.images.shape))}; on volumes use a native metric")
        a = check_maps(inp.attributions, inp.images, self.who)
        cat = category_of(self.cls_name)
        if cat == "localisation" and not bool(inp.masks.any()):
            raise XaibenchError(f"{self.who}: needs ROI masks (s_batch); every mask of this input is empty")
        if cat in RE_EXPLAINS and inp.explainer is None:
            raise XaibenchError(f"{self.who}: needs the explainer to re-explain perturbed inputs; none was given")
        return a

    def score(self, inp: MetricInput) -> list[Score]:
        a = self._check(inp)
        cls = quantus_class(self.cls_name)
        init = {k: v for k, v in self.options.items() if k not in CALL_OPTIONS}
        call = {k: v for k, v in self.options.items() if k in CALL_OPTIONS}
        np_ = lambda t: t.detach().cpu().numpy()  # noqa: E731
        kw = dict(model=inp.model.eval(), x_batch=np_(inp.images), y_batch=np_(inp.target.classes),
                  a_batch=np_(a.float())[:, None], s_batch=np_(inp.masks)[:, None], device=str(inp.images.device),
                  **call)
        if inp.explainer is not None:
            kw["explain_func"] = explain_func(inp)
        try:
            with seeded(self.seed + int(inp.context.seed), inp.images.device):
                result = cls(disable_warnings=True, display_progressbar=False, **init)(**kw)
        except XaibenchError:
            raise
        except Exception as e:  # Quantus' own errors, as one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise XaibenchError(f"{self.who}: Quantus failed: {type(e).__name__}: {msg}"[:400]) from None
        values, extra = to_values(result, len(inp.images))
        higher = getattr(cls, "score_direction", None)
        return [Score(f"quantus.{self.cls_name}", values, str(higher).endswith("HIGHER"), extra=extra)]


def explain_func(inp: MetricInput) -> Callable[..., np.ndarray]:
    """Quantus' ``explain_func(model, inputs, targets)`` around the cell's explainer."""
    dev = inp.images.device

    def explain(model: torch.nn.Module, inputs: np.ndarray, targets: Any, **_: Any) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=dev)
        cls = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=dev).reshape(-1)
        if cls.numel() == 1 and len(x) > 1:
            cls = cls.expand(len(x))
        tgt = Target(inp.target.kind, cls, inp.target.direction)
        return inp.explainer.explain(model, x, tgt, inp.context).detach().float().cpu().numpy()[:, None]

    return explain


def to_values(result: Any, n: int) -> tuple[np.ndarray, dict]:
    """Per-image values (or one aggregate) and the extra facts from what Quantus returned."""
    if isinstance(result, dict):
        keys = list(result)
        rows = [np.asarray(result[k], dtype=float).reshape(-1) for k in keys]
        if all(r.size == n for r in rows):  # a cascade: layer -> per-image values
            return rows[-1], {"layers": [str(k) for k in keys], "curve": [float(nanmean(r)) for r in rows]}
        curve = [float(np.mean(r)) for r in rows]
        return np.array([float(nanmean(curve))]), {"steps": [str(k) for k in keys], "curve": curve}
    items = list(result) if isinstance(result, (list, tuple, np.ndarray)) else [result]
    arrays = [np.asarray(v, dtype=float).reshape(-1) for v in items]
    if len(arrays) == n and all(r.size > 1 for r in arrays):  # one curve per image
        return np.array([float(nanmean(r)) for r in arrays]), {"curves": [r.tolist() for r in arrays]}
    flat = np.concatenate(arrays) if arrays else np.array([np.nan])
    if flat.size == n:
        return flat, {}
    return np.array([float(nanmean(flat))]), {"values": flat.tolist()}


def records() -> list[MetricRecord]:
    out = []
    for cat, names in CATALOGUE.items():
        for cls_name in names:
            if cls_name in NATIVE:
                continue
            why = UNAVAILABLE.get(cls_name, lambda: None)()
            desc = f"Quantus {cls_name} ({cat}), run by Quantus" + ("; cannot run here (see docs)" if why else "")
            out.append(MetricRecord(
                f"quantus.{cls_name}", desc, QuantusFactory(cls_name),
                version="1", family=FAMILIES[cat], conformance=dict(CONFORMANCE.get(cls_name, {}))))
    return out


def _param_help(cls: type) -> dict[str, str]:
    """First line of each parameter's description in Quantus' numpy-style docstring."""
    lines, out = (inspect.getdoc(cls.__init__) or "").splitlines(), {}
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"^(\w+):\s*\S", line)
        if m and lines[i + 1].startswith(" "):
            out.setdefault(m.group(1), lines[i + 1].strip())
    return out


def _shown(v: Any) -> Any:
    """A default as the options table shows it (functions by name, not by address)."""
    return f"quantus {v.__name__}" if callable(v) else v


class QuantusFactory:
    """``factory(**options) -> QuantusMetric``; ``options`` is the option dataclass (built from
    the Quantus constructor's signature on first access: listing plugins does not import Quantus)."""

    def __init__(self, cls_name: str) -> None:
        self.cls_name = cls_name
        self.__doc__ = f"Quantus {cls_name}: its constructor's keyword arguments, softmax, batch_size, seed."
        self._options: type | None = None

    @property
    def options(self) -> type:
        if self._options is None:
            cls = quantus_class(self.cls_name)
            params, notes = inspect.signature(cls.__init__).parameters, _param_help(cls)
            notes.update(softmax="Score the softmax of the explained class instead of its logit (call option).",
                         batch_size="Images per Quantus batch (call option).",
                         seed="numpy and torch are seeded with seed + the cell's seed around the call.")
            defaults = {p: _shown(v.default) for p, v in params.items() if p not in FIXED}
            defaults.update(softmax=False, batch_size=64, seed=0)
            fields = [(k, Any, dataclasses.field(default=v, metadata={"help": notes.get(k, "")}))
                      for k, v in defaults.items()]
            self._options = dataclasses.make_dataclass(f"{self.cls_name}Options", fields, frozen=True)
            self._options.__module__ = __name__
        return self._options

    def __call__(self, **options: Any) -> QuantusMetric:
        allowed = [f.name for f in dataclasses.fields(self.options)]
        bad = sorted(set(options) - set(allowed))
        if bad:
            raise XaibenchError(f"metric quantus.{self.cls_name}: unknown option {bad[0]!r}; "
                                f"allowed: {', '.join(allowed)}")
        seed = options.pop("seed", 0)
        return QuantusMetric(self.cls_name, options, seed)


@xaibench.hookimpl
def xaibench_metrics():
    yield from records()
