"""Where requests go: the URL the user typed, made into the API base, and the model served there.

Users paste whatever URL they have at hand (a bare `host:port`, a full `/v1/chat/completions`, a
proxy path); all of them name the same OpenAI-compatible base `…/v1`. Discovery failures are the
first thing a new user meets, so each one says in one line what went wrong and where.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
import orjson

from tmesh.bench.endpoint.dialects import CONTEXT_PROBES, ContextLimit, context_from_model
from tmesh.bench.endpoint.openai import ALL_ROUTES, MODELS_ROUTE
from tmesh.text import one_line, scrub

SCHEMES = ("http", "https")
PROBE_TIMEOUT_S = 5.0
RETRY_PAUSES_S = (0.25, 0.5, 1.0)
"""Pauses between discovery attempts while the server is not ready; the last one repeats, so a
server that comes up is found within a second and the countdown moves every second."""
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


class EndpointError(ValueError):
    """`--endpoint` cannot be a URL of an OpenAI-compatible server; the message is one line."""


class DiscoveryError(Exception):
    """Asking the server for its models failed; `str()` is one line naming the cause and the URL.

    `transient` marks failures a server gives while it starts or restarts (refused, reset, no
    answer in time, HTTP 5xx or 429): worth trying again. The others (a refused key, no model
    list at that URL, DNS, TLS, an answer that is not a model list) will not change by waiting.
    """

    def __init__(self, cause: str, url: str, transient: bool = False) -> None:
        super().__init__(f"model discovery failed: GET {url}: {cause}")
        self.cause = cause
        self.url = url
        self.transient = transient


@dataclass(frozen=True)
class Discovery:
    """What the server told us: its models, the one chosen, and the most tokens one request may
    hold, with where it said so (None when no page of it states a limit)."""

    base_url: str
    models: list[str]
    model: str
    context: ContextLimit | None


def normalize_endpoint(url: str) -> str:
    """The API base `scheme://host[:port][/prefix]/v1` of any URL form a user may paste."""
    text = url.strip()
    if not text:
        raise EndpointError("--endpoint is empty; pass a URL such as http://localhost:8000")
    if _SCHEME_RE.match(text) is None:
        text = "http://" + text
    parts = urlsplit(text)
    if "@" in parts.netloc:
        raise EndpointError(
            "--endpoint: credentials in the URL are not supported; pass the key with --api-key"
        )
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise EndpointError(
            f"--endpoint {url!r}: unsupported scheme {parts.scheme!r} (use http:// or https://)"
        )
    netloc = _netloc(parts, url)
    if parts.query or parts.fragment:
        raise EndpointError(f"--endpoint {url!r}: remove the query or fragment ('?…', '#…')")
    return f"{scheme}://{netloc}{_api_prefix(parts.path)}/v1"


def _netloc(parts: SplitResult, url: str) -> str:
    host = parts.hostname
    if not host:
        raise EndpointError(f"--endpoint {url!r}: no host name")
    try:
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"--endpoint {url!r}: bad port ({exc})") from exc
    if port == 0:
        raise EndpointError(f"--endpoint {url!r}: bad port 0")
    if ":" in host:
        host = f"[{host}]"
    elif not _HOST_RE.match(host):
        raise EndpointError(f"--endpoint {url!r}: {host!r} is not a valid host name")
    return host if port is None else f"{host}:{port}"


def _api_prefix(path: str) -> str:
    """The path before `/v1`, with any operation (`/chat/completions`, …) and slashes removed."""
    path = path.rstrip("/")
    for suffix in ALL_ROUTES:
        if path.endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return path.rstrip("/")


def auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def discover(
    session: aiohttp.ClientSession,
    base_url: str,
    api_key: str | None,
    model: str | None,
    timeout: float,
) -> Discovery:
    """List the served models and pick one: `model` if given, else the only or the first one."""
    url = base_url + MODELS_ROUTE
    status, reason, body = await _get(session, url, api_key, timeout)
    if status != 200:
        transient = status == 429 or status >= 500
        raise DiscoveryError(_status_cause(status, reason, body, api_key), url, transient)
    entries = _model_entries(body, url, api_key)
    names = [entry["id"] for entry in entries]
    chosen = _choose(names, model, url, api_key)
    entry = entries[names.index(chosen)]
    limit = context_from_model(entry) or await _probe_context(session, base_url, api_key)
    return Discovery(base_url, names, chosen, limit)


async def discover_patiently(
    session: aiohttp.ClientSession,
    base_url: str,
    api_key: str | None,
    model: str | None,
    timeout: float,
    patience: float,
    waiting: Callable[[str, float], None] | None = None,
) -> Discovery:
    """`discover`, tried again on transient failures until `patience` seconds have passed.

    A server being started or restarted refuses connections, resets them or answers 503 for a
    while; the run the user asked for should start once it is ready. `waiting(cause, seconds
    left)` hears each failed attempt (the countdown). A permanent failure ends at once, and the
    last transient one ends when patience runs out, saying how long it was retried.
    """
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        try:
            return await discover(session, base_url, api_key, model, timeout)
        except DiscoveryError as exc:
            left = deadline - time.monotonic()
            if not exc.transient or left <= 0:
                raise (_gave_up(exc, patience) if attempt else exc) from None
            if waiting is not None:
                waiting(exc.cause, left)
            await asyncio.sleep(min(RETRY_PAUSES_S[min(attempt, len(RETRY_PAUSES_S) - 1)], left))
            attempt += 1


def _gave_up(exc: DiscoveryError, patience: float) -> DiscoveryError:
    cause = f"{exc.cause}; still failing after {patience:g} s of retries (--connect-timeout)"
    return DiscoveryError(cause, exc.url, exc.transient)


async def _probe_context(
    session: aiohttp.ClientSession, base_url: str, api_key: str | None
) -> ContextLimit | None:
    """The context length from the first server page that states one (llama.cpp's `/props`,
    TGI's `/info`, SGLang's `/get_server_info`); pages that fail or do not exist are passed over:
    the limit is a check worth having, not a reason to stop."""
    root = base_url.removesuffix("/v1")
    for probe in CONTEXT_PROBES:
        try:
            status, _, body = await _get(session, root + probe.path, api_key, PROBE_TIMEOUT_S)
            limit = probe.limit(orjson.loads(body)) if status == 200 else None
        except (DiscoveryError, orjson.JSONDecodeError):
            continue
        if limit is not None:
            return limit
    return None


async def _get(
    session: aiohttp.ClientSession, url: str, api_key: str | None, timeout: float
) -> tuple[int, str, bytes]:
    try:
        async with session.get(
            url,
            headers=auth_headers(api_key),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=True,
        ) as resp:
            return resp.status, resp.reason or "", await resp.read()
    except asyncio.TimeoutError as exc:
        raise DiscoveryError(f"timed out after {timeout:g} s", url, transient=True) from exc
    except aiohttp.ClientError as exc:
        cause = scrub(_connection_cause(exc), api_key)
        raise DiscoveryError(cause, url, _may_pass(exc)) from exc
    except (ssl.SSLError, OSError) as exc:
        cause = scrub(f"connection failed ({one_line(str(exc))})", api_key)
        raise DiscoveryError(cause, url, _may_pass(exc)) from exc


def _may_pass(exc: BaseException) -> bool:
    """Refused, reset or closed without an answer: what a server does while it (re)starts. DNS
    and TLS failures are not: no amount of waiting fixes a wrong host or scheme."""
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError, aiohttp.ClientConnectorDNSError)):
        return False
    if isinstance(exc, aiohttp.ClientConnectorError):
        return isinstance(exc.os_error, (ConnectionRefusedError, ConnectionResetError))
    return isinstance(
        exc,
        (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError),
    )


def _connection_cause(exc: aiohttp.ClientError) -> str:
    """Name the failure the way a user would look it up: refused, DNS, TLS, reset."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS certificate not trusted ({one_line(str(exc.certificate_error))}; "
            "--insecure skips the check)"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error ({one_line(str(getattr(exc, 'os_error', exc)))}; is the server https?)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(
            os_error, socket.gaierror
        ):
            return f"DNS lookup failed for {exc.host!r} ({one_line(str(os_error))})"
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused (is the server running and listening on that port?)"
        return f"cannot connect ({one_line(str(os_error))})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"connection failed ({one_line(str(exc)) or type(exc).__name__})"


