"""The simulated inference engine: continuous batching over a vLLM-like KV cache .

One step loop owns all state. Each step:

1. loads from the CPU tier that finished rejoin the front of the waiting queue, stores that
   finished make their blocks CPU-resident, arrivals whose frontend delay elapsed join the tail;
2. running requests are scheduled first (oldest first) within `max_num_batched_tokens`: a decode
   takes 1 token, a prefill the rest of its prompt up to the budget (chunked prefill); a request
   that cannot get blocks preempts the newest running one (recompute-style, as vLLM V1);
3. if nothing was preempted, waiting requests are admitted: longest cached prefix on the GPU (whole
   blocks, at most prompt - 1 tokens), then its continuation in the CPU tier; a CPU hit allocates
   GPU blocks and parks the request until its load finishes on the host-to-device link, without
   delaying anyone else;
4. the step takes `latency.step_seconds` of model time (slept on the clock);
5. progress is committed: newly full prompt blocks enter the hash index (and are written through
   to the CPU tier), every request whose KV caught up with its tokens emits one token, finished
   requests free their blocks in reverse order.

Work per step is O(batch) plus O(blocks) touched; token ids are only read when hashing a prompt
(memoised), so 32k-token prompts cost little CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from tmesh.sim import latency
from tmesh.sim.blocks import BlockHasher, BlockPool
from tmesh.sim.clock import Clock, RealClock, VirtualClock
from tmesh.sim.config import EngineConfig
from tmesh.sim.metrics import EngineMetrics
from tmesh.sim.offload import CpuTier
from tmesh.sim.request import DONE, EngineStopped, SimRequest, State
from tmesh.sim.tokenizer import SimTokenizer


@dataclass
class _Step:
    """The batch of one engine step, (request, tokens computed), and when the step ends."""

    items: list[tuple[SimRequest, int]]
    end: float


class Engine:
    """A simulated vLLM engine: submit token ids, stream tokens, scrape `metrics.registry`."""

    def __init__(self, config: EngineConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else RealClock(config.time_scale)
        self.tokenizer = SimTokenizer(config.vocab_size)
        self.metrics = EngineMetrics(config)
        self.pool = BlockPool(config.num_gpu_blocks)
        self.cpu: CpuTier | None = None
        if config.num_cpu_blocks:
            self.cpu = CpuTier(
                config.num_cpu_blocks,
                config.block_bytes,
                config.cpu_load_gbps,
                config.cpu_store_gbps,
                config.per_op_latency_s,
            )
        self._hasher = BlockHasher(config.block_size)
        self._rng = random.Random(config.seed)
        self._arrivals: list[tuple[float, int, SimRequest]] = []
        self._loads: list[tuple[float, int, SimRequest]] = []
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self._live: dict[int, SimRequest] = {}
        self._next_id = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        self.metrics.bind_gauges(
            lambda: len(self.running),
            lambda: len(self.waiting) + len(self._loads_live()),
            self.pool.usage,
            self.cpu.usage if self.cpu else None,
        )

    # ----------------------------------------------------------------- public API

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="sim-engine")

    async def stop(self) -> None:
        """Stop the step loop; requests still inside end with `EngineStopped`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for req in list(self._live.values()):
            self._abort(req, EngineStopped("engine stopped"))

    def submit(self, prompt_ids: Sequence[int], max_tokens: int) -> SimRequest:
        """Queue a request; raises ValueError when it cannot fit the model's context."""
        n = len(prompt_ids)
        if n == 0:
            raise ValueError("the prompt is empty")
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if n + max_tokens > self.config.max_model_len:
            raise ValueError(
                f"This model's maximum context length is {self.config.max_model_len} tokens. "
                f"However, you requested {n + max_tokens} tokens ({n} in the messages, "
                f"{max_tokens} in the completion)."
            )
        now = self.clock.now()
        req = SimRequest(
            self._cancel, self._next_id, n, max_tokens, self._hasher.hashes(prompt_ids), now
        )
        self._next_id += 1
        self._live[req.request_id] = req
        ready = now + latency.api_delay(self.config, n)
        heapq.heappush(self._arrivals, (ready, req.request_id, req))
        self._wake.set()
        return req

    def reset_prefix_cache(self, reset_external: bool = False) -> bool:
        """Forget cached prefixes; False while requests hold blocks (vLLM's rule).

        The CPU tier is kept unless `reset_external`, as vLLM's endpoint parameter of that name.
        """
        if not self.pool.reset():
            return False
        if reset_external and self.cpu is not None:
            self.cpu.reset()
        return True

    def run_until_idle(self, until: float | None = None) -> None:
        """Drive the engine on a VirtualClock until nothing is left to do (or model time `until`).

        Tests use it instead of `start()`: no event loop, no sleeping, fully deterministic.
        """
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            raise RuntimeError("run_until_idle needs a VirtualClock")
        if self._task is not None:
            raise RuntimeError("run_until_idle cannot drive a started engine")
        while until is None or clock.now() < until:
            step = self._schedule(clock.now())
            if step is None:
                wake = self._next_event_time()
                if wake is None:
                    break
                clock.advance_to(wake if until is None else min(wake, until))
                continue
            clock.advance_to(step.end)
            self._commit(step)
        if until is not None:
            clock.advance_to(until)

    # ----------------------------------------------------------------- step loop

    async def _loop(self) -> None:
        clock = self.clock
        try:
            while True:
                step = self._schedule(clock.now())
                if step is None:
                    self._wake.clear()
                    await clock.wait(self._wake, self._next_event_time())
                    continue
                await clock.sleep_until(step.end)
                self._commit(step)
        except Exception as exc:
            for req in list(self._live.values()):
                self._abort(req, exc)
            raise

    def _next_event_time(self) -> float | None:
        times = [q[0][0] for q in (self._arrivals, self._loads) if q]
        return min(times) if times else None

    def _loads_live(self) -> list[SimRequest]:
        return [r for _, _, r in self._loads if r.state is State.LOADING]

    def _schedule(self, now: float) -> _Step | None:
        self._finish_loads(now)
        if self.cpu is not None:
            self.cpu.complete_stores(now)
        self._intake(now)
        items: list[tuple[SimRequest, int]] = []
        budget, preempted = self._schedule_running(items)
        if not preempted or not items:
            # vLLM admits nobody in a step that preempted; a step left empty by preemption is
            # skipped, i.e. admission happens right away.
            self._admit(now, budget, items)
        if not items:
            return None
        return self._timed(items, now)

    def _schedule_running(self, items: list[tuple[SimRequest, int]]) -> tuple[int, bool]:
        budget = self.config.max_num_batched_tokens
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            n = min(req.num_tokens - req.num_computed, budget)
            need = self._new_blocks(req, n)
            while need > self.pool.num_free:
                preempted = True
                if self._reclaim_parked(keep=None):
                    continue
                victim = self.running.pop()
                self._preempt(victim)
                if victim is req:
                    return budget, preempted
            req.blocks.extend(self.pool.allocate(need))
            items.append((req, n))
            budget -= n
            i += 1
        return budget, preempted

    def _admit(self, now: float, budget: int, items: list[tuple[SimRequest, int]]) -> None:
        cfg = self.config
        while self.waiting and len(self.running) < cfg.max_num_seqs and budget > 0:
            req = self.waiting[0]
            if not req.blocks and not self._allocate_with_prefix(req, now, budget):
                if self._stuck(items) and self._reclaim_parked(keep=None):
                    continue
                return
            if req.state is State.LOADING:
                continue
            n = min(req.num_tokens - req.num_computed, budget)
            need = self._new_blocks(req, n)
            if need > self.pool.num_free:
                if self._stuck(items) and self._reclaim_parked(keep=req):
                    continue
                return
            req.blocks.extend(self.pool.allocate(need))
            self.waiting.popleft()
            req.state = State.RUNNING
            self.running.append(req)
            items.append((req, n))
            budget -= n

    def _allocate_with_prefix(self, req: SimRequest, now: float, budget: int) -> bool:
        """Give a fresh (or preempted) request its cached prefix: GPU hit blocks, CPU load.

        Returns False, changing nothing, when the pool cannot hold the hit plus the first chunk.
        """
        bs = self.config.block_size
        max_blocks = (req.num_tokens - 1) // bs
        hit = self.pool.lookup(req.block_hashes, max_blocks)
        ext_blocks = self.cpu.lookup(req.block_hashes, len(hit), max_blocks) if self.cpu else 0
        local, ext = len(hit) * bs, ext_blocks * bs
        first_chunk = 0 if ext else min(req.num_tokens - local, budget)
        need = -(-(local + ext + first_chunk) // bs) - len(hit)
        if need + self.pool.num_idle(hit) > self.pool.num_free:
            return False
        self.pool.touch(hit)
        req.blocks = hit + self.pool.allocate(need)
        req.num_computed = local
        req.num_cached_blocks = len(hit)
        if self.cpu is not None:
            self.cpu.touch(req.block_hashes[: len(hit) + ext_blocks])
        if not req.looked_up:
            req.looked_up = True
            req.local_hit, req.external_hit = local, ext
            req.cached_tokens = local + ext
            self.metrics.record_lookup(req.prompt_tokens, local, ext)
        if ext:
            self.waiting.popleft()
            self._start_load(req, now, ext_blocks)
        return True

    def _start_load(self, req: SimRequest, now: float, num_blocks: int) -> None:
        assert self.cpu is not None
        num_bytes, seconds, done = self.cpu.load(now, num_blocks)
        self.metrics.record_load(num_bytes, seconds)
        req.state = State.LOADING
        req.loading_tokens = num_blocks * self.config.block_size
        heapq.heappush(self._loads, (done, req.request_id, req))

    def _finish_loads(self, now: float) -> None:
        """Loaded requests go back to the front of the queue with their KV computed and cached."""
        done = []
        while self._loads and self._loads[0][0] <= now:
            _, _, req = heapq.heappop(self._loads)
            if req.state is State.LOADING:
                req.num_computed += req.loading_tokens
                self._cache_full_blocks(req, now, store=False)
                req.state = State.WAITING
                done.append(req)
        self.waiting.extendleft(reversed(done))

    def _intake(self, now: float) -> None:
        while self._arrivals and self._arrivals[0][0] <= now:
            _, _, req = heapq.heappop(self._arrivals)
            if req.state is State.PENDING:
                req.state = State.WAITING
                self.waiting.append(req)

    def _stuck(self, items: list[tuple[SimRequest, int]]) -> bool:
        """Nothing runs or loads, so nothing would ever free the blocks admission waits for."""
        return not (items or self.running or self._loads_live())

    def _reclaim_parked(self, keep: SimRequest | None) -> bool:
        """Preempt a parked request (CPU load done, not yet admitted), newest first.

        Parked requests hold GPU blocks outside the running batch; reclaiming them before
        preempting running requests keeps a lone running request (or the head of the queue)
        from waiting forever on blocks nobody will free. Their loaded blocks stay cached, so
        re-admission finds them on the GPU. Falls back to `keep` itself when it holds the only
        parked blocks. Returns whether anything was freed.
        """
        parked = [r for r in self.waiting if r.blocks and r is not keep]
        if not parked and keep is not None and keep.blocks:
            parked = [keep]
        if not parked:
            return False
        victim = parked[-1]
        self._release(victim)
        victim.num_preemptions += 1
        self.metrics.record_preemption()
        return True

    def _new_blocks(self, req: SimRequest, n: int) -> int:
        return max(0, -(-(req.num_computed + n) // self.config.block_size) - len(req.blocks))

    def _timed(self, items: list[tuple[SimRequest, int]], now: float) -> _Step:
        new = context = 0
        pairs = 0.0
        for req, n in items:
            c = req.num_computed
            new += n
            pairs += n * (c + n / 2)
            context += c
        seconds = latency.step_seconds(self.config, len(items), new, pairs, context)
        if self.config.jitter:
            seconds *= self._rng.lognormvariate(0.0, self.config.jitter)
        return _Step(items, now + seconds)

    def _commit(self, step: _Step) -> None:
        now = step.end
        emitted = 0
        for req, n in step.items:
            if req.state is not State.RUNNING:
                continue
            req.num_computed += n
            self._cache_full_blocks(req, now, store=True)
            if req.num_computed == req.num_tokens:
                self._emit(req, now)
                emitted += 1
        self.steps += 1
        if emitted:
            self.metrics.record_generation(emitted)

    def _cache_full_blocks(self, req: SimRequest, now: float, store: bool) -> None:
        """Index newly full prompt blocks; write them through to the CPU tier when computed here."""
        full = min(req.num_computed // self.config.block_size, len(req.block_hashes))
        start = req.num_cached_blocks
        if full <= start:
            return
        new_hashes = req.block_hashes[start:full]
        self.pool.cache(req.blocks[start:full], new_hashes)
        req.num_cached_blocks = full
        if store and self.cpu is not None:
            num_bytes, seconds = self.cpu.store(now, new_hashes)
            if num_bytes:
                self.metrics.record_store(num_bytes, seconds)

    def _emit(self, req: SimRequest, now: float) -> None:
        req.num_output += 1
        if req.first_token_time is None:
            req.first_token_time = now
            self.metrics.record_first_token(
                now - req.arrival_time,
                req.prompt_tokens,
                req.local_hit,
                req.external_hit,
            )
        req.emit()
        if req.num_output == req.max_tokens:
            self.running.remove(req)
            self._release(req)
            req.state = State.FINISHED
            req.finish_time = now
            del self._live[req.request_id]
            self.metrics.record_finish("length", now - req.arrival_time)
            req.end(None)

    def _preempt(self, req: SimRequest) -> None:
        """Recompute-style preemption: drop the KV (cached hashes survive), requeue at the front."""
        self._release(req)
        req.state = State.WAITING
        req.num_preemptions += 1
        self.waiting.appendleft(req)
        self.metrics.record_preemption()

    def _release(self, req: SimRequest) -> None:
        self.pool.free(req.blocks)
        req.blocks = []
        req.num_computed = 0
        req.num_cached_blocks = 0

    def _cancel(self, req: SimRequest) -> None:
        self._abort(req, None)

    def _abort(self, req: SimRequest, error: BaseException | None) -> None:
        if req.state in DONE:
            return
        if req.state is State.RUNNING:
            self.running.remove(req)
        elif req.state is State.WAITING:
            self.waiting.remove(req)
        self._release(req)
        req.state = State.ABORTED
        req.finish_time = self.clock.now()
        self._live.pop(req.request_id, None)
        self.metrics.record_abort()
        req.end(error)
        self._wake.set()
