"""`sweep.json`: written whole, read back as it was written, and a bad file is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmesh.results.sweeps import (
    Sweep,
    SweepLoadError,
    SweepPoint,
    is_sweep,
    read_sweep,
    write_sweep,
)


def test_a_sweep_round_trips(tmp_path: Path) -> None:
    sweep = Sweep("working_set_ratio", "http://127.0.0.1:1/v1", "m", "2026-01-01T00:00:00", 4096)
    sweep.points = [
        SweepPoint(0.5, "01-working-set-ratio-0.5", 2, 6, 0, qps=3.0, lru_hit_rate=0.6),
        SweepPoint(2.0, "02-working-set-ratio-2", 8, 24, 1, reuse_efficiency=None),
    ]
    assert not is_sweep(tmp_path)
    write_sweep(tmp_path, sweep)
    assert is_sweep(tmp_path)
    assert read_sweep(tmp_path) == sweep
    assert read_sweep(tmp_path / "sweep.json") == sweep
    assert sweep.label == "working set / GPU KV capacity"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a sweep"),
        ("[]", "not a sweep"),
        ('{"knob": "users", "points": [{"value": "x"}]}', "not a sweep"),
    ],
)
def test_a_bad_sweep_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "sweep.json").write_text(text)
    with pytest.raises(SweepLoadError, match=message):
        read_sweep(tmp_path)
    with pytest.raises(SweepLoadError, match="not a sweep folder"):
        read_sweep(tmp_path / "elsewhere")
