"""What the server accepts beyond the OpenAI API, found by asking rather than assuming.

`ignore_eos`/`min_tokens` make every answer exactly Output Length tokens on vLLM and SGLang, which
keeps decode numbers comparable; hosted APIs reject unknown fields with 400, so we probe once with
a one-token request and drop them when refused.
"""

from __future__ import annotations

import aiohttp

PROBE_TIMEOUT_S = 30.0


def _probe_body(model: str, api: str) -> dict:
    body: dict = {"model": model, "max_tokens": 1, "ignore_eos": True, "min_tokens": 1}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": "Say hi."}]
    else:
        body["prompt"] = "Say hi."
    return body


async def probe_ignore_eos(
    session: aiohttp.ClientSession, base_url: str, model: str, api: str, headers: dict[str, str]
) -> bool:
    """True unless the server answers the probe with a 4xx (an unknown-field rejection).

    Any other outcome (5xx, timeout, refused) says nothing about the fields, so we keep sending
    them and let the run count whatever failure it was.
    """
    path = "/chat/completions" if api == "chat" else "/completions"
    try:
        async with session.post(
            base_url + path,
            json=_probe_body(model, api),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
        ) as response:
            await response.read()
            return not (400 <= response.status < 500 and response.status != 429)
    except (aiohttp.ClientError, TimeoutError):
        return True
