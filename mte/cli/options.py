"""Flags generated from option dataclasses (`mte.fields`), so each option is declared once.

`@options(spec=RunSpec, paths=Paths)` gives a command one flag per leaf field of those dataclasses (nested ones
flattened, with the field's help, default, environment variable and choices) and calls it with the built
objects. A command that also takes `given` receives, per object, the field paths the user set (flag or
environment variable): what must win over a preset or a recorded sweep.
"""

from __future__ import annotations

import functools
import inspect
import re
import textwrap
import typing
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand

from mte import fields
from mte.errors import MteError

CONTEXT = "_typer_context"  # Typer passes the click context to a parameter annotated typer.Context
PLUGIN_PARAM = "_plugins"
CLASHES: list[str] = []  # plugin parameters whose flag a command already has: `mte.cli.main` refuses to run
Given = dict[str, set[fields.Path_]]  # parameter name → paths of the fields given on the command line


class HelpCommand(TyperCommand):
    """Plain (click) help, its options in one section per panel (Data, Model, Tracking…): click wraps the help
    text and never cuts an option's name, its choices or its default, as rich's tables do at 80 columns."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        for panel, records in panels.items():
            with formatter.section(panel):
                formatter.write(_definitions(records, formatter.width - formatter.current_indent,
                                             formatter.current_indent))


def _definitions(records: list[tuple[str, str]], width: int, indent: int, col_max: int = 26) -> str:
    """click's definition list, wrapped only at spaces: a word (`--no-rewind-head`, a default such as
    `no-system-metrics`) is never split at its hyphens, and `[default: …]` stays on one line."""
    col = min(max(len(term) for term, _ in records), col_max) + 2
    pad = " " * indent
    lines: list[str] = []
    for term, text in records:
        text = re.sub(r"\[(default|env var): ([^\]]*)\]", lambda m: m.group(0).replace(" ", "\xa0"), text)
        body = [w.replace("\xa0", " ") for w in textwrap.wrap(text, max(width - col, 20), break_on_hyphens=False,
                                                               break_long_words=False)] or [""]
        if len(term) + 2 <= col:
            lines.append(f"{pad}{term:<{col}}{body[0]}".rstrip())
            body = body[1:]
        else:
            lines.append(pad + term)
        lines += [f"{pad}{'':<{col}}{line}" for line in body]
    return "\n".join(lines) + "\n"


PLUGIN = typer.Option(
    None, "--plugin", metavar="PATH_OR_MODULE", rich_help_panel="Plugins",
    help="A Python file or module that registers methods (repeatable); their names become --method(s) values "
         "and their parameters flags (--help shows them when given with --plugin). A sweep sends them to "
         "every trial. Installed packages add methods through the `mte.methods` entry-point group.")


def plugin_args(argv: list[str]) -> list[str]:
    """The --plugin values of a command line, read before the command is parsed (its flags depend on them)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--plugin" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith("--plugin="):
            out.append(arg.split("=", 1)[1])
    return out


def flag(leaf: fields.Leaf) -> str:
    return leaf.meta.get("flag") or "--" + leaf.name.replace("_", "-")


def _is_tuple(tp: Any) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return typing.get_origin(tp) is tuple or any(typing.get_origin(a) is tuple for a in args)


def _tuple_item(tp: Any) -> type:
    for t in (tp, *typing.get_args(tp)):
        if typing.get_origin(t) is tuple:
            return typing.get_args(t)[0]
    raise TypeError(tp)


def _annotation(leaf: fields.Leaf) -> Any:
    """What Typer parses: tuples arrive as comma lists (str). Choices are listed in the help, and checked by
    the code that owns the option (`fields.check`), whose one-line message names the choices."""
    return str | None if _is_tuple(leaf.type) else leaf.type


def _metavar(leaf: fields.Leaf) -> str | None:
    choices = leaf.choices
    if choices and _is_tuple(leaf.type):
        return "all|" + ",".join(choices)
    if choices:
        return "[" + "|".join(choices) + "]"
    return leaf.meta.get("metavar")


def _default(leaf: fields.Leaf) -> Any:
    if _is_tuple(leaf.type):
        if leaf.default is None:
            return None
        if leaf.choices and tuple(leaf.default) == leaf.choices:
            return "all"
        return ",".join(map(str, leaf.default))
    return leaf.default


