"""The visual report: every figure kind is drawn from a store that holds its data (built
here directly, no training), figures missing their data become notes, and the HTML opened
in headless Chromium loads every image and shows every leaderboard table."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from xaibench.cells import _save_atomic, config_hash, eval_index
from xaibench.leaderboard.build import summary_of
from xaibench.leaderboard.table import build_tables
from xaibench.report import build_report
from xaibench.store import CellRecord, Store

from .conftest import TOY_PLUGIN

EXPLAINERS = ("toy-grad", "edge")
N_EVAL, DATA_SEED = 8, 0
TOY = {"name": "toy-blobs", "options": {}}


def _keys(ds, at, seed, explainer="-", metric="model", split="clean"):
    return {"suite": "syn", "dataset": ds, "backbone": "resnet18", "attack": at, "seed": seed,
            "explainer": explainer, "metric": metric, "split": split}


def _model(store, ds, dataset_ident, at, seed):
    cfg = {"dataset": dataset_ident, "attack": {"name": at}, "seed": seed}
    mid = config_hash(cfg)
    hist = {"train_loss": [0.7, 0.5, 0.4], "val_loss": [0.7, 0.6, 0.55], "val_accuracy": [0.5, 0.8, 0.9]}
    store.write(CellRecord(f"model-{mid}", "model", _keys(ds, at, seed), mid, cfg, "done", 1.0,
                           [("accuracy", None, -1, 0.9, 0.5, True), ("train_seconds", None, -1, 3.0, None, False)],
                           [("history", None, hist)]))
    return mid


def _metric(store, ds, at, seed, metric, explainer, split="clean", value=0.5, extra=None):
    cfg = {"ds": ds, "at": at, "seed": seed, "metric": metric, "explainer": explainer, "split": split}
    cid = config_hash(cfg)
    rows = [(metric, None, i, value + 0.01 * i, 0.1, True) for i in range(N_EVAL)]
    store.write(CellRecord(cid, "metric", _keys(ds, at, seed, explainer, metric, split), cid, cfg, "done", 0.1,
                           rows, [(metric, None, extra)] if extra else []))


def _delta_t(store, ds, at, seed, explainer, split, rng):
    """As the delta-t plugin stores it: one score per q (``delta-t@5%``), the two drops in the extras."""
    cfg = {"ds": ds, "at": at, "seed": seed, "metric": "delta-t", "explainer": explainer, "split": split}
    cid = config_hash(cfg)
    rows, extras = [], []
    for q in (1, 5, 10, 20):
        rows += [(f"delta-t@{q}%", None, i, float(rng.normal(q / 20, 0.1)), 0.0, True) for i in range(N_EVAL)]
        extras.append((f"delta-t@{q}%", None, {"delta_top": q / 10, "delta_random": q / 40, "draws": 4}))
    store.write(CellRecord(cid, "metric", _keys(ds, at, seed, explainer, "delta-t", split), cid, cfg, "done", 0.1,
                           rows, extras))


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    """A store with data for every figure: maps (clean and triggered), curves, matrices,
    a strength sweep of a dataset and histories."""
    from xaibench.plugins import load

    out = tmp_path_factory.mktemp("report") / "out"
    store = Store(out / "results.sqlite")
    splits = load([TOY_PLUGIN]).records["dataset"]["toy-blobs"].factory().load(seed=DATA_SEED, cache_dir=out)
    idx = eval_index(splits, N_EVAL, DATA_SEED)
    rng = np.random.default_rng(0)
    h, w = splits.image_size
    for at in ("none", "backdoor"):
        for seed in (0, 1):
            mid = _model(store, "toy-blobs", TOY, at, seed)
            splits_here = ["clean", "triggered"] if at != "none" else ["clean"]
            if at != "none" and seed == 0:
                trig = splits.test.images.clone()
                trig[:, :, :4, :4] = 1.0
                region = torch.zeros(h, w, dtype=torch.bool)
                region[-10:, -10:] = True
                trigger = torch.zeros(h, w, dtype=torch.bool)
                trigger[:4, :4] = True
                _save_atomic({"triggered_test": {"images": trig, "labels": splits.test.labels,
                                                 "masks": splits.test.masks, "subject_ids": []},
                              "region": region, "trigger": trigger}, out / "cache" / "models" / f"{mid}.pt")
            for e in EXPLAINERS:
                for sp in splits_here:
                    mcfg = {"model": mid, "explainer": {"name": e}, "split": sp, "n_eval": N_EVAL,
                            "data_seed": DATA_SEED, "seed": seed}
                    mh = config_hash(mcfg)
                    _save_atomic(torch.from_numpy(rng.random((len(idx), h, w), dtype=np.float32)),
                                 out / "cache" / "maps" / f"{mh}.pt")
                    store.write(CellRecord(f"maps-{mh}", "maps", _keys("toy-blobs", at, seed, e, "maps", sp), mh,
                                           mcfg, "done", 0.1, [("seconds_per_image", None, -1, 0.01, None, False)]))
                    _delta_t(store, "toy-blobs", at, seed, e, sp, rng)
                    _metric(store, "toy-blobs", at, seed, "deletion", e, sp, extra={
                        "fractions": [0, 0.25, 0.5, 1.0], "curve": rng.random((N_EVAL, 4)).tolist()})
                    _metric(store, "toy-blobs", at, seed, "randomization", e, sp, extra={
                        "layers": ["head", "layer4", "layer3"], "similarity": [0.9, 0.5, 0.2], "threshold": 0.3})
            m = rng.random((2, 2))
            _metric(store, "toy-blobs", at, seed, "agreement", "*", extra={
                "explainers": list(EXPLAINERS), "spearman": ((m + m.T) / 2).tolist(), "iou": np.eye(2).tolist()})
    for s in (0.2, 0.5, 1.0):  # a positive-control strength sweep
        title = f"cc[strength={s}]"
        _model(store, title, {"name": "corrupted-control", "options": {"strength": s, "corruption": "zero"}}, "none", 0)
        for e in EXPLAINERS:
            _metric(store, title, "none", 0, "iou", e, value=s * (0.5 if e == "edge" else 0.8))
    store.close()
    return out


@pytest.fixture(scope="module")
def report_html(full_store):
    return build_report(full_store, plugin_files=(str(TOY_PLUGIN),), n_images=2)


def test_report_draws_every_figure_kind_as_png_and_pdf(full_store, report_html):
    html_path = report_html
    assert html_path == full_store / "report" / "report.html"
    page = html_path.read_text()
    figs = full_store / "figures"
    slugs = sorted(p.stem for p in figs.glob("*.png"))
    assert sorted(p.stem for p in figs.glob("*.pdf")) == slugs
    for p in figs.glob("*.pdf"):
        assert p.read_bytes()[:5] == b"%PDF-"
    prefixes = {"heatmaps-toy-blobs-resnet18-none", "heatmaps-toy-blobs-resnet18-backdoor", "curves-delta-t-over-q",
                "curves-deletion", "curves-randomization", "agreement-agreement-toy-blobs-resnet18-none-clean",
                "sweep-dataset-cc-strength", "training-toy-blobs-resnet18",
                "training-corrupted-control-resnet18"}
    for p in prefixes:
        assert any(s.startswith(p) for s in slugs), (p, slugs)
    assert page.count("<img ") == len(slugs)  # every figure embedded, none only linked
    assert page.count("data:image/png;base64,") == len(slugs)
    for title in ("ΔT curves over q", "Deletion, insertion and ROAD curves", "Randomisation curves",
                  "Agreement between explainers", "Positive controls", "Heatmaps", "Training curves"):
        assert f"{title}" in page
    assert "Not shown" in page and "Attack sweeps" in page  # the only absent kind is explained, not an error
    assert "Heatmap" not in page.split("id='not-shown'")[1]
    assert "src='/" not in page and "http" not in page.split("<body>")[1]  # self-contained
    assert (figs / "README.md").read_text().count("![") == len(slugs)


def test_report_publishes_the_pngs_with_their_index(full_store, tmp_path):
    dest = tmp_path / "leaderboard" / "figures" / "toy"
    dest.mkdir(parents=True)
    (dest / "stale.png").write_bytes(b"old")  # a figure an earlier report had
    build_report(full_store, plugin_files=(str(TOY_PLUGIN),), n_images=2, publish=dest, command="xaibench report X")
    published = sorted(p.stem for p in dest.glob("*.png"))
    assert published == sorted(p.stem for p in (full_store / "figures").glob("*.png"))
    assert "stale" not in published and not list(dest.glob("*.pdf"))
    index = (dest / "README.md").read_text()
    assert "`xaibench report X`" in index and index.count("![") == len(published) and "[PDF]" not in index
    for stem in published:
        assert f"]({stem}.png)" in index and (dest / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"


def test_heatmap_grid_shows_clean_and_triggered_rows_for_attacked_models(full_store, monkeypatch):
    import matplotlib.pyplot as plt

    shapes = {}
    real = plt.subplots

    def spy(nr=1, nc=1, **kw):
        fig, ax = real(nr, nc, **kw)
        shapes[len(shapes)] = (nr, nc)
        return fig, ax

    monkeypatch.setattr(plt, "subplots", spy)
    from xaibench.report.data import ReportData
    from xaibench.report.figures import Sink
    from xaibench.report.heatmaps import heatmap_grids

    data = ReportData.load(full_store)
    figs = heatmap_grids(data, Sink(full_store / "figs-test"), (str(TOY_PLUGIN),), n_images=3)
    assert [f.slug for f in figs] == ["heatmaps-toy-blobs-resnet18-none", "heatmaps-toy-blobs-resnet18-backdoor"]
    assert list(shapes.values()) == [(3, 1 + 2), (3 * 2, 1 + 2)]  # images (× clean/triggered) × (image + explainers)
    assert "Dashed red: the attacker's target region" in figs[1].caption


def test_missing_data_becomes_notes_not_errors(full_store, tmp_path):
    out = tmp_path / "bare"
    out.mkdir()
    shutil.copy(full_store / "results.sqlite", out / "results.sqlite")  # no caches: maps and images unavailable
    page = build_report(out).read_text()  # and no --plugin: the toy dataset is unknown
    notes = page.split("id='not-shown'")[1]
    assert "Heatmaps toy-blobs / resnet18 / none: the dataset could not be loaded" in notes
    assert "Training curves" not in notes


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (the CI script installs it)")
def test_report_renders_in_headless_chromium(full_store, report_html, tmp_path):
    html_path = report_html
    n_tables = len(build_tables(summary_of(full_store)))
    probe = tmp_path / "probe.html"  # the report plus a script that inspects it once loaded
    probe.write_text(html_path.read_text().replace("</body>", """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
    tables: document.querySelectorAll('table.leaderboard').length,
    rows: [...document.querySelectorAll('table.leaderboard')].map(t => t.tBodies[0].rows.length)});
  document.body.appendChild(pre);
});
</script></body>"""))
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout)
    assert m, r.stderr[-2000:]
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["images"] == len(list((full_store / "figures").glob("*.png"))) > 5
    assert got["loaded"] == got["images"]
    assert got["tables"] == n_tables >= 3 and all(n >= 1 for n in got["rows"])


def test_volumes_are_drawn_as_the_slice_through_the_roi_centroid():
    import numpy as np

    from xaibench.report.heatmaps import _cut, centre_slice

    roi = np.zeros((10, 4, 4), bool)
    roi[6:9, 1:3, 1:3] = True
    assert centre_slice(roi) == 7 and centre_slice(np.zeros((10, 4, 4), bool)) == 5
    assert centre_slice(roi[0]) is None  # a slice stays a slice
    vol = np.arange(160.0).reshape(10, 4, 4)
    sl = vol[0]
    assert (_cut(vol, 7) == vol[7]).all() and _cut(sl, None) is sl and _cut(sl, 3) is sl and _cut(None, 3) is None
