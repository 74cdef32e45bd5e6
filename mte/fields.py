"""Options declared once: a dataclass field carries its default, help and flag; nested option dataclasses are
walked, built from flat values, overlaid and serialised generically.

The command line (`mte.cli.options`) turns every leaf field into a flag; presets are instances; a recorded
sweep is `to_dict` and comes back with `from_dict`. So adding an option is adding one field.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mte.errors import MteError

T = TypeVar("T")
Path_ = tuple[str, ...]  # a field's path through nested dataclasses, e.g. ("spec", "method", "tau")


def hp(default: Any, help: str, *, flag: str | None = None, envvar: str | None = None,
       choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None, metavar: str | None = None,
       cli: bool = True, expand: Callable[[], dict[str, tuple[Any, str]]] | None = None) -> Any:
    """A declared option: default, help text, and (optionally) its flag name, environment variable, the values
    it may take (listed in `--help`; a tuple field then takes a comma list of them; a function where they are
    known only once plugins are loaded) and the name of its value. `cli=False`: no flag of its own; `expand`
    then names the flags that fill it, a (name, value) tuple of those given: name → (default, help)."""
    meta = {"help": help, "flag": flag, "envvar": envvar, "choices": choices, "metavar": metavar, "cli": cli,
            "expand": expand}
    return field(default=default, metadata=meta)


def group(cls: type[T]) -> T:
    """A nested group of options (its own dataclass), default-constructed."""
    return field(default_factory=cls, metadata={"group": True})


@dataclass(frozen=True)
class Leaf:
    """One option: where it sits in the nested dataclasses, its declaration, its type and its default."""

    path: Path_
    field: dataclasses.Field
    type: Any
    default: Any
    owner: type  # the dataclass that declares it

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def meta(self) -> typing.Mapping[str, Any]:
        return self.field.metadata

    @property
    def choices(self) -> tuple[str, ...] | None:
        choices = self.meta.get("choices")
        return tuple(choices()) if callable(choices) else choices


def is_group(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


def leaves(cls: type, exclude: Iterable[str] = (), _prefix: Path_ = (), _default: Any = None) -> list[Leaf]:
    """Every non-group field below `cls`, depth first. `exclude`: dotted paths (or bare leaf names) to skip."""
    exclude = set(exclude)
    default = cls() if _default is None else _default
    hints = typing.get_type_hints(cls)
    out: list[Leaf] = []
    for f in dataclasses.fields(cls):
        path = (*_prefix, f.name)
        value = getattr(default, f.name)
        if is_group(hints[f.name]):
            out += leaves(hints[f.name], exclude, path, value)
        elif ".".join(path) not in exclude and f.name not in exclude:
            out.append(Leaf(path, f, hints[f.name], value, cls))
    return out


def get(obj: Any, path: Path_) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def replace(obj: T, path: Path_, value: Any) -> T:
    """`obj` with the field at `path` set to `value` (nested dataclasses are replaced, not mutated)."""
    if len(path) == 1:
        return dataclasses.replace(obj, **{path[0]: value})
    return dataclasses.replace(obj, **{path[0]: replace(getattr(obj, path[0]), path[1:], value)})


def build(cls: type[T], values: typing.Mapping[Path_, Any], base: T | None = None) -> T:
    """`base` (default: `cls()`) with each path in `values` set."""
    obj = cls() if base is None else base
    for path, value in values.items():
        obj = replace(obj, path, value)
    return obj


def overlay(base: T, top: T, paths: Iterable[Path_]) -> T:
    """`base` with the values of `top` at `paths` (e.g. options given on the command line over a preset)."""
    return build(type(base), {p: get(top, p) for p in paths}, base)


def to_dict(obj: Any) -> dict[str, Any]:
    """JSON-able nested dict (paths as strings, tuples as lists). A field that flags of plugins fill (`expand`)
    is left out while empty, so records of runs without plugins read as they did before such fields existed."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)
                    if not (f.metadata.get("expand") and getattr(v, f.name) == f.default)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def from_dict(cls: type[T], d: typing.Mapping[str, Any]) -> T:
    """Inverse of `to_dict`: fields missing from `d` keep their defaults (options added later); unknown ones
    are refused."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise MteError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in d.items():
        tp = hints[name]
        if is_group(tp):
            if not isinstance(value, dict):
                raise MteError(f"{cls.__name__}.{name} must be an object, got {value!r}")
            kwargs[name] = from_dict(tp, value)
        else:
            try:
                kwargs[name] = _coerce(tp, value)
            except MteError as e:
                raise MteError(f"{cls.__name__}.{name}: {e}") from None
    return cls(**kwargs)


def _coerce(tp: Any, value: Any) -> Any:
    """`value` (from JSON) as type `tp`; MteError if it is not one (recorded options are read back as input)."""
    if value is None:
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, _UnionType) and len(args) == 1:
        return _coerce(args[0], value)
    if origin is tuple and isinstance(value, list | tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) != len(value):
            raise MteError(f"{value!r} is not a valid {tp}")
        return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True)) if args else tuple(value)
    if tp is Any:
        return value
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, bool, str) and type(value) is tp:
        return value
    raise MteError(f"{value!r} is not a valid {getattr(tp, '__name__', tp)}")


_UnionType = type(int | None)
MAX_INT = 2**63 - 1  # what torch and numpy take as an integer
MAX_SEED = 2**32 - 1  # seeds are mixed into 64-bit generator seeds (e.g. 1_000_003·seed), which must not overflow


def check(obj: Any) -> None:
    """Refuse, in one line, a non-finite float (`inf`, `nan` would train to NaN and be stored) or a value outside
    a field's choices, anywhere in nested options."""
    for leaf in leaves(type(obj), _default=obj):
        value = get(obj, leaf.path)
        if isinstance(value, float) and not math.isfinite(value):
            raise MteError(f"--{leaf.name.replace('_', '-')} must be a finite number, got {value}")
        if isinstance(value, int) and not isinstance(value, bool):
            limit = MAX_SEED if leaf.name == "seed" or leaf.name.endswith("_seed") else MAX_INT
            if abs(value) > limit:
                bound = f"at most {limit:,}" if value > 0 else f"at least {-limit:,}"
                raise MteError(f"--{leaf.name.replace('_', '-')} must be {bound}, got {value}")
        choices = leaf.choices
        if choices and value is not None:
            for v in value if isinstance(value, tuple) else (value,):
                if v not in choices:
                    raise MteError(f"unknown {leaf.name.replace('_', ' ')} {v!r}; choose one of: "
                                   f"{', '.join(choices)}")
