"""Read a run folder back into the records the benchmark wrote.

The report commands see only files, so they work on runs made on another machine, by another
version, or cut short by Ctrl-C: a truncated last line or a missing `summary.json` is expected
damage, repaired here once so every renderer downstream can trust what it gets.
"""

from __future__ import annotations

import contextlib
import json
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from tmesh.bench.measure.goodput import Slo, parse_slo
from tmesh.bench.measure.sessions import DEFAULT_GAP_EDGES, parse_gap_buckets
from tmesh.report.replay import Replay
from tmesh.results.decode import RecordShapeError, build_record, is_number
from tmesh.results.records import IntervalSnapshot, RequestRecord, RunSummary, WorkloadSpec
from tmesh.results.rundir import (
    CONFIG,
    INTERVALS,
    SUMMARY,
    finishing_order,
    request_files,
    request_streams,
)

T = TypeVar("T")

RECOMPUTED = "recomputed from requests.jsonl"


class RunLoadError(Exception):
    """A run folder that cannot be reported on; `str()` is one line naming the folder and cause."""


@dataclass
class RequestColumns:
    """What the charts need of each successful request, one numpy array per field.

    Arrays rather than records so a run of millions of requests costs tens of bytes per request;
    TTFT is NaN where a request produced no token before finishing.
    """

    ttft: np.ndarray
    visit: np.ndarray
    rotation: np.ndarray
    failed: int = 0

    @property
    def ok_count(self) -> int:
        return len(self.ttft)

    @classmethod
    def none(cls) -> RequestColumns:
        """No request read (yet)."""
        return cls(np.empty(0, np.float64), np.empty(0, np.int64), np.empty(0, np.int64))


@dataclass
class Run:
    """Everything a report needs from one run folder.

    `summary_source` and `notes` say what had to be repaired, so a report never silently presents
    recomputed numbers as the ones the benchmark printed.
    """

    path: Path
    config: dict[str, Any]
    spec: WorkloadSpec
    summary: RunSummary
    summary_source: str
    intervals: list[IntervalSnapshot]
    intervals_source: str
    requests: RequestColumns
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def options(self) -> dict[str, Any]:
        options = self.config.get("options")
        return options if isinstance(options, dict) else {}


def load_run(path: Path | str, requests: bool = True) -> Run:
    """Load a run folder; raises `RunLoadError` with a one-line message when it is not usable.

    `requests=False` leaves the per-request columns empty when the summary and the intervals
    are whole: a history of many runs, or the Python API's result, needs only those at first.
    """
    root = Path(path)
    _check_folder(root)
    notes: list[str] = []
    config = _read_config(root)
    spec = _workload(root, config)
    intervals = list(read_jsonl(root / INTERVALS, IntervalSnapshot, notes))
    summary, problem = _read_summary(root)
    replay = Replay(
        spec,
        _option(config, "warmup", 0.0),
        _option(config, "interval", 5.0),
        *_measures(config),
    )
    needs_replay = summary is None or not intervals
    columns = (
        _read_requests(root, notes, replay if needs_replay else None)
        if requests or needs_replay
        else RequestColumns.none()
    )
    summary_source, intervals_source = SUMMARY, INTERVALS
    if summary is None:
        summary = replay.summary(intervals)
        summary_source = RECOMPUTED
        notes.append(f"{problem}; the figures were recomputed from requests.jsonl")
    if requests or needs_replay:
        notes.extend(_count_mismatch(summary, columns))
    if not intervals:
        intervals = replay.finish()
        intervals_source = RECOMPUTED
        if intervals:
            notes.append(f"{INTERVALS} is missing or empty; the time series were recomputed")
    return Run(
        root, config, spec, summary, summary_source, intervals, intervals_source, columns, notes
    )


def _count_mismatch(summary: RunSummary, requests: RequestColumns) -> list[str]:
    """Say so when the request files hold other requests than the summary counted (files
    copied in part, or lines lost), since the per-request charts then show a different set."""
    written = (requests.ok_count, requests.failed)
    counted = (summary.total_requests, summary.failed_requests)
    if written == counted:
        return []
    return [
        f"the request files hold {written[0]:,} successful and {written[1]:,} failed requests, "
        f"{SUMMARY} counts {counted[0]:,} and {counted[1]:,}; the per-request charts show the "
        "former"
    ]


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise RunLoadError(f"{root}: no such directory")
    if not root.is_dir():
        raise RunLoadError(f"{root}: not a directory (pass the run folder, not a file in it)")
    if not (root / CONFIG).exists():
        if any((root / name).exists() for name in (SUMMARY, INTERVALS)) or request_files(root):
            raise RunLoadError(f"{root}: {CONFIG} is missing, so the workload is unknown")
        raise RunLoadError(
            f"{root}: not a tmesh run folder (no {CONFIG}, {SUMMARY} or requests.jsonl)"
        )


