"""report.compare: ratios, noise, verdict direction, workload refusal, and the compare page."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures.runs.pages import exact, tagged
from fixtures.runs.synthetic import RunShape, summary_value, write_run

from tmesh.report import formats
from tmesh.report.compare import (
    CompareError,
    compare_runs,
    standard_error,
)
from tmesh.report.compare_html import render_compare
from tmesh.report.load import Run, load_run
from tmesh.results.catalogue.metrics import BY_KEY, QPS
from tmesh.results.catalogue.units import format_value
from tmesh.results.records import IntervalSnapshot, WindowStats


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("runs")
    shapes = {
        "gpu": RunShape(profile="gpu-only", seed=1, error_rate=0.03),
        "cpu": RunShape(profile="cpu-offload", seed=2),
        "gpu-again": RunShape(profile="gpu-only", seed=5),
        "gpu-twin": RunShape(profile="gpu-only", seed=7),
    }
    return {name: load_run(write_run(root / name, shape)) for name, shape in shapes.items()}


def test_offload_beats_gpu_only_on_both_headline_numbers(runs: dict[str, Run]) -> None:
    comparison = compare_runs([runs["gpu"], runs["cpu"]], ["gpu-only", "cpu-offload"])
    qps, ttft = comparison.row("qps").cells[1], comparison.row("ttft.mean").cells[1]
    assert qps.ratio == runs["cpu"].summary.qps / runs["gpu"].summary.qps > 1.2
    assert ttft.ratio < 0.5
    assert qps.significant and ttft.significant
    assert qps.better and ttft.better
    assert comparison.verdict.startswith(
        f"cpu-offload served {qps.ratio:.2f}x the QPS of gpu-only at {ttft.ratio:.2f}x "
        "gpu-only's mean TTFT: cpu-offload is better on both numbers that matter most."
    )
    assert "On revisits of a context" in comparison.verdict
    assert "Mind the failed requests (gpu-only 3." in comparison.verdict


def test_reversed_order_reverses_the_verdict(runs: dict[str, Run]) -> None:
    comparison = compare_runs([runs["cpu"], runs["gpu"]])
    qps = comparison.row("qps").cells[1]
    assert qps.ratio < 1 and qps.better is False
    assert "B is worse on both numbers that matter most" in comparison.verdict


def test_same_engine_twice_is_within_noise(runs: dict[str, Run]) -> None:
    comparison = compare_runs([runs["gpu-twin"], runs["gpu-again"]])
    qps, ttft = comparison.row("qps").cells[1], comparison.row("ttft.mean").cells[1]
    assert 0.9 < qps.ratio < 1.1 and 0.9 < ttft.ratio < 1.1
    assert qps.significant is False and ttft.significant is False
    assert "B served the same QPS as A within noise" in comparison.verdict
    assert "no difference beyond the runs' own interval-to-interval noise" in comparison.verdict


def test_noise_is_the_standard_error_of_post_warmup_intervals(runs: dict[str, Run]) -> None:
    def snap(end: float, seconds: float, requests: int) -> IntervalSnapshot:
        window = WindowStats(requests=requests)
        return IntervalSnapshot(0, end, seconds, 0, 0.0, WindowStats(), window)

    run = replace(
        runs["gpu"],
        summary=replace(runs["gpu"].summary, warmup_seconds=10.0),
        intervals=[
            snap(5, 5, 500),  # warm-up: left out
            snap(10, 5, 500),  # warm-up: left out
            snap(15, 5, 50),  # 10 req/s
            snap(20, 5, 60),  # 12 req/s
            snap(25, 5, 40),  # 8 req/s
            snap(30, 5, 50),  # 10 req/s
            snap(31, 1, 90),  # cut short by the stop: left out
        ],
    )
    assert standard_error(run, QPS) == pytest.approx(math.sqrt(8 / 3) / 2)
    assert standard_error(run, BY_KEY["cold_ttft.mean"]) is None
    assert standard_error(replace(run, intervals=run.intervals[:3]), QPS) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "other/model"}, "model: A sim/llama-3.1-8b, B other/model"),
        ({"input_length": 2000}, "input length: A 4000, B 2000"),
        ({"output_length": 64}, "output length: A 32, B 64"),
        ({"num_contexts": 8}, "number of contexts: A 12, B 8"),
    ],
)
def test_differing_workloads_are_refused_unless_forced(
    runs: dict[str, Run], change: dict, message: str
) -> None:
    other = replace(runs["cpu"], spec=replace(runs["cpu"].spec, **change))
    with pytest.raises(CompareError) as caught:
        compare_runs([runs["gpu"], other])
    text = str(caught.value)
    assert message in text and "pass --force" in text and "\n" not in text
    forced = compare_runs([runs["gpu"], other], force=True)
    assert forced.warnings[0].startswith("Workloads differ, compared anyway (--force)")
    assert message in forced.verdict


def test_labels_are_checked(runs: dict[str, Run]) -> None:
    pair = [runs["gpu"], runs["cpu"]]
    with pytest.raises(CompareError, match="--labels gives 3 names for 2 runs"):
        compare_runs(pair, ["a", "b", "c"])
    with pytest.raises(CompareError, match="distinct"):
        compare_runs(pair, ["a", "a"])
    with pytest.raises(CompareError, match="at least two"):
        compare_runs(pair[:1])


def test_runs_of_different_lengths_are_flagged(runs: dict[str, Run]) -> None:
    longer = replace(runs["cpu"], summary=replace(runs["cpu"].summary, elapsed=300.0))
    comparison = compare_runs([runs["gpu"], longer])
    assert "The runs lasted different times (A 60.0 s, B 300 s)" in comparison.verdict


def test_compare_page_shows_each_runs_summary_and_ratios(runs: dict[str, Run]) -> None:
    pair = [runs["gpu"], runs["cpu"]]
    page = render_compare(compare_runs(pair, ["gpu-only", "cpu-offload"]))
    summaries = [json.loads((run.path / "summary.json").read_text()) for run in pair]
    seen: dict[str, int] = {}
    ratios = 0
    for attrs, text in tagged(page):
        key = attrs["data-key"]
        if "data-ratio" in attrs:
            a, b = (summary_value(s, key) for s in summaries)
            assert float(attrs["data-ratio"]) == b / a, key
            assert attrs["data-run"] == "cpu-offload"
            ratios += 1
            continue
        which = seen.get(key, 0)
        seen[key] = which + 1
        expected = summary_value(summaries[which], key)
        assert exact(attrs) == expected, key
        assert text == format_value(expected, BY_KEY[key].unit)
    assert set(seen.values()) == {2}
    assert ratios >= 30
    assert len(re.findall(r'<svg [^>]*class="chart"', page)) == 4
    assert "<script" not in page
    assert "cpu-offload served" in page


def test_labels_with_dollar_signs_are_plain_legend_text(runs: dict[str, Run]) -> None:
    """A pair of `$` in a --labels name is text, not matplotlib mathtext (which failed to parse)."""
    labels = ["$\\foo$ <b>", "x^2$ & $y"]
    page = render_compare(compare_runs([runs["gpu"], runs["cpu"]], labels))
    assert "<!-- $\\foo$ &lt;b&gt; -->" in page
    assert "<!-- x^2$ &amp; $y -->" in page
    assert "<b>" not in page


def test_compare_formats_carry_the_same_numbers(runs: dict[str, Run]) -> None:
    comparison = compare_runs([runs["gpu"], runs["cpu"]])
    document = json.loads(formats.compare_json(comparison))
    qps = next(m for m in document["metrics"] if m["key"] == "qps")
    assert qps["values"] == [runs["gpu"].summary.qps, runs["cpu"].summary.qps]
    assert qps["significant"] == [True]
    assert document["verdict"] == comparison.verdict
    rows = list(csv.DictReader(io.StringIO(formats.compare_csv(comparison))))
    ttft = [row for row in rows if row["key"] == "ttft.mean"]
    assert [row["run"] for row in ttft] == ["A", "B"]
    assert float(ttft[1]["ratio"]) == comparison.row("ttft.mean").cells[1].ratio
    assert ttft[1]["significant"] == "true"
    markdown = formats.compare_markdown(comparison)
    assert comparison.verdict in markdown
    assert f"| QPS | higher | {format_value(runs['gpu'].summary.qps, 'req/s')} |" in markdown


def test_a_run_without_successes_is_named_not_divided_by(
    runs: dict[str, Run], tmp_path: Path
) -> None:
    empty = load_run(write_run(tmp_path / "empty", RunShape(seconds=0.05)))
    comparison = compare_runs([empty, runs["gpu-twin"]])
    assert comparison.row("qps").cells[1].ratio is None
    assert comparison.verdict.startswith(
        "B and A cannot be compared on QPS and mean TTFT: one of them has no successful request."
    )
