"""Does memory stay flat over a long run? 100k requests through the CLI, RSS sampled as it goes.

The simulated engine (`fast` profile, near-zero latency) runs in its own process; `tmesh-cli
benchmark --json` runs in another, and each interval line it prints is a moment to read its RSS
from /proc. Prints RSS after the first interval, at the end, the peak, and the growth in between.

    python benchmarks/long_run.py [--requests 100000] [--inflight 20] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"simulator did not listen on {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--inflight", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="tmesh-cli --workers (RSS: parent)")
    args = parser.parse_args()
    port = free_port()
    cli = [sys.executable, "-m", "tmesh.cli"]
    sim = subprocess.Popen(
        [*cli, "simulate", "--profile", "fast", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        with tempfile.TemporaryDirectory() as out:
            return measure(cli, port, args, Path(out) / "run")
    finally:
        sim.terminate()
        sim.wait()


def measure(cli: list[str], port: int, args: argparse.Namespace, out: Path) -> int:
    started = time.monotonic()
    bench = subprocess.Popen(
        [*cli, "benchmark", "--endpoint", f"127.0.0.1:{port}", "--num-contexts", "8",
         "--input-length", "512", "--output-length", "16", "--max-inflight", str(args.inflight),
         "--max-requests", str(args.requests), "--workers", str(args.workers), "--json",
         "--output-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    samples: list[tuple[int, float]] = []
    assert bench.stdout is not None
    for line in bench.stdout:
        row = json.loads(line)
        if "summary" in row:
            break
        samples.append((row["total_requests"], rss_mb(bench.pid)))
    bench.wait()
    wall = time.monotonic() - started
    if len(samples) < 2:
        print("run too short to sample memory", file=sys.stderr)
        return 1
    first, last = samples[0], samples[-1]
    peak = max(rss for _, rss in samples)
    print(f"requests: {args.requests} in {wall:.0f} s ({args.requests / wall:.0f} req/s)")
    print(f"RSS after first interval ({first[0]} requests): {first[1]:.1f} MB")
    print(f"RSS at the end ({last[0]} requests): {last[1]:.1f} MB")
    print(f"peak RSS: {peak:.1f} MB; growth: {last[1] - first[1]:+.1f} MB")
    return bench.returncode


if __name__ == "__main__":
    sys.exit(main())
