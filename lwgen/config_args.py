"""Command-line flags generated from config dataclasses, and the dataclasses rebuilt from parsed flags."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        return text if "(default" in text else super()._get_help_string(action)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                       skip: tuple[str, ...] = (), help_prefix: str = "", helps: dict[str, str] | None = None) -> None:
    """One `--prefix-field` flag per dataclass field, typed and defaulted from the field. The help text is the
    class's `HELP[field]` (`helps` overrides it) and a field listed in its `CHOICES` gets those choices."""
    hints = typing.get_type_hints(cls)
    choices = getattr(cls, "CHOICES", {})
    group = parser.add_argument_group(help_prefix or cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        dest = (prefix + f.name).replace("-", "_")
        text = {**getattr(cls, "HELP", {}), **(helps or {})}.get(f.name, " ")
        if hint is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                               help=text)
        elif origin in (tuple, list):
            inner = typing.get_args(hint)[0]
            group.add_argument(flag, dest=dest, type=inner, nargs="*", default=default,
                               help=text)
        else:
            group.add_argument(flag, dest=dest, type=hint, default=default, help=text, choices=choices.get(f.name))


def dataclass_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "", **overrides: Any) -> T:
    """Build the dataclass from the flags that add_dataclass_args registered."""
    values = {}
    for f in dataclasses.fields(cls):
        key = (prefix + f.name).replace("-", "_")
        if hasattr(args, key):
            values[f.name] = getattr(args, key)
    values.update(overrides)
    return cls(**values)


def config_argv(parser: argparse.ArgumentParser, values: dict[str, Any], source: str = "config") -> list[str]:
    """Command-line tokens that set `values` ({flag name or dest: value}) on parser's optional flags.

    Keys may be written as the flag (`unet-base-channels`, `--unet-base-channels`) or as its dest
    (`unet_base_channels`). Lists become several values, booleans `--flag` / `--no-flag` (or nothing for a
    false switch), None is skipped. Parsing the tokens before the user's own flags makes the flags override
    the file; argparse checks the values as it checks typed flags.
    """
    by_dest: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "config"):
            by_dest.setdefault(action.dest, action)
    tokens: list[str] = []
    for key, value in values.items():
        dest = str(key).lstrip("-").replace("-", "_")
        found = by_dest.get(dest)
        if found is None:
            valid = ", ".join(sorted(a.option_strings[0].lstrip("-") for a in by_dest.values()))
            raise ValueError(f"{source}: unknown setting {key!r}; valid settings: {valid}")
        action = found
        if value is None:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise ValueError(f"{source}: {key!r} must be true or false, got {value!r}")
            tokens.append(flag if value else "--no-" + flag[2:])
        elif action.nargs == 0:  # store_true / store_false switches
            if not isinstance(value, bool):
                raise ValueError(f"{source}: {key!r} must be true or false, got {value!r}")
            if value != bool(action.default):
                tokens.append(flag)
        elif isinstance(value, (list, tuple)):
            if action.nargs not in ("*", "+") and not isinstance(action.nargs, int):
                raise ValueError(f"{source}: {key!r} takes one value, got a list")
            tokens += [flag, *map(str, value)]
        elif isinstance(value, dict):
            raise ValueError(f"{source}: {key!r} must be a value, not an object")
        else:
            tokens += [flag, str(value)]
    return tokens


def add_guidance_interval_arg(parser: argparse.ArgumentParser) -> None:
    """`--guidance-interval LO HI`: the noise levels sigma at which guidance applies (default: lwgen's)."""
    from .pipeline import DEFAULT_GUIDANCE_INTERVAL

    default = "every step" if DEFAULT_GUIDANCE_INTERVAL is None else "{:g} {:g}".format(*DEFAULT_GUIDANCE_INTERVAL)
    parser.add_argument("--guidance-interval", type=float, nargs=2, default=DEFAULT_GUIDANCE_INTERVAL,
                        metavar=("LO", "HI"),
                        help="apply guidance only at noise levels LO <= sigma <= HI, sigma = sqrt((1 - abar) / abar);"
                             f" the other steps skip the unconditional pass (default: {default})")


def add_guidance_parallel_arg(parser: argparse.ArgumentParser) -> None:
    """`--guidance-parallel W`: the weight of the guidance update's component along the conditional prediction."""
    from .pipeline import DEFAULT_GUIDANCE_PARALLEL

    parser.add_argument("--guidance-parallel", type=float, default=DEFAULT_GUIDANCE_PARALLEL, metavar="W",
                        help="weight of the part of the guidance update parallel to the conditional prediction: 1 is "
                             "plain classifier-free guidance, 0 keeps only the orthogonal part (adaptive projected "
                             "guidance, less over-saturation at large scales) (default: %(default)g)")


def guidance_interval(values: list[float] | tuple[float, float] | None,
                      name: str = "--guidance-interval") -> tuple[float, float] | None:
    """The parsed interval as a tuple, with an error naming the flag when it is empty or negative."""
    if values is None:
        return None
    lo, hi = (float(v) for v in values)
    if not (0 <= lo < hi):
        raise ValueError(f"{name}: expected 0 <= LO < HI, got {lo:g} {hi:g}")
    return lo, hi
