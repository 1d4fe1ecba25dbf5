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
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


class EndpointError(ValueError):
    """`--endpoint` cannot be a URL of an OpenAI-compatible server; the message is one line."""


class DiscoveryError(Exception):
    """Asking the server for its models failed; `str()` is one line naming the cause and the URL."""

    def __init__(self, cause: str, url: str) -> None:
        super().__init__(f"model discovery failed: GET {url}: {cause}")
        self.cause = cause
        self.url = url


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
        raise DiscoveryError(_status_cause(status, reason, body, api_key), url)
    entries = _model_entries(body, url, api_key)
    names = [entry["id"] for entry in entries]
    chosen = _choose(names, model, url, api_key)
    entry = entries[names.index(chosen)]
    limit = context_from_model(entry) or await _probe_context(session, base_url, api_key)
    return Discovery(base_url, names, chosen, limit)


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
        raise DiscoveryError(f"timed out after {timeout:g} s", url) from exc
    except aiohttp.ClientError as exc:
        raise DiscoveryError(scrub(_connection_cause(exc), api_key), url) from exc
    except (ssl.SSLError, OSError) as exc:
        raise DiscoveryError(
            scrub(f"connection failed ({one_line(str(exc))})", api_key), url
        ) from exc


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
