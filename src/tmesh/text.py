"""How a credential may appear anywhere tmesh writes: masked, one rule for every output.

A leaf module (it imports nothing of tmesh), so every stage can use it without reaching
backwards: discovery messages, request error details, run files and the console all mask alike.
"""

from __future__ import annotations

from collections.abc import Iterable

DETAIL_CHARS = 200


def mask_key(key: str | None) -> str:
    """The first 4 characters then `…`; short keys show at most half of themselves."""
    if not key:
        return "(none)"
    return key[: min(4, len(key) // 2)] + "…"


def scrub(text: str, secrets: str | Iterable[str] | None) -> str:
    """`text` with every occurrence of each secret masked.

    Servers echo keys in error bodies and exceptions quote headers; this is the last line of
    defence for any text that leaves the process.
    """
    if not secrets:
        return text
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        if secret:
            text = text.replace(secret, mask_key(secret))
    return text


def one_line(
    text: str, secrets: str | Iterable[str] | None = None, limit: int = DETAIL_CHARS
) -> str:
    """`text` as one short line (whitespace collapsed, cut at `limit`), secrets masked: how any
    message from a server or an exception is shown."""
    return " ".join(scrub(text, secrets).split())[:limit]
