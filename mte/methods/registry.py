"""The methods the platform knows: the five built-in ones, in the paper's order, then those registered by
plugins (`mte.plugins`) in the order they were loaded."""

from __future__ import annotations

import sys

from mte.errors import MteError
from mte.methods.active_lt import ActiveLT
from mte.methods.bagging import Bagging
from mte.methods.base_lt import BaseLT
from mte.methods.baseline import Baseline
from mte.methods.method import NAME, Method
from mte.methods.random_lt import RandomLT

BUILT_IN: tuple[type[Method], ...] = (Baseline, Bagging, BaseLT, ActiveLT, RandomLT)
PAPER = tuple(m.name for m in BUILT_IN)  # the paper's methods, in its order
_registry: dict[str, Method] = {m.name: m() for m in BUILT_IN}


def register(cls: type[Method]) -> type[Method]:
    """Make `cls` a method every command can run (usable as a class decorator). Registering the same class
    again, or the class of a plugin file loaded again, replaces it; another method's name is refused."""
    name = getattr(cls, "name", None)
    where = _where(cls)
    if not isinstance(cls, type) or not issubclass(cls, Method):
        raise MteError(f"{where}: a method must be a subclass of mte.methods.Method")
    if not isinstance(name, str) or not NAME.match(name):
        raise MteError(f"{where}: its name must be lower case words joined by dashes (e.g. 'late-lt'), got {name!r}")
    old = _registry.get(name)
    if old is not None and (type(old).__module__, type(old).__qualname__) != (cls.__module__, cls.__qualname__):
        raise MteError(f"method {name!r} is declared twice: by {_where(type(old))} and by {where}")
    if cls.fine_tunes is Method.fine_tunes:
        raise MteError(f"{where}: method {name!r} does not say its fine-tunes (define fine_tunes)")
    _registry[name] = cls()
    return cls


def _where(cls: type) -> str:
    """Where a class is declared, as a user finds it: a plugin file's path (its module name is made up), else the
    module's name; then the class."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None) if cls.__module__.startswith("mte_plugin_") else None
    return f"{file}: {cls.__qualname__}" if file else f"{cls.__module__}.{cls.__qualname__}"


def forget(name: str) -> None:
    """Remove a plugin's method (one whose declaration was refused); the built-in ones stay."""
    if name not in PAPER:
        _registry.pop(name, None)


def get(name: str) -> Method:
    """The method called `name`; one line naming the known ones if there is none."""
    try:
        return _registry[name]
    except KeyError:
        raise MteError(f"unknown method {name!r}; choose one of: {', '.join(_registry)} (a plugin's method needs "
                       "its --plugin, or its package installed)") from None


def find(name: str) -> Method | None:
    """The method called `name`, or None (e.g. a report on results of a plugin that is not loaded)."""
    return _registry.get(name)


def names() -> tuple[str, ...]:
    return tuple(_registry)


def all_methods() -> tuple[Method, ...]:
    return tuple(_registry.values())


def label(name: str) -> str:
    """How tables and figures name a method (its name in capitals where it is not loaded)."""
    method = _registry.get(name)
    return method.title() if method is not None else name.upper()


def order(methods: set[str] | list[str] | tuple[str, ...]) -> list[str]:
    """Registered methods in registry order, then unknown ones alphabetically."""
    known = [m for m in _registry if m in methods]
    return known + sorted(set(methods) - set(known))


def declared_params() -> dict[str, tuple[object, str]]:
    """Every registered method's own parameters: name → (default, help naming the methods that read it)."""
    out: dict[str, tuple[object, str]] = {}
    for name in {p.name for m in _registry.values() for p in m.params}:
        readers = [m for m in _registry.values() if name in m.own()]
        param = readers[0].own()[name]
        out[name] = (param.default, f"{param.help} (read by {', '.join(m.name for m in readers)})")
    return dict(sorted(out.items()))
