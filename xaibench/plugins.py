"""Plugin manager: loads built-in and third-party plugins through one door.

Everything in the entry-point group ``xaibench`` is loaded (the built-ins are listed there
by this package's own metadata); ``--plugin FILE`` adds single-file plugins; setting
``XAIBENCH_DISABLE_EXTERNAL_PLUGINS=1`` skips entry points of every other distribution.
A plugin that fails to import is reported with its distribution and skipped; the rest load.
"""
from __future__ import annotations

import importlib.util
import re
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, XaibenchError, closest
from .names import bad_name
from .hookspecs import (
    AttackRecord,
    BackboneRecord,
    DatasetRecord,
    ExecutorRecord,
    ExplainerRecord,
    MetricRecord,
    SuiteRecord,
)

GROUP = "xaibench"
DISABLE_ENV = "XAIBENCH_DISABLE_EXTERNAL_PLUGINS"
OWN_DIST = "xaibench"

KINDS: dict[str, tuple[str, type]] = {
    "explainer": ("xaibench_explainers", ExplainerRecord),
    "metric": ("xaibench_metrics", MetricRecord),
    "dataset": ("xaibench_datasets", DatasetRecord),
    "backbone": ("xaibench_backbones", BackboneRecord),
    "attack": ("xaibench_attacks", AttackRecord),
    "suite": ("xaibench_suites", SuiteRecord),
    "executor": ("xaibench_executors", ExecutorRecord),
}


@dataclass
class Registry:
    """Records by kind and name, with the plugin (distribution or file) that provided each."""

    records: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    providers: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        return sorted(self.records[kind])

    def get(self, kind: str, name: str) -> Any:
        try:
            return self.records[kind][name]
        except KeyError:
            raise XaibenchError(f"unknown {kind} {name!r}{closest(name, self.records[kind])}") from None

    def provider(self, kind: str, name: str) -> str:
        return self.providers[(kind, name)]


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class PluginManager:
    """Small typed wrapper around :class:`pluggy.PluginManager`."""

    def __init__(self) -> None:
        self.pm = _new_manager()
        self.failures: list[str] = []
        self._dist_of: dict[int, str] = {}

    # -- loading -----------------------------------------------------------------
    def load_entry_points(self) -> None:
        disable = os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")
        for ep in metadata.entry_points(group=GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            if disable and dist != OWN_DIST:
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self.failures.append(
                    f"plugin {ep.name!r} from distribution {dist!r} failed to import: "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
            self.register(module, name=ep.name, provider=f"{dist} ({ep.value})")

    def load_file(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise XaibenchError(f"--plugin {path}: no such file; give the path of a .py file")
        name = f"xaibench_file_plugin_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise PluginError(f"--plugin {path}: failed to import: {type(exc).__name__}: {exc}") from None
        self.register(module, name=str(path), provider=f"file {path}")

    def register(self, plugin: ModuleType | object, name: str | None = None, provider: str | None = None) -> None:
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin {name or plugin!r}: {exc}") from None
        self._dist_of[id(plugin)] = provider or (name or repr(plugin))
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            raise PluginError(f"plugin {provider or name}: unknown hook: {exc}") from None

    def unregister(self, plugin: object) -> None:
        self.pm.unregister(plugin)

    # -- collecting ----------------------------------------------------------------
    def registry(self) -> Registry:
        reg = Registry(failures=list(self.failures))
        for kind, (hook_name, record_type) in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                provider = self._dist_of.get(id(impl.plugin), impl.plugin_name)
                for rec in impl.function() or ():
                    if not isinstance(rec, record_type):
                        raise PluginError(
                            f"{provider}: {hook_name} yielded {type(rec).__name__}, expected {record_type.__name__}"
                        )
                    why = bad_name(rec.name)
                    if why is not None:  # names become table cells and file names
                        reg.failures.append(f"{provider}: {kind} {why}; skipped")
                        continue
                    if rec.name in reg.records[kind]:
                        other = reg.providers[(kind, rec.name)]
                        raise PluginError(
                            f"duplicate {kind} name {rec.name!r}: provided by {other} and by {provider}"
                        )
                    reg.records[kind][rec.name] = rec
                    reg.providers[(kind, rec.name)] = provider
        return reg


def load(plugin_files: Iterable[str | Path] = (), *, extra: Iterable[object] = ()) -> Registry:
    """Load every plugin and return the registry; ``registry.failures`` lists plugins that
    failed to import (the CLI prints them once)."""
    pm = PluginManager()
    pm.load_entry_points()
    for f in plugin_files:
        pm.load_file(f)
    for obj in extra:
        pm.register(obj, name=f"extra-{id(obj)}", provider=repr(obj))
    return pm.registry()


_CURRENT: ContextVar[Registry | None] = ContextVar("xaibench_registry", default=None)
_INSTALLED: list[Registry] = []  # the installed plugins' registry, loaded once when first asked for


@contextmanager
def using_registry(reg: Registry) -> Iterator[Registry]:
    """Make ``reg`` what :func:`current_registry` returns inside the block: the runner (and
    the report) load datasets inside it, so a dataset that builds on another one finds the
    run's ``--plugin`` plugins too."""
    token = _CURRENT.set(reg)
    try:
        yield reg
    finally:
        _CURRENT.reset(token)


def current_registry() -> Registry:
    """The registry of the run that is calling this plugin (built-ins, installed plugins and
    the run's ``--plugin`` files), for plugins that resolve other plugins by name (e.g. a
    dataset wrapping a ``source`` dataset); outside a run, the installed plugins."""
    reg = _CURRENT.get()
    if reg is not None:
        return reg
    if not _INSTALLED:
        _INSTALLED.append(load())
    return _INSTALLED[0]


def instantiate(reg: Registry, kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """``factory(**options)``, with a wrong option name or type turned into a one-line user error."""
    from .options import check_types

    rec = reg.get(kind, name)
    check_types(kind, name, rec.factory, dict(options or {}))
    try:
        return rec.factory(**dict(options or {}))
    except TypeError as exc:
        msg = re.sub(r"^\S*(__init__|__call__|\w+)\(\)\s*", "", str(exc))
        raise XaibenchError(f"{kind} {name!r}: {msg}; see `xaibench list {kind}` and the plugin's docs") from None