def parse_list(leaf: fields.Leaf, text: str | None) -> tuple | None:
    """A comma list (or 'all' of the field's choices) as the field's tuple type; one-line error if not."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    choices = leaf.choices
    if choices:
        if [i.lower() for i in items] == ["all"]:
            return tuple(choices)
        if "all" in (i.lower() for i in items):
            raise MteError(f"{flag(leaf)}: 'all' cannot be combined with other values; give 'all' alone or a comma "
                           f"list of: {', '.join(choices)}")
        unknown = [i for i in items if i.lower() not in choices]
        if not items:
            raise MteError(f"{flag(leaf)} is empty; choose 'all' or a comma list of: {', '.join(choices)}")
        if unknown:
            item = leaf.name.removesuffix("s").replace("_", " ")
            raise MteError(f"unknown {item} {unknown[0]!r}; choose 'all' or a comma list of: {', '.join(choices)}")
        return tuple(c for c in choices if c in {i.lower() for i in items})  # canonical order, no repeats
    item = _tuple_item(leaf.type)
    try:
        return tuple(item(i) for i in items)
    except ValueError:
        raise MteError(f"{flag(leaf)} must be a comma list of {item.__name__} values, got {text!r}") from None


def _option(leaf: fields.Leaf, panel: str) -> Any:
    decl = flag(leaf)
    metavar = _metavar(leaf)
    if leaf.type is bool:  # a flag pair, shown as such (no "<bool>" value)
        decl, metavar = f"{decl}/--no-{decl[2:]}", ""
    text = leaf.meta.get("help") or ""
    readers = getattr(leaf.owner, "readers", None)  # e.g. the methods that read a method hyperparameter
    if readers is not None and readers(leaf.name):
        text += f" (read by {', '.join(readers(leaf.name))})"
    return typer.Option(_default(leaf), decl, help=text, envvar=leaf.meta.get("envvar"),
                        show_envvar=bool(leaf.meta.get("envvar")), metavar=metavar, rich_help_panel=panel)


def options(exclude: tuple[str, ...] = (), plugins: bool = False, **groups: type) -> Callable:
    """Decorator: flags for every leaf field of each dataclass in `groups` (except the dotted paths or names in
    `exclude`); the command receives the built objects under the same keyword names. `plugins`: the command
    takes --plugin (loaded before the command line is parsed: `mte.cli`)."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name not in groups and p.name != "given"]
        wants_given = "given" in sig.parameters
        hints = typing.get_type_hints(fn)
        added: list[inspect.Parameter] = []
        where: dict[str, tuple[str, fields.Leaf]] = {}  # python name → (group, leaf)
        expanded: dict[str, tuple[str, fields.Leaf, str]] = {}  # python name → (group, leaf it fills, key)
        seen: dict[str, str] = {}
        own_flags = {d for p in own for d in getattr(p.default, "param_decls", ()) or ()} | {
            flag(leaf) for cls in groups.values() for leaf in fields.leaves(cls, exclude)}
        for group, cls in groups.items():
            for leaf in fields.leaves(cls, exclude):
                if not leaf.meta.get("cli", True):
                    expand = leaf.meta.get("expand")
                    for pname, (default, text) in (expand() if expand else {}).items():
                        decl = "--" + pname.replace("_", "-")
                        if decl in seen or decl in own_flags:
                            CLASHES.append(f"a plugin method's parameter {pname!r} clashes with the option {decl}")
                            continue
                        seen[decl] = f"{group}.{leaf.dotted}.{pname}"
                        name = f"{group}__{'__'.join(leaf.path)}__{pname}"
                        decls = (f"{decl}/--no-{decl[2:]}",) if type(default) is bool else (decl,)
                        option = typer.Option(default, *decls, help=text, rich_help_panel=getattr(
                            leaf.owner, "PANEL", None) or "Options")
                        added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                                       annotation=type(default)))
                        expanded[name] = (group, leaf, pname)
                    continue
                decl = flag(leaf)
                if decl in seen:
                    raise TypeError(f"{decl} is declared by both {seen[decl]} and {group}.{leaf.dotted}")
                seen[decl] = f"{group}.{leaf.dotted}"
                name = f"{group}__{'__'.join(leaf.path)}"
                panel = getattr(leaf.owner, "PANEL", None) or "Options"
                added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_option(leaf, panel),
                                               annotation=_annotation(leaf)))
                where[name] = (group, leaf)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = kwargs.pop(CONTEXT)
            kwargs.pop(PLUGIN_PARAM, None)  # loaded already, before parsing
            values: dict[str, dict[fields.Path_, Any]] = {g: {} for g in groups}
            given: Given = {g: set() for g in groups}
            for name, (group, leaf) in where.items():
                value = kwargs.pop(name)
                values[group][leaf.path] = parse_list(leaf, value) if _is_tuple(leaf.type) else value
                source = ctx.get_parameter_source(name)
                if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                    given[group].add(leaf.path)
            for name, (group, leaf, key) in expanded.items():
                value = kwargs.pop(name)
                source = ctx.get_parameter_source(name)
                if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                    values[group][leaf.path] = (*values[group].get(leaf.path, ()), (key, value))
                    given[group].add(leaf.path)
            built = {g: fields.build(cls, values[g]) for g, cls in groups.items()}
            return fn(*args, **kwargs, **built, **({"given": given} if wants_given else {}))

        if plugins:
            added.append(inspect.Parameter(PLUGIN_PARAM, inspect.Parameter.KEYWORD_ONLY, default=PLUGIN,
                                           annotation=list[str] | None))
        context = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        wrapper.__signature__ = sig.replace(parameters=[*own, *added, context])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: hints.get(p.name, p.annotation) for p in own} | {
            p.name: p.annotation for p in [*added, context]}
        del wrapper.__wrapped__  # make inspect use __signature__, not the wrapped function's
        return wrapper

    return decorate
