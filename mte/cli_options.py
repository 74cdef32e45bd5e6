"""Turn hyperparameter dataclasses into Typer options, so each hyperparameter is declared once."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

PANELS = {"DataHparams": "Data", "ModelHparams": "Model", "TrainHparams": "Fine-tuning",
          "MethodHparams": "Method", "RayOptions": "Ray"}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def hparam_options(*groups: type, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorator: add one option per field of each dataclass in `groups`; the command gets `hparams`,
    a dict from dataclass to the instance built from the command line."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "hparams"]
        hints = typing.get_type_hints(fn)
        added: list[inspect.Parameter] = []
        names: dict[type, list[str]] = {}
        for cls in groups:
            types = typing.get_type_hints(cls)
            names[cls] = []
            for f in dataclasses.fields(cls):
                if f.name in exclude:
                    continue
                decl = flag(f.name)
                if types[f.name] is bool:
                    decl = f"{decl}/--no-{f.name.replace('_', '-')}"
                option = typer.Option(f.default, decl, help=f.metadata.get("help"),
                                      rich_help_panel=PANELS.get(cls.__name__, cls.__name__))
                added.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                               annotation=types[f.name]))
                names[cls].append(f.name)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            built = {cls: cls(**{n: kwargs.pop(n) for n in ns}) for cls, ns in names.items()}
            return fn(*args, **kwargs, hparams=built)

        wrapper.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: hints.get(p.name, p.annotation) for p in own} | {
            p.name: p.annotation for p in added}
        del wrapper.__wrapped__  # make inspect use __signature__, not the wrapped function's
        return wrapper

    return decorate


# Options several commands share, declared once.
DATA_DIR_OPTION = typer.Option(None, "--data-dir", envvar="MTE_DATA_DIR", show_envvar=True,
                               help="Folder in the GLUE TSV layout (MRPC/train.tsv, ...); "
                                    "without it, data comes from the Hugging Face hub.")
STORE_OPTION = typer.Option(Path("mte-store"), "--out", envvar="MTE_STORE", show_envvar=True,
                            help="Result store: finished work there is reused, never overwritten.")
EXPERIMENT_OPTION = typer.Option("mte", "--experiment", help="MLflow experiment name.")
TRACKING_URI_OPTION = typer.Option(
    None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True,
    help="MLflow tracking URI (a server, or a database). Default: sqlite:///<working dir>/mlflow.db.")
ARTIFACT_LOCATION_OPTION = typer.Option(
    None, "--artifact-location", help="Artifact location of a new experiment. Default: "
                                      "<db folder>/mlartifacts/<experiment> for sqlite, the server's for servers.")