def _read_config(root: Path) -> dict[str, Any]:
    path = root / CONFIG
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RunLoadError(f"{path}: {_json_problem(exc)}") from None
    if not isinstance(data, dict):
        raise RunLoadError(f"{path}: expected a JSON object")
    return data


def _read_summary(root: Path) -> tuple[RunSummary | None, str]:
    """The summary, or None and why not (a run killed mid-write leaves none or half of one)."""
    path = root / SUMMARY
    if not path.exists():
        return None, f"{SUMMARY} is missing (the run was interrupted)"
    try:
        return build_record(RunSummary, json.loads(path.read_bytes())), ""
    except (OSError, ValueError) as exc:
        return None, f"{SUMMARY} is unusable: {_json_problem(exc)}"


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot read ({exc.strerror or exc})"
    if isinstance(exc, RecordShapeError):
        return f"incomplete ({exc})"
    return f"not valid JSON ({exc})"


def _workload(root: Path, config: dict[str, Any]) -> WorkloadSpec:
    try:
        return build_record(WorkloadSpec, config.get("workload"))
    except RecordShapeError as exc:
        raise RunLoadError(f"{root / CONFIG}: no usable workload ({exc})") from None


def _option(config: dict[str, Any], name: str, default: float) -> float:
    options = config.get("options")
    value = options.get(name) if isinstance(options, dict) else None
    return float(value) if is_number(value) and value >= 0 else default


def _measures(config: dict[str, Any]) -> tuple[Slo | None, tuple[float, ...]]:
    """The run's SLO and idle-gap buckets, as its options gave them (defaults when a run of an
    older version, or a hand-edited one, has none that parse)."""
    options = config.get("options")
    options = options if isinstance(options, dict) else {}
    slo: Slo | None = None
    gaps: tuple[float, ...] = DEFAULT_GAP_EDGES
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        slo = parse_slo(options["slo"]) if options.get("slo") else None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        gaps = parse_gap_buckets(options.get("gap_buckets") or "")
    return slo, gaps


def _read_requests(root: Path, notes: list[str], replay: Replay | None) -> RequestColumns:
    ttft, visit, rotation = array("d"), array("q"), array("q")
    failed = 0
    for record in _finishing_order(root, notes):
        if replay is not None:
            replay.add(record)
        if not record.ok:
            failed += 1
            continue
        first_token = record.ttft
        ttft.append(math.nan if first_token is None else first_token)
        visit.append(record.visit)
        rotation.append(record.rotation)
    return RequestColumns(
        np.frombuffer(ttft, np.float64),
        np.frombuffer(visit, np.int64),
        np.frombuffer(rotation, np.int64),
        failed,
    )


def _finishing_order(root: Path, notes: list[str]) -> Iterator[RequestRecord]:
    """The records of every writer (the run, each part of a spread run) in the order they
    finished."""
    return finishing_order(
        [
            (record for path in stream for record in read_jsonl(path, RequestRecord, notes))
            for stream in request_streams(root)
        ]
    )


def read_jsonl(path: Path, cls: type[T], notes: list[str]) -> Iterator[T]:
    """Records of a JSONL file, one line at a time; damaged lines are skipped and counted."""
    if not path.exists():
        return
    damaged = 0
    last_damaged = False
    try:
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = build_record(cls, orjson.loads(line))
                except (orjson.JSONDecodeError, RecordShapeError):
                    damaged += 1
                    last_damaged = True
                    continue
                last_damaged = False
                yield record
    except OSError as exc:
        raise RunLoadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if damaged == 1 and last_damaged:
        notes.append(f"{path.name}: ignored a truncated last line (the run was cut off mid-write)")
    elif damaged:
        notes.append(f"{path.name}: ignored {damaged} damaged line(s)")
