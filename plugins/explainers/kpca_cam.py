"""KPCA-CAM (Karmani et al., 2024), plugin name ``kpca-cam``.

Eigen-CAM with kernel PCA: the first kernel principal component (scikit-learn ``KernelPCA``,
``kernel``, ``gamma``) of the stage's activations, then ReLU. Class-agnostic (the target is
not used); the component's sign is the solver's.
Through pytorch-grad-cam (see ``_library_cams``): the library's maps, **min-max normalised to
[0, 1] per image**, resized bilinearly; 2-D models only. Non-negative; larger = more evidence.

Options: ``layer`` — a stage name or ``auto`` (default: the deepest stage whose map is at least
8×8 cells, as ``gradcam``).
"""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.options import option_factory, require
from ._library_cams import LibraryCAM

KERNELS = ("sigmoid", "rbf", "poly", "cosine", "linear")


@dataclass(frozen=True)
class KPCACAM(LibraryCAM):
    """KPCA-CAM through pytorch-grad-cam."""

    kernel: str = "sigmoid"
    """scikit-learn KernelPCA kernel: sigmoid, rbf, poly, cosine or linear"""
    gamma: float | None = None
    """kernel coefficient (None: 1 / channels, scikit-learn's default)"""

    variant = "kpca-cam"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.kernel in KERNELS, "explainer kpca-cam", "kernel", f"one of {', '.join(KERNELS)}")
        require(self.gamma is None or (isinstance(self.gamma, (int, float)) and self.gamma > 0), "explainer kpca-cam", "gamma", "a number > 0 or unset")

    def library_kwargs(self) -> dict:
        return {"kernel": self.kernel, "gamma": self.gamma}


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("kpca-cam",
                          "KPCA-CAM at a feature stage (pytorch-grad-cam; kernel PCA of activations, class-agnostic)",
                          option_factory("explainer kpca-cam", KPCACAM))
