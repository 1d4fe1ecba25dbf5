"""The report and compare pages in real headless Chromium: no console errors, charts drawn.

Chromium is driven over the DevTools protocol (a WebSocket on loopback), which reports console
messages, uncaught exceptions and failed loads as events, and takes the screenshot whose chart
regions are checked for drawn data. A deliberately broken page first proves the error
collection works. In CI (`CI=true`) a missing Chromium fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from fixtures.runs.sessions import SessionShape, write_sessions_run
from fixtures.runs.synthetic import RunShape, write_run
from PIL import Image

from tmesh.report.compare import compare_runs
from tmesh.report.compare_html import render_compare
from tmesh.report.html import write_report
from tmesh.report.load import load_run
from tmesh.report.sweep_html import render_sweeps
from tmesh.results.sweeps import Sweep, SweepPoint

WIDTH = 1280
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
TIMEOUT = 30.0
CHARTS_JS = """JSON.stringify({
  height: document.documentElement.scrollHeight,
  charts: [...document.querySelectorAll('svg.chart')].map(svg => {
    const r = svg.getBoundingClientRect();
    return {x: r.x, y: r.y + window.scrollY, width: r.width, height: r.height,
            paths: svg.querySelectorAll('path').length};
  })
})"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is missing in CI: install it with `apt-get install -y chromium`")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI always runs this")


class Browser:
    """Headless Chromium and one DevTools connection; events are kept per page session."""

    def __init__(self, process: asyncio.subprocess.Process, http: aiohttp.ClientSession) -> None:
        self.process, self.http = process, http
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.tasks: list[asyncio.Task] = []

    @classmethod
    async def start(cls, executable: str, profile: Path) -> Browser:
        process = await asyncio.create_subprocess_exec(
            executable,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        browser = cls(process, aiohttp.ClientSession())
        url = await asyncio.wait_for(browser._devtools_url(), TIMEOUT)
        browser.tasks.append(asyncio.create_task(browser._drain_stderr()))
        browser.ws = await browser.http.ws_connect(url, max_msg_size=0)
        browser.tasks.append(asyncio.create_task(browser._read()))
        return browser

    async def _devtools_url(self) -> str:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            text = line.decode(errors="replace")
            if "DevTools listening on " in text:
                return text.split("DevTools listening on ", 1)[1].strip()
        raise RuntimeError("chromium exited before opening its DevTools port")

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        async for _ in self.process.stderr:
            pass

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self.waiting.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))
            else:
                self.events.append(data)
                self.arrived.set()

    async def send(self, method: str, params: dict | None = None, session: str | None = None):
        assert self.ws is not None
        ident = next(self.ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self.waiting[ident] = future
        await self.ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, TIMEOUT)

    async def open(self, url: str) -> str:
        """A new tab showing `url`, loaded; returns its session id."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable", session=session)
        await self._metrics(session, 1000)
        await self.send("Page.navigate", {"url": url}, session)
        await asyncio.wait_for(self._event("Page.loadEventFired", session), TIMEOUT)
        return session

    async def _event(self, method: str, session: str) -> None:
        while not any(e["method"] == method and e.get("sessionId") == session for e in self.events):
            self.arrived.clear()
            await self.arrived.wait()

    async def _metrics(self, session: str, height: int) -> None:
        params = {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False}
        await self.send("Emulation.setDeviceMetricsOverride", params, session)

    def errors(self, session: str) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page produced."""
        found = []
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params["type"] in (
                "error",
                "assert",
            ):
                found.append(" ".join(str(a.get("value", a)) for a in params["args"]))
            elif event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description", details["text"]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    async def screenshot(self, session: str) -> tuple[Image.Image, list[dict]]:
        """The whole page as an image, and where each chart is on it."""
        layout = await self._evaluate(session, CHARTS_JS)
        await self._metrics(session, layout["height"])
        layout = await self._evaluate(session, CHARTS_JS)
        shot = await self.send("Page.captureScreenshot", {"format": "png"}, session)
        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
        return image, layout["charts"]

    async def _evaluate(self, session: str, expression: str) -> dict:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        return json.loads(result["result"]["value"])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
        for task in self.tasks:
            task.cancel()
        await self.http.close()


