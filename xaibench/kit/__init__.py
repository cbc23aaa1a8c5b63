"""The plugin toolkit: what built-in and third-party plugins share, public and documented.

Every piece works for any number of spatial dimensions unless its module says otherwise:
images ``N×1×*S``, maps and per-image masks ``N×*S``, ``S`` of length 2 or 3.

======================  ===================================================================
module                  what it gives
======================  ===================================================================
``kit.options``         :func:`option_factory` (unknown names → one line), :func:`require`,
                        :func:`one_of`, :func:`fractions`, :func:`pct`, :func:`pct_param`
``kit.checks``          :func:`check_images`, :func:`check_maps`, :func:`spatial_shape`,
                        :func:`map_shape`
``kit.spatial``         :func:`upsample`, :func:`gaussian_blur` (stated borders),
                        :func:`empty_maps`, :func:`flat`
``kit.topk``            :func:`ranks_desc`, :func:`topk_mask`, :func:`topk_maps` (ties by index)
``kit.regions``         :func:`mass_share` (NaN for a map with no mass), :func:`as_masks`,
                        :func:`box_mask`, :func:`named_mask`, :func:`mask_suffix`
``kit.batching``        :func:`chunks`, :func:`per_chunk`, :func:`input_gradient`,
                        :func:`target_scores`, :func:`seeded`, :func:`image_seed`, ``RowBatcher``
``kit.targets``         :func:`class_scores`, ``ScoreModel``, :func:`score_head`
``kit.layers``          :func:`stage_outputs`, :func:`pick_layer`, :func:`resolve_layer`,
                        :func:`iou_ceiling`, :func:`describe_ceiling`
``kit.stats``           :func:`nan_empty`, :func:`mean_chance`, :func:`iou_chance`, :func:`nanmean`
``kit.similarity``      batched :func:`spearman`, :func:`pearson`, :func:`ssim`, :func:`topq_iou`
``kit.perturb``         removal fillers and chunked removal passes (ROAD imputation: 2-D)
``kit.curves``          the deletion / insertion engine
``kit.triggers``        trigger patterns and placement, target regions (2-D)
``xaibench.atomic``     :func:`atomic_write` (re-exported here)
======================  ===================================================================

The names most plugins need are re-exported here: ``from xaibench.kit import check_images``.
"""
from __future__ import annotations

from xaibench.atomic import atomic_write

from .batching import RowBatcher, chunks, image_seed, input_gradient, per_chunk, seeded, target_scores
from .checks import SPATIAL_DIMS, check_images, check_maps, map_shape, spatial_shape
from .options import fractions, one_of, option_factory, pct, pct_param, require
from .regions import as_masks, box_mask, mask_suffix, mass_share, named_mask
from .spatial import empty_maps, flat, gaussian_blur, upsample
from .stats import mean_chance, nan_empty, nanmean
from .topk import ranks_desc, topk_mask, topk_maps

__all__ = [
    "SPATIAL_DIMS", "RowBatcher", "as_masks", "atomic_write", "box_mask", "check_images", "check_maps", "chunks",
    "empty_maps", "flat", "fractions", "gaussian_blur", "image_seed", "input_gradient", "map_shape", "mask_suffix",
    "mass_share", "mean_chance", "named_mask", "nan_empty", "nanmean", "one_of", "option_factory", "pct", "pct_param", "per_chunk",
    "ranks_desc", "require", "seeded", "spatial_shape", "target_scores", "topk_mask", "topk_maps", "upsample",
]
