"""Run folder files: valid JSON/JSONL on every path, flushing, rotation, atomic summary, errors."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
from factories import request, run_summary

from tmesh.results import rundir as runfiles
from tmesh.results.records import (
    IntervalSnapshot,
    MetricStats,
    RequestRecord,
    RunSummary,
    WindowStats,
)
from tmesh.results.rundir import RunFiles, RunFilesError, default_run_dir
from tmesh.text import scrub


def record(index: int, error: str | None = None) -> RequestRecord:
    return request(
        float(index),
        index=index,
        context_id=index % 3,
        question_id=1,
        visit=index // 3,
        t_first=index + 0.5,
        t_last=index + 1.5,
        t_end=index + 1.6,
        prompt_tokens=1000,
        completion_tokens=11,
        usage_reported=True,
        cached_tokens=512,
        error=error,
    )


def summary(stop_reason: str = "duration") -> RunSummary:
    return run_summary(
        elapsed=12.5,
        stop_reason=stop_reason,
        total_requests=3,
        qps=0.24,
        input_token_throughput=240.0,
        output_token_throughput=2.64,
        overall=WindowStats(requests=3, ttft=MetricStats(count=3, mean=0.5)),
        steady=WindowStats(requests=3),
        rotations=1,
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_creates_nested_folder_and_writes_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "a" / "b"
    with RunFiles(run_dir) as files:
        files.write_config({"model": "m", "output_dir": run_dir, "num": 3})
    config = json.loads((run_dir / "config.json").read_text())
    assert config == {"model": "m", "output_dir": str(run_dir), "num": 3}


def test_write_config_scrubs_a_leaked_secret(tmp_path: Path) -> None:
    key = "sk-verysecretkey123"
    with RunFiles(tmp_path / "run") as files:
        files.write_config({"command": ["tmesh-cli", "--api-key", key]}, secret=key)
    text = (tmp_path / "run" / "config.json").read_text()
    assert key not in text
    assert "sk-v…" in text


def test_scrub() -> None:
    assert scrub("Bearer abcdefgh and abcdefgh", "abcdefgh") == "Bearer abcd… and abcd…"
    assert scrub("nothing to hide", None) == "nothing to hide"
    assert scrub("nothing to hide", "") == "nothing to hide"


def test_request_lines_parse_and_carry_derived_metrics(tmp_path: Path) -> None:
    with RunFiles(tmp_path / "run") as files:
        files.append_request(record(0))
        files.append_request(record(1, error="timeout"))
    rows = lines(tmp_path / "run" / "requests.jsonl")
    assert len(rows) == 2
    first = record(0)
    assert {k: rows[0][k] for k in asdict(first)} == asdict(first)
    assert rows[0]["ttft"] == pytest.approx(first.ttft)
    assert rows[0]["itl"] == pytest.approx(first.itl)
    assert rows[0]["e2e"] == pytest.approx(first.e2e)
    assert rows[0]["prefill_throughput"] == pytest.approx(first.prefill_throughput)
    assert rows[0]["decode_throughput"] == pytest.approx(first.decode_throughput)
    assert rows[1]["error"] == "timeout"


def test_appends_reach_the_file_within_a_second_without_explicit_flush(tmp_path: Path) -> None:
    clock = FakeClock()
    files = RunFiles(tmp_path / "run", clock=clock)
    path = tmp_path / "run" / "requests.jsonl"
    files.append_request(record(0))
    assert path.read_text() == ""
    clock.now = runfiles.FLUSH_SECONDS
    files.append_request(record(1))
    assert len(lines(path)) == 2
    files.close()


def test_interval_append_flushes_requests_too(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "run", clock=FakeClock())
    files.append_request(record(0))
    snap = IntervalSnapshot(
        index=0,
        elapsed=5.0,
        interval_seconds=5.0,
        total_requests=1,
        qps=0.2,
        global_stats=WindowStats(requests=1),
        interval_stats=WindowStats(requests=1),
        server={"kv_cache_usage": 0.5},
    )
    files.append_interval(snap)
    assert len(lines(tmp_path / "run" / "requests.jsonl")) == 1
    assert lines(tmp_path / "run" / "intervals.jsonl") == [asdict(snap)]
    files.close()


def test_rotation_by_max_records_keeps_order(tmp_path: Path) -> None:
    with RunFiles(tmp_path / "run", max_records=3) as files:
        for i in range(8):
            files.append_request(record(i))
        names = [p.name for p in files.request_files]
    assert names == ["requests.jsonl", "requests.1.jsonl", "requests.2.jsonl"]
    per_file = [[row["index"] for row in lines(tmp_path / "run" / n)] for n in names]
    assert per_file == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert files.records_written == 8


def test_exact_multiple_does_not_leave_an_empty_file(tmp_path: Path) -> None:
    with RunFiles(tmp_path / "run", max_records=2) as files:
        for i in range(4):
            files.append_request(record(i))
    assert sorted(p.name for p in (tmp_path / "run").glob("requests*")) == [
        "requests.1.jsonl",
        "requests.jsonl",
    ]


def test_summary_is_valid_json_and_replaced_atomically(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunFiles(run_dir) as files:
        files.write_summary(summary("signal"))
        assert json.loads((run_dir / "summary.json").read_text()) == asdict(summary("signal"))
        files.write_summary(summary("duration"))
    assert json.loads((run_dir / "summary.json").read_text())["stop_reason"] == "duration"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "intervals.jsonl",
        "requests.jsonl",
        "summary.json",
    ]


def test_failed_summary_write_leaves_previous_summary_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    files = RunFiles(run_dir)
    files.write_summary(summary("duration"))

    def no_space(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(RunFilesError, match="No space left on device"):
        files.write_summary(summary("signal"))
    assert json.loads((run_dir / "summary.json").read_text())["stop_reason"] == "duration"
    assert not list(run_dir.glob(".*.tmp"))
    files.close()


def test_unwritable_path_gives_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunFilesError) as caught:
        RunFiles(blocker / "run")
    message = str(caught.value)
    assert "\n" not in message
    assert str(blocker / "run") in message


def test_folder_with_a_run_is_refused(tmp_path: Path) -> None:
    RunFiles(tmp_path / "run").close()
    with pytest.raises(RunFilesError, match="already holds a run"):
        RunFiles(tmp_path / "run")


def test_max_records_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(RunFilesError, match="at least 1"):
        RunFiles(tmp_path / "run", max_records=0)


def test_close_is_idempotent_and_flushes(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "run", clock=FakeClock())
    files.append_request(record(0))
    files.close()
    files.close()
    files.flush()
    assert len(lines(tmp_path / "run" / "requests.jsonl")) == 1


def test_default_run_dir_is_timestamped_and_unique(tmp_path: Path) -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    first = default_run_dir(tmp_path, now)
    assert first == tmp_path / "20260304-050607"
    first.mkdir()
    second = default_run_dir(tmp_path, now)
    assert second == tmp_path / "20260304-050607-1"
    second.mkdir()
    assert default_run_dir(tmp_path, now) == tmp_path / "20260304-050607-2"


def test_default_run_dir_lives_under_tmesh_runs() -> None:
    assert default_run_dir().parent == Path("tmesh-runs")


def test_one_masking_rule_for_every_output() -> None:
    """A short key is masked alike in discovery messages, request details and run files."""
    from tmesh.bench.load.client import one_line
    from tmesh.text import mask_key

    short = "sk-12ab"
    assert mask_key(short) == "sk-…"
    assert scrub(f"key {short}", short) == "key sk-…"
    assert one_line(f"401 for {short}", (short,)) == "401 for sk-…"


def test_parts_write_their_own_files_listed_by_writer(tmp_path: Path) -> None:
    """Each part of a spread run rotates its own files; the folder lists the run's own stream,
    then each part's, each in the order it was written."""
    run = tmp_path / "run"
    with RunFiles(run) as files:
        files.append_request(record(0))
    for part in (1, 0):
        log = runfiles.RequestLog(run, part, max_records=2)
        for i in range(3):
            log.append(record(10 * part + i))
        log.close()
        assert [p.name for p in log.files] == [
            f"requests.part{part}.jsonl",
            f"requests.part{part}.1.jsonl",
        ]
    streams = runfiles.request_streams(run)
    assert [[p.name for p in s] for s in streams] == [
        ["requests.jsonl"],
        ["requests.part0.jsonl", "requests.part0.1.jsonl"],
        ["requests.part1.jsonl", "requests.part1.1.jsonl"],
    ]
    assert runfiles.request_files(run) == [p for s in streams for p in s]
    with pytest.raises(FileExistsError):
        runfiles.RequestLog(run, 0)