def _drawn(image: Image.Image, chart: dict) -> tuple[float, int]:
    """Share of non-white pixels and count of saturated (data-coloured) pixels in a chart box.

    Axes, grid, text and the warm-up shade are greys; only plotted data is saturated colour.
    """
    box = (int(chart["x"]), int(chart["y"]), int(chart["x"] + chart["width"]))
    pixels = np.asarray(image.crop((*box, int(chart["y"] + chart["height"]))), dtype=int)
    ink = (pixels.min(axis=2) < 235).mean()
    saturated = int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())
    return float(ink), saturated


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pages")
    gpu = write_run(root / "gpu-only", RunShape(profile="gpu-only", seconds=30, error_rate=0.02))
    cpu = write_run(root / "cpu-offload", RunShape(profile="cpu-offload", seconds=30, seed=1))
    broken = root / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><body><p>broken on purpose</p>"
        '<script>console.error("deliberate console error")</script>'
        "<script>notDefinedAnywhere()</script>"
        '<img src="missing-image.png"></body></html>'
    )
    comparison = compare_runs([load_run(gpu), load_run(cpu)], ["gpu-only", "cpu-offload"])
    compare = root / "compare.html"
    compare.write_text(render_compare(comparison), encoding="utf-8")
    evicting = write_sessions_run(root / "sessions-gpu", SessionShape(survives=20.0))
    keeping = write_sessions_run(root / "sessions-cpu", SessionShape(survives=None))
    sessions = compare_runs([load_run(evicting), load_run(keeping)], ["gpu-only", "cpu-offload"])
    sessions_compare = root / "sessions-compare.html"
    sessions_compare.write_text(render_compare(sessions), encoding="utf-8")
    gpu_sweep, cpu_sweep = _sweep(knee=1.0), _sweep(knee=6.0)
    sweep, sweeps = root / "sweep.html", root / "sweeps.html"
    sweep.write_text(render_sweeps([cpu_sweep]), encoding="utf-8")
    sweeps.write_text(render_sweeps([gpu_sweep, cpu_sweep], ["gpu-only", "cpu-offload"]))
    return {
        "report": write_report(gpu),
        "compare": compare,
        "broken": broken,
        "sessions-report": write_report(evicting),
        "sessions-compare": sessions_compare,
        "sweep": sweep,
        "sweeps": sweeps,
    }


def _sweep(knee: float) -> Sweep:
    """A working-set sweep whose cache holds up to `knee` times the GPU capacity."""
    sweep = Sweep("working_set_ratio", "http://127.0.0.1:8000/v1", "m", "now", 32768, 1024)
    for value in (0.5, 1.0, 2.0, 4.0, 8.0):
        held = value < knee
        sweep.points.append(
            SweepPoint(
                value, f"point-{value:g}", int(32 * value), int(96 * value), 0,
                qps=60.0 if held else 40.0, ttft_p50=0.012 if held else 0.06,
                ttft_p90=0.018 if held else 0.065, measured_hit_rate=0.66 if held else 0.02,
                lru_hit_rate=0.66 if value < 1 else 0.0, infinite_hit_rate=0.66,
            )
        )  # fmt: skip
    return sweep


async def test_pages_render_in_chromium_without_errors(
    pages: dict[str, Path], tmp_path: Path
) -> None:
    browser = await Browser.start(_chromium(), tmp_path / "profile")
    try:
        broken = await browser.open(pages["broken"].as_uri())
        caught = browser.errors(broken)
        assert any("deliberate console error" in error for error in caught), caught
        assert any("notDefinedAnywhere" in error for error in caught), caught

        for name, expected_charts in (
            ("report", 6),
            ("compare", 4),
            ("sessions-report", 7),
            ("sessions-compare", 5),
            ("sweep", 3),
            ("sweeps", 3),
        ):
            session = await browser.open(pages[name].as_uri())
            image, charts = await browser.screenshot(session)
            image.save(tmp_path / f"{name}.png")
            assert browser.errors(session) == [], name
            assert len(charts) == expected_charts, name
            for index, chart in enumerate(charts):
                assert chart["width"] > 900 and chart["height"] > 250, (name, index, chart)
                assert chart["paths"] > 20, (name, index, chart)
                ink, saturated = _drawn(image, chart)
                assert 0.02 < ink < 0.9, (name, index, ink)
                assert saturated > 300, (name, index, saturated)
    finally:
        await browser.close()
