"""Reading an OpenAI token stream: SSE body bytes in, text arrivals, finish, usage and `[DONE]` out.

This runs once per network read of every request, so it is built for the common case: the events of
a read are split by `SSEParser` in C loops, and the usual event, which repeats one JSON shape with
only the text changing, is matched against a learned template instead of being decoded (see
`StreamState`). Only the facts the metrics need are kept: how many events carried text and when the
first and last arrived, whether a choice finished, the last `usage`, and when `[DONE]` came; and,
when asked (a conversation sends its answers back), the answer's text.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import and_, itemgetter, not_
from typing import Any

import orjson

from tmesh.bench.endpoint.openai import CHAT_DELTA, TEXT_FIELDS, is_error_event
from tmesh.bench.load.sse import SSEParser
from tmesh.text import DETAIL_CHARS


class StreamError(ValueError):
    """The body is not a valid OpenAI stream (bad JSON, no `data:`, an error object); the message
    quotes the offending event."""


class StreamState:
    """What the events of one stream said so far: text events and when, finish, usage, `[DONE]`.

    `add` runs once per read and keeps per-event state in local variables. Token streams repeat
    one event shape with only the text changing, so after an event has been decoded in full its
    bytes around the text's JSON string become a template: a later event that is the same prefix,
    one JSON string and the same suffix has, by the grammar, every other field equal to the
    template's, and only that string is decoded. The template is taken only from an event whose
    one non-empty text field is that string and which has no finish reason, usage or error, and only
    after re-decoding it with a marker string in the slot proved the slot is that field. Anything
    else takes the full decode, so the result is exactly what decoding every event would give.

    With `capture`, `answer` collects the pieces of the answer's own field (`text`, or a chat
    delta's `content`; reasoning is not part of the answer a client sends back), in order.
    Without it, `answer` is None and nothing is collected.
    """

    __slots__ = (
        "_fields",
        "_learned",
        "_prefix",
        "_suffix",
        "_template_answers",
        "answer",
        "chat",
        "done_at",
        "events",
        "finished",
        "sse",
        "t_first",
        "t_last",
        "usage",
    )

    def __init__(self, chat: bool, capture: bool = False) -> None:
        self.chat = chat
        self.answer: list[str] | None = [] if capture else None
        self._template_answers = False
        self.sse = SSEParser()
        self.done_at = 0.0
        self.events = 0
        self.finished = False
        self.t_first = 0.0
        self.t_last = 0.0
        self.usage: Any = None
        self._fields = TEXT_FIELDS["chat" if chat else "completions"]
        self._prefix = b""
        self._suffix = b""
        self._learned = 0

    def feed(self, pieces: list[bytes], now: float) -> None:
        """The body bytes of one read (one piece per HTTP chunk, or the whole read), all stamped
        `now`. A line that is not SSE means a broken server, not a line to skip: `StreamError`."""
        sse = self.sse
        self.add(sse.feed_pieces(pieces), now)
        if sse.unknown_line is not None:
            line = _text(sse.unknown_line)
            raise StreamError(f"SSE line without a data: field: {line}")

    def add(self, payloads: list[bytes], now: float) -> None:
        """The event payloads of one read. Raises `StreamError` for an event that is not JSON,
        has no usable shape or is an error."""
        texts = 0
        for at, payload in enumerate(payloads):
            if self._prefix:
                texts += self._batch(payloads[at:], now)
                break
            texts += self._one(payload, now)
        if texts:
            if not self.events:
                self.t_first = now
            self.events += texts
            self.t_last = now

    def _batch(self, payloads: list[bytes], now: float) -> int:
        """The events of a read that fit the template, checked and decoded in C loops (`map`),
        the others one by one. Within one read only the count of text events and the last usage
        depend on the events, and fitting events have no usage, so the split keeps the result."""
        prefix, suffix = self._prefix, self._suffix
        fits = list(
            map(
                and_,
                map(bytes.startswith, payloads, repeat(prefix)),
                map(bytes.endswith, payloads, repeat(suffix)),
            )
        )
        fitting, others = payloads, []
        if False in fits:
            fitting = list(compress(payloads, fits))
            others = list(compress(payloads, map(not_, fits)))
        middle = itemgetter(slice(len(prefix), -len(suffix) or None))
        try:
            values = list(map(orjson.loads, map(middle, fitting)))
        except orjson.JSONDecodeError:
            values = [None]
        if set(map(type, values)) - {str} or (others and self.answer is not None):
            return sum(self._one(payload, now) for payload in payloads)
        if self._template_answers and self.answer is not None:
            self.answer.extend(values)
        return len(values) - values.count("") + sum(self._one(p, now) for p in others)

    def _one(self, payload: bytes, now: float) -> int:
        """One event: `[DONE]`, a fit to the template, or a full decode."""
        if payload == b"[DONE]":
            self.done_at = now
            return 0
        prefix, suffix = self._prefix, self._suffix
        if prefix and payload.startswith(prefix) and payload.endswith(suffix):
            try:
                text = orjson.loads(payload[len(prefix) : len(payload) - len(suffix)])
            except orjson.JSONDecodeError:
                text = None
            if type(text) is str:
                if self._template_answers and self.answer is not None:
                    self.answer.append(text)
                return 1 if text else 0
        return 1 if self._decode(payload) else 0

    def _decode(self, payload: bytes) -> bool:
        """Full decode of one event; returns whether it carried generated text. An error object
        is an event without choices."""
        try:
            event = orjson.loads(payload)
            choices = event.get("choices")
            if not choices:
                if is_error_event(event):
                    raise StreamError("error in stream: " + _text(payload))
                usage = event.get("usage")
                if usage:
                    self.usage = usage
                return False
            choice = choices[0]
            holder = (choice.get(CHAT_DELTA) or {}) if self.chat else choice
            found = [name for name in self._fields if holder.get(name)]
            if self.answer is not None and self._fields[0] in found:
                self.answer.append(str(holder[self._fields[0]]))
            usage = event.get("usage")
            if usage:
                self.usage = usage
            if choice.get("finish_reason"):
                self.finished = True
            elif len(found) == 1 and not usage and self._learned < 4:
                self._learn(payload, event, holder, found[0])
            return bool(found)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise StreamError(f"bad event ({exc}): {_text(payload)}") from exc

    def _learn(self, payload: bytes, event: Any, holder: Any, name: str) -> None:
        """At most a few times per stream: a shape that keeps changing is not worth learning."""
        self._learned += 1
        value = holder[name]
        literal = orjson.dumps(value) if type(value) is str else b""
        key = payload.find(b'"' + name.encode() + b'"')
        at = payload.find(literal, key) if literal and key >= 0 else -1
        if at < 0:
            return
        prefix, suffix = payload[:at], payload[at + len(literal) :]
        holder[name] = "#"
        expected = orjson.dumps(event)
        holder[name] = value
        try:
            probe = orjson.dumps(orjson.loads(prefix + b'"#"' + suffix))
        except orjson.JSONDecodeError:
            probe = b""
        if probe == expected:
            self._prefix, self._suffix = prefix, suffix
            self._template_answers = self.answer is not None and name == self._fields[0]


def _text(raw: bytes) -> str:
    return raw[:DETAIL_CHARS].decode("utf-8", "replace")
