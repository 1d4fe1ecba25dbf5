"""Flags built from declared options, and the exit codes every command shares.

A bad flag is one line and exit code 2, never argparse's usage dump: scripts read the line, and a
user sees what to fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, NoReturn

from tmesh.fieldspec import flag_name, help_text, problem, spec_of

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Flags that parse but do not go together; shown like any bad flag (one line, exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def add_option_flags(
    parser: argparse.ArgumentParser,
    record: type[Any],
    shown: Mapping[str, Any] | None = None,
    exclude: Collection[str] = (),
) -> None:
    """One flag per option field of the dataclass `record`, in declaration order, grouped.

    `shown` gives defaults that only a layer above the options knows (the simulator's default
    profile, say): the help shows them; the field keeps its own default (None: "not chosen").
    `exclude` names fields whose flag another record declares (a sweep's lists of values).
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    hints = typing.get_type_hints(record)
    for field in dataclasses.fields(record):
        spec = spec_of(field)
        if spec is None or not spec.flagged or field.name in exclude:
            continue
        if spec.group not in groups:
            groups[spec.group] = parser.add_argument_group(spec.group)
        _add_flag(groups[spec.group], field, hints[field.name], (shown or {}).get(field.name))


def _add_flag(
    group: argparse._ArgumentGroup, field: dataclasses.Field[Any], hint: Any, shown: Any
) -> None:
    spec = spec_of(field)
    assert spec is not None
    name = flag_name(field)
    text = help_text(field)
    if spec.negate:
        group.add_argument(name, dest=field.name, action="store_false", help=text)
        return
    if _base_type(hint) is bool:
        group.add_argument(name, dest=field.name, action="store_true", help=text)
        return
    if shown is not None:
        text = f"{text} (default: {shown})"
    group.add_argument(
        name,
        dest=field.name,
        default=field.default,
        type=_argparse_type(field, _base_type(hint)),
        choices=spec.choices,
        metavar=spec.metavar,
        help=text,
    )


def _base_type(hint: Any) -> Any:
    """`int | None` → int; `Literal[...]` → str."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return str
    if args and typing.get_origin(hint) is not None:
        return _base_type(args[0])
    return hint


def _argparse_type(field: dataclasses.Field[Any], kind: Any) -> Callable[[str], Any]:
    """Numbers and text an option checks (`OptionSpec.check`) are vetted as they parse; other
    text and choices are argparse's."""
    spec = spec_of(field)
    if kind is Path or (kind is str and (spec is None or spec.check is None)):
        return kind
    return number(kind, lambda value: problem(field, value))


def number(
    kind: Callable[[str], Any], why_not: Callable[[Any], str | None]
) -> Callable[[str], Any]:
    """An argparse type: text → `kind`, then `why_not(value)` names what it must be instead
    (None when it is fine). The message stays one line of ours (argparse rewords ValueError)."""
    name = getattr(kind, "__name__", "number")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {name}") from None
        why = why_not(value)
        if why is not None:
            raise argparse.ArgumentTypeError(f"{text!r} must be {why}")
        return value

    parse.__name__ = name
    return parse


def within(low: float, high: float | None = None) -> Callable[[Any], str | None]:
    """`why_not` for a closed range (no upper bound when `high` is None)."""
    if high is None:
        return lambda value: None if value >= low else f">= {low:g}"
    return lambda value: None if low <= value <= high else f"between {low:g} and {high:g}"


def options_from_namespace(record: type[Any], args: argparse.Namespace, **given: Any) -> Any:
    """The dataclass `record` from parsed flags (flags' dest names are the field names); `given`
    sets the fields the command line fills otherwise (a key from the environment, say)."""
    parsed = vars(args)
    values = {f.name: parsed[f.name] for f in dataclasses.fields(record) if f.name in parsed}
    values.update(given)
    return record(**values)
