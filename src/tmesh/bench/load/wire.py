"""HTTP/1.1 response framing, one network read at a time: the head, then the body's bytes.

Separate from the connection so that it can be tested on any split of any byte string without a
network, and kept to whole-byte-string operations (`find`, `split`, slices, `map`) because it runs
on every read of every request.
"""

from __future__ import annotations

from itertools import repeat

MAX_HEAD_BYTES = 64 * 1024

_HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE = range(4)


class ResponseParser:
    """One response: `feed` each read; after the head, `status`, `reason`, `headers` (lower-case
    names, repeated ones joined with ", ") and `keep_alive` are set. Raises `ValueError` for bytes
    that are not an HTTP/1.x response. 1xx heads are skipped. `leftover` tells whether bytes
    followed the end (the connection can no longer be trusted); `until_close` whether the body ends
    when the connection closes."""

    __slots__ = (
        "_buffer",
        "_chunks",
        "_mode",
        "_remaining",
        "headers",
        "keep_alive",
        "leftover",
        "reason",
        "status",
    )

    def __init__(self) -> None:
        self._mode = _HEAD
        self._buffer = b""
        self._chunks: ChunkedDecoder | None = None
        self._remaining = 0
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.leftover = False

    @property
    def until_close(self) -> bool:
        return self._mode == _UNTIL_CLOSE

    def feed(self, data: bytes) -> tuple[bool, list[bytes], bool]:
        """Whether the head was completed by this read, the body bytes it brought (one piece per
        HTTP chunk, or the whole read), and whether the response has ended."""
        chunks = self._chunks
        if chunks is not None:
            pieces, ended = chunks.feed(data)
            if ended:
                self.leftover = bool(chunks.leftover)
            return False, pieces, ended
        got_head = False
        if self._mode == _HEAD:
            data = self._head(data)
            if self._mode == _HEAD:
                return False, [], False
            got_head = True
            chunks = self._chunks
            if chunks is not None:
                pieces, ended = chunks.feed(data) if data else ([], False)
                self.leftover = bool(chunks.leftover)
                return True, pieces, ended
        if self._mode == _LENGTH:
            take = data[: self._remaining]
            self._remaining -= len(take)
            ended = not self._remaining
            self.leftover = ended and len(take) < len(data)
            return got_head, [take] if take else [], ended
        return got_head, [data] if data else [], False

    def _head(self, data: bytes) -> bytes:
        """Collect the head; returns the body bytes that came with it."""
        buffer = self._buffer + data
        cut = buffer.find(b"\r\n\r\n")
        if cut < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise ValueError("response head larger than 64 KiB")
            self._buffer = buffer
            return b""
        self._buffer = b""
        status, reason, headers, http11 = parse_head(buffer[:cut])
        rest = buffer[cut + 4 :]
        if 100 <= status < 200:
            return self._head(rest) if rest else b""
        connection = headers.get("connection", "").lower()
        self.keep_alive = "close" not in connection and (http11 or "keep-alive" in connection)
        self.status, self.reason, self.headers = status, reason, headers
        if status in (204, 304):
            self._mode = _LENGTH
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = _CHUNKED
            self._chunks = ChunkedDecoder()
        elif "content-length" in headers:
            self._mode = _LENGTH
            self._remaining = int(headers["content-length"])
            if self._remaining < 0:
                raise ValueError("negative Content-Length")
        else:
            self._mode = _UNTIL_CLOSE
            self.keep_alive = False
        return rest


def parse_head(head: bytes) -> tuple[int, str, dict[str, str], bool]:
    """Status, reason, headers (lower-case names, repeated ones joined with ", ") and whether the
    response is HTTP/1.1 or later. Raises `ValueError` for anything that is not an HTTP response."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"bad header line: {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(code), reason.strip(), headers, version != "HTTP/1.0"


class ChunkedDecoder:
    """Incremental `Transfer-Encoding: chunked` decoder: `feed` returns the data bytes completed by
    one read and whether the body has ended. A whole chunk in a read costs one `find` and two
    slices; a chunk cut by a read boundary is carried over. Extensions and trailers are skipped;
    bytes after the end stay in `leftover`. Bad framing raises `ValueError`."""

    __slots__ = ("_buffer", "_remaining", "_state", "leftover")

    SIZE, DATA, CRLF, TRAILER = range(4)

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0
        self._state = self.SIZE
        self.leftover = b""

    def feed(self, data: bytes) -> tuple[list[bytes], bool]:
        if self._state == 0 and not self._buffer:
            whole = _whole_chunks(data)
            if whole is not None:
                return whole
        buffer = self._buffer + data if self._buffer else data
        pieces: list[bytes] = []
        state = self._state
        pos = 0
        end = len(buffer)
        while pos < end:
            if state == 0:  # SIZE: a size line, then (fast path) the whole chunk if it is here
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > 1024:
                        raise ValueError("chunk size line too long")
                    break
                try:
                    size = int(buffer[pos:eol], 16)
                except ValueError:
                    size = int(buffer[pos:eol].split(b";", 1)[0], 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                pos = eol + 2
                if size == 0:
                    state = 3
                    continue
                stop = pos + size
                if stop + 2 <= end:
                    if not buffer.startswith(b"\r\n", stop):
                        raise ValueError("chunk not followed by CRLF")
                    pieces.append(buffer[pos:stop])
                    pos = stop + 2
                    continue
                self._remaining = size
                state = 1
            elif state == 1:  # DATA: the rest of a chunk that a read boundary cut
                take = min(self._remaining, end - pos)
                pieces.append(buffer[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    state = 2
            elif state == 2:  # CRLF after a chunk's data
                if end - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                pos += 2
                state = 0
            else:  # TRAILER lines after the last chunk, up to an empty line
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_HEAD_BYTES:
                        raise ValueError("trailer too long")
                    break
                if eol == pos:
                    self.leftover = buffer[pos + 2 :]
                    self._buffer = b""
                    self._state = state
                    return pieces, True
                pos = eol + 2
        self._state = state
        self._buffer = buffer[pos:] if pos < end else b""
        return pieces, False


def _whole_chunks(data: bytes) -> tuple[list[bytes], bool] | None:
    """The usual read, whole chunks only, de-chunked without a Python loop per chunk: split at
    every CRLF and check that each size field equals the length of the field after it. A CRLF
    inside chunk data cuts that data short of its size, so the check fails and the general loop
    takes over, as it does for extensions, trailers, partial chunks and bytes after the end.
    """
    parts = data.split(b"\r\n")
    if len(parts) % 2 == 0 or parts[-1]:
        return None
    pieces = parts[1:-1:2]
    try:
        if list(map(len, pieces)) != list(map(int, parts[0:-1:2], repeat(16))):
            return None
    except ValueError:
        return None
    if b"" not in pieces:
        return pieces, False
    if pieces.index(b"") != len(pieces) - 1:
        return None
    pieces.pop()
    return pieces, True
