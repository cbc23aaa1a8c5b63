"""The dataset-card figure: a few test slices per group with the ROI outlined.

Shared by the embedded datasets so every card looks the same; matplotlib with the Agg
backend (no display needed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

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
        idx = np.flatnonzero(labels == g)[:per_group]
        for j in range(per_group):
            ax = axes[g, j]
            ax.set_axis_off()
            if j >= len(idx):
                continue
            i = int(idx[j])
            ax.imshow(data.images[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            m = data.masks[i].numpy()
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors="#ff3030", linewidths=0.9)
            sid = data.subject_ids[i] if data.subject_ids else f"#{i}"
            sub = f"\n{vol[i] / 1000:.2f} cm³" if np.isfinite(vol[i]) else ""
            ax.set_title(f"{sid}{sub}", fontsize=8)
        axes[g, 0].text(-0.08, 0.5, f"{'AB'[g]}: {splits.groups[g]}", transform=axes[g, 0].transAxes,
                        rotation=90, ha="right", va="center", fontsize=10)
    fig.suptitle(f"{splits.name}: test slices, {splits.roi_name} outlined", fontsize=10)
    fig.tight_layout(h_pad=1.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
