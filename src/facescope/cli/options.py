"""Flags made from a declaration: the detection options (facescope.faces.options) as typer options, so
their help, defaults and bounds are written once, for `facescope predict` and `facescope serve` alike."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from facescope.faces.options import DETECTION_OPTIONS, bounds, describe, parameters


def with_detection_options(environment: str | None = None) -> Callable[[Callable], Callable]:
    """Replaces the command's `detection` parameter with one flag per detection option (`--max-faces`,
    ...), each with its bounds and its default in its help (and the variable `{environment}NAME` that sets
    it too, where given); the command is called with `detection`: the options given, by name."""

    def flag(name: str) -> Any:
        low, high = bounds(name)
        variable = f" [{environment}{name.upper()}]" if environment else ""
        return typer.Option(None, min=low, max=high, help=describe(name) + variable)

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        params = []
        for param in signature.parameters.values():
            if param.name == "detection":
                params += [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in parameters(flag)]
            else:
                params.append(param)

        @functools.wraps(command)
        def with_options(**arguments: Any) -> Any:
            given = {name: arguments.pop(name) for name in DETECTION_OPTIONS}
            return command(**arguments, detection={name: value for name, value in given.items() if value is not None})

        with_options.__signature__ = signature.replace(parameters=params)
        with_options.__annotations__ = {p.name: p.annotation for p in params}
        return with_options

    return decorate
