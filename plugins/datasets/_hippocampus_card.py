"""The measures on the card of ``synthetic-hippocampus``: where the group difference lies per
mask, and what the mean-training-mask baseline scores. Pure functions of the generated arrays,
for slices (``N×H×W``) and volumes (``N×D×H×W``) alike; kept apart so the plugin module stays small."""
from __future__ import annotations

import numpy as np

CF_MASKS = ("roi", "evidence", "brain")  # masks the card measures the counterfactual difference in


def group_difference_share(a: dict[str, np.ndarray], seed: int) -> dict:
    """Where the group difference lies, per mask (roi, evidence, brain), measured three ways.

    * ``population``: D = |E[image | B] − E[image | A]| per pixel, noise-free, from the
      paired renders (every subject as it is and in the other group: the mean of B − A
      over subjects estimates the population group difference without sampling noise);
      the share of ΣD on pixels weighted by how often the mask covers them (``weighted``)
      and on pixels it covers in at least half the images (``majority``);
    * ``per_image``: the mean over images of the share of |own − other-group version| that
      lies inside that image's own mask;
    * ``sample``: D from the noisy images themselves (group means of this draw), with
      ``noise_floor`` = ΣD under permuted labels over ΣD: near 1 means the sample
      difference is mostly noise that every region collects in proportion to its area."""
    masks = {"roi": a["masks"], "evidence": a["mask_evidence"], "brain": a["mask_brain"]}
    images, labels = a["images"][:, 0], a["labels"]

    def diff(lab: np.ndarray) -> np.ndarray:
        return np.abs(images[lab == 1].mean(0) - images[lab == 0].mean(0))

    def shares(d: np.ndarray) -> dict:
        out = {}
        for name, m in masks.items():
            freq = m.mean(0)
            out[name] = {"weighted": float((d * freq).sum() / d.sum()),
                         "majority": float(d[freq >= 0.5].sum() / d.sum())}
        return out

    sample = diff(labels)
    perm = np.random.default_rng([int(seed), 0xD1FF]).permutation(labels)
    return {"population": shares(np.abs(a["cf_group_difference"])),
            "per_image": {m: float(np.mean(a[f"cf_share_{m}"])) for m in CF_MASKS},
            "sample": {**shares(sample), "noise_floor": float(diff(perm).sum() / sample.sum())}}


def prior_scores(a: dict[str, np.ndarray], key: str) -> dict[str, float]:
    """What the ``roi-prior`` baseline (the mean training mask) scores on the test images:
    IoU of its top-|mask| pixels, pointing game (share of its tied maximum inside) and
    energy share, the same definitions as the metrics of those names."""
    prior = a[key][a["split"] == 0].mean(0).ravel()
    order = np.argsort(-prior, kind="stable")
    top = prior == prior.max()
    iou, hit, energy = [], [], []
    for m in a[key][a["split"] == 2].reshape(-1, prior.size):
        area = int(m.sum())
        if area == 0:
            continue
        sel = np.zeros(prior.size, bool)
        sel[order[:area]] = True
        iou.append((sel & m).sum() / (sel | m).sum())
        hit.append(m[top].mean())
        energy.append((prior * m).sum() / prior.sum())
    return {"iou": float(np.mean(iou)), "pointing-game": float(np.mean(hit)), "energy-in-roi": float(np.mean(energy))}
