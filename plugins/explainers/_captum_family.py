"""Shared pieces of the captum-backed explainers of the catalogue: feature segmentations for
the perturbation methods and the chunked call of a captum attribution.

Why segmentations: feature ablation, LIME, KernelSHAP and Shapley value sampling perturb
*features*, groups of pixels, and their cost grows with the number of features. Two are
offered, documented in docs/explainers.md:

* ``patches`` — a fixed grid of ``patch``×``patch`` squares (row-major ids; the last row and
  column are smaller when the size does not divide), the same for every image (``patch``³ cubes on volumes), so feature
  ``k`` is the same region in every image of a batch;
* ``slic`` — SLIC superpixels of each image (scikit-image, about ``segments`` regions,
  ``compactness`` 0.1 for [0, 1] grayscale), which follow the anatomy but differ per image;
  on volumes supervoxels (scikit-image segments 3-D arrays alike; on a volume without
  structure it may return a single region, which Kernel SHAP cannot regress on).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# the shared helpers, in one place (the lead retargets this import at merge)
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images
from xaibench.kit.targets import ScoreModel

SEGMENTATIONS = ("patches", "slic")


def patch_mask(size: tuple[int, ...], patch: int, device: torch.device) -> torch.Tensor:
    """``1×1×*S`` int64 feature ids of a grid of ``patch``-pixel squares (cubes in 3-D),
    row-major from 0."""
    ids = torch.zeros((1,) * len(size), dtype=torch.long, device=device)
    for axis, s in enumerate(size):  # row-major: ids · cells along this axis + index along it
        idx = torch.arange(s, device=device) // patch
        ids = ids * ((s + patch - 1) // patch) + idx.view([-1 if k == axis else 1 for k in range(len(size))])
    return ids.view(1, 1, *size)


def slic_mask(x: torch.Tensor, segments: int, compactness: float = 0.1) -> torch.Tensor:
    """``N×1×*S`` int64 SLIC superpixel ids (from 0) of each image of ``x`` (``N×1×*S``; scikit-image
    segments volumes too)."""
    from skimage.segmentation import slic

    out = [slic(img[0].detach().cpu().double().numpy(), n_segments=segments, compactness=compactness,
                channel_axis=None, start_label=0) for img in x]
    return torch.from_numpy(np.stack(out)[:, None].astype(np.int64)).to(x.device)


def feature_mask(kind: str, x: torch.Tensor, patch: int, segments: int) -> torch.Tensor:
    """The features of ``x`` (``N×1×H×W`` ids, or ``1×1×H×W`` when shared by all images)."""
    if kind == "patches":
        return patch_mask(tuple(x.shape[2:]), patch, x.device)
    return slic_mask(x, segments)


def per_image(mask: torch.Tensor, sl: slice) -> torch.Tensor:
    """The rows of a feature mask for the images ``sl`` (a shared ``1×…`` mask is kept)."""
    return mask if mask.shape[0] == 1 else mask[sl]


def chunked(x: torch.Tensor, chunk_size: int, attribute: Callable[[slice], torch.Tensor]) -> torch.Tensor:
    """``N×*S`` float32: ``attribute(sl)`` (``m×1×*S``) for each chunk of images, summed over
    the (single) input channel and detached."""
    out = torch.empty(x.shape[0], *x.shape[2:], device=x.device)
    for sl in chunks(x.shape[0], chunk_size):
        out[sl] = attribute(sl).detach().sum(dim=1)
    return out.float()


def gradient_attribution(method: type, who: str, model: torch.nn.Module, x: torch.Tensor, target,
                         chunk_size: int) -> torch.Tensor:
    """A captum method that needs only the model and the target class (guided backprop,
    deconvolution), on the target's scores, chunk by chunk."""
    check_images(x, who)
    algo = method(ScoreModel(model, target))
    cls = target.classes.to(x.device)
    with torch.enable_grad():
        return chunked(x, chunk_size, lambda sl: algo.attribute(x[sl].detach().clone(), target=cls[sl]))
