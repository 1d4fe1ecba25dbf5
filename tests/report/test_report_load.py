"""report.load: run folders as the benchmark writes them, including damaged and interrupted ones."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from fixtures.runs.synthetic import RunShape, write_run

from tmesh.report.html import render_report
from tmesh.report.load import RunLoadError, load_run
from tmesh.results.decode import RecordShapeError, build_record
from tmesh.results.records import RunSummary
from tmesh.results.rundir import SUMMARY


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "complete", RunShape(error_rate=0.03))


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def test_complete_run_loads_as_written(complete: Path) -> None:
    run = load_run(complete)
    written = json.loads((complete / "summary.json").read_text())
    assert asdict(run.summary) == written
    assert (run.summary_source, run.intervals_source) == ("summary.json", "intervals.jsonl")
    assert run.notes == []
    assert len(run.intervals) == 12
    assert run.spec.num_contexts == 12
    columns = run.requests
    assert columns.ok_count == run.summary.total_requests
    assert columns.failed == run.summary.failed_requests > 0
    assert np.isclose(np.nanmean(columns.ttft), run.summary.overall.ttft.mean)
    assert np.count_nonzero(columns.visit == 0) == run.summary.cold_ttft.count
    assert columns.rotation.max() >= run.summary.rotations


def test_missing_summary_is_recomputed_with_the_benchmarks_recorder(
    complete: Path, tmp_path: Path
) -> None:
    folder = _copy(complete, tmp_path)
    (folder / "summary.json").unlink()
    recorded = load_run(complete).summary
    run = load_run(folder)
    assert run.summary_source == "recomputed from requests.jsonl"
    assert any("summary.json is missing" in note for note in run.notes)
    for name in ("overall", "steady", "cold_ttft", "warm_ttft", "health", "server"):
        assert getattr(run.summary, name) == getattr(recorded, name), name
    for name in ("qps", "total_requests", "failed_requests", "rotations", "elapsed"):
        assert getattr(run.summary, name) == getattr(recorded, name), name
    assert run.summary.stop_reason == "interrupted"


def test_interrupted_run_with_truncated_line_and_rotated_files(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "cut", RunShape(), interrupted=True, max_records=100)
    last = max(int(p.suffixes[0][1:]) for p in folder.glob("requests.*.jsonl"))
    assert last >= 2
    run = load_run(folder)
    assert run.notes[0] == (
        f"requests.{last}.jsonl: ignored a truncated last line (the run was cut off mid-write)"
    )
    assert run.requests.ok_count == run.summary.total_requests > 300
    assert run.summary.overall.ttft.count == run.summary.total_requests


def test_rotated_files_are_read_in_writing_order(tmp_path: Path) -> None:
    """Replayed out of order, requests would land in the wrong intervals."""
    folder = write_run(tmp_path / "rotated", RunShape(), max_records=50)
    assert len(list(folder.glob("requests*.jsonl"))) > 5
    recorded = load_run(folder)
    (folder / "summary.json").unlink()
    (folder / "intervals.jsonl").write_text("")
    run = load_run(folder)
    assert run.intervals_source == "recomputed from requests.jsonl"
    assert [snap.elapsed for snap in run.intervals][:3] == [5.0, 10.0, 15.0]
    assert [s.interval_stats for s in run.intervals] == [
        s.interval_stats for s in recorded.intervals
    ]
    assert run.summary.overall == recorded.summary.overall


def test_missing_intervals_are_rebuilt_in_fixed_windows(complete: Path, tmp_path: Path) -> None:
    folder = _copy(complete, tmp_path)
    (folder / "intervals.jsonl").unlink()
    recorded = load_run(complete)
    run = load_run(folder)
    assert run.summary_source == "summary.json"
    assert len(run.intervals) == len(recorded.intervals)
    rebuilt = [snap.interval_stats.requests for snap in run.intervals]
    assert rebuilt == [snap.interval_stats.requests for snap in recorded.intervals]
    assert any("intervals.jsonl is missing or empty" in note for note in run.notes)


def test_damaged_lines_in_the_middle_are_counted(complete: Path, tmp_path: Path) -> None:
    folder = _copy(complete, tmp_path)
    lines = (folder / "requests.jsonl").read_text().splitlines()
    lines[5] = "{not json"
    lines[9] = json.dumps({"index": 1, "context_id": "seven"})
    (folder / "requests.jsonl").write_text("\n".join(lines) + "\n")
    run = load_run(folder)
    assert "requests.jsonl: ignored 2 damaged line(s)" in run.notes
    assert any(note.startswith("the request files hold ") for note in run.notes)
    assert run.requests.ok_count + run.requests.failed == len(lines) - 2


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"started_at": "x", "elapsed": 3', "summary.json is unusable: not valid JSON"),
        ('{"started_at": "x"}', "summary.json is unusable: incomplete (RunSummary lacks elapsed"),
        ('{"elapsed": "soon"}', "summary.json is unusable: incomplete (elapsed has an unexpected"),
    ],
)
def test_unusable_summary_falls_back_with_a_note(
    complete: Path, tmp_path: Path, content: str, problem: str
) -> None:
    folder = _copy(complete, tmp_path)
    (folder / "summary.json").write_text(content)
    run = load_run(folder)
    assert run.summary.total_requests == load_run(complete).summary.total_requests
    assert run.notes[0].startswith(problem), run.notes


def test_not_a_run_folder_errors_are_one_line(tmp_path: Path) -> None:
    cases = {
        tmp_path / "absent": "no such directory",
        tmp_path / "file.txt": "not a directory",
        tmp_path / "empty": "not a tmesh run folder",
    }
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for path, message in cases.items():
        with pytest.raises(RunLoadError) as caught:
            load_run(path)
        assert message in str(caught.value)
        assert str(path) in str(caught.value)
        assert "\n" not in str(caught.value)


def test_broken_config_is_reported(complete: Path, tmp_path: Path) -> None:
    folder = _copy(complete, tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(RunLoadError, match=r"config.json is missing, so the workload is unknown"):
        load_run(folder)
    (folder / "config.json").write_text("[1, 2")
    with pytest.raises(RunLoadError, match=r"config.json: not valid JSON"):
        load_run(folder)
    (folder / "config.json").write_text('{"workload": {"model": "m"}}')
    with pytest.raises(RunLoadError, match=r"no usable workload .WorkloadSpec lacks num_contexts"):
        load_run(folder)


def test_build_record_ignores_unknown_keys_and_checks_numbers(complete: Path) -> None:
    data = json.loads((complete / "summary.json").read_text())
    data["added_by_a_newer_version"] = {"x": 1}
    data["overall"]["ttft"]["future_stat"] = 3
    assert build_record(RunSummary, data).qps == data["qps"]
    data["overall"]["ttft"]["mean"] = "fast"
    with pytest.raises(ValueError, match="mean has an unexpected value 'fast'"):
        build_record(RunSummary, data)


def test_null_and_non_numeric_map_values(complete: Path, tmp_path: Path) -> None:
    """orjson writes a NaN server gauge as null: the report leaves it out instead of failing."""
    folder = _copy(complete, tmp_path)
    data = json.loads((folder / "summary.json").read_text())
    data["server"]["kv_usage_perc"] = None
    (folder / "summary.json").write_text(json.dumps(data))
    run = load_run(folder)
    assert run.summary_source == SUMMARY
    assert "kv_usage_perc" not in run.summary.server
    assert run.summary.server["gpu_hit_rate"] == data["server"]["gpu_hit_rate"]
    page = render_report(run)
    assert 'data-server="kv_usage_perc"' not in page
    assert 'data-server="gpu_hit_rate"' in page
    data["overall"]["errors"] = {"timeout": "many"}
    with pytest.raises(ValueError, match=r"errors\.timeout has an unexpected value 'many'"):
        build_record(RunSummary, data)


def test_names_written_by_another_version_are_kept(complete: Path, tmp_path: Path) -> None:
    """A stop reason or API name this version does not know still loads: the run is good."""
    folder = _copy(complete, tmp_path)
    summary = json.loads((folder / SUMMARY).read_text())
    summary["stop_reason"] = "sweep-point-done"
    (folder / SUMMARY).write_text(json.dumps(summary))
    assert load_run(folder).summary.stop_reason == "sweep-point-done"
    with pytest.raises(RecordShapeError, match="stop_reason"):
        build_record(RunSummary, {**summary, "stop_reason": 7})
