"""`--ray`: the parts of a run as async actors on a Ray cluster, one per node by default.

Only `cli` imports this module, and only for `--ray`: Ray is an optional extra.

- Placement: a placement group of one bundle per actor, STRICT_SPREAD when there are at least as
  many nodes as actors (one actor per node), else SPREAD; a group that cannot be placed stays
  pending forever without a word, so each strategy gets `PLACEMENT_TIMEOUT_S`.
- The API key goes to the actors as an object in the object store, wrapped in a list so that Ray
  hands over the reference and not the value: a key in the actor's runtime environment is written
  in plain text to the node's `runtime_env_agent.log`, and a small plain argument is inlined into
  the task spec the control store keeps.
- Clocks: latencies are measured on each actor's own monotonic clock. Only to place its records
  in the run's windows does the driver estimate each actor's offset: the actor's clock read
  between two of the driver's, at the smallest of `PINGS` round trips; half that round trip
  bounds the error. All actors start at the same instant of the driver's clock (a start barrier).
- Request files stay on each actor's node during the run and are copied into the run folder at
  the end (`--no-gather`: left there, their paths in `summary.json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from tmesh.bench.endpoint.discovery import auth_headers
from tmesh.bench.load.runner import LoopControl, TickFn
from tmesh.bench.measure.recorder import Recorder
from tmesh.bench.part import PartReport, PartTask, part_tasks, run_part
from tmesh.bench.parts import PartsDriver

PLACEMENT_TIMEOUT_S = 10.0
ACTOR_READY_TIMEOUT_S = 60.0
PINGS = 20
START_BARRIER_S = 0.5
CHUNK_BYTES = 4 << 20
POLL_S = 1.0
LOCAL_STORE_BYTES = 256 << 20


class ClusterError(Exception):
    """A cluster that cannot run the actors asked for: one line for the user."""


class PartActor:
    """One part of the run on a node: `run_part` in the actor's event loop, its reports kept
    until the driver collects them."""

    def __init__(self, key: list[Any]) -> None:
        self._key: str | None = ray.get(key[0]) if key else None
        self._reports: list[PartReport] = []
        self._arrived = asyncio.Event()
        self._loop: LoopControl | None = None
        self._stop_asked = False
        self._task: asyncio.Task[None] | None = None
        self.folder: str | None = None

    def where(self) -> dict[str, Any]:
        context = ray.get_runtime_context()
        return {"node": context.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "pid": os.getpid()}  # fmt: skip

    def clock(self) -> float:
        return time.monotonic()

    async def start(self, task: PartTask) -> str:
        """Start the part; returns the folder on this node that holds its request files."""
        self.folder = tempfile.mkdtemp(prefix="tmesh-part-")
        config = replace(task.config, headers=auth_headers(self._key))
        task = replace(task, config=config, folder=self.folder)
        self._task = asyncio.get_running_loop().create_task(run_part(task, self._ship, self._wire))
        return self.folder

    def _ship(self, report: PartReport) -> None:
        self._reports.append(report)
        self._arrived.set()

    def _wire(self, loop: LoopControl) -> None:
        self._loop = loop
        if self._stop_asked:
            loop.request_stop("signal")

    async def reports(self) -> list[PartReport]:
        """The reports since the previous call, waiting up to `POLL_S` for one; raises what the
        part raised once it has none left."""
        if not self._reports and not (self._task and self._task.done()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), POLL_S)
        self._arrived.clear()
        taken, self._reports = self._reports, []
        if not taken and self._task is not None and self._task.done():
            self._task.result()
        return taken

    def stop(self) -> None:
        self._stop_asked = True
        if self._loop is not None:
            self._loop.request_stop("signal")

    def read(self, path: str, offset: int) -> bytes:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(CHUNK_BYTES)

    def remove_files(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Placement:
    """Where an actor runs, and its clock against the driver's."""

    node: str
    ip: str
    pid: int
    folder: str | None = None
    offset_s: float = 0.0
    uncertainty_s: float = 0.0


