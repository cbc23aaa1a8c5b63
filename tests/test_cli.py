"""The command line: one-line errors with documented exit codes, list, leaderboard formats."""
from __future__ import annotations

import subprocess
import sys

import pytest

from xaibench.cli import main
from xaibench.errors import EXIT_USAGE

from .conftest import TOY_PLUGIN


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if not line.startswith("xaibench: warning")]


@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "smok"], "unknown suite 'smok' (did you mean: smoke"),
    (["run", "--suite", "missing.toml"], "suite file missing.toml does not exist"),
    (["run", "--suite", "smoke", "--device", "tpu"], "--device tpu: use cpu, cuda or cuda:N"),
    (["run", "--suite", "smoke", "--plugin", "nope.py"], "--plugin nope.py: no such file"),
    (["run", "--suite", "smoke", "--dataset", "synthetic-hipocampus"], "unknown dataset 'synthetic-hipocampus'"),
    (["leaderboard", "--out", "no/such/dir"], "no/such/dir: no results.sqlite here"),
    (["list", "gizmo"], "unknown kind 'gizmo'"),
])
def test_user_errors_are_one_line_with_exit_2(argv, message, capsys):
    assert main(argv) == EXIT_USAGE
    lines = _err_line(capsys)
    assert len(lines) == 1 and message in lines[0], lines


def test_unknown_plugin_name_in_a_suite(tmp_path, capsys):
    s = tmp_path / "s.toml"
    s.write_text('datasets = ["toy-blobs"]\nbackbones = ["resnet18"]\nattacks = ["none"]\n'
                 'explainers = ["gradkam"]\nmetrics = ["iou"]\n')
    assert main(["run", "--suite", str(s), "--plugin", str(TOY_PLUGIN), "--out", str(tmp_path / "o")]) == EXIT_USAGE
    lines = _err_line(capsys)
    assert len(lines) == 1 and "unknown explainer 'gradkam' (did you mean: gradcam" in lines[0]


def test_bad_option_is_one_line(tmp_path, capsys):
    s = tmp_path / "s.toml"
    s.write_text('datasets = ["toy-blobs"]\nattacks = ["none"]\nexplainers = ["toy-grad"]\nmetrics = ["toy-mass"]\n'
                 '[[backbones]]\nname = "resnet18"\noptions = { depth = 3 }\n')
    assert main(["run", "--suite", str(s), "--plugin", str(TOY_PLUGIN), "--out", str(tmp_path / "o"),
                 "--quiet"]) == EXIT_USAGE
    lines = _err_line(capsys)
    assert len(lines) == 1 and "backbone 'resnet18'" in lines[0] and "depth" in lines[0]


def test_list_shows_every_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("explainers:", "metrics:", "datasets:", "backbones:", "attacks:", "suites:", "executors:"):
        assert kind in out
    assert "gradcam" in out and "smoke" in out and "resnet18" in out


def test_leaderboard_in_four_formats(tmp_path):
    s = tmp_path / "s.toml"
    s.write_text('name = "t"\nn_eval = 8\ndatasets = ["toy-blobs"]\nattacks = ["none"]\nexplainers = ["toy-grad"]\n'
                 'metrics = ["accuracy", "toy-mass"]\n'
                 '[[backbones]]\nname = "resnet18"\noptions = { width = 0.125, output_stride = 8, epochs = 1 }\n')
    out = tmp_path / "o"
    assert main(["run", "--suite", str(s), "--plugin", str(TOY_PLUGIN), "--out", str(out), "--quiet"]) == 0
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.tex", "leaderboard.html"):
        assert (out / name).stat().st_size > 100
    for fmt, probe in (("md", "| toy-grad"), ("latex", r"\toprule"), ("csv", "toy-mass"), ("html", "<table")):
        r = subprocess.run([sys.executable, "-m", "xaibench.cli", "leaderboard", "--out", str(out), "--format", fmt],
                           capture_output=True, text=True)
        assert r.returncode == 0 and probe in r.stdout, (fmt, r.stderr)


@pytest.mark.slow  # trains a tiny model on a tiny NIfTI cohort
def test_a_nifti_manifest_replaces_the_suites_dataset(tmp_path):
    """`run --suite S --dataset nifti:MANIFEST` runs the suite's grid on the user's scans and
    writes the same leaderboard tables, named after the manifest's dataset."""
    import runpy
    from pathlib import Path

    import pandas as pd

    example = Path(__file__).parents[1] / "examples" / "nifti-manifest" / "make_example.py"
    manifest = runpy.run_path(str(example))["make_cohort"](tmp_path / "cohort", n_per_group=10, size=32)
    suite = tmp_path / "mini.toml"
    suite.write_text('name = "mini"\nseeds = [0]\nn_eval = 8\nattacks = ["none"]\n'
                     'explainers = ["gradcam", "random"]\nmetrics = ["accuracy", "iou", "pointing-game"]\n'
                     '[[datasets]]\nname = "synthetic-hippocampus"\n'
                     '[[backbones]]\nname = "resnet18"\noptions = { width = 0.125, output_stride = 8, epochs = 1 }\n')
    out = tmp_path / "out"
    argv = ["run", "--suite", str(suite), "--dataset", f"nifti:{manifest}", "--out", str(out), "--quiet",
            "--device", "cpu"]
    assert main(argv) == 0
    lb = pd.read_csv(out / "leaderboard.csv")
    assert set(lb["dataset"]) == {"nifti"}, set(lb["dataset"])
    iou = lb[(lb["column"] == "iou")].set_index("explainer")
    assert set(iou.index) == {"gradcam", "random"} and iou["n"].min() > 0
    md = (out / "leaderboard.md").read_text()
    assert "### Models: nifti / resnet18" in md and "attack: none — localisation" in md
    assert main(argv) == 0  # a rerun finds everything stored


def test_a_reader_that_leaves_early_gets_no_traceback(monkeypatch):
    """``xaibench list | head -1``: the closed pipe ends the command quietly, exit status 0."""

    class ClosedPipe:
        def write(self, _text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            raise ValueError("no file descriptor")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["list"]) == 0
