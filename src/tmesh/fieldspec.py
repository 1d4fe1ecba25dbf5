"""An option declared once: a dataclass field that carries its help, unit, bounds and flag.

The command line, the checks on values given from Python and the help text all derive from the
field, so a default, a bound or a unit cannot differ between them. A leaf module: the option
records of every layer (the benchmark's, the simulator's) can use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OptionSpec:
    """How one option is shown and checked.

    `flag` is `--field-name` unless given, and `None` (with `flagged=False`) for settings that
    have no flag. `minimum` bounds numbers (`above_minimum` makes it strict: > rather than >=).
    `default_text` replaces the default in the help when the bare value would not explain
    itself (`None` meaning "sized from …", say). `negate` turns a boolean that defaults to True
    into a `--no-…` switch. `check` vets a value the other fields cannot describe (a list of
    limits in one string, say): it returns what the value must be instead, or None.
    """

    help: str
    group: str
    metavar: str | None = None
    unit: str | None = None
    minimum: float | None = None
    above_minimum: bool = False
    choices: tuple[str, ...] | None = None
    default_text: str | None = None
    flag: str | None = None
    flagged: bool = True
    negate: bool = False
    check: Callable[[Any], str | None] | None = None


def option(default: Any, **spec: Any) -> Any:
    """A dataclass field with its `OptionSpec` (keyword arguments as its fields)."""
    return dataclasses.field(default=default, metadata={"option": OptionSpec(**spec)})


def parsed_by(parse: Callable[[str], Any]) -> Callable[[Any], str | None]:
    """A `check` for options written as text that `parse` reads: its ValueError's message says
    what the value must be."""

    def check(value: Any) -> str | None:
        try:
            parse(str(value))
        except ValueError as exc:
            return str(exc)
        return None

    return check


def spec_of(field: dataclasses.Field[Any]) -> OptionSpec | None:
    found = field.metadata.get("option")
    return found if isinstance(found, OptionSpec) else None


def flag_name(field: dataclasses.Field[Any]) -> str:
    spec = spec_of(field)
    name = field.name.replace("_", "-")
    if spec is not None and spec.flag:
        return spec.flag
    return f"--no-{name}" if spec is not None and spec.negate else f"--{name}"


def help_text(field: dataclasses.Field[Any]) -> str:
    """The help line with its default: what `--help` shows for the field."""
    spec = spec_of(field)
    assert spec is not None, f"{field.name} is not an option"
    if spec.negate:
        return spec.help
    if spec.default_text is not None:
        return f"{spec.help} (default: {spec.default_text})"
    default = field.default
    if default is None or default is False:
        return spec.help
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{spec.help} (default: {shown})"


class OptionError(ValueError):
    """A value outside what its option allows; the message is one line naming the flag."""


def check(field: dataclasses.Field[Any], value: Any) -> None:
    """Raise `OptionError` if `value` is not allowed for `field` (None passes where it is the
    default: "not given")."""
    why = problem(field, value)
    if why is not None:
        raise OptionError(f"{flag_name(field)} must be {why}, not {value!r}")


def problem(field: dataclasses.Field[Any], value: Any) -> str | None:
    """What `value` must be instead, or None when it is allowed."""
    spec = spec_of(field)
    if spec is None or value is None or isinstance(value, bool):
        return None
    if spec.choices is not None and value not in spec.choices:
        return f"one of {', '.join(spec.choices)}"
    why = _below_minimum(spec, value)
    if why is None and spec.check is not None:
        return spec.check(value)
    return why


def _below_minimum(spec: OptionSpec, value: Any) -> str | None:
    if spec.minimum is None or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    low = spec.minimum
    if value < low or (spec.above_minimum and value == low):
        return f"> {low:g}" if spec.above_minimum else f">= {low:g}"
    return None


def check_all(record: Any) -> None:
    """Check every option of a dataclass instance (`OptionError` on the first bad one)."""
    for field in dataclasses.fields(record):
        check(field, getattr(record, field.name))
