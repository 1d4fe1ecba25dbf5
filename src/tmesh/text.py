"""How a credential may appear anywhere tmesh writes: masked, one rule for every output.

A leaf module (it imports nothing of tmesh), so every stage can use it without reaching
backwards: discovery messages, request error details, run files and the console all mask alike.
"""

from __future__ import annotations

from collections.abc import Iterable


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