class RayCluster:
    """The connection to the cluster and the actors placed on it, for one run."""

    def __init__(
        self, address: str | None, actors: int | None, key: str | None, gather: bool = True,
        tolerate_loss: bool = False,
    ) -> None:  # fmt: skip
        self.gather, self.tolerate_loss = gather, tolerate_loss
        self.say: Callable[[str], None] = lambda text: None
        """Where the clock offsets are told (the view's progress line)."""
        self._home: str | None = None
        if address is None:
            self._start_local()
        else:
            ray.init(address=address, logging_level=logging.ERROR, configure_logging=False)
        self.group: Any = None
        self.actors: list[Any] = []
        try:
            self._place(actors, key)
        except BaseException:
            self.close()
            raise

    def _start_local(self) -> None:
        """A one-node cluster on 127.0.0.1 that calls nobody: without a cluster config in its
        home folder, Ray's head asks the cloud metadata address which cloud it runs on, so its
        processes get a home of their own holding a local one."""
        self._home = tempfile.mkdtemp(prefix="tmesh-ray-home-")
        Path(self._home, "ray_bootstrap_config.yaml").write_text("provider: {type: local}\n")
        home = os.environ.get("HOME")
        os.environ["HOME"] = self._home
        try:
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False,
                     object_store_memory=LOCAL_STORE_BYTES, logging_level=logging.ERROR,
                     configure_logging=False)  # fmt: skip
        finally:
            if home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = home

    def _place(self, wanted: int | None, key: str | None) -> None:
        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        if not nodes:
            raise ClusterError("the Ray cluster has no live node with a CPU")
        count = wanted or len(nodes)
        cpus = sum(n["Resources"]["CPU"] for n in nodes)
        # A CPU per actor, or the share of the smallest node that an even spread leaves each.
        per_node = -(-count // len(nodes))
        smallest = min(n["Resources"]["CPU"] for n in nodes)
        bundle = {"CPU": min(1.0, int(100 * smallest / per_node) / 100)}
        if bundle["CPU"] <= 0:
            raise ClusterError(f"{count} actors do not fit the cluster's {cpus:g} CPUs")
        strategies = ["STRICT_SPREAD", "SPREAD"] if count <= len(nodes) else ["SPREAD"]
        for strategy in strategies:
            group = placement_group([bundle] * count, strategy=strategy)
            if ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)[0]:
                self.group, self.strategy = group, strategy
                break
            remove_placement_group(group)
        else:
            raise ClusterError(
                f"cannot place {count} actors of {bundle} on the cluster "
                f"({len(nodes)} nodes, {cpus:g} CPUs) within {PLACEMENT_TIMEOUT_S:g} s"
            )
        ref = [ray.put(key)] if key else []
        remote = ray.remote(PartActor)
        self.actors = [
            remote.options(
                num_cpus=bundle["CPU"],
                max_concurrency=64,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self.group, placement_group_bundle_index=i
                ),
            ).remote(ref)
            for i in range(count)
        ]
        try:
            places = ray.get([a.where.remote() for a in self.actors], timeout=ACTOR_READY_TIMEOUT_S)
        except (GetTimeoutError, RayError) as exc:
            raise ClusterError(f"the actors did not start: {first_line(exc)}") from None
        self.placements = [Placement(p["node"], p["ip"], p["pid"]) for p in places]

    def describe(self) -> str:
        """The placement, shown before the run."""
        nodes = {p.node for p in self.placements}
        where = ", ".join(f"{i} on {p.ip} ({p.node[:8]})" for i, p in enumerate(self.placements))
        actors = f"{len(self.actors)} actor" + ("s" if len(self.actors) > 1 else "")
        hosts = f"{len(nodes)} node" + ("s" if len(nodes) > 1 else "")
        return f"ray: {actors} on {hosts} ({self.strategy}): actor {where}"

    def spread(self, template: PartTask, recorder: Recorder, on_tick: TickFn) -> RayPool:
        return RayPool(self, template, recorder, on_tick, self.gather, self.tolerate_loss)

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if self.group is not None:
            with contextlib.suppress(Exception):
                remove_placement_group(self.group)
        ray.shutdown()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)


