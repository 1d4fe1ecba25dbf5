"""Traces read and checked: both shipped samples, the format guess, and one line naming each
problem."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tmesh.bench.workload.trace import TraceError, load_trace, sample_path


def _write(tmp_path: Path, *rows: dict[str, object] | str) -> Path:
    path = tmp_path / "trace.jsonl"
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _mooncake(stamp: int, length: int, ids: list[int]) -> dict[str, object]:
    return {"timestamp": stamp, "input_length": length, "output_length": 8, "hash_ids": ids}


@pytest.mark.parametrize(
    ("name", "fmt", "block", "count"),
    [("sample:mooncake", "mooncake", 512, 48), ("sample:bailian", "bailian", 16, 40)],
)
def test_the_samples_load_and_say_what_they_share(
    name: str, fmt: str, block: int, count: int
) -> None:
    trace = load_trace(Path(name))
    assert (trace.format, trace.block_size, len(trace.requests)) == (fmt, block, count)
    assert trace.requests[0].arrival == 0.0
    assert all(a.arrival <= b.arrival for a, b in itertools.pairwise(trace.requests))
    assert 30 < trace.span < 120
    firsts = [r.hash_ids[0] for r in trace.requests]
    assert len(set(firsts)) < len(firsts), "requests share prefixes"
    assert max(r.input_length + r.output_length for r in trace.requests) < 8192
    assert sample_path(Path(name)).is_file()


def test_timestamps_become_seconds_from_the_first_request(tmp_path: Path) -> None:
    path = _write(tmp_path, _mooncake(1000, 600, [1, 2]), _mooncake(3500, 512, [1]))
    trace = load_trace(path)
    assert [r.arrival for r in trace.requests] == [0.0, 2.5]
    assert trace.requests[1].line == 2
    bailian = {**_mooncake(10, 20, [1, 2]), "chat_id": 0, "parent_chat_id": -1, "turn": 1}
    assert load_trace(_write(tmp_path, bailian)).format == "bailian"


def test_a_given_block_size_and_format_win(tmp_path: Path) -> None:
    path = _write(tmp_path, _mooncake(0, 100, [1, 2, 3, 4]))
    trace = load_trace(path, "bailian", block_size=32)
    assert (trace.format, trace.block_size) == ("bailian", 32)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: not a JSON object"),
        ({"timestamp": 5, "input_length": 10}, "line 2: no output_length, hash_ids"),
        (_mooncake(5, 1100, [1, 2]), "input_length 1100 in blocks of 512 tokens needs 3"),
        (_mooncake(5, 0, []), "input_length must be a whole number >= 1"),
        ({**_mooncake(5, 10, [1]), "output_length": 2.5}, "output_length must be a whole"),
        (_mooncake(5, 10, ["a"]), "hash_ids must be a list of whole numbers"),
        (_mooncake(-1, 10, [1]), "timestamp must be a number >= 0"),
        (_mooncake(0, 10, [1]), "line 2: the timestamp goes back in time"),
    ],
)
def test_a_bad_line_is_one_line_naming_it(
    tmp_path: Path, row: dict[str, object] | str, message: str
) -> None:
    path = _write(tmp_path, _mooncake(1, 10, [7]), row)
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"--trace {path}")
    assert "\n" not in str(caught.value)


def test_an_empty_or_missing_file_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TraceError, match="has no requests"):
        load_trace(empty)
    with pytest.raises(TraceError, match="cannot read it"):
        load_trace(tmp_path / "missing.jsonl")
