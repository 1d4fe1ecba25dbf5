"""The simulated engine as a running OpenAI-compatible HTTP server (aiohttp): start, pause, stop.

`benchmark --demo`, `simulate` and the tests start it on a loopback port; `pause`/`resume` act out
a server restart's outage for the fault tests.
"""

from __future__ import annotations

import logging
from types import TracebackType

from aiohttp import web

from tmesh.sim.api import Api
from tmesh.sim.config import EngineConfig
from tmesh.sim.engine import Engine
from tmesh.sim.faults import FaultConfig, FaultInjector

log = logging.getLogger("tmesh.sim.server")
_SHUTDOWN_GRACE_SECONDS = 1.0
_MAX_BODY_BYTES = 64 * 2**20


class SimulatorHandle:
    """A running simulator: its URL, its engine, and control over its listening socket."""

    def __init__(
        self,
        runner: web.AppRunner,
        site: web.TCPSite,
        engine: Engine,
        faults: FaultInjector,
        host: str,
        port: int,
    ) -> None:
        self._runner = runner
        self._site: web.TCPSite | None = site
        self.engine = engine
        self.faults = faults
        self.host = host
        self.port = port
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{port}"

    @property
    def paused(self) -> bool:
        return self._site is None

    async def pause(self) -> None:
        """Act out a server restart's outage: stop listening (new connections are refused) and
        drop every open connection, cancelling their engine requests."""
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        self._drop_connections()
        log.info("paused: not listening on %s", self.url)

    async def resume(self) -> None:
        """Listen again on the same port, as a restarted server would."""
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._site = site
        log.info("resumed: listening on %s", self.url)

    def _drop_connections(self) -> None:
        server = self._runner.server
        for connection in server.connections if server is not None else []:
            if connection.transport is not None:
                connection.transport.abort()

    async def stop(self) -> None:
        """Stop listening, drop open streams, stop the engine; idempotent."""
        if self._runner.server is None:
            return
        self._drop_connections()
        await self._runner.cleanup()
        await self.engine.stop()
        log.info("stopped; %s", self.faults.summary())

    async def __aenter__(self) -> SimulatorHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def build_app(
    engine: Engine,
    faults: FaultInjector,
    api_key: str | None = None,
    prompt_tokens_details: bool = True,
) -> web.Application:
    """The aiohttp application serving `engine` (the engine must be started separately)."""
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app.add_routes(Api(engine, faults, api_key, prompt_tokens_details).routes())
    return app


async def start_simulator(
    config: EngineConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultConfig | None = None,
    api_key: str | None = None,
    *,
    prompt_tokens_details: bool = True,
) -> SimulatorHandle:
    """Start an engine and its HTTP server on `host:port` (0 = a free port).

    `prompt_tokens_details=False` leaves `usage.prompt_tokens_details` out, as vLLM does without
    `--enable-prompt-tokens-details`. Raises OSError when the address cannot be bound.
    """
    engine = Engine(config)
    await engine.start()
    injector = FaultInjector(faults)
    runner = web.AppRunner(
        build_app(engine, injector, api_key, prompt_tokens_details),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_GRACE_SECONDS,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        await engine.stop()
        raise
    bound_port = runner.addresses[0][1]
    return SimulatorHandle(runner, site, engine, injector, host, bound_port)
