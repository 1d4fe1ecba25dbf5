"""How a run ended and how its requests failed, in words: the console says these, never the keys.

The keys (`StopReason`, `ErrorKind`) are what `summary.json` and `requests.jsonl` hold and what
the 5-second block counts errors by; the words say what each means to someone reading a summary.
"""

from __future__ import annotations

STOP_REASON_WORDS: dict[str, str] = {
    "duration": "--duration reached",
    "max-requests": "--max-requests finished",
    "signal": "stopped by Ctrl-C or SIGTERM",
    "errors": "stopped because requests kept failing",
    "failed": "stopped by a failure inside tmesh",
    "write-error": "stopped: the run folder took no more writes",
    "worker-lost": "stopped: a load-generating worker process was lost",
    "stopped": "the load ended",
    "interrupted": "interrupted by a second Ctrl-C",
    "cancelled": "stopped: the Python task running it was cancelled",
    "end": "the trace was replayed to its end",
}
"""Why a run ended, as the summary says it."""

ERROR_KIND_MEANINGS: dict[str, str] = {
    "connect": "no connection, or the connection closed before an answer",
    "timeout": "no byte from the server for --request-timeout",
    "http_4xx": "the server refused the request (HTTP 4xx other than 429)",
    "http_5xx": "the server failed the request (HTTP 5xx)",
    "http_429": "the server asked to slow down (HTTP 429)",
    "stream_cut": "the stream ended before its end marker",
    "malformed": "the answer was not a valid OpenAI stream",
}
"""What each error kind means."""


def stop_reason_words(reason: str) -> str:
    """The words for a stop reason (an unknown one, from a newer tmesh's file, as it is)."""
    return STOP_REASON_WORDS.get(reason, reason)


def error_kind_meaning(kind: str) -> str:
    return ERROR_KIND_MEANINGS.get(kind, "")
