"""How fast and how accurately tmesh's streaming client drives a zero-latency OpenAI-style server.

The server (`_sse_server.py`) runs in its own process, pinned to another CPU when there is one, so
the client's CPU time is measured alone (`getrusage` of this process). Each run is a closed loop of
N in-flight requests of 100-token streams (one token per event, then usage and `[DONE]`), after a
warm-up that opens the connections. A minimal hand-written asyncio reader (keep-alive HTTP/1.1,
orjson decode of every event) runs against the same server as the reference ceiling, and a plain
aiohttp streaming client (the way most benchmark clients read streams) for comparison.

Throughput table: requests/s, tokens/s, client CPU ms per request and requests per CPU-second, and
the achieved in-flight count against the requested one, two ways: "slots busy" is the time-weighted
number of the closed loop's slots inside a request call (what a runner sees), "on the wire" the
time-weighted number of requests between t0 (written) and t_end (last byte read). At zero server
latency the gap between them is the client's own turnaround, which a saturated client cannot hide;
tmesh timestamps each read as it arrives, so that turnaround is never counted as server latency.

Accuracy table: the server delays the first token by 200 ms or 10 ms and logs, on CLOCK_MONOTONIC
(shared by processes), when each request arrived and when it wrote the first token. "TTFT - delay"
is the measured TTFT minus the injected delay; "TTFT - server's" is the measured TTFT minus the
server's own arrival-to-first-write time, i.e. the client's measurement error, which is the "send
lag" (t0 to arrival) plus the "receive lag" (first write to the client's timestamp).

`--loop uvloop` runs the client process on uvloop's event loop instead of asyncio's (uvloop must be
installed), for comparison: it costs less CPU per request, but with 100 streams in flight its p99
receive lag was several times asyncio's, which is why tmesh-cli stays on asyncio's loop.

Usage: python benchmarks/client_speed.py [--requests N] [--quick] [--pin] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from tmesh.bench.load.client import ClientConfig, send_request
from tmesh.bench.load.http import Pool
from tmesh.bench.load.sse import SSEParser
from tmesh.results.records import RequestPlan

try:
    import uvloop
except ImportError:  # only `--loop uvloop` needs it
    uvloop = None

SERVER = Path(__file__).with_name("_sse_server.py")
TOKENS = 100
ITL_MS = 1.0
CLIENT_CPU = 0
SERVER_CPU = 1

# (index, t0, t_first, t_end, completion_tokens, ok) on the shared monotonic clock.
Sample = tuple[int, float, float, float, int, bool]
Sender = Callable[[int], Awaitable[Sample]]


@dataclass
class Run:
    name: str
    inflight: int
    samples: list[Sample]
    slots: list[tuple[float, float]]
    wall: float
    cpu: float

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if not s[5])

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    @property
    def token_rate(self) -> float:
        return sum(s[4] for s in self.samples) / self.wall

    @property
    def cpu_ms(self) -> float:
        return 1000.0 * self.cpu / self.requests

    @property
    def on_the_wire(self) -> float:
        return time_weighted([(s[1], s[3]) for s in self.samples])

    @property
    def busy(self) -> float:
        return time_weighted(self.slots)


def time_weighted(spans: list[tuple[float, float]]) -> float:
    """Mean number of spans open at a time, over the time from the first start to the last end."""
    start = min(a for a, _ in spans)
    end = max(b for _, b in spans)
    return sum(b - a for a, b in spans) / (end - start)


@contextmanager
def fake_server(
    delay_ms: float = 0.0,
    write: str = "batch",
    itl_ms: float = 0.0,
    log: bool = False,
    cpu: int | None = None,
) -> Iterator[int]:
    """Start `_sse_server.py` in its own process; yields its port."""
    command = [sys.executable, str(SERVER), "--delay-ms", str(delay_ms), "--tokens", str(TOKENS)]
    command += ["--write", write, "--itl-ms", str(itl_ms)]
    if log:
        command.append("--log")
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "LISTENING":
            raise RuntimeError(f"benchmark server did not start: {line}")
        yield int(line[1])
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


def server_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
        return orjson.loads(response.read())


def plans(n: int) -> list[RequestPlan]:
    """Short prompts tagged `#<index> ` so the server can log timings per request."""
    return [RequestPlan(i, 0, 0, 0, 0, f"#{i} ", "Say something.", 16) for i in range(n)]


async def closed_loop(
    senders: Sequence[Sender], ids: range
) -> tuple[list[Sample], list[tuple[float, float]]]:
    """One worker per sender; each starts the next request as soon as its last one ended."""
    pending = iter(ids)
    samples: list[Sample] = []
    slots: list[tuple[float, float]] = []

    async def worker(send: Sender) -> None:
        for index in pending:
            called = time.monotonic()
            samples.append(await send(index))
            slots.append((called, time.monotonic()))

    await asyncio.gather(*(worker(send) for send in senders))
    return samples, slots


async def measure(name: str, inflight: int, senders: Sequence[Sender], n: int) -> Run:
    await closed_loop(senders, range(n, n + 3 * inflight))
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    samples, slots = await closed_loop(senders, range(n))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Run(name, inflight, samples, slots, wall, cpu)


async def run_tmesh(port: int, inflight: int, n: int) -> Run:
    config = ClientConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        api="completions",
        model="bench",
        headers={},
        max_tokens=TOKENS,
        request_timeout=30.0,
    )
    requests = plans(n + 3 * inflight)
    async with Pool(inflight) as pool:

        async def send(index: int) -> Sample:
            r = await send_request(pool, config, requests[index], 0.0)
            return (index, r.t0, r.t_first or 0.0, r.t_end or 0.0, r.completion_tokens, r.ok)

        return await measure("tmesh client", inflight, [send] * inflight, n)


class RawReader:
    """The reference ceiling: one keep-alive connection, hand-written HTTP/1.1, chunked decoding
    and SSE splitting with bytes methods, orjson decode of every event. No error handling."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawReader:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, index: int) -> Sample:
        body = orjson.dumps(
            {
                "model": "bench",
                "prompt": f"#{index} Say something.",
                "max_tokens": TOKENS,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        request = (
            b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        t0 = time.monotonic()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        ok = b" 200 " in head[:13]
        buffer = sse = b""
        t_first = t_end = 0.0
        tokens = 0
        done = False
        while not done:
            data = await self.reader.read(262144)
            if not data:
                raise ConnectionError("server closed the connection")
            now = time.monotonic()
            buffer = buffer + data if buffer else data
            pieces = []
            pos = 0
            while True:
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buffer[pos:eol], 16)
                if size == 0:
                    done = len(buffer) >= eol + 4
                    pos = eol + 4 if done else pos
                    break
                stop = eol + 2 + size
                if len(buffer) < stop + 2:
                    break
                pieces.append(buffer[eol + 2 : stop])
                pos = stop + 2
            buffer = buffer[pos:]
            sse += b"".join(pieces)
            cut = sse.rfind(b"\n\n")
            if cut < 0:
                continue
            for block in sse[:cut].split(b"\n\n"):
                payload = block[6:]
                if payload == b"[DONE]":
                    t_end = now
                    continue
                event = orjson.loads(payload)
                choices = event["choices"]
                if choices and choices[0]["text"]:
                    tokens += 1
                    t_first = t_first or now
            sse = sse[cut + 2 :]
        return (index, t0, t_first, t_end or time.monotonic(), tokens, ok and tokens == TOKENS)


async def run_raw(port: int, inflight: int, n: int) -> Run:
    readers = [await RawReader.open(port) for _ in range(inflight)]
    try:
        return await measure("raw asyncio reader", inflight, [r.send for r in readers], n)
    finally:
        for reader in readers:
            reader.writer.close()


async def run_aiohttp(port: int, inflight: int, n: int) -> Run:
    """For comparison: the usual aiohttp streaming client (one `session.post` per request, the
    stream read with `iter_any`, SSE split with `SSEParser`, orjson decode of every event), the
    way vLLM's and most benchmark clients read streams."""
    url = f"http://127.0.0.1:{port}/v1/completions"
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(connector=connector, read_bufsize=4 << 20) as session:

        async def send(index: int) -> Sample:
            body = orjson.dumps(
                {"model": "bench", "prompt": f"#{index} Say something.", "max_tokens": TOKENS,
                 "stream": True, "stream_options": {"include_usage": True}}
            )  # fmt: skip
            parser = SSEParser()
            t0 = time.monotonic()
            t_first = t_end = 0.0
            tokens = 0
            async with session.post(url, data=body) as response:
                async for data in response.content.iter_any():
                    now = time.monotonic()
                    for payload in parser.feed(data):
                        if payload == b"[DONE]":
                            t_end = now
                            continue
                        choices = orjson.loads(payload)["choices"]
                        if choices and choices[0]["text"]:
                            tokens += 1
                            t_first = t_first or now
                ok = response.status == 200 and tokens == TOKENS
            return (index, t0, t_first, t_end or time.monotonic(), tokens, ok)

        return await measure("plain aiohttp", inflight, [send] * inflight, n)


def pinning(pin: bool) -> int | None:
    """Pinning isolates the two processes on an idle machine; on a shared one it makes each wait
    for its own busy CPU, so it is opt-in. Returns the server's CPU, if pinned."""
    if not pin or not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    os.sched_setaffinity(0, {CLIENT_CPU})
    return SERVER_CPU


def mean_p99(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{statistics.fmean(values):+7.2f} / {p99:+7.2f}"


@dataclass
class Accuracy:
    delay_ms: float
    inflight: int
    run: Run
    ttft_error: list[float]
    client_error: list[float]
    send_lag: list[float]
    receive_lag: list[float]
    server_inflight: float


async def ttft_accuracy(delay_ms: float, inflight: int, n: int, cpu: int | None) -> Accuracy:
    with fake_server(delay_ms=delay_ms, itl_ms=ITL_MS, log=True, cpu=cpu) as port:
        run = await run_tmesh(port, inflight, n)
        stats = await asyncio.to_thread(server_stats, port)
    server = {int(t[0]): t[1:] for t in stats["timings"]}
    errors, client, send, receive = [], [], [], []
    for index, t0, t_first, _, _, ok in run.samples:
        if not ok or index not in server:
            continue
        arrived, first_write, _ = server[index]
        errors.append(1000 * (t_first - t0 - delay_ms / 1000))
        client.append(1000 * ((t_first - t0) - (first_write - arrived)))
        send.append(1000 * (arrived - t0))
        receive.append(1000 * (t_first - first_write))
    return Accuracy(delay_ms, inflight, run, errors, client, send, receive, stats["inflight_mean"])


def print_throughput(runs: list[tuple[str, Run]]) -> None:
    print(
        f"{'client':<19} {'writes':<6} {'in-flight':>9} {'requests':>8} {'req/s':>7} "
        f"{'tok/s':>9} {'CPU ms/req':>10} {'req/CPU-s':>9} {'slots busy':>14} "
        f"{'on the wire':>14} {'errors':>6}"
    )
    for write, run in runs:
        busy = f"{run.busy:.1f} ({100 * run.busy / run.inflight:.0f}%)"
        wire = f"{run.on_the_wire:.1f} ({100 * run.on_the_wire / run.inflight:.0f}%)"
        print(
            f"{run.name:<19} {write:<6} {run.inflight:>9} {run.requests:>8} {run.rate:>7,.0f} "
            f"{run.token_rate:>9,.0f} {run.cpu_ms:>10.3f} {1000 / run.cpu_ms:>9,.0f} "
            f"{busy:>14} {wire:>14} {run.errors:>6}"
        )


def print_ratios(runs: list[tuple[str, Run]]) -> None:
    raw = {(w, r.inflight): r for w, r in runs if r.name.startswith("raw")}
    for write, run in runs:
        ref = raw.get((write, run.inflight))
        if run.name.startswith("tmesh") and ref is not None:
            print(
                f"tmesh / raw reader, {run.inflight:>3} in flight, {write} writes: "
                f"{ref.cpu_ms / run.cpu_ms:.2f}x requests per CPU-second, "
                f"{run.rate / ref.rate:.2f}x requests/s"
            )


def print_accuracy(results: list[Accuracy]) -> None:
    columns = ("TTFT - delay", "TTFT - server's", "send lag", "receive lag")
    print(
        f"{'delay':>6} {'in-flight':>9} {'requests':>8} {'req/s':>6} "
        + " ".join(f"{c:>17}" for c in columns)
        + f" {'server in-flight':>16}"
    )
    print(" " * 33 + " ".join(f"{'ms mean / p99':>17}" for _ in columns))
    for a in results:
        values = (a.ttft_error, a.client_error, a.send_lag, a.receive_lag)
        print(
            f"{a.delay_ms:>3.0f} ms {a.inflight:>9} {len(a.ttft_error):>8} {a.run.rate:>6,.0f} "
            + " ".join(f"{mean_p99(v):>17}" for v in values)
            + f" {a.server_inflight:>16.1f}"
        )


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


async def main_async(n: int, quick: bool, pin: bool, loop: str) -> None:
    cpu = pinning(pin)
    placement = "unpinned" if cpu is None else f"client on CPU {CLIENT_CPU}, server on CPU {cpu}"
    print(
        f"tmesh client speed: {TOKENS}-token streams, one token per event; Python "
        f"{platform.python_version()}, aiohttp {aiohttp.__version__}, orjson {orjson.__version__}, "
        f"{loop} event loop, {os.cpu_count()} CPUs ({placement}), load average {load_average()}",
        flush=True,
    )
    runs: list[tuple[str, Run]] = []
    modes = [("batch", (20, 100))] if quick else [("batch", (20, 100)), ("each", (100,))]
    for write, levels in modes:
        with fake_server(write=write, cpu=cpu) as port:
            for inflight in levels:
                runs.append((write, await run_raw(port, inflight, n)))
                runs.append((write, await run_tmesh(port, inflight, n)))
                if write == "batch" and inflight == 100:
                    runs.append((write, await run_aiohttp(port, inflight, n)))
    print("\nThroughput against a zero-latency server")
    print_throughput(runs)
    print_ratios(runs)
    scale = 0.5 if quick else 1.0
    cases = [(200.0, 20, int(400 * scale)), (10.0, 20, int(1500 * scale))]
    cases.append((10.0, 100, int(4000 * scale)))
    accuracy = [await ttft_accuracy(delay, flight, count, cpu) for delay, flight, count in cases]
    print(f"\nTTFT accuracy (first token after the delay, then one event every {ITL_MS:g} ms)")
    print_accuracy(accuracy)
    print(f"\nload average at the end: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000, help="requests per throughput run")
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    parser.add_argument("--pin", action="store_true", help="pin client and server to CPUs 0 and 1")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    if args.requests < 100:
        parser.error("--requests must be at least 100")
    if args.loop == "uvloop" and uvloop is None:
        parser.error("--loop uvloop needs uvloop (pip install uvloop)")
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    run(main_async(args.requests, args.quick, args.pin, args.loop))


if __name__ == "__main__":
    main()
