"""The bad-input corpus: every user-side fault (and every hostile file or name) gives the
documented exit code, exactly one line on standard error, no traceback, and leaves the
results already stored intact. Each case starts from a copy of one tiny finished run."""
from __future__ import annotations

import errno
import os
import shutil
import socket
import json
from pathlib import Path

import pytest

from xaibench.cli import main

from .faults_helpers import finished_run, payload_bytes, run_argv, snapshot, suite_file, survives


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory.mktemp("corpus"))


def _suite_text(t: Path, text: str) -> Path:
    p = t / "bad.toml"
    p.write_text(text)
    return p


def _tiny(t: Path, **kw) -> Path:
    return suite_file(t, **kw)


def _read_only(t, out, mp):
    real = os.open

    def deny(path, *a, **k):
        if str(path).startswith(str(out)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)

    mp.setattr(os, "open", deny)
    return run_argv(_tiny(t), out)


def _disk_full(t, out, mp):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr(os, "fsync", full)  # every artifact goes through atomic_write's fsync
    return run_argv(_tiny(t, explainers='"toy-grad", "random"'), out)


def _not_a_db(t, out, mp):
    (out / "results.sqlite").unlink()
    for p in out.glob("results.sqlite-*"):
        p.unlink()
    (out / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    return run_argv(_tiny(t), out)


def _status_not_a_db(t, out, mp):
    _not_a_db(t, out, mp)
    return ["status", "--out", str(out)]


def _malformed_pending(t, out, mp):
    (out / "pending").mkdir(exist_ok=True)
    (out / "pending" / "metric-0123.json").write_text('{"cell_id": "metric-0123", "kind": ')
    return ["merge", str(out), "--out", str(t / "merged")]


def _pickle_pending(t, out, mp):
    (out / "pending").mkdir(exist_ok=True)
    (out / "pending" / "model-x.pkl").write_bytes(payload_bytes(t / "pwned"))
    return ["merge", str(out), "--out", str(t / "merged")]


def _locked(t, out, mp):
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0,
                                           "command": "xaibench run --suite tiny"}))
    return run_argv(_tiny(t), out)


def _out_is_file(t, out, mp):
    f = t / "afile"
    f.write_text("x")
    return run_argv(_tiny(t), f)


def _publish_is_file(t, out, mp):
    f = t / "afile"
    f.write_text("x")
    return ["leaderboard", "--out", str(out), "--suite", "tiny", "--publish", str(f)]


def _name_case(name):
    return lambda t, out, mp: run_argv(_tiny(t, name=name, file="s.toml"), out)


def _label_case(label):
    return lambda t, out, mp: run_argv(_tiny(t, explainers='{ name = "toy-grad", label = "%s" }' % label), out)


def _text_case(text):
    return lambda t, out, mp: run_argv(_suite_text(t, text), out)


GRID = ('datasets = ["toy-blobs"]\nbackbones = ["resnet18"]\nattacks = ["none"]\nexplainers = ["toy-grad"]\n'
        'metrics = ["toy-mass"]\n')

