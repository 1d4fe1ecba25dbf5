"""How much CPU the simulated engine needs to serve the benchmark's default load in real time.

Feeds the engine directly (no HTTP) with the default shape for gpt-oss-20b: 61 contexts of 32000
tokens plus a short question, 100 output tokens, 20 requests in flight, contexts in order
0..60, 0..60, ... The first rotations can be fast-forwarded (`--warmup-rotations`, run at
`--warmup-scale`) so the measured window shows the steady state; the window itself runs at
`--time-scale` (1 = real time). Prints CPU seconds per wall second of this process (engine plus
the trivial driver), engine steps per second and what the requests saw.

    .venv/bin/python benchmarks/sim_engine_cpu.py --profile cpu-offload --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field, replace

from tmesh.sim.clock import RealClock
from tmesh.sim.engine import Engine
from tmesh.sim.profiles import PROFILES


@dataclass
class Tally:
    """What the driver saw, split by first visit of a context versus revisits."""

    done: int = 0
    tokens: int = 0
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu-offload", choices=sorted(PROFILES))
    p.add_argument("--duration", type=float, default=20.0, help="measured wall seconds")
    p.add_argument("--time-scale", type=float, default=1.0, help="model/wall speed while measured")
    p.add_argument("--warmup-rotations", type=int, default=1, help="rotations to fast-forward")
    p.add_argument("--warmup-scale", type=float, default=0.02, help="time scale while warming up")
    p.add_argument("--contexts", type=int, default=61)
    p.add_argument("--context-tokens", type=int, default=32000)
    p.add_argument("--question-tokens", type=int, default=15)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


async def _client(
    engine: Engine,
    order: itertools.count,
    contexts: list[list[int]],
    args: argparse.Namespace,
    tally: dict[str, Tally],
    phase: list[str],
    rng: random.Random,
) -> None:
    while True:
        i = next(order)
        context = contexts[i % len(contexts)]
        question = rng.choices(range(engine.config.vocab_size), k=args.question_tokens)
        req = engine.submit(context + question, args.max_tokens)
        tokens = 0
        async for n in req.stream():
            tokens += n
        t = tally[phase[0]]
        t.done += 1
        t.tokens += tokens
        (t.cold if i < len(contexts) else t.warm).append(req.ttft or 0.0)


def _mean(xs: list[float]) -> str:
    return f"{sum(xs) / len(xs):.3f} s (n={len(xs)})" if xs else "-"


async def _run(args: argparse.Namespace) -> None:
    cfg = replace(PROFILES[args.profile], seed=args.seed)
    rng = random.Random(args.seed)
    vocab = range(cfg.vocab_size)
    contexts = [rng.choices(vocab, k=args.context_tokens) for _ in range(args.contexts)]
    warmup = args.warmup_rotations * args.contexts
    clock = RealClock(args.warmup_scale if warmup else args.time_scale)
    engine = Engine(cfg, clock)
    await engine.start()
    tally = {"warmup": Tally(), "measured": Tally()}
    phase = ["warmup" if warmup else "measured"]
    order = itertools.count()
    clients = [
        asyncio.create_task(
            _client(engine, order, contexts, args, tally, phase, random.Random(args.seed + k))
        )
        for k in range(args.inflight)
    ]
    while warmup and tally["warmup"].done < warmup:
        await asyncio.sleep(0.1)
    if warmup:
        print(f"warm-up: {tally['warmup'].done} requests, model time {clock.now():.1f} s")
    phase[0] = "measured"
    clock.rescale(args.time_scale)
    wall0, cpu0, steps0, model0 = time.monotonic(), time.process_time(), engine.steps, clock.now()
    await asyncio.sleep(args.duration)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    steps = engine.steps - steps0
    model = clock.now() - model0
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    await engine.stop()

    m = tally["measured"]
    print(f"profile {args.profile}, time_scale {args.time_scale}, {args.inflight} in flight")
    print(f"wall {wall:.1f} s, model {model:.1f} s")
    print(f"CPU {cpu:.2f} s = {cpu / wall:.3f} CPU-s per wall-s")
    per_step = cpu / max(steps, 1) * 1e3
    print(f"steps {steps} = {steps / wall:.1f} steps/s, {per_step:.2f} ms CPU/step")
    print(f"requests {m.done} = {m.done / model:.2f} req/s (model), tokens {m.tokens}")
    print(f"mean TTFT first visits {_mean(m.cold)}, revisits {_mean(m.warm)}")
    snap = engine.metrics.snapshot()
    print(
        "prefix hits {:.0f} / queries {:.0f}, external hits {:.0f}, preemptions {:.0f}".format(
            snap["vllm:prefix_cache_hits_total"],
            snap["vllm:prefix_cache_queries_total"],
            snap.get("vllm:external_prefix_cache_hits_total", 0),
            snap["vllm:num_preemptions_total"],
        )
    )


def main() -> None:
    asyncio.run(_run(_parse_args()))


if __name__ == "__main__":
    main()
