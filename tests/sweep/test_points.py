"""A point's figures: latencies and QPS after the warm-up (a pass or seconds), hit rates from the
summary."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tmesh.results.catalogue import server as figures
from tmesh.results.records import MetricStats, RequestRecord, RunSummary, WindowStats
from tmesh.results.rundir import request_row
from tmesh.sweep.points import point_figures, read_records


def _record(index: int, rotation: int, t0: float, ttft: float, ok: bool = True) -> RequestRecord:
    return RequestRecord(
        index, index % 2, 0, rotation, rotation, t0=t0, t_first=t0 + ttft, t_end=t0 + ttft + 0.1,
        error=None if ok else "timeout",
    )  # fmt: skip


def _summary(server: dict[str, float]) -> RunSummary:
    empty = MetricStats()
    return RunSummary(
        "now", 10.0, "max-requests", 6, 1, 0.6, 0.0, 0.0, WindowStats(), WindowStats(), 0.0,
        empty, empty, 2, server=server,
    )  # fmt: skip


RECORDS = [
    _record(0, 0, 0.0, 1.0),
    _record(1, 0, 0.0, 1.0),
    _record(2, 1, 1.2, 0.2),
    _record(3, 1, 1.3, 0.4),
    _record(4, 2, 1.7, 0.2),
    _record(5, 2, 1.8, 0.2, ok=False),
]


def test_the_first_pass_is_the_warm_up() -> None:
    server = {figures.MEASURED_HIT_RATE.key: 0.5, figures.IDEAL_LRU_HIT_RATE.key: 0.6}
    point = point_figures(2.0, "02", 2, RECORDS, _summary(server), None, True)
    assert point.ttft_p50 == pytest.approx(0.2) == point.revisit_ttft_p50
    assert point.qps == pytest.approx(3 / (2.0 - 1.2))
    assert point.measured_hit_rate == 0.5 and point.lru_hit_rate == 0.6
    assert (point.requests, point.failed, point.cache_reset) == (6, 1, True)


def test_seconds_of_warm_up_when_points_are_timed() -> None:
    point = point_figures(1.0, "01", 2, RECORDS, _summary({}), 1.05, False)
    assert point.ttft_p50 == pytest.approx(0.4), "the first pass ended after the warm-up"
    assert point.revisit_ttft_p50 == pytest.approx(0.2)
    assert point.qps == pytest.approx(5 / (2.0 - 1.05))
    assert point.measured_hit_rate is None


def test_records_are_read_back_skipping_a_truncated_line(tmp_path: Path) -> None:
    lines = [orjson.dumps(request_row(r)) for r in RECORDS[:3]]
    (tmp_path / "requests.jsonl").write_bytes(b"\n".join(lines) + b'\n{"index": 3, "t0')
    assert read_records(tmp_path) == RECORDS[:3]
