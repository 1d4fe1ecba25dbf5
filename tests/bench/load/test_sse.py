"""SSE parser: framing rules, and that how a stream is cut into reads never changes the events."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from tmesh.bench.load.sse import SSEParser


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], SSEParser]:
    parser = SSEParser()
    events: list[bytes] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events, parser


def test_single_event_fast_path() -> None:
    assert SSEParser().feed(b'data: {"a":1}\n\n') == [b'{"a":1}']


def test_several_events_in_one_read_and_done_is_returned() -> None:
    stream = b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    assert feed_all([stream])[0] == [b"1", b"2", b"[DONE]"]


def test_event_split_across_reads_is_returned_once_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"da") == []
    assert parser.feed(b"ta: hel") == []
    assert parser.feed(b"lo\n") == []
    assert parser.feed(b"\ndata: x") == [b"hello"]
    assert parser.feed(b"\n\n") == [b"x"]


def test_crlf_and_cr_line_endings() -> None:
    assert feed_all([b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"])[0] == [b"a", b"b", b"c"]


def test_crlf_split_between_reads_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r") == [b"a"]
    assert parser.feed(b"\n") == []
    assert parser.feed(b"data: b\r\n\r\n") == [b"b"]


def test_comments_and_other_fields_are_ignored() -> None:
    stream = b": keep-alive\n\nevent: message\nid: 7\nretry: 10\n: note\ndata: x\n\n"
    events, parser = feed_all([stream])
    assert events == [b"x"]
    assert parser.unknown_line is None


def test_data_without_space_multiline_and_empty_value() -> None:
    stream = b"data:no-space\n\ndata:  two spaces\n\ndata: line1\ndata:line2\n\ndata\n\n"
    assert feed_all([stream])[0] == [b"no-space", b" two spaces", b"line1\nline2", b""]


def test_line_without_field_is_reported_not_returned() -> None:
    events, parser = feed_all([b'{"choices": []}\n\ndata: ok\n\n'])
    assert events == [b"ok"]
    assert parser.unknown_line == b'{"choices": []}'


def test_incomplete_event_at_end_is_held_back() -> None:
    assert feed_all([b"data: 1\n\ndata: 2\n"])[0] == [b"1"]


def test_blank_lines_between_events_dispatch_nothing() -> None:
    assert feed_all([b"\n\n\ndata: 1\n\n\n\n\ndata: 2\n\n"])[0] == [b"1", b"2"]


VALUE = st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
ENDINGS = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A valid stream with a random mix of line endings, comments and fields, and its payloads."""
    lines: list[bytes] = []
    expected: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        data: list[bytes] = []
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["data", "data-nospace", "comment", "field"]))
            value = draw(VALUE)
            if kind == "data":
                lines.append(b"data: " + value)
                data.append(value)
            elif kind == "data-nospace":
                lines.append(b"data:" + value)
                data.append(value[1:] if value[:1] == b" " else value)
            elif kind == "comment":
                lines.append(b":" + value)
            else:
                lines.append(draw(st.sampled_from([b"event", b"id", b"retry"])) + b": " + value)
        lines.append(b"")
        if data:
            expected.append(b"\n".join(data))
    stream = b""
    previous = b""
    for line in lines:
        ending = draw(ENDINGS)
        if previous == b"\r" and not line and ending == b"\n":
            ending = b"\r\n"
        stream += line + ending
        previous = ending
    return stream, expected


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(case=event_streams(), data=st.data())
def test_any_split_into_reads_yields_the_same_events(
    case: tuple[bytes, list[bytes]], data: st.DataObject
) -> None:
    stream, expected = case
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed_all(chunks)[0] == expected
    assert feed_all([stream[i : i + 1] for i in range(len(stream))])[0] == expected


def test_feed_pieces_fast_path_cuts_payloads_out_of_whole_events() -> None:
    pieces = [b'data: {"a":1}\n\n', b"data: [DONE]\n\n"]
    assert SSEParser().feed_pieces(pieces) == [b'{"a":1}', b"[DONE]"]


PIECE = st.one_of(
    st.sampled_from([b"data: x\n\n", b"data: \n\n", b"data: a\nb\n\n", b": c\n\n", b"data: y\r\n"]),
    st.binary(max_size=10),
)


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(reads=st.lists(st.lists(PIECE, min_size=1, max_size=5), max_size=6))
def test_feed_pieces_equals_feeding_the_joined_pieces(reads: list[list[bytes]]) -> None:
    by_pieces, joined = SSEParser(), SSEParser()
    for pieces in reads:
        assert by_pieces.feed_pieces(pieces) == joined.feed(b"".join(pieces))
    assert by_pieces.unknown_line == joined.unknown_line
