"""The dataset-card figure: a few test slices per group with the ROI shown in red.

Shared by the embedded datasets so every card looks the same; matplotlib with the Agg
backend (no display needed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap

_RED = ListedColormap(["#ff2020"])

from xaibench.contracts import DatasetSplits


def slices_figure(splits: DatasetSplits, path: Path, per_group: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = splits.test if len(splits.test) else splits.train
    labels = data.labels.numpy()
    vol = np.asarray(data.meta.get("hippocampal_volume", np.full(len(data), np.nan)), float)
    fig, axes = plt.subplots(2, per_group, figsize=(2.1 * per_group, 5.0), squeeze=False)
    for g in (0, 1):
        idx = np.flatnonzero(labels == g)
        if np.isfinite(vol[idx]).all() and len(idx):  # typical members: volume nearest the group median
            idx = idx[np.argsort(np.abs(vol[idx] - np.median(vol[idx])), kind="stable")]
        idx = np.sort(idx[:per_group])
        for j in range(per_group):
            ax = axes[g, j]
            ax.set_axis_off()
            if j >= len(idx):
                continue
            i = int(idx[j])
            ax.imshow(data.images[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            m = data.masks[i].numpy()
            if m.any():  # a translucent fill, so what borders the region stays visible
                ax.imshow(np.ma.masked_where(~m, m), cmap=_RED, alpha=0.35, vmin=0, vmax=1,
                          interpolation="nearest")
            sid = data.subject_ids[i] if data.subject_ids else f"#{i}"
            sub = f"\n{vol[i] / 1000:.2f} cm³" if np.isfinite(vol[i]) else ""
            ax.set_title(f"{sid}{sub}", fontsize=8)
        axes[g, 0].text(-0.08, 0.5, f"{'AB'[g]}: {splits.groups[g]}", transform=axes[g, 0].transAxes,
                        rotation=90, ha="right", va="center", fontsize=10)
    typical = " (volume nearest each group's median)" if np.isfinite(vol).all() else ""
    fig.suptitle(f"{splits.name}: test slices{typical}, {splits.roi_name} in red", fontsize=10)
    fig.tight_layout(h_pad=1.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