def _status_cause(status: int, reason: str, body: bytes, api_key: str | None) -> str:
    if status in (401, 403):
        hint = "check --api-key" if api_key else "the server wants a key: pass --api-key"
        return f"HTTP {status} {reason}: the server refused the request ({hint})"
    if status == 404:
        return f"HTTP 404 {reason}: no model list here (is this an OpenAI-compatible endpoint?)"
    snippet = _snippet(body, api_key)
    return f"HTTP {status} {reason}" + (f": {snippet}" if snippet else "")


def _model_entries(body: bytes, url: str, api_key: str | None) -> list[dict[str, Any]]:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        snippet = _snippet(body, api_key)
        raise DiscoveryError(f"the answer is not JSON ({snippet or 'empty body'})", url) from exc
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise DiscoveryError("the JSON answer has no 'data' list of models", url)
    entries = [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str) and e["id"]]
    if not entries:
        raise DiscoveryError("the server lists no models", url)
    return entries


def _choose(names: list[str], model: str | None, url: str, api_key: str | None) -> str:
    if not model:
        return names[0]
    if model in names:
        return model
    folded = [name for name in names if name.lower() == model.lower()]
    if len(folded) == 1:
        return folded[0]
    available = ", ".join(names)
    raise DiscoveryError(
        scrub(f"--model {model!r} is not served; available: {available}", api_key), url
    )


def _snippet(body: bytes, api_key: str | None, limit: int = 120) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    text = scrub(text, api_key)
    return text if len(text) <= limit else text[: limit - 1] + "…"
