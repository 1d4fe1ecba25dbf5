"""The benchmark's own bookkeeping around the stages: what it says about the server's metrics."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from factories import SEED_SPEC
from net_helpers import serve_app

from tmesh.bench.measure.servermetrics import ServerMetricsScraper
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.view import View
from tmesh.bench.prepare import Prepared
from tmesh.bench.run import Session
from tmesh.results.records import ClientHealth


@pytest.mark.parametrize(("status", "scrapes"), [(404, 1), (503, 3)])
async def test_unavailable_server_metrics_are_said_once(
    tmp_path: Path, session: aiohttp.ClientSession, status: int, scrapes: int
) -> None:
    """Said at the first failed scrape, then never again: not when the scraper has given up on
    a 404, nor when it keeps retrying a busy server every interval."""
    hits = 0

    async def metrics(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=status, text="no")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    stderr = io.StringIO()
    async with serve_app(app) as url:
        prep = Prepared(url + "/v1", None, SEED_SPEC, None, False)  # type: ignore[arg-type]
        run = Session(
            BenchmarkOptions(output_dir=tmp_path / "run"),
            prep,
            View(stdout=io.StringIO(), stderr=stderr),
        )
        run.scraper = ServerMetricsScraper(url + "/metrics", session)
        for now in (5.0, 10.0, 15.0):
            snap = await run.close_interval(now, ClientHealth())
            assert snap.server is None
    assert hits == scrapes
    assert stderr.getvalue().splitlines() == [
        f"server metrics unavailable: {url}/metrics answered HTTP {status}"
    ]