CASES = {
    # the results folder
    "out-is-a-file": (_out_is_file, 2, "is a file, not a folder"),
    "folder-read-only": (_read_only, 2, "the folder is read-only"),
    "results-not-a-database": (_not_a_db, 2, "results.sqlite in "),
    "disk-full": (_disk_full, 2, "disk full while writing"),
    "folder-in-use": (_locked, 2, "is in use by pid"),
    "malformed-pending-record": (_malformed_pending, 2, "metric-0123.json: not a readable cell record"),
    "status-not-a-database": (_status_not_a_db, 2, "is not a SQLite database; move it away"),
    # options and names of plugins
    "option-wrong-type": (lambda t, out, mp: run_argv(_tiny(t, epochs='"4"'), out), 2,
                          "backbone resnet18: option epochs must be an integer, got '4'"),
    "option-wrong-literal": (lambda t, out, mp: run_argv(_suite_text(t, GRID.replace(
        'backbones = ["resnet18"]', 'backbones = [{ name = "resnet18", options = { mode = "fast" } }]')), out), 2,
        "backbone resnet18: option mode must be one of 'finetune', 'partial', 'probe', got 'fast'"),
    "option-unknown": (lambda t, out, mp: run_argv(_suite_text(t, GRID.replace(
        'backbones = ["resnet18"]', 'backbones = [{ name = "resnet18", options = { depth = 3 } }]')), out), 2,
        "depth"),
    "unknown-plugin": (_text_case(GRID.replace("toy-grad", "toy-grd")), 2, "unknown explainer 'toy-grd'"),
    # suite files
    "suite-missing": (lambda t, out, mp: run_argv(t / "nope.toml", out), 2, "does not exist"),
    "suite-invalid-toml": (_text_case("name = [\n"), 2, "invalid TOML"),
    "suite-missing-key": (_text_case(GRID.replace('metrics = ["toy-mass"]\n', "")), 2, "missing key 'metrics'"),
    "suite-unknown-key": (_text_case(GRID + "epochs = 3\n"), 2, "unknown key 'epochs'"),
    "suite-seeds-not-ints": (_text_case(GRID + 'seeds = ["a"]\n'), 2, "'seeds' must be a non-empty list"),
    "suite-negative-n-eval": (_text_case(GRID + "n_eval = -1\n"), 2, "'n_eval' must be a non-negative integer"),
    "suite-duplicate-label": (_text_case(GRID.replace('["toy-grad"]', '["toy-grad", "toy-grad"]')), 2, "twice"),
    "suite-bad-target": (_text_case(GRID + 'target = "softmax"\n'), 2, "target.kind 'softmax'"),
    # command line
    "bad-device": (lambda t, out, mp: run_argv(_tiny(t), out, "--device", "tpu"), 2, "--device tpu"),
    "missing-plugin-file": (lambda t, out, mp: ["run", "--suite", str(_tiny(t)), "--plugin", str(t / "no.py"),
                                                "--out", str(out)], 2, "no such file"),
    "dataset-path-not-taken": (lambda t, out, mp: run_argv(_tiny(t), out, "--dataset", "toy-blobs:x.csv"), 2,
                               "takes no path argument"),
    "merge-source-not-a-folder": (lambda t, out, mp: ["merge", str(t / "none"), "--out", str(t / "m")], 2,
                                  "is not a folder"),
    "merge-negative-rtol": (lambda t, out, mp: ["merge", str(out), "--out", str(t / "m"), "--rtol", "-1"], 2,
                            "must be >= 0"),
    "report-zero-images": (lambda t, out, mp: ["report", "--out", str(out), "--images", "0"], 2,
                           "must be at least 1"),
    "publish-is-a-file": (_publish_is_file, 2, "--publish"),
    # security: names that are paths or markup, files that are pickles
    "suite-name-traversal": (_name_case("../../escape"), 2, "'name': '../../escape' is not a valid name"),
    "suite-name-absolute": (_name_case("/tmp/x"), 2, "is not a valid name"),
    "suite-name-markup": (_name_case("<b>x</b>"), 2, "is not a valid name"),
    "label-html-injection": (_label_case("<b>x</b><img src=x onerror=alert(1)>"), 2, "is not a valid label"),
    "label-markdown-pipe": (_label_case("a | b"), 2, "is not a valid label"),
    "label-path": (_label_case("../../x"), 2, "is not a valid label"),
    "publish-name-traversal": (lambda t, out, mp: ["leaderboard", "--out", str(out), "--suite", "../x",
                                                   "--publish", str(t / "pub")], 2, "is not a valid name"),
    "pickled-pending-record": (_pickle_pending, 2, "old pickled result file, not read"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, base, tmp_path, monkeypatch, capsys):
    make, code, message = CASES[case]
    out = tmp_path / "out"
    shutil.copytree(base, out)
    before = snapshot(out)
    db_bytes = (out / "results.sqlite").read_bytes()
    argv = make(tmp_path, out, monkeypatch)
    got = main(argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1, lines
    assert message in lines[0] and "Traceback" not in err
    if case in ("results-not-a-database", "status-not-a-database"):
        assert "results.sqlite in " in lines[0] and "is not a SQLite database; move it away to start fresh" in lines[0]
        assert (out / "results.sqlite").read_bytes() != db_bytes  # (the planted file, left alone)
    else:
        assert survives(before, out)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path.parent / "escape").exists()  # nothing written outside where the user pointed
