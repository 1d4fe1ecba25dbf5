"""Records read back from the JSON a run folder holds: the inverse of `dataclasses.asdict`.

Anyone reading a run (the report, compare, the Python API) gets records of exactly the shapes the
benchmark wrote, checked on the way in: a string where a number belongs, from a hand-edited or
damaged file, is caught here, by name, rather than as a traceback far from the file.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any, TypeGuard, TypeVar

T = TypeVar("T")


class RecordShapeError(ValueError):
    """A JSON object that does not have the shape of the record it should hold."""


def build_record(cls: type[T], data: Any) -> T:
    """A records dataclass from its `asdict` form; unknown keys are ignored (newer writers).

    Numbers are type-checked because every renderer does arithmetic on them; a string where a
    float belongs would otherwise surface as a traceback far from the file that caused it.
    """
    if not isinstance(data, dict):
        raise RecordShapeError(f"{cls.__name__} must be a JSON object")
    schema = _schema(cls)
    kwargs = {name: _convert(options, data[name], name) for name, options in schema if name in data}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [name for name, _ in schema if name not in data]
        raise RecordShapeError(f"{cls.__name__} lacks {', '.join(missing) or exc}") from None


Schema = tuple[tuple[str, tuple[Any, ...]], ...]
_SCHEMAS: dict[type[Any], Schema] = {}


def _schema(cls: type[Any]) -> Schema:
    """Each field's name and the types it may hold, resolved once per class (it is costly).

    Cached by hand: mypy does not take a class of unknown type as `functools.cache`'s Hashable.
    """
    schema = _SCHEMAS.get(cls)
    if schema is None:
        hints = typing.get_type_hints(cls)
        schema = tuple((spec.name, _union_members(hints[spec.name])) for spec in fields(cls))
        _SCHEMAS[cls] = schema
    return schema


def _convert(options: tuple[Any, ...], value: Any, name: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise RecordShapeError(f"{name} is null")
    for option in options:
        if option is float or option is int:
            if is_number(value) and (option is float or float(value).is_integer()):
                return option(value)
        elif option is str or option is bool:
            if isinstance(value, option):
                return value
        elif typing.get_origin(option) is typing.Literal:
            # A name another version may have added (a new error kind or stop reason) is kept,
            # not refused: the files of that run are still good.
            if isinstance(value, str):
                return value
        elif isinstance(option, type) and is_dataclass(option):
            return build_record(option, value)
        elif typing.get_origin(option) is dict and isinstance(value, dict):
            return _number_map(option, value, name)
        elif typing.get_origin(option) is list and isinstance(value, list):
            (item,) = typing.get_args(option)
            return [_convert((item,), element, f"{name}[{i}]") for i, element in enumerate(value)]
    raise RecordShapeError(f"{name} has an unexpected value {value!r:.40}")


def _number_map(option: Any, value: dict[str, Any], name: str) -> dict[str, Any]:
    """A `dict[str, number]` field (error counts, server figures) with its values checked too.

    A null value is left out: it is how orjson writes a NaN, e.g. a gauge a server exposed as NaN,
    and renderers treat a missing key as "not known".
    """
    members = _union_members(typing.get_args(option)[1])
    return {
        key: _convert(members, item, f"{name}.{key}")
        for key, item in value.items()
        if item is not None
    }


def _union_members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
