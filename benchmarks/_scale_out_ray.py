"""The `--ray` half of `scale_out.py`: a local two-node Ray cluster (one CPU each, on 127.0.0.1)
and the runs on it. Imported only with `scale_out.py --ray`, inside a loopback-only network
namespace (see `scale_out.py`); it refuses to start Ray anywhere else."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

if {name for _, name in socket.if_nameindex()} != {"lo"}:
    raise SystemExit("scale_out.py --ray starts Ray: run it inside `unshare -n` (see its help)")
for _name, _value in (
    ("RAY_USAGE_STATS_ENABLED", "0"),
    ("RAY_USAGE_STATS_REPORT_URL", "http://127.0.0.1:9/"),
    ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
):
    os.environ.setdefault(_name, _value)

from client_speed import TOKENS, fake_server, server_stats  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from tmesh.bench.load.runner import TickFn  # noqa: E402
from tmesh.bench.measure.recorder import Recorder  # noqa: E402
from tmesh.bench.part import PartTask  # noqa: E402
from tmesh.bench.ray_pool import RayCluster, RayPool  # noqa: E402
from tmesh.results.records import ClientHealth, RunSummary  # noqa: E402

Run = Callable[..., Awaitable[RunSummary]]
ACCURACY_CONTEXTS = 5000
_ROOT = Path(tempfile.mkdtemp(prefix="tmesh-scale-out-"))
atexit.register(shutil.rmtree, _ROOT, True)
_NODES: Any = None
_CONNECTED: RayCluster | None = None


def _nodes() -> Any:
    """The two-node cluster, started once (its session folder under a temporary folder)."""
    global _NODES
    if _NODES is None:
        home = _ROOT / "home"
        home.mkdir()
        (home / "ray_bootstrap_config.yaml").write_text("provider: {type: local}\n")
        (_ROOT / "ray").mkdir()
        os.environ["RAY_TMPDIR"] = str(_ROOT)
        saved = os.environ.get("HOME", "")
        os.environ["HOME"] = str(home)
        common = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80 << 20}
        try:
            _NODES = Cluster(
                initialize_head=True,
                head_node_args={**common, "include_dashboard": False,
                                "temp_dir": str(_ROOT / "ray")},
            )  # fmt: skip
            _NODES.add_node(**common)
            _NODES.wait_for_nodes()
        finally:
            os.environ["HOME"] = saved
        atexit.register(_NODES.shutdown)
    return _NODES


def spread(task: PartTask, recorder: Recorder, tick: TickFn) -> RayPool:
    """Two actors (one per node) for `task`; the run's clock starts once they are placed."""
    global _CONNECTED
    release()
    _CONNECTED = RayCluster(_nodes().address, 2, None)
    print(f"  {_CONNECTED.describe()}", flush=True)
    return _CONNECTED.spread(replace(task, origin=time.monotonic()), recorder, tick)


def release() -> None:
    global _CONNECTED
    if _CONNECTED is not None:
        _CONNECTED.close()
        _CONNECTED = None


async def accuracy(args: argparse.Namespace, one_process: Run, spread_run: Run) -> None:
    """TTFT and ITL as one process and as 2 actors measure them, against the truth: the server's
    own log of when each request arrived and when it wrote its first and last token."""
    print(
        "\naccuracy: server injects 200 ms TTFT, 10 ms ITL; truth = the server's log; 20 in flight"
    )
    with fake_server(delay_ms=200.0, itl_ms=10.0, log=True) as port:
        for name, run in (("one process", one_process), ("--ray, 2 actors", spread_run)):
            args_ = (
                (port, 20, args.seconds, "ray") if run is spread_run else (port, 20, args.seconds)
            )
            summary = await run(*args_, contexts=ACCURACY_CONTEXTS)
            stats = await asyncio.to_thread(server_stats, port)
            print(_accuracy_line(name, summary, stats["timings"]), flush=True)
    release()


def _accuracy_line(name: str, summary: RunSummary, timings: list[list[float]]) -> str:
    true_ttft = statistics.fmean(first - arrived for _, arrived, first, _ in timings)
    # The server writes the first token, then one event per tick: the other tokens, the usage
    # chunk, `[DONE]`, and logs the end one tick after the last: TOKENS + 2 ticks in all.
    true_itl = statistics.fmean((last - first) / (TOKENS + 2) for _, _, first, last in timings)
    ttft, itl = summary.overall.ttft.mean, summary.overall.itl.mean
    health: ClientHealth = summary.health
    return (
        f"{name:<16} TTFT {1000 * ttft:7.2f} ms vs {1000 * true_ttft:7.2f} "
        f"({100 * (ttft / true_ttft - 1):+5.2f} %)  ITL {1000 * itl:6.3f} ms vs "
        f"{1000 * true_itl:6.3f} ({100 * (itl / true_itl - 1):+5.2f} %)  "
        f"in flight {health.inflight_mean:5.2f} / {health.inflight_target}  "
        f"n={summary.total_requests} (server logged {len(timings)})"
    )
