"""CAM methods called through pytorch-grad-cam (Score-CAM, Ablation-CAM, FullGrad, KPCA-CAM,
FEM, Shapley-CAM, Finer-CAM), shared by their one-file plugins.

Why through the library: these are perturbation, kernel or second-order methods whose
reference implementation is the library's own; re-deriving them buys nothing the benchmark
needs. What the wrapper adds: the benchmark's targets (a :class:`~xaibench.contracts.Target`
becomes the library's class index on :class:`ScoreModel`'s outputs), the default layer of the
CAM family, chunking (``chunk_size`` images per call, also the library's ``batch_size`` for its
perturbation passes), silence (its progress bars), and the model left as found (train/eval
mode, parameter ``.grad``, the swapped-in ablation layer). Declared 2-D only: the library
resizes maps with ``cv2.resize`` and builds 2-D activation masks.

The maps are the library's: **min-max normalised to [0, 1] per image** after its ReLU and
resized bilinearly (``cv2.resize``), so their scale carries no information; every metric here
that compares scales across images normalises first or ranks.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xaibench.contracts import Classifier, ExplainContext, Target

# the shared helpers, in one place (the lead retargets this import at merge)
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images
from xaibench.kit.layers import describe_ceiling, resolve_layer
from xaibench.kit.options import require
from xaibench.kit.targets import ScoreModel
from .gradcam import GradCAM

LIBRARY = {"scorecam": "ScoreCAM", "ablationcam": "AblationCAM", "fullgrad": "FullGrad",
           "kpca-cam": "KPCA_CAM", "fem": "FEM", "shapleycam": "ShapleyCAM", "finercam": "FinerCAM"}


@contextlib.contextmanager
def left_as_found(model: torch.nn.Module) -> Any:
    """Restore the module tree (Ablation-CAM swaps its ablation layer in, even if the call
    fails half-way), the train/eval mode and every parameter's ``.grad`` after a library call
    (the library calls ``model.eval()`` and ``loss.backward()``); silence its progress bars."""
    tree = [(m, dict(m._modules)) for m in model.modules()]
    training = [(m, m.training) for m, _ in tree]
    grads = [(p, p.grad) for p in model.parameters()]
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for m, children in tree:
            m._modules.update(children)
        for m, t in training:
            m.training = t
        for p, g in grads:
            p.grad = g


def library_targets(variant: str, classes: torch.Tensor, scores: torch.Tensor | None, alpha: float) -> list:
    """The library's target objects per image; Finer-CAM's as its default construction with
    the image's class as the main category (comparisons: the classes closest in score)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

    if variant != "finercam":
        return [ClassifierOutputTarget(int(c)) for c in classes]
    out = scores.detach().cpu().numpy()
    picked = out[np.arange(len(out)), classes.cpu().numpy()]
    order = np.argsort(np.abs(out - picked[:, None]), axis=-1)
    comparisons = [1, 2, 3][:max(out.shape[1] - 1, 0)]
    return [FinerWeightedTarget(int(order[i, 0]), [int(order[i, j]) for j in comparisons], alpha)
            for i in range(len(out))]


@dataclass(frozen=True)
class LibraryCAM:
    """A pytorch-grad-cam method at a stage (``layer``: a stage name or ``auto``)."""

    layer: str | None = None

    variant = "scorecam"

    def __post_init__(self) -> None:
        require(self.layer is None or isinstance(self.layer, str), f"explainer {self.variant}", "layer", "a stage name or 'auto'")

    def library_kwargs(self) -> dict[str, Any]:
        """Extra constructor arguments of the library class (method options)."""
        return {}

    def build(self, f: ScoreModel, layer: torch.nn.Module, chunk: int) -> Any:
        import pytorch_grad_cam

        cls = getattr(pytorch_grad_cam, LIBRARY[self.variant])
        cam = cls(model=f, target_layers=[] if self.variant == "fullgrad" else [layer], **self.library_kwargs())
        cam.batch_size = max(1, int(chunk))  # Score-CAM / Ablation-CAM rows per pass
        return cam

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, f"explainer {self.variant}")
        resolve_layer(self.variant, model, self.layer)  # a wrong name fails before any pass
        name, _ = self.map_layer(model, tuple(x.shape[-2:]))
        f = ScoreModel(model, target)
        out = torch.empty(x.shape[0], *x.shape[-2:], device=x.device)
        with left_as_found(model), torch.enable_grad():
            for sl in chunks(x.shape[0], context.chunk_size):
                cam = self.build(f, model.stage(name), context.chunk_size)
                try:
                    out[sl] = torch.from_numpy(self.call(cam, f, x[sl].detach(), target.subset(sl))).to(x.device)
                finally:
                    (getattr(cam, "base_cam", cam)).activations_and_grads.release()
        return out.float()

    def call(self, cam: Any, f: ScoreModel, x: torch.Tensor, target: Target) -> np.ndarray:
        """One library call on a chunk: ``N×H×W`` numpy maps."""
        scores = None
        if self.variant == "finercam":
            with torch.no_grad():
                scores = f(x)
        alpha = float(getattr(self, "alpha", 1.0))
        return cam(input_tensor=x, targets=library_targets(self.variant, target.classes, scores, alpha))

    def describe(self, model: Classifier, images: torch.Tensor, masks: torch.Tensor) -> list:
        """The IoU ceiling of this map's resolution on ``masks`` (shown beside the scores)."""
        return describe_ceiling(self, model, images, masks)

    def map_layer(self, model: Classifier, image_size: tuple[int, int]) -> tuple[str, tuple[int, int]]:
        """The stage used for images of ``image_size`` and its map shape (as ``gradcam``)."""
        return GradCAM.map_layer(self, model, image_size)  # type: ignore[arg-type]
