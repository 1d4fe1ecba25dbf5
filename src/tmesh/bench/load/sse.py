"""Incremental Server-Sent Events parser for OpenAI-style token streams.

The client calls `feed` once per network read, so this sits on the hot path of every request: it
works on whole byte strings with `bytes.find`/`split`/`replace` (C loops) and never walks the input
one byte at a time in Python. The common vLLM/SGLang event (`data: {...}` then a blank line, LF
endings) takes a fast path that is a single slice.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter

_KNOWN_FIELDS = frozenset((b"data", b"event", b"id", b"retry"))
_DATA_PREFIX = b"data: "
_PAYLOAD = itemgetter(slice(6, -2))


class SSEParser:
    """Turns arbitrarily split reads of an `text/event-stream` body into event payloads.

    Follows the WHATWG event-stream rules that matter for token streams: CRLF, LF and lone CR all
    end a line (a CR at the end of one read may be the first half of a CRLF finished by the next
    read); a blank line dispatches the event; `:` lines are comments; the `data:` lines of one event
    are joined with "\\n" and one leading space of a value is dropped; `event:`, `id:` and `retry:`
    are ignored. An incomplete event still buffered when the stream ends is discarded, as the
    standard says.

    `unknown_line` keeps the first line that is neither a comment nor a known field (e.g. a JSON
    object without `data:`): the standard ignores such lines, but for a benchmark they mean the
    server is broken and the request must not count as a success, so the client checks it.
    """

    __slots__ = ("_buffer", "_pending_cr", "unknown_line")

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False
        self.unknown_line: bytes | None = None

    def feed_pieces(self, pieces: list[bytes]) -> list[bytes]:
        """Like `feed` of the pieces joined. Servers send one event per HTTP chunk, so when the
        parser is between events and every piece is one `data: ` line and its blank line, the
        payloads are cut out of the pieces directly (checks and slices in C loops)."""
        joined = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if (
            not self._buffer
            and not self._pending_cr
            and b"\r" not in joined
            and joined.count(b"\n") == 2 * len(pieces)
            and all(map(bytes.endswith, pieces, repeat(b"\n\n")))
            and all(map(bytes.startswith, pieces, repeat(_DATA_PREFIX)))
        ):
            return list(map(_PAYLOAD, pieces))
        return self.feed(joined)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add one read; return the `data` payloads of the events it completed, in order."""
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._pending_cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[cut + 2 :]
        blocks = buffer[:cut].split(b"\n\n")
        if buffer.count(b"\n", 0, cut) == 2 * len(blocks) - 2:
            payloads = [block[6:] for block in blocks if block[:6] == _DATA_PREFIX]
            if len(payloads) == len(blocks):
                return payloads
        payloads = []
        for block in blocks:
            if block.startswith(_DATA_PREFIX) and b"\n" not in block:
                payloads.append(block[6:])
            elif block:
                self._parse_block(block, payloads)
        return payloads

    def _parse_block(self, block: bytes, payloads: list[bytes]) -> None:
        """The general path: several lines, comments, other fields, `data:` without a space."""
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line or line[0] == 0x3A:
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                data.append(value[1:] if value[:1] == b" " else value)
            elif name not in _KNOWN_FIELDS and self.unknown_line is None:
                self.unknown_line = line
        if data:
            payloads.append(b"\n".join(data))
