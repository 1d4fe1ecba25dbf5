"""tmesh's own live metrics in Prometheus format (`--prometheus-port`).

A Grafana next to the server's dashboard can then chart what the client saw (TTFT by first visit
and revisit, ITL, errors, rotations) on the same time axis as the server's cache counters. The
metrics live in a registry of their own, so nothing else in the process leaks into them, and are
served by prometheus_client's WSGI server on a daemon thread: scrapes never wait on the
benchmark's event loop, and `stop()` shuts the socket down synchronously.
"""

from __future__ import annotations

import socket
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tmesh.results.catalogue.metrics import E2E, ITL, QPS, ROTATIONS, TTFT, VISITS
from tmesh.results.catalogue.units import SECONDS
from tmesh.results.records import IntervalSnapshot, RequestRecord, WindowStats

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1280)
COLD, WARM = (visit.key for visit in VISITS)


def _metric_name(key: str, unit: str = "") -> str:
    """`tmesh_` and the catalogue's key, with the base unit as Prometheus names it (`_seconds`)."""
    return f"tmesh_{key}" + ("_seconds" if unit == SECONDS else "")


def _metric_help(definition: str, context: str = "") -> str:
    """A catalogue definition as a help line: capitalised, with what this series adds to it."""
    return f"{definition[:1].upper()}{definition[1:]}{context}."


class ExporterError(RuntimeError):
    """The exporter cannot listen (port taken, no permission); the message is one line."""


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Raise the `ExporterError` that serving on `host:port` would raise, without serving."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ExporterError(_cannot_serve(host, port, exc)) from exc


def _cannot_serve(host: str, port: int, exc: OSError) -> str:
    return f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"


class Exporter:
    """Serves `/metrics` on `host:port` (port 0 picks a free one; see `.port` after `start()`).

    `requests_total{status, kind}`: kind is the error kind for failures and "none" for
    successes. `ttft_seconds{visit}`: visit is "cold" for a context's first visit, "warm" for
    its revisits, the split the benchmark exists to show. Names and help of the series the
    catalogue declares come from it.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        r = self.registry
        self._requests = Counter(
            "tmesh_requests", "Finished requests.", ["status", "kind"], registry=r
        )
        self._qps = Gauge(
            _metric_name(QPS.key), _metric_help(QPS.definition, " since the start"), registry=r
        )
        self._ttft = Histogram(
            _metric_name(TTFT.key, TTFT.unit),
            _metric_help(
                TTFT.definition,
                f"; by first visit ({COLD}) or revisit ({WARM}) of a context",
            ),
            ["visit"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._itl = Histogram(
            _metric_name(ITL.key, ITL.unit),
            _metric_help(ITL.definition),
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self._e2e = Histogram(
            _metric_name(E2E.key, E2E.unit),
            _metric_help(E2E.definition),
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self._rotations = Gauge(
            _metric_name(ROTATIONS.key), _metric_help(ROTATIONS.definition), registry=r
        )
        self._inflight = Gauge(
            "tmesh_inflight", "Mean requests outstanding in the last interval.", registry=r
        )
        self._prompt_tokens = Counter(
            "tmesh_prompt_tokens", "Prompt tokens of successful requests.", registry=r
        )
        self._completion_tokens = Counter(
            "tmesh_completion_tokens", "Completion tokens of successful requests.", registry=r
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(
                self.port, addr=self.host, registry=self.registry
            )
        except OSError as exc:
            raise ExporterError(_cannot_serve(self.host, self.port, exc)) from exc
        self.port = self._server.server_port

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def observe(self, record: RequestRecord) -> None:
        if not record.ok:
            self._requests.labels(status="error", kind=record.error or "unknown").inc()
            return
        self._requests.labels(status="ok", kind="none").inc()
        self._prompt_tokens.inc(record.prompt_tokens)
        self._completion_tokens.inc(record.completion_tokens)
        for histogram, value in ((self._itl, record.itl), (self._e2e, record.e2e)):
            if value is not None:
                histogram.observe(value)
        if record.ttft is not None:
            self._ttft.labels(visit=COLD if record.visit == 0 else WARM).observe(record.ttft)

    def count(self, window: WindowStats) -> None:
        """The counters of a window of requests not seen one by one (a run spread over
        processes or actors sends the driver windows, not records); the histograms, which need
        each value, stay those of the requests `observe`d."""
        self._requests.labels(status="ok", kind="none").inc(window.requests)
        for kind, count in window.errors.items():
            self._requests.labels(status="error", kind=kind).inc(count)
        self._prompt_tokens.inc(window.prompt_tokens)
        self._completion_tokens.inc(window.completion_tokens)

    def update(self, snapshot: IntervalSnapshot) -> None:
        self._qps.set(snapshot.qps)
        self._rotations.set(snapshot.rotations)
        self._inflight.set(snapshot.health.inflight_mean)
