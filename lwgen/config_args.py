"""Command-line flags generated from config dataclasses, and the dataclasses rebuilt from parsed flags."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                       skip: tuple[str, ...] = (), help_prefix: str = "") -> None:
    """One `--prefix-field` flag per dataclass field, typed and defaulted from the field."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(help_prefix or cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        dest = (prefix + f.name).replace("-", "_")
        if hint is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                               help=" ")
        elif origin in (tuple, list):
            inner = typing.get_args(hint)[0]
            group.add_argument(flag, dest=dest, type=inner, nargs="*", default=default,
                               help=" ")
        else:
            group.add_argument(flag, dest=dest, type=hint, default=default, help=" ")


def dataclass_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "", **overrides: Any) -> T:
    """Build the dataclass from the flags that add_dataclass_args registered."""
    values = {}
    for f in dataclasses.fields(cls):
        key = (prefix + f.name).replace("-", "_")
        if hasattr(args, key):
            values[f.name] = getattr(args, key)
    values.update(overrides)
    return cls(**values)
