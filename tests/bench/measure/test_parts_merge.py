"""Exact statistics over parts: the records of a run replayed through one recorder, and the same
records split over parts (by context, by session) whose windows are shipped (pickled, as between
processes and machines) and absorbed by a driver, give the same intervals and summary."""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import asdict, replace
from typing import Any

import pytest
from factories import SEED_SPEC, request

from tmesh.bench.measure.goodput import Slo
from tmesh.bench.measure.recorder import Recorder
from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    RequestRecord,
    RunSummary,
    SessionSpec,
    WorkloadSpec,
)

INTERVAL = 5.0
WARMUP = 12.0
SLO = Slo(ttft=0.4, e2e=2.0)
ERRORS = ("http_5xx", "timeout", "http_429")


def context_records(seed: int, count: int, contexts: int) -> list[RequestRecord]:
    """A minute of requests over `contexts` contexts: revisits, failures of several kinds (each
    with its own message), cached tokens on some, send lateness on others."""
    rng = random.Random(seed)
    visits = [0] * contexts
    records = []
    for index in range(count):
        context = index % contexts
        t0 = rng.uniform(0.0, 60.0)
        fields: dict[str, Any] = {
            "index": index, "context_id": context, "visit": visits[context],
            "question_id": rng.randrange(5),
        }  # fmt: skip
        visits[context] += 1
        if rng.random() < 0.3:
            fields["t_intended"] = t0 - rng.uniform(0.0, 0.05)
        if rng.random() < 0.08:
            kind = rng.choice(ERRORS)
            records.append(
                request(t0, t_end=t0 + rng.uniform(0.01, 2.0), error=kind,
                        error_detail=f"{kind} at {t0:.6f}", **fields)
            )  # fmt: skip
            continue
        completion = rng.randint(1, 40)
        records.append(
            request(
                t0, ttft=rng.lognormvariate(-1.5, 0.6), decode=rng.uniform(0.0, 1.5),
                tail=rng.uniform(0.0, 0.01), prompt_tokens=rng.randint(900, 1100),
                completion_tokens=completion, usage_reported=True,
                cached_tokens=rng.choice([None, rng.randint(0, 900)]), **fields,
            )
        )  # fmt: skip
    return records


def session_records(seed: int, sessions: int, turns: int) -> list[RequestRecord]:
    """Conversations: turns in order with idle gaps; some end early on a failed turn."""
    rng = random.Random(seed)
    records = []
    index = 0
    for session in range(sessions):
        t = rng.uniform(0.0, 20.0)
        for number in range(1, turns + 1):
            gap = None if number == 1 else rng.choice([1.0, 8.0, 45.0, 150.0]) * rng.random()
            t += gap or 0.0
            fields: dict[str, Any] = {
                "index": index, "session": session, "turn": number, "idle_gap": gap,
                "t_intended": t, "context_id": session,
            }  # fmt: skip
            index += 1
            if rng.random() < 0.05:
                records.append(request(t, t_end=t + 0.5, error="http_5xx",
                                       error_detail=f"5xx of {session}", **fields))  # fmt: skip
                break
            ttft = rng.uniform(0.02, 0.6)
            records.append(
                request(
                    t, ttft=ttft, decode=rng.uniform(0.05, 0.5), prompt_tokens=1000 * number,
                    completion_tokens=rng.randint(2, 30), usage_reported=True,
                    cached_tokens=rng.randint(0, 1000 * number), **fields,
                )
            )  # fmt: skip
            t = records[-1].t_end or t
    return records


def finish(record: RequestRecord) -> float:
    return record.t_end if record.t_end is not None else record.t0


def health(window: int) -> ClientHealth:
    return ClientHealth(inflight_mean=3.0 + window, inflight_target=8, sent=window)


def one_process(spec: WorkloadSpec, records: list[RequestRecord]) -> tuple[list[Any], Any]:
    """What a single process writes: records added as they finish, a snapshot every interval."""
    recorder = Recorder(spec, WARMUP, INTERVAL, SLO)
    return replayed(recorder, records, lambda r: recorder.add(r), lambda: None)


def over_parts(
    spec: WorkloadSpec, records: list[RequestRecord], parts: int, owner: str
) -> tuple[list[Any], Any]:
    """What a driver writes: each part records its own share and ships a window per interval;
    the driver absorbs the windows (after a pickle round trip) and snapshots."""
    driver = Recorder(spec, WARMUP, INTERVAL, SLO)
    recorders = [Recorder(spec, WARMUP, INTERVAL, SLO) for _ in range(parts)]

    def add(record: RequestRecord) -> None:
        recorders[getattr(record, owner) % parts].add(record)

    def ship() -> None:
        for part in recorders:
            driver.absorb(pickle.loads(pickle.dumps(part.take_part())))

    return replayed(driver, records, add, ship)


def replayed(
    recorder: Recorder, records: list[RequestRecord], add: Any, before_snapshot: Any
) -> tuple[list[Any], Any]:
    snaps: list[IntervalSnapshot] = []
    boundary = INTERVAL
    for record in sorted(records, key=finish):
        while finish(record) >= boundary:
            before_snapshot()
            snaps.append(recorder.snapshot(boundary, health=health(len(snaps))))
            boundary += INTERVAL
        add(record)
    end = max(finish(r) for r in records)
    before_snapshot()
    snaps.append(recorder.snapshot(end, health=health(len(snaps))))
    summary: RunSummary = recorder.summary(end, "duration", "t")
    return [asdict(s) for s in snaps], asdict(summary)


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """Equal, floats to 1e-9 relative: sums of the same values in another order differ in their
    last bits, everything else (counts, histograms, percentiles) is exact."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


SPEC = replace(SEED_SPEC, num_contexts=9)
SESSIONS_SPEC = replace(
    SEED_SPEC,
    workload="sessions",
    sessions=SessionSpec(system_prompt=1000, turns=4, turn_input=100, think_time=5.0),
)


@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_contexts_split_over_parts_give_one_process_figures(parts: int) -> None:
    records = context_records(seed=parts, count=3000, contexts=SPEC.num_contexts)
    want_snaps, want_summary = one_process(SPEC, records)
    got_snaps, got_summary = over_parts(SPEC, records, parts, "context_id")
    assert want_summary["total_requests"] > 2000 and want_summary["rotations"] > 100
    assert want_summary["error_messages"] and want_summary["overall"]["lateness"]["count"]
    assert_same(got_snaps, want_snaps, "intervals")
    assert_same(got_summary, want_summary, "summary")


@pytest.mark.parametrize("parts", [2, 5])
def test_sessions_split_over_parts_give_one_process_figures(parts: int) -> None:
    records = session_records(seed=parts, sessions=300, turns=4)
    want_snaps, want_summary = one_process(SESSIONS_SPEC, records)
    got_snaps, got_summary = over_parts(SESSIONS_SPEC, records, parts, "session")
    sessions = want_summary["sessions"]
    assert sessions["completed"] > 100 and sessions["abandoned"] > 5
    assert want_summary["error_messages"]
    assert_same(got_snaps, want_snaps, "intervals")
    assert_same(got_summary, want_summary, "summary")


def test_a_window_ships_small() -> None:
    """What crosses the wire per part and interval is a few KB, not the records."""
    recorder = Recorder(SPEC, WARMUP, INTERVAL, SLO)
    for record in context_records(seed=7, count=2000, contexts=SPEC.num_contexts):
        recorder.add(record)
    assert len(pickle.dumps(recorder.take_part())) < 40_000
    assert len(pickle.dumps(recorder.take_part())) < 1_000