class RayPool(PartsDriver):
    """The driver's side: the actors' clocks, the start barrier, their reports, their deaths,
    their files."""

    def __init__(
        self, cluster: RayCluster, template: PartTask, recorder: Recorder, on_tick: TickFn,
        gather: bool = True, tolerate_loss: bool = False,
    ) -> None:  # fmt: skip
        self.tasks = part_tasks(len(cluster.actors), replace(template, config=_keyless(template)))
        super().__init__(
            len(self.tasks), recorder.absorb, on_tick, template.traffic.cap, template.rules,
            template.origin, template.interval_s, tolerate_loss,
        )  # fmt: skip
        self.cluster = cluster
        self.actors = cluster.actors[: len(self.tasks)]
        self.run_folder = Path(template.folder)
        self.gathered = gather
        self._pollers: list[asyncio.Task[None]] = []

    async def _start(self) -> None:
        """Measure every actor's clock, then start them all at one instant; an actor that is
        already gone is lost like one that dies later."""
        started = []
        for part, actor in enumerate(self.actors):
            try:
                offset, uncertainty = await clock_offset(actor.clock.remote)
            except RayError as exc:
                self.lost_part(part, f"actor {part} on {self._node(part)} died: {first_line(exc)}")
                continue
            place = self.cluster.placements[part]
            place.offset_s, place.uncertainty_s = offset, uncertainty
            started.append(part)
        start_at = self.now() + START_BARRIER_S
        self.cluster.say(self._clocks(started))
        for part in started:
            origin = self._origin + self.cluster.placements[part].offset_s
            task = replace(self.tasks[part], origin=origin, start_at=start_at)
            self.cluster.placements[part].folder = await self.actors[part].start.remote(task)
            self._pollers.append(asyncio.create_task(self._poll(part, self.actors[part])))

    async def _poll(self, part: int, actor: Any) -> None:
        """Collect a part's reports until its end; a dead actor or a failed part is lost."""
        while True:
            try:
                reports = await actor.reports.remote()
            except RayActorError as exc:
                self.lost_part(part, f"actor {part} on {self._node(part)} died: {first_line(exc)}")
                return
            except RayError as exc:
                self.lost_part(
                    part, f"actor {part} on {self._node(part)} failed: {first_line(exc)}"
                )
                return
            for report in reports:
                self.report(report)
                if report.end is not None:
                    return

    def _clocks(self, parts: list[int]) -> str:
        places = [self.cluster.placements[part] for part in parts]
        offsets = ", ".join(
            f"{1000 * p.offset_s:+.2f} ± {1000 * p.uncertainty_s:.2f} ms" for p in places
        )
        return f"ray: actors' clocks against the driver's: {offsets}; all start together"

    def _node(self, part: int) -> str:
        place = self.cluster.placements[part]
        return f"node {place.ip} ({place.node[:8]})"

    async def _stop_parts(self) -> None:
        for part in self.running:
            with contextlib.suppress(RayError):
                await self.actors[part].stop.remote()

    async def _close(self) -> None:
        for poller in self._pollers:
            poller.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        if self.gathered:
            for part in sorted(self.ends):
                await self._gather(part)

    async def _gather(self, part: int) -> None:
        """Copy a part's request files into the run folder, then remove them from its node."""
        actor = self.actors[part]
        for path in self.ends[part].files:
            with open(self.run_folder / Path(path).name, "xb") as out:
                offset = 0
                while chunk := await actor.read.remote(path, offset):
                    out.write(chunk)
                    offset += len(chunk)
        await actor.remove_files.remote()

    def _placement(self, part: int) -> dict[str, Any]:
        """Where a part ran and its clock; a lost part's requests are left in `folder`."""
        place = self.cluster.placements[part]
        lost = {"folder": place.folder} if part in self.lost else {}
        return {
            **lost,
            "node": place.node, "ip": place.ip, "pid": place.pid,
            "clock_offset_ms": 1000 * place.offset_s,
            "clock_uncertainty_ms": 1000 * place.uncertainty_s,
        }  # fmt: skip


def _keyless(template: PartTask) -> Any:
    """The client settings without the key: each actor adds it from the object store."""
    return replace(template.config, headers={})


async def clock_offset(read: Callable[[], Any], pings: int = PINGS) -> tuple[float, float]:
    """The remote clock minus ours, read at the smallest round trip, and half that round trip."""
    best = (float("inf"), 0.0)
    for _ in range(pings):
        sent = time.monotonic()
        remote = await read()
        received = time.monotonic()
        rtt = received - sent
        if rtt < best[0]:
            best = (rtt, remote - (sent + received) / 2)
    return best[1], best[0] / 2


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
