"""Packaging: every built-in plugin file is announced through the entry-point group (and
nothing else is); the README's two commands and CI's command agree."""
from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_plugin_file_has_an_entry_point_and_vice_versa():
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["xaibench"]
    declared = set(eps.values())
    files = {f"xaibench_plugins.{p.parent.name}.{p.stem}" for p in (ROOT / "plugins").glob("*/*.py")
             if not p.name.startswith("_")}
    files.add("xaibench_plugins.suites")
    assert files == declared, f"missing entry points: {files - declared}; stale: {declared - files}"
    installed = {ep.value for ep in metadata.entry_points(group="xaibench") if ep.dist.name == "xaibench"}
    assert declared == installed, "reinstall (pip install -e .) so the installed metadata matches pyproject.toml"


def test_plugins_install_under_their_own_namespace():
    import xaibench_plugins.backbones.resnet as mod

    assert Path(mod.__file__).parent.parent.name == "plugins"
    assert "plugins" not in {p.name for p in metadata.distribution("xaibench").files or [] if "/" not in str(p)}


def test_readme_quick_start_has_two_commands_and_ci_runs_the_test_one_verbatim():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    run, test = commands
    assert "xaibench run --suite medical-backdoor" in run and "pip install" in run
    assert "pytest" in test and "pip install" in test
    assert test in (ROOT / ".ci" / "run").read_text()
