"""Methods from outside mte: `--plugin PATH_OR_MODULE` and the `mte.methods` entry-point group.

A plugin is a Python file or an importable module whose classes register themselves (`@mte.methods.register`);
an entry point names a Method subclass (or a module that registers some). Whatever a plugin declares is checked
when it loads, before any work starts: its hyperparameters exist, its own parameters clash with no option, and
its plan can be drawn for a seed. A file plugin travels to trials as its text (`Source`), so a Ray cluster's
nodes need no copy of it; a module plugin must be importable on every node (installed, like an entry point).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from mte import methods
from mte.errors import MteError, first_line
from mte.hparams import MethodHparams, RunSpec
from mte.methods import dry
from mte.methods.method import Method

ENTRY_POINTS = "mte.methods"
Source = dict[str, Any]  # {"given": what the user wrote, "module": its module name, "text": a file's source or None}
_loaded: dict[str, Source] = {}  # given → source, in load order (what trials are sent)
_entry_points_done = False


def load(given: Iterable[str]) -> list[Source]:
    """Load each plugin (a path to a .py file, or a module name) and the entry points; check what they declare.
    Returns every plugin loaded in this process, as sources for trials."""
    load_entry_points()
    for item in given:
        if item in _loaded:
            continue
        path = Path(item).expanduser()
        if item.endswith(".py") or path.exists() or "/" in item:
            if not path.is_file():
                raise MteError(f"--plugin {item}: no such file")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise MteError(f"--plugin {item}: cannot read it ({first_line(e)})") from None
            source = {"given": item, "module": module_name(path, text), "text": text, "file": str(path.resolve())}
        else:
            source = {"given": item, "module": item, "text": None}
        _load_source(source)
    return list(_loaded.values())


def load_sources(sources: Sequence[Source]) -> None:
    """In a trial process: the plugins its driver loaded, from their recorded text (files) or by import."""
    load_entry_points()
    for source in sources:
        if source["given"] not in _loaded:
            _load_source(source)


def loaded() -> list[Source]:
    return list(_loaded.values())


def module_name(path: Path, text: str) -> str:
    """A file plugin's module name: its stem and the hash of its text, the same on every node."""
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"mte_plugin_{stem}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _load_source(source: Source) -> None:
    before = set(methods.names())
    try:
        if source["text"] is None:
            _import(source["given"])
        else:
            _exec(source)
    except MteError as e:
        raise MteError(f"--plugin {source['given']}: {e}") from None
    new = [methods.get(n) for n in methods.names() if n not in before]
    if not new and not any(type(m).__module__ == source["module"] for m in methods.all_methods()):
        raise MteError(f"--plugin {source['given']}: it registers no method (decorate a subclass of "
                       "mte.methods.Method with @mte.methods.register)")
    try:
        for method in new:
            check_method(method, f"--plugin {source['given']}")
    except MteError:
        for method in new:  # nothing it declared is offered: commands and their flags stay as without it
            methods.forget(method.name)
        raise
    _loaded[source["given"]] = source


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise MteError(f"no file or importable module {name!r}") from None
        raise MteError(f"it failed to import: {type(e).__name__}: {first_line(e)}") from None
    except MteError:
        raise
    except Exception as e:  # a plugin's own error, whatever its type: one line, not a traceback
        raise MteError(f"it failed to import: {type(e).__name__}: {first_line(e)}") from None


def _exec(source: Source) -> None:
    name = source["module"]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_loader(name, loader=None, origin=source.get("file"))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = source.get("file") or source["given"]
    sys.modules[name] = module  # dataclasses and pickling look the module up while it runs
    try:
        exec(compile(source["text"], module.__file__, "exec"), module.__dict__)
    except MteError:
        del sys.modules[name]
        raise
    except Exception as e:
        del sys.modules[name]
        raise MteError(f"it failed to load: {_where(e, module.__file__)}{type(e).__name__}: {first_line(e)}"
                       ) from None


def _where(e: BaseException, file: str | None) -> str:
    """'line N: ' of the plugin's file where `e` was raised (a syntax error's own line), or ''."""
    if isinstance(e, SyntaxError) and e.lineno:
        return f"line {e.lineno}: "
    tb, line = e.__traceback__, None
    while tb is not None:
        if file is not None and tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"line {line}: " if line else ""


def load_entry_points() -> None:
    """Register the methods of the installed packages' `mte.methods` entry points (once per process)."""
    global _entry_points_done
    if _entry_points_done:
        return
    _entry_points_done = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
        before = set(methods.names())
        try:
            obj = ep.load()
            if isinstance(obj, type) and issubclass(obj, Method):
                methods.register(obj)
        except MteError as e:
            raise MteError(f"entry point {ep.name} = {ep.value}: {e}") from None
        except Exception as e:
            raise MteError(f"entry point {ep.name} = {ep.value} failed to load: {type(e).__name__}: "
                           f"{first_line(e)}") from None
        try:
            for name in set(methods.names()) - before:
                check_method(methods.get(name), f"entry point {ep.name}")
        except MteError:
            for name in set(methods.names()) - before:
                methods.forget(name)
            raise


OWN_FIELDS = tuple(f.name for f in dataclasses.fields(MethodHparams) if f.name not in ("method", "params"))


def check_method(method: Method, where: str) -> None:
    """What a method declares, checked before any work: one line naming the problem."""
    name = method.name
    unknown = [r for r in method.reads if r not in OWN_FIELDS]
    if unknown:
        raise MteError(f"{where}: method {name!r} reads {unknown[0]!r}, which is no method hyperparameter (those are: "
                       f"{', '.join(OWN_FIELDS)}; declare a new one in its `params`)")
    taken = {leaf.split(".")[-1] for leaf in _option_names()}
    if not isinstance(method.params, tuple) or not all(isinstance(p, methods.Param) for p in method.params):
        raise MteError(f"{where}: method {name!r}: params must be a tuple of mte.methods.Param")
    for param in method.params:
        pname = param.name
        if not pname.isidentifier() or pname != pname.lower():
            raise MteError(f"{where}: method {name!r}: parameter name {pname!r} must be a lower-case identifier")
        if pname in taken:
            raise MteError(f"{where}: method {name!r}: parameter {pname!r} clashes with mte's option "
                           f"--{pname.replace('_', '-')}")
        if type(param.default) not in (int, float, str, bool):
            raise MteError(f"{where}: method {name!r}: parameter {pname!r} needs an int, float, str or bool default")
        other = next((m for m in methods.all_methods() if m is not method and pname in m.own()
                      and m.own()[pname].type is not param.type), None)
        if other is not None:
            raise MteError(f"{where}: method {name!r}: parameter {pname!r} is also {other.name!r}'s, with another "
                           "type")
    if method.uses_tau and "tau" not in method.reads:
        raise MteError(f"{where}: method {name!r} says it uses τ but does not read 'tau'")
    hp = RunSpec().method
    try:
        steps = dry.plan(method, dataclasses.replace(hp, method=name), 1)
    except MteError as e:
        raise MteError(f"{where}: method {name!r}: {e}") from None
    except Exception as e:
        raise MteError(f"{where}: method {name!r}: its fine_tunes failed on a dry run: {type(e).__name__}: "
                       f"{first_line(e)}") from None
    if not steps or not all(isinstance(s, methods.Step) for s in steps):
        raise MteError(f"{where}: method {name!r}: fine_tunes must return a non-empty list of mte.methods.Step")


def _option_names() -> list[str]:
    from mte.fields import leaves

    return [leaf.dotted for leaf in leaves(RunSpec)]
