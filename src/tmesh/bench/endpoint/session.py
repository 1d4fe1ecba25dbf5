"""The aiohttp session for requests that are not measured: discovery, probes, /tokenize, /metrics.

Those requests are few and their speed does not matter, so they use an ordinary client; the
measured streams go through `bench.load.http` instead.
"""

from __future__ import annotations

import aiohttp

# aiohttp's default 64 KiB stream limit fails on one long line or one large JSON answer ("Chunk
# too big"), which has broken clients of servers with 50k-token contexts; 4 MiB leaves room.
READ_BUFSIZE = 4 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024


def open_session(limit: int, insecure: bool = False) -> aiohttp.ClientSession:
    """A session of at most `limit` connections; call it from a running event loop.

    Cookies are not kept (a benchmark's requests must be independent of each other), there is no
    total timeout (each call sets its own), and TLS certificates are verified unless `insecure`.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max(1, limit), limit_per_host=0, ssl=not insecure),
        cookie_jar=aiohttp.DummyCookieJar(),
        read_bufsize=READ_BUFSIZE,
        max_line_size=MAX_HEAD_BYTES,
        max_field_size=MAX_HEAD_BYTES,
        timeout=aiohttp.ClientTimeout(total=None),
    )
