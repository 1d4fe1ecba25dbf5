"""Request traces read and checked: Mooncake's and Alibaba Bailian's JSON Lines.

Both describe each request by when it arrived, its input and output lengths, and `hash_ids`: one
id per block of `block_size` prompt tokens, the last block possibly partial, chained so that equal
ids at the start of two requests mean an equal prefix. Mooncake's timestamps are milliseconds and
its blocks 512 tokens; Bailian's timestamps are seconds, its blocks 16 tokens, and each line also
names its conversation (`chat_id`, `parent_chat_id`, `turn`), which replay does not need: the ids
already say what is shared. Every line is checked before anything is sent, and a bad one is
named in one line.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

TraceFormat = Literal["mooncake", "bailian"]
TRACE_FORMATS: tuple[TraceFormat, ...] = get_args(TraceFormat)
BLOCK_SIZES: dict[TraceFormat, int] = {"mooncake": 512, "bailian": 16}
SECONDS_PER_UNIT: dict[TraceFormat, float] = {"mooncake": 0.001, "bailian": 1.0}
BAILIAN_KEYS = ("chat_id", "parent_chat_id", "turn")
REQUIRED = ("timestamp", "input_length", "output_length", "hash_ids")
SAMPLES = {"sample:mooncake": "mooncake-sample.jsonl", "sample:bailian": "bailian-sample.jsonl"}
"""The sample traces tmesh ships, by the name `--trace` takes for them."""


class TraceError(ValueError):
    """A trace that cannot be replayed as written; the message is one line naming the line."""


@dataclass(frozen=True)
class TraceRequest:
    """One line of a trace: when it arrives (seconds after the trace's first request), its token
    lengths and its block ids."""

    line: int
    arrival: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


@dataclass(frozen=True)
class Trace:
    path: Path
    format: TraceFormat
    block_size: int
    requests: tuple[TraceRequest, ...]

    @property
    def span(self) -> float:
        """Seconds from the first arrival to the last."""
        return self.requests[-1].arrival if self.requests else 0.0


def load_trace(path: Path, fmt: str = "auto", block_size: int | None = None) -> Trace:
    """The trace at `path`, every line checked; `fmt` "auto" tells the format from the first
    line, and `block_size` defaults to the format's. A sample's name stands for its file."""
    path = sample_path(path)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise TraceError(f"--trace {path}: cannot read it ({exc.strerror or exc})") from None
    rows = [(number, text) for number, text in enumerate(lines, 1) if text.strip()]
    if not rows:
        raise TraceError(f"--trace {path}: the file has no requests")
    parsed = [(number, _object(path, number, text)) for number, text in rows]
    chosen = _format(fmt, parsed[0][1])
    size = block_size or BLOCK_SIZES[chosen]
    raw = [_request(path, number, fields, chosen, size) for number, fields in parsed]
    for before, after in itertools.pairwise(raw):
        if after.arrival < before.arrival:
            raise TraceError(
                f"{_where(path, after.line)}: the timestamp goes back in time "
                "(a trace lists its requests in arrival order)"
            )
    start, unit = raw[0].arrival, SECONDS_PER_UNIT[chosen]
    requests = tuple(replace(r, arrival=(r.arrival - start) * unit) for r in raw)
    return Trace(path, chosen, size, requests)


def sample_path(path: Path) -> Path:
    """The file of a shipped sample (`sample:mooncake`, `sample:bailian`), else `path`."""
    name = SAMPLES.get(str(path))
    return Path(__file__).with_name("traces") / name if name else path


def _format(fmt: str, first: dict[str, Any]) -> TraceFormat:
    if fmt in TRACE_FORMATS:
        return fmt
    return "bailian" if any(key in first for key in BAILIAN_KEYS) else "mooncake"


def _object(path: Path, number: int, text: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise TraceError(f"{_where(path, number)}: not JSON") from None
    if not isinstance(value, dict):
        raise TraceError(f"{_where(path, number)}: not a JSON object")
    return value


def _request(
    path: Path, number: int, fields: dict[str, Any], fmt: TraceFormat, block_size: int
) -> TraceRequest:
    """The line checked, its arrival still in the trace's own unit and origin."""
    where = _where(path, number)
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        raise TraceError(f"{where}: no {', '.join(missing)} (is it a {fmt} trace?)")
    stamp = fields["timestamp"]
    if not _number(stamp) or not math.isfinite(stamp) or stamp < 0:
        raise TraceError(f"{where}: timestamp must be a number >= 0, not {stamp!r:.40}")
    lengths = [fields["input_length"], fields["output_length"]]
    for name, value in zip(("input_length", "output_length"), lengths, strict=True):
        if not _number(value) or value != int(value) or value < 1:
            raise TraceError(f"{where}: {name} must be a whole number >= 1, not {value!r:.40}")
    ids = fields["hash_ids"]
    if not isinstance(ids, list) or not all(_number(i) and i == int(i) for i in ids):
        raise TraceError(f"{where}: hash_ids must be a list of whole numbers")
    input_length = int(lengths[0])
    needed = -(-input_length // block_size)
    if len(ids) != needed:
        raise TraceError(
            f"{where}: input_length {input_length} in blocks of {block_size} tokens needs "
            f"{needed} hash_ids, the line has {len(ids)} (pass the trace's --block-size)"
        )
    return TraceRequest(
        number, float(stamp), input_length, int(lengths[1]), tuple(int(i) for i in ids)
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _where(path: Path, number: int) -> str:
    return f"--trace {path} line {number}"
