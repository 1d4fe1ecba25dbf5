"""What `tmesh-cli sweep` produces: one point per value of the knob it varied, in `sweep.json`.

A sweep folder holds one ordinary run folder per point and `sweep.json`, which the sweep writes
after every point (so an interrupted sweep keeps the points it finished) and the report reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

from tmesh.results.catalogue.units import COUNT, FRACTION, RATIO, REQUESTS_PER_S, SECONDS
from tmesh.results.decode import RecordShapeError, build_record

SWEEP = "sweep.json"
SWEEP_PAGE = "sweep.html"

Knob = Literal["working_set_ratio", "max_inflight", "request_rate", "users"]
"""What a sweep varies: the working set as a multiple of the GPU KV capacity, the requests in
flight, the open-loop request rate, or the users of the sessions workload."""
KNOBS: tuple[Knob, ...] = get_args(Knob)
KNOB_LABELS: dict[str, str] = {
    "working_set_ratio": "working set / GPU KV capacity",
    "max_inflight": "requests in flight",
    "request_rate": "request rate (req/s)",
    "users": "users",
}


@dataclass
class SweepPoint:
    """One run of the sweep. Latencies and QPS are over the point's requests after its warm-up;
    hit rates are over all of its requests, the server's as measured and the ideal caches' as
    simulated on the same requests; `run_dir` is the point's run folder, relative to the sweep."""

    value: float
    run_dir: str
    contexts: int
    requests: int
    failed: int
    qps: float | None = None
    ttft_p50: float | None = None
    ttft_p90: float | None = None
    revisit_ttft_p50: float | None = None
    revisit_ttft_p90: float | None = None
    gpu_hit_rate: float | None = None
    external_hit_rate: float | None = None
    measured_hit_rate: float | None = None
    revisit_hit_rate: float | None = None
    lru_hit_rate: float | None = None
    infinite_hit_rate: float | None = None
    reuse_efficiency: float | None = None
    cache_reset: bool = False


@dataclass
class Sweep:
    """A sweep: its knob, the endpoint and model, the GPU KV capacity it sized from, the points."""

    knob: str
    endpoint: str
    model: str
    started_at: str
    gpu_capacity_tokens: int | None = None
    input_length: int | None = None
    points: list[SweepPoint] = field(default_factory=list)
    reset: str | None = None
    """How the server's cache was reset between points, or why it could not be."""

    @property
    def label(self) -> str:
        return KNOB_LABELS.get(self.knob, self.knob)


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("contexts", "contexts", COUNT),
    ("requests", "requests", COUNT),
    ("failed", "failed", COUNT),
    ("qps", "QPS", REQUESTS_PER_S),
    ("ttft_p50", "TTFT p50", SECONDS),
    ("ttft_p90", "TTFT p90", SECONDS),
    ("revisit_ttft_p50", "revisit p50", SECONDS),
    ("revisit_ttft_p90", "revisit p90", SECONDS),
    ("measured_hit_rate", "hit rate", FRACTION),
    ("revisit_hit_rate", "revisit GPU hit", FRACTION),
    ("lru_hit_rate", "ideal LRU", FRACTION),
    ("infinite_hit_rate", "infinite", FRACTION),
    ("reuse_efficiency", "efficiency", RATIO),
)
"""A point's figures as tables show them: the `SweepPoint` attribute, its heading, its unit."""


class SweepLoadError(Exception):
    """A folder that holds no readable sweep; the message is one line."""


def write_sweep(folder: Path, sweep: Sweep) -> Path:
    """`sweep.json`, replaced whole so a reader never sees half of it."""
    path = folder / SWEEP
    partial = path.with_suffix(".json.tmp")
    partial.write_bytes(orjson.dumps(asdict(sweep), option=orjson.OPT_INDENT_2))
    partial.replace(path)
    return path


def read_sweep(folder: Path) -> Sweep:
    path = folder / SWEEP if folder.is_dir() else folder
    try:
        data: Any = orjson.loads(path.read_bytes())
        if not isinstance(data, dict) or not isinstance(data.get("points", []), list):
            raise RecordShapeError("the file is not a sweep object")
        points = [build_record(SweepPoint, point) for point in data.pop("points", [])]
        sweep = build_record(Sweep, data)
    except FileNotFoundError:
        raise SweepLoadError(f"{folder}: no {SWEEP} (not a sweep folder)") from None
    except OSError as exc:
        raise SweepLoadError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (orjson.JSONDecodeError, RecordShapeError) as exc:
        raise SweepLoadError(f"{path}: not a sweep ({exc})") from None
    sweep.points = points
    return sweep


def is_sweep(folder: Path) -> bool:
    return (folder / SWEEP).is_file()
