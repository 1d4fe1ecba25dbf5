"""What the server accepts beyond the OpenAI API, found by asking rather than assuming.

`ignore_eos`/`min_tokens` make every answer exactly Output Length tokens on vLLM and SGLang, which
keeps decode numbers comparable; hosted APIs reject unknown fields with 400, so we probe once with
a one-token request and drop them when refused.
"""

from __future__ import annotations

import aiohttp

from tmesh.bench.endpoint.openai import generation_body, route, with_prompt
from tmesh.results.records import Api

PROBE_TIMEOUT_S = 30.0


async def probe_ignore_eos(
    session: aiohttp.ClientSession, base_url: str, model: str, api: Api, headers: dict[str, str]
) -> bool:
    """True unless the server answers the probe with a 4xx (an unknown-field rejection).

    Any other outcome (5xx, timeout, refused) says nothing about the fields, so we keep sending
    them and let the run count whatever failure it was.
    """
    body = with_prompt(
        generation_body(api, model, 1, stream=False, ignore_eos=True), api, "Say hi."
    )
    try:
        async with session.post(
            base_url + route(api),
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
        ) as response:
            await response.read()
            return not (400 <= response.status < 500 and response.status != 429)
    except (aiohttp.ClientError, TimeoutError):
        return True
