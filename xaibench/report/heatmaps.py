"""Heatmap grids: images × explainers, each map overlaid on its image with the ROI
contour; for attacked models a clean row and a triggered row per image, with the
attacker's target region and the trigger drawn.

The maps are read from the run's cache (``OUT/cache/maps/<hash>.pt``, the hash being the
maps cell's config hash, exactly as the evaluation wrote them), not recomputed: the report
shows what was scored. The images are rebuilt by loading the dataset plugin (its own
on-disk cache makes this cheap) and selecting the same evaluation subset.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..suite import CLEAN_ATTACK  # noqa: E402
from .data import ReportData  # noqa: E402
from .figures import Fig, Sink  # noqa: E402

ROI, REGION, TRIGGER = "lime", "red", "yellow"


def _norm(m: np.ndarray) -> np.ndarray:
    """Positive evidence scaled to [0, 1] by its 99.5th percentile (one hot pixel must not
    wash out the map)."""
    p = np.clip(m, 0, None)
    hi = float(np.percentile(p, 99.5)) if p.size else 0.0
    return np.clip(p / hi, 0, 1) if hi > 0 else p


def _contour(ax: Any, mask: np.ndarray | None, color: str, style: str = "solid") -> None:
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=0.9, linestyles=style)


def centre_slice(roi: np.ndarray) -> int | None:
    """For a D×H×W volume, the index along D through the ROI's centroid (the middle if the ROI
    is empty); None for a slice. Volumes are drawn as that one slice."""
    if roi.ndim != 3:
        return None
    zs = np.nonzero(roi.any(axis=(1, 2)))[0]
    return int(round(zs.mean())) if len(zs) else roi.shape[0] // 2


def _cut(a: np.ndarray | None, k: int | None) -> np.ndarray | None:
    return a if a is None or k is None or a.ndim != 3 else a[k]


def pick(labels: np.ndarray, k: int) -> list[int]:
    """``k`` images alternating between the groups (the first of each), in index order."""
    by = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    out: list[int] = []
    while len(out) < k and any(by):
        for lst in by:
            if lst and len(out) < k:
                out.append(int(lst.pop(0)))
    return out


class Images:
    """Datasets loaded through their plugins, once each."""

    def __init__(self, out: Path, plugin_files: tuple[str, ...]) -> None:
        from ..plugins import load

        self.out, self.registry, self._cache = out, load(plugin_files), {}

    def test_subset(self, ident: dict, data_seed: int, n_eval: int) -> Any:
        from ..cells import eval_index
        from ..plugins import instantiate, using_registry

        key = (ident.get("name"), repr(sorted(ident.get("options", {}).items())), data_seed)
        if key not in self._cache:
            ds = instantiate(self.registry, "dataset", ident["name"], dict(ident.get("options", {})))
            cache = self.out / "cache" / "datasets"
            cache.mkdir(parents=True, exist_ok=True)
            with using_registry(self.registry):  # the report's --plugin files, for wrapping datasets
                self._cache[key] = ds.load(seed=data_seed, cache_dir=cache)
        splits = self._cache[key]
        idx = eval_index(splits, n_eval, data_seed)
        return splits, idx


def heatmap_grids(data: ReportData, sink: Sink, plugin_files: tuple[str, ...], n_images: int = 4) -> list[Fig]:
    maps = data.done("maps")
    if maps.empty:
        data.skip("Heatmap grids", "no attribution maps in the store")
        return []
    try:
        images = Images(data.out, plugin_files)
    except Exception as exc:  # noqa: BLE001
        data.skip("Heatmap grids", f"plugins could not be loaded ({exc})")
        return []
    models = data.done("model").drop_duplicates("config_hash").set_index("config_hash")  # model id -> cell
    figs = []
    for (ds, bb, at), g in maps.groupby(["dataset", "backbone", "attack"], sort=False):
        seed = sorted(g["seed"])[0]
        g = g[g["seed"] == seed]
        cfg0 = g.iloc[0]["cfg"]
        mid = cfg0.get("model")
        what = f"Heatmaps {ds} / {bb} / {at}"
        if mid not in models.index:
            data.skip(what, "the model's cell is missing from the store")
            continue
        try:
            splits, idx = images.test_subset(models.loc[mid, "cfg"]["dataset"], int(cfg0.get("data_seed", 0)),
                                             int(cfg0.get("n_eval", 0)))
        except Exception as exc:  # noqa: BLE001 - e.g. a --plugin dataset not given, data moved
            data.skip(what, f"the dataset could not be loaded ({type(exc).__name__}: {exc}); pass its --plugin file")
            continue
        clean = splits.test.subset(idx)
        attacked = (models.loc[mid, "cfg"].get("attack") or {}).get("name", CLEAN_ATTACK) != CLEAN_ATTACK
        trig = region = trigger = None
        state_path = data.out / "cache" / "models" / f"{mid}.pt"
        if "triggered" in set(g["split"]) and state_path.exists():
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            if state.get("triggered_test") is not None:
                trig = state["triggered_test"]["images"][torch.as_tensor(idx)]
            region, trigger = state.get("region"), state.get("trigger")
        explainers = list(dict.fromkeys(g["explainer"]))
        loaded: dict[tuple[str, str], np.ndarray] = {}
        for _, r in g.iterrows():
            p = data.out / "cache" / "maps" / f"{r['config_hash']}.pt"
            if p.exists():
                m = torch.load(p, map_location="cpu", weights_only=True).float().numpy()
                if len(m) == len(idx):
                    loaded[(r["explainer"], r["split"])] = m
        if not loaded:
            data.skip(what, "its map files are not in the cache (cache/maps)")
            continue
        rows_split = ["clean"] + (["triggered"] if trig is not None else [])
        chosen = pick(clean.labels.numpy(), n_images)
        nr, nc = len(chosen) * len(rows_split), 1 + len(explainers)
        fig, axes = plt.subplots(nr, nc, figsize=(1.55 * nc, 1.6 * nr), squeeze=False)
        groups = splits.groups if len(splits.groups) == 2 else ("0", "1")
        reg = region.numpy().astype(bool) if isinstance(region, torch.Tensor) else None
        trg = trigger.numpy().astype(bool) if isinstance(trigger, torch.Tensor) else None
        for i, img_i in enumerate(chosen):
            for j, sp in enumerate(rows_split):
                row = axes[i * len(rows_split) + j]
                roi = clean.masks[img_i].numpy()
                k = centre_slice(roi)
                img = _cut((clean.images if sp == "clean" else trig)[img_i, 0].numpy(), k)
                roi = _cut(roi, k)
                for c, ax in enumerate(row):
                    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                    if c > 0:
                        m = loaded.get((explainers[c - 1], sp))
                        if m is None:
                            ax.text(0.5, 0.5, "no map", ha="center", va="center", transform=ax.transAxes,
                                    color="w", fontsize=7)
                        else:
                            ax.imshow(_norm(_cut(m[img_i], k)), cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
                    _contour(ax, roi, ROI)
                    if attacked:
                        _contour(ax, _cut(reg, k), REGION, "dashed")
                        if sp == "triggered":
                            _contour(ax, _cut(trg, k), TRIGGER)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if i == 0 and j == 0:
                        ax.set_title("image" if c == 0 else explainers[c - 1], fontsize=7)
                lab = int(clean.labels[img_i])
                row[0].set_ylabel(f"{groups[lab]} #{int(idx[img_i])}" + (f"\n{sp}" if len(rows_split) > 1 else ""),
                                  fontsize=7)
        fig.subplots_adjust(wspace=0.03, hspace=0.06)
        cap = (f"Seed {seed}: positive attribution (scaled to its 99.5th percentile, jet) over the image; "
               f"{ROI} contour: the ROI ({splits.roi_name}).")
        if clean.masks.ndim == 4:
            cap += " Volumes: the slice along the first axis through each ROI's centroid."
        if attacked:
            cap += (f" Dashed {REGION}: the attacker's target region; {TRIGGER}: the trigger. Each image is shown "
                    "clean and with the trigger.")
        figs.append(sink.save(fig, f"heatmaps-{ds}-{bb}-{at}", f"Heatmaps: {ds} / {bb} / attack {at}", cap))
    return figs
