"""Memory and speed of the results path on a long run: Recorder + RunFiles over synthetic records.

Feeds N records (default 1,000,000) shaped like the seed's workload (61 contexts, 32k-token
prompts, 100-token answers, 2 % failures) one simulated millisecond apart, takes a snapshot every
simulated 5 s, writes everything to a temporary run folder, and prints RSS along the way and the
records per CPU second each stage sustains (CPU time, so a busy shared machine does not skew it).
Flat RSS is the claim under test: nothing is kept per request in memory.

    .venv/bin/python benchmarks/recorder_memory.py [--records N]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
from pathlib import Path

from tmesh.bench.measure.recorder import Recorder
from tmesh.results.records import ERROR_KINDS, RequestRecord, WorkloadSpec
from tmesh.results.rundir import RunFiles

SPEC = WorkloadSpec(
    model="openai/gpt-oss-20b",
    num_contexts=61,
    questions_per_context=61,
    max_inflight=20,
    input_length=32000,
    output_length=100,
)
SPACING_S = 0.001
INTERVAL_S = 5.0


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(i: int, rng: random.Random) -> RequestRecord:
    context, visit = i % SPEC.num_contexts, i // SPEC.num_contexts
    t0 = i * SPACING_S
    record = RequestRecord(
        index=i,
        context_id=context,
        question_id=rng.randrange(SPEC.questions_per_context),
        visit=visit,
        rotation=visit,
        t0=t0,
    )
    if rng.random() < 0.02:
        record.error = rng.choice(ERROR_KINDS)
        record.t_end = t0 + rng.uniform(0.01, 30.0)
        return record
    ttft = rng.lognormvariate(0.0 if visit == 0 else -1.5, 0.5)
    record.t_first = t0 + ttft
    record.t_last = record.t_first + rng.uniform(0.2, 0.6)
    record.t_end = record.t_last + 0.001
    record.prompt_tokens = SPEC.input_length + 20
    record.completion_tokens = SPEC.output_length
    record.usage_reported = True
    record.cached_tokens = 0 if visit == 0 else 31_744
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to feed")
    args = parser.parse_args()
    rng = random.Random(0)
    print(f"RSS at start: {rss_mib():.1f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(SPEC, warmup_seconds=60.0)
        files = RunFiles(Path(tmp) / "run")
        print(f"RSS after set-up: {rss_mib():.1f} MiB")
        in_recorder = in_files = 0.0
        next_snapshot = INTERVAL_S
        started, started_wall = time.process_time(), time.perf_counter()
        for i in range(args.records):
            record = synthetic(i, rng)
            t = time.process_time()
            recorder.add(record)
            t2 = time.process_time()
            files.append_request(record)
            t3 = time.process_time()
            in_recorder += t2 - t
            in_files += t3 - t2
            now = i * SPACING_S
            if now >= next_snapshot:
                t = time.process_time()
                files.append_interval(recorder.snapshot(now))
                in_recorder += time.process_time() - t
                next_snapshot += INTERVAL_S
            if (i + 1) % (args.records // 5 or 1) == 0:
                print(f"  {i + 1:>9} records: RSS {rss_mib():.1f} MiB")
        t = time.process_time()
        summary = recorder.summary(args.records * SPACING_S, "benchmark", "n/a")
        files.write_summary(summary)
        in_recorder += time.process_time() - t
        files.close()
        cpu = time.process_time() - started
        wall = time.perf_counter() - started_wall
        on_disk = sum(p.stat().st_size for p in (Path(tmp) / "run").iterdir()) / 2**20
    print(f"RSS at end: {rss_mib():.1f} MiB (peak {peak_rss_mib():.1f} MiB)")
    print(f"records: {args.records}, rotations {summary.rotations}, written {on_disk:.0f} MiB")
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (the gap is other processes on the machine)")
    print(f"overall incl. record generation: {args.records / cpu:,.0f} records per CPU second")
    print(f"Recorder alone: {args.records / in_recorder:,.0f} records per CPU second")
    print(f"RunFiles alone: {args.records / in_files:,.0f} records per CPU second")


if __name__ == "__main__":
    main()
