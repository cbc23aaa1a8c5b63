"""Every plugin's options — name, type, default, one line of help — read from the code itself.

Why from the code: options that live only in plugin source are options nobody finds, and a
hand-written list drifts. The options come from the dataclass a factory builds (found through
an ``options`` attribute of the factory, a dataclass in its closure, its return annotation, or
the annotation of that class's ``__init__``), else from the factory's own signature. The help
line is, in order: the field's ``metadata["help"]``, the string literal after the field, the
comment on the field's line, or the plugin module's docstring bullet naming the option.

``xaibench list --options``, ``xaibench describe NAME`` and ``docs/options.md`` (written by
``xaibench list --options --markdown``, checked by a test) all use :func:`plugin_options`.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from typing import Any, Callable

from .errors import XaibenchError
from .plugins import KINDS, Registry

HELP_WIDTH = 110
ABBREVIATIONS = ("e.g", "i.e", "cf", "vs", "etc", "approx")


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: str  # repr of the default, or "required"
    help: str


# --------------------------------------------------------------------------- finding the options


def _resolve(annotation: Any, globs: dict) -> Any:
    if isinstance(annotation, str):
        return globs.get(annotation.split("[")[0].strip())
    return annotation


def _from_class(cls: Any) -> type | None:
    if dataclasses.is_dataclass(cls) and isinstance(cls, type):
        return cls
    init = getattr(cls, "__init__", None)
    if isinstance(cls, type) and init is not None and hasattr(init, "__globals__"):
        for p in list(inspect.signature(init).parameters.values())[1:]:
            found = _resolve(p.annotation, init.__globals__)
            if dataclasses.is_dataclass(found) and isinstance(found, type):
                return found
    return None


def options_class(factory: Callable[..., Any]) -> type | None:
    """The dataclass whose fields are the factory's options, if one can be found."""
    declared = getattr(factory, "options", None)
    if dataclasses.is_dataclass(declared) and isinstance(declared, type):
        return declared
    if isinstance(factory, type):
        return _from_class(factory)
    for cell in getattr(factory, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            return value
    ret = inspect.signature(factory).return_annotation
    return _from_class(_resolve(ret, getattr(factory, "__globals__", {})))


def _field_notes(cls: type) -> dict[str, str]:
    """Attribute docstrings and same-line comments of the class's fields."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {t.start[0]: t.string.lstrip("# ").strip()
                for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.COMMENT}
    notes: dict[str, str] = {}
    body = ast.parse(src).body[0].body  # type: ignore[attr-defined]
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            nxt = body[i + 1] if i + 1 < len(body) else None
            if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant) \
                    and isinstance(nxt.value.value, str):
                notes[node.target.id] = nxt.value.value
            elif node.end_lineno in comments:
                notes[node.target.id] = comments[node.end_lineno]
    return notes


BULLET = re.compile(r"^\s*[*-]\s+((?:``\w+``(?:\s*[,/]\s*|\s+and\s+|\s+or\s+)?)+)\s*(?:[—:–-]+)\s*(.*)$")


def _doc_bullets(*docs: str | None) -> dict[str, str]:
    """``* ``name`` — help`` bullets of docstrings (continuation lines joined)."""
    out: dict[str, str] = {}
    for doc in docs:
        if not doc:
            continue
        items: list[list[str]] = []
        for line in inspect.cleandoc(doc).splitlines():
            if re.match(r"^\s*[*-]\s", line):
                items.append([line])
            elif items and line.startswith("  ") and line.strip():
                items[-1].append(line.strip())
            else:
                items.append([]) if items and items[-1] else None
        for item in filter(None, items):
            m = BULLET.match(" ".join(item))
            if m:
                for name in re.findall(r"``(\w+)``", m.group(1)):
                    out.setdefault(name, m.group(2))
    return out


OPTION_ITEM = re.compile(r"^\s*((?:``\w+``(?:\s*,\s*|\s+and\s+|\s+or\s+)?)+)\s*(.*)$", re.S)


def _options_paragraph(*docs: str | None) -> dict[str, str]:
    """``Options: ``a`` (default); ``b`` — help; …`` paragraphs of docstrings."""
    out: dict[str, str] = {}
    for doc in docs:
        for para in re.split(r"\n\s*\n", inspect.cleandoc(doc or "")):
            if not para.lstrip().startswith("Options:"):
                continue
            text = " ".join(para.split())[len("Options:"):]
            for part in (p for chunk in re.split(r";\s", text) for p in re.split(r",\s(?=``\w+``\s*\()", chunk)):
                m = OPTION_ITEM.match(part)
                help_ = m.group(2).strip(" .—–-:") if m else ""
                for name in re.findall(r"``(\w+)``", m.group(1)) if m and help_ else ():
                    out.setdefault(name, help_)
    return out


def _first_clause(text: str) -> str:
    """Text up to the first ``; `` or ``. `` outside brackets."""
    depth = 0
    for i, c in enumerate(text):
        depth += c in "([{"
        depth -= c in ")]}"
        if depth <= 0 and c in ";." and (i + 1 == len(text) or text[i + 1] == " ") \
                and not text[:i].lower().endswith(ABBREVIATIONS):
            return text[:i] if c == ";" else text[:i + 1]
    return text


def _one_line(text: str, default: str = "") -> str:
    first = _first_clause(" ".join(text.replace("``", "`").split())).strip().lstrip("= ")
    if re.fullmatch(r"\((?:default )?`?" + re.escape(default.strip("'")) + r"`?\)", first):
        return ""  # just the default again

    return first if len(first) <= HELP_WIDTH else first[:HELP_WIDTH - 1].rstrip() + "…"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "required"


def _type(t: Any) -> str:
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t)).replace("typing.", "")


def plugin_options(factory: Callable[..., Any]) -> list[OptionInfo] | None:
    """The factory's options, or ``None`` when they cannot be read (a bare ``**options``)."""
    bound = set(getattr(getattr(factory, "__code__", None), "co_freevars", ()))  # set by the factory
    cls = options_class(factory)
    if cls is not None:
        mod = sys.modules.get(cls.__module__)
        docs = (cls.__doc__, getattr(mod, "__doc__", None))
        notes, bullets = _field_notes(cls), {**_options_paragraph(*docs), **_doc_bullets(*docs)}
        return [OptionInfo(f.name, _type(f.type), _default(f),
                           _one_line(f.metadata.get("help") or notes.get(f.name) or bullets.get(f.name, ""), _default(f)))
                for f in dataclasses.fields(cls) if f.init and f.name not in bound and not f.name.startswith("_")]
    params = [p for p in inspect.signature(factory).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not params and any(p.kind == p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()):
        return None
    bullets = _doc_bullets(factory.__doc__, getattr(sys.modules.get(factory.__module__), "__doc__", None))
    return [OptionInfo(p.name, _type(p.annotation) if p.annotation is not p.empty else "",
                       "required" if p.default is p.empty else repr(p.default), _one_line(bullets.get(p.name, "")))
            for p in params]


# --------------------------------------------------------------------------- lookup and rendering


def find(registry: Registry, spec: str, kind: str | None = None) -> tuple[str, str]:
    """``(kind, name)`` for ``NAME`` or ``KIND:NAME``; ambiguous names ask for the kind."""
    if kind is None and ":" in spec:
        kind, spec = spec.split(":", 1)
    if kind is not None:
        kind = normalise_kind(kind)
        registry.get(kind, spec)
        return kind, spec
    hits = [k for k in KINDS if spec in registry.records[k]]
    if not hits:
        every = {n for k in KINDS for n in registry.records[k]}
        from .errors import closest

        raise XaibenchError(f"no plugin named {spec!r}{closest(spec, every)}; see `xaibench list`")
    if len(hits) > 1:
        raise XaibenchError(f"{spec!r} names a {' and a '.join(hits)}; say which: "
                            + " or ".join(f"`xaibench describe {k}:{spec}`" for k in hits))
    return hits[0], spec


def normalise_kind(kind: str) -> str:
    """``explainers`` → ``explainer`` (the listing's headers are plural)."""
    k = kind.strip().lower()
    if k not in KINDS and k.endswith("s") and k[:-1] in KINDS:
        k = k[:-1]
    if k not in KINDS:
        raise XaibenchError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return k


def record_options(rec: Any, kind: str) -> list[OptionInfo] | None:
    """A plugin's options: its factory's, or for an executor the ``[executor]`` keys its
    ``options`` dataclass declares (the shared keys are in ``docs/scale-out.md``)."""
    if kind == "executor":
        return plugin_options(rec.options) if rec.options is not None else []
    factory = getattr(rec, "factory", None)
    return None if factory is None else plugin_options(factory)


def option_lines(registry: Registry, kind: str, name: str, indent: str = "    ") -> list[str]:
    rec = registry.get(kind, name)
    if kind == "suite":
        return []
    opts = record_options(rec, kind)
    if opts is None:
        return [f"{indent}(options not declared: the factory takes **options; see the plugin's docs)"]
    if not opts:
        return [f"{indent}(no keys of its own)" if kind == "executor" else f"{indent}(no options)"]
    w = max(len(o.name) for o in opts)
    return [f"{indent}{o.name:{w}s}  {o.type} = {o.default}" + (f"  — {o.help}" if o.help else "") for o in opts]


def describe(registry: Registry, spec: str) -> str:
    kind, name = find(registry, spec)
    rec = registry.get(kind, name)
    lines = [f"{kind} {name}: {rec.description}", f"  provided by {registry.provider(kind, name)}"]
    if kind == "suite":
        return "\n".join(lines + [f"  file: {getattr(rec, 'path', '')}"])
    if kind == "executor":
        lines += [f"  settings (suite file: [executor] name = \"{name}\", or `xaibench run --executor {name}`; "
                  "shared keys: torch_threads, poll_s, job resources — docs/scale-out.md):"]
        return "\n".join(lines + option_lines(registry, kind, name))
    section = {"dataset": "datasets", "backbone": "backbones", "attack": "attacks", "explainer": "explainers",
               "metric": "metrics"}[kind]
    lines += [f"  options (suite file: [[{section}]] name = \"{name}\", options = {{ ... }}):"]
    return "\n".join(lines + option_lines(registry, kind, name))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(registry: Registry) -> str:
    """``docs/options.md``: one table per plugin, grouped by kind (built-ins only)."""
    out = ["# Plugin options", "",
           "Generated from the plugins' option dataclasses by `xaibench list --options --markdown`",
           "(a test checks that this file matches the code). Set options in a suite file, e.g.",
           "`[[backbones]]` `name = \"resnet50\"`, `options = { mode = \"probe\", weights = \"enc.pt\" }`;",
           "`xaibench describe NAME` prints the same for any installed plugin. An executor's options are",
           "the keys it adds to a suite's `[executor]` table.", ""]
    for kind in KINDS:
        if kind == "suite":
            continue
        out += [f"## {kind.capitalize()}s", ""]
        for name in registry.names(kind):
            rec = registry.records[kind][name]
            out += [f"### `{name}`", "", _cell(rec.description), ""]
            opts = record_options(rec, kind)
            if opts is None:
                out += ["Options are not declared (the factory takes `**options`).", ""]
            elif not opts:
                out += ["No keys of its own (the shared `[executor]` keys: docs/scale-out.md)." if kind == "executor"
                        else "No options.", ""]
            else:
                out += ["| option | type | default | meaning |", "|---|---|---|---|"]
                out += [f"| `{o.name}` | `{_cell(o.type)}` | `{_cell(o.default)}` | {_cell(o.help) or '—'} |"
                        for o in opts]
                out.append("")
    return "\n".join(out).rstrip() + "\n"
