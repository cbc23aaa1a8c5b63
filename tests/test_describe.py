"""Plugin options read from the code: discovery, help lines, the CLI, and the docs that list them."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xaibench.cli import main
from xaibench.describe import markdown, options_class, plugin_options, record_options
from xaibench.plugins import DISABLE_ENV, load

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "XAIBENCH_DISABLE_EXTERNAL_PLUGINS=1 xaibench list --options --markdown > docs/options.md"


@dataclass(frozen=True)
class _Opts:
    """Options: ``gamma`` — from the docstring paragraph; ``delta`` (default 2)."""

    alpha: int = 1
    """From the attribute docstring. Second sentence dropped."""
    beta: str = "x"  # from the comment
    gamma: float = 0.5
    delta: int = 2
    eps: tuple[int, ...] = field(default=(1,), metadata={"help": "from metadata"})
    arch: str = "bound"


class _Holder:
    def __init__(self, options: _Opts) -> None:
        self.o = options


def _closure_factory():
    arch = "resnet18"

    def make(**options) -> _Opts:
        return _Opts(arch=arch, **options)

    return make


def _returns_holder(**options) -> _Holder:
    return _Holder(_Opts(**options))


def _signature(size: int = 3, *, mode: str = "a") -> object:
    return object()


def test_options_come_from_the_dataclass_with_their_help():
    opts = {o.name: o for o in plugin_options(_closure_factory())}
    assert "arch" not in opts  # set by the factory itself, not an option
    assert opts["alpha"].help == "From the attribute docstring."
    assert opts["beta"].help == "from the comment" and opts["beta"].default == "'x'"
    assert opts["gamma"].help == "from the docstring paragraph"
    assert opts["delta"].help == ""  # "(default 2)" only repeats the default
    assert opts["eps"].help == "from metadata" and opts["eps"].type == "tuple[int, ...]"
    assert options_class(_returns_holder) is _Opts and options_class(_Opts) is _Opts
    sig = plugin_options(_signature)
    assert [(o.name, o.default, o.type) for o in sig] == [("size", "3", "int"), ("mode", "'a'", "str")]
    assert plugin_options(lambda **kw: None) is None


def _builtins(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "1")
    return load([])


def test_docs_options_md_is_generated_from_the_code(monkeypatch):
    text = markdown(_builtins(monkeypatch))
    assert (ROOT / "docs" / "options.md").read_text() == text, f"docs/options.md is stale; run {REGENERATE}"


def test_every_option_of_every_builtin_is_in_docs_options_md_and_nothing_else(monkeypatch):
    reg = _builtins(monkeypatch)
    doc, section, documented = (ROOT / "docs" / "options.md").read_text(), None, set()
    for line in doc.splitlines():
        if line.startswith("### "):
            section = line.strip("#` ")
        elif line.startswith("| `") and section:
            documented.add((section, line.split("`")[1]))
    actual = {(name, o.name) for kind in ("explainer", "metric", "dataset", "backbone", "attack", "executor")
              for name in reg.names(kind) for o in record_options(reg.records[kind][name], kind) or ()}
    assert documented - actual == set(), "documented options that do not exist"
    assert actual - documented == set(), "options nobody documented"
    for must in ("mode", "weights", "key_map", "lr", "epochs"):
        assert ("resnet50", must) in documented
    assert {("corrupted-control", "source"), ("corrupted-control", "source_group")} <= documented
    assert {("dask", "address"), ("dask", "workers"), ("slurm", "cluster")} <= documented  # executors' own keys


def _table_options(page: str, heading: str) -> set[str]:
    """Option names in the first column of the table under ``heading`` in a docs page."""
    text = (ROOT / "docs" / page).read_text()
    body = text.split(heading, 1)[1]
    body = re.split(r"\n#+ ", body, maxsplit=1)[0]
    names = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`(\w+)`", line.split("|")[1]))
    return names


def test_hand_written_option_tables_match_the_dataclasses():
    from xaibench_plugins.backbones.resnet import ResNetBuilder
    from xaibench_plugins.datasets.nifti import NiftiOptions

    nifti = {f.name for f in dataclasses.fields(NiftiOptions)}
    assert _table_options("datasets.md", "### Options") == nifti
    resnet = {f.name for f in dataclasses.fields(ResNetBuilder)} - {"arch"}
    assert _table_options("plugins.md", "### Backbone options") == resnet


def test_cli_list_plural_options_and_describe(capsys):
    assert main(["list", "explainer"]) == 0
    singular = capsys.readouterr().out
    assert main(["list", "explainers"]) == 0
    assert capsys.readouterr().out == singular and singular.startswith("explainers:")
    assert main(["list", "backbones", "--options"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+weights\s+str \| None = None\s+— Local encoder checkpoint", out, re.M)
    assert main(["describe", "corrupted-control"]) == 0
    out = capsys.readouterr().out
    assert "[[datasets]] name = \"corrupted-control\"" in out and re.search(r"^\s+source_group\s+int = 0", out, re.M)
    assert main(["list", "gizmos"]) == 2
    assert "unknown kind 'gizmos'" in capsys.readouterr().err


TWIN = '''
import xaibench
from dataclasses import dataclass
from xaibench.hookspecs import ExplainerRecord, MetricRecord

@dataclass(frozen=True)
class Twin:
    size: int = 3  # how big

@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("twin", "an explainer", Twin)

@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("twin", "a metric", Twin)
'''


def test_describe_an_ambiguous_name_asks_for_the_kind(tmp_path, capsys):
    plugin = tmp_path / "twin.py"
    plugin.write_text(TWIN)
    assert main(["describe", "twin", "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err
    assert "explainer:twin" in err and "metric:twin" in err and err.count("\n") == 1
    assert main(["describe", "metric", "twin", "--plugin", str(plugin)]) == 0
    assert re.search(r"size\s+int = 3\s+— how big", capsys.readouterr().out)
    assert main(["describe", "twine", "--plugin", str(plugin)]) == 2
    assert "no plugin named 'twine'" in capsys.readouterr().err
