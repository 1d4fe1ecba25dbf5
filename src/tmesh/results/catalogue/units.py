"""Units of the catalogue's metrics and the two styles their values are written in.

The console keeps the format of tmesh-cli's text output, which users grep and parse: four
significant figures, `n/a`, `tokens/s`, seconds as seconds. The report is read by people comparing
runs: three significant figures, `—`, `tok/s`, thousands separators and sub-second times in ms.
Both are chosen by a value's unit here, so a consumer never formats a number itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

SECONDS, TOKENS_PER_S, REQUESTS_PER_S, COUNT, PERCENT = "s", "tok/s", "req/s", "count", "%"
"""Units of tmesh's own metrics; their spelling is written into CSV and JSON exports."""
FRACTION, TOKENS, BYTES, RATIO = "fraction", "tokens", "bytes", "x"
TURNS = "turns"
"""Turns of a session (a mean, so not a whole count)."""
"""Units of the server figures: a share from 0 to 1 (shown as a percentage), token counts,
bytes (shown in binary multiples) and a dimensionless ratio (shown as `2.70x`)."""

NOT_AVAILABLE = "n/a"
"""The console's word for a value that does not exist (yet)."""
MISSING = "—"
"""The report's mark for a value that does not exist."""

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB")


def console_value(value: float | None, unit: str) -> str:
    """A value in the console's style: `1.194 s`, `81783.9 tokens/s`, `7.394` (QPS), `12.5%`."""
    text = _console_number(value, unit)
    return text if text == NOT_AVAILABLE else text + _CONSOLE_SUFFIXES.get(unit, "")


def console_values(values: Iterable[float | None], unit: str) -> str:
    """Several values of one unit on one line, the unit said once: `1.800 / 2.500 / 2.900 s`."""
    numbers = [_console_number(value, unit) for value in values]
    if all(number == NOT_AVAILABLE for number in numbers):
        return NOT_AVAILABLE
    return " / ".join(numbers) + _CONSOLE_SUFFIXES.get(unit, "")


def _console_number(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    return _CONSOLE_NUMBERS.get(unit, _console_plain)(value)


def significant(value: float, digits: int = 4) -> str:
    """`digits` significant digits in fixed notation (no exponent: users paste these)."""
    value = float(f"{value:.{digits}g}")
    if value == 0:
        return f"{0:.{digits - 1}f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def _console_plain(value: float) -> str:
    return f"{int(value)}" if value == int(value) else f"{value:.4g}"


def _console_fraction(value: float) -> str:
    """A share as a percentage; a value outside 0..1 is not a share, so it is shown as it is."""
    return f"{value * 100:.1f}%" if 0.0 <= value <= 1.0 else _console_plain(value)


def _console_bytes(value: float) -> str:
    scaled, name = _binary(value)
    return f"{scaled:.{0 if name == 'B' else 1}f} {name}"


def format_value(value: float | None, unit: str) -> str:
    """A value in the report's style: three significant figures, a unit, sub-second times in ms."""
    if value is None or not math.isfinite(value):
        return MISSING
    style = _REPORT_VALUES.get(unit)
    return style(value) if style is not None else f"{_three_figures(value)} {unit}"


def _report_count(value: float) -> str:
    return f"{round(value):,}"


def _report_percent(value: float) -> str:
    return f"{value:.1f}%" if value >= 0.1 or value == 0 else f"{value:.2g}%"


def _report_seconds(value: float) -> str:
    if abs(value) < 1:
        return f"{_three_figures(value * 1000)} ms"
    return f"{_three_figures(value)} {SECONDS}"


def _report_bytes(value: float) -> str:
    scaled, name = _binary(value)
    return f"{_three_figures(scaled)} {name}"


def _three_figures(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_ratio(ratio: float | None) -> str:
    """`2.70x`, `0.31x`: the form the verdict, the comparison and both styles share."""
    if ratio is None or not math.isfinite(ratio):
        return MISSING
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _binary(value: float) -> tuple[float, str]:
    """`value` bytes in the largest binary multiple that keeps it under 1024 (TiB at most)."""
    for name in _BINARY[:-1]:
        if abs(value) < 1024:
            return value, name
        value /= 1024
    return value, _BINARY[-1]


_CONSOLE_NUMBERS: dict[str, Callable[[float], str]] = {
    SECONDS: significant,
    REQUESTS_PER_S: significant,
    TOKENS_PER_S: lambda value: f"{value:.1f}",
    PERCENT: lambda value: f"{value:.1f}%",
    FRACTION: _console_fraction,
    BYTES: _console_bytes,
    RATIO: format_ratio,
}
"""The console's number for each unit; counts and tokens (any other unit) as they are."""
_CONSOLE_SUFFIXES = {SECONDS: " s", TOKENS_PER_S: " tokens/s"}
"""What the console writes after the number; the other units carry theirs in the number."""
_REPORT_VALUES: dict[str, Callable[[float], str]] = {
    COUNT: _report_count,
    TOKENS: _report_count,
    PERCENT: _report_percent,
    FRACTION: lambda value: _report_percent(100 * value),
    SECONDS: _report_seconds,
    BYTES: _report_bytes,
    RATIO: format_ratio,
}
"""The report's text for each unit; any other unit (a rate) as three figures and the unit."""
