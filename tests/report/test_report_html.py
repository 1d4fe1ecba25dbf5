"""report.html and report.formats: every number shown equals summary.json; no outside fetches."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from fixtures.runs.pages import exact, tagged
from fixtures.runs.synthetic import RunShape, summary_value, write_run

from tmesh.report import formats
from tmesh.report.html import redact_key, render_report, write_report
from tmesh.report.load import load_run
from tmesh.results.catalogue.metrics import BY_KEY
from tmesh.results.catalogue.units import format_value

HEADLINE_KEYS = {
    "qps",
    "error_rate",
    *(
        f"{name}.{stat}"
        for name in ("ttft", "itl", "e2e", "prefill_throughput", "decode_throughput")
        for stat in ("mean", "p50", "p90", "p99")
    ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "gpu", RunShape(error_rate=0.04, seed=3))


@pytest.fixture(scope="module")
def page(folder: Path) -> str:
    return write_report(folder).read_text()


@pytest.fixture(scope="module")
def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_every_figure_on_the_page_equals_summary_json(page: str, summary: dict) -> None:
    figures = tagged(page)
    keys = {attrs["data-key"] for attrs, _ in figures}
    assert keys >= HEADLINE_KEYS
    assert {f"steady.{key}" for key in HEADLINE_KEYS - {"qps", "error_rate"}} <= keys
    checked = 0
    for attrs, text in figures:
        key = attrs["data-key"]
        if key.startswith("errors."):
            assert int(attrs["data-value"]) == summary["overall"]["errors"][key[7:]]
            continue
        expected = summary_value(summary, key)
        assert exact(attrs) == expected, key
        assert text == format_value(expected, BY_KEY[key].unit), key
        checked += 1
    assert checked >= 60


def test_errors_by_kind_are_all_shown(page: str, summary: dict) -> None:
    shown = {
        attrs["data-key"][7:]: int(attrs["data-value"])
        for attrs, _ in tagged(page)
        if attrs["data-key"].startswith("errors.")
    }
    assert shown == summary["overall"]["errors"]
    assert len(shown) >= 2


def test_page_is_self_contained_with_inline_charts(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert not re.search(r"url\((?!#)", page)
    charts = re.findall(r'<svg [^>]*class="chart"[^>]*>', page)
    assert len(charts) == 6
    assert all("viewBox" in tag and " width=" not in tag for tag in charts)
    clip_ids = re.findall(r'<clipPath id="([^"]+)"', page)
    assert len(clip_ids) == len(set(clip_ids)) > 0


def test_page_names_workload_and_endpoint_but_no_key(folder: Path, page: str) -> None:
    assert "sim/llama-3.1-8b" in page
    assert "http://127.0.0.1:8000/v1" in page
    assert "4,000 / 32 tokens" in page
    assert "<td>Simulated engine (--demo)</td><td>gpu-only</td>" in page
    config = json.loads((folder / "config.json").read_text())
    assert config["api_key"] not in page


def test_command_line_keys_are_redacted() -> None:
    argv = ["tmesh-cli", "benchmark", "--api-key", "sk-secret", "--api-key=sk-other", "--seed", "1"]
    assert redact_key(argv) == [
        "tmesh-cli",
        "benchmark",
        "--api-key",
        "…",
        "--api-key=…",
        "--seed",
        "1",
    ]


def test_run_without_server_metrics_or_warmup_omits_those_parts(tmp_path: Path) -> None:
    shape = RunShape(server_metrics=False, warmup=0.0, seconds=20.0)
    page = render_report(load_run(write_run(tmp_path / "plain", shape)))
    assert len(re.findall(r'<svg [^>]*class="chart"', page)) == 4
    assert "Server cache over time" not in page
    assert "Server over the run" not in page
    assert "After the warm-up" not in page
    assert "No request failed." in page


def test_server_figures_are_named_defined_and_told_apart_by_source(folder: Path) -> None:
    run = load_run(folder)
    run.summary.server = {
        "warm_cold_ttft_ratio": 11.84,
        "gpu_hit_rate": 0.5,
        "working_set_tokens": 1_952_000.0,
        "offload_load_bytes": 3 * 1024**3,
        "something_new": 1.0,
    }
    page = render_report(run)
    start = page.index("<h2>Server over the run</h2>")
    part = page[start : page.index("</section>", start)]
    rows = re.findall(
        r'<tr><td>([^<]+)</td><td data-server="([^"]+)" data-value="([^"]*)">([^<]+)</td>'
        r'<td class="meaning">([^<]+)</td>',
        part,
    )
    assert [(label, key, float(value), text) for label, key, value, text, _ in rows] == [
        ("GPU prefix-cache hit rate", "gpu_hit_rate", 0.5, "50.0%"),
        ("offload bytes loaded", "offload_load_bytes", 3 * 1024**3, "3.00 GiB"),
        ("working set", "working_set_tokens", 1_952_000.0, "1,952,000"),
        ("first-visit / revisit TTFT", "warm_cold_ttft_ratio", 11.84, "11.8x"),
    ]
    assert all(meaning for *_, meaning in rows)
    reported, derived = part.index("Reported by the server"), part.index("Derived by tmesh")
    assert reported < part.index("gpu_hit_rate") < derived < part.index("working_set_tokens")
    assert "something_new" not in page


def test_interrupted_run_report_says_so(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "cut", RunShape(seconds=30.0), interrupted=True)
    target = write_report(folder, tmp_path / "out.html")
    page = target.read_text()
    assert target == tmp_path / "out.html"
    assert "summary.json is missing (the run was interrupted)" in page
    assert "ignored a truncated last line" in page
    assert "stopped: interrupted" in page
    run = load_run(folder)
    shown = {attrs["data-key"]: exact(attrs) for attrs, _ in tagged(page)}
    assert shown["qps"] == run.summary.qps
    assert shown["ttft.p99"] == run.summary.overall.ttft.p99


def test_json_format_carries_exact_values(folder: Path, summary: dict) -> None:
    document = json.loads(formats.report_json(load_run(folder)))
    assert document["errors"] == summary["overall"]["errors"]
    for key, value in document["metrics"].items():
        assert value == summary_value(summary, key), key
    assert document["units"]["ttft.mean"] == "s"
    assert document["workload"]["input_length"] == 4000


def test_csv_format_round_trips_to_summary(folder: Path, summary: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(formats.report_csv(load_run(folder)))))
    values = {row["key"]: row["value"] for row in rows}
    assert float(values["qps"]) == summary["qps"]
    assert float(values["steady.itl.p90"]) == summary["steady"]["itl"]["p90"]
    assert int(values["errors.timeout"]) == summary["overall"]["errors"]["timeout"]


def test_markdown_format_shows_the_formatted_headline(folder: Path, summary: dict) -> None:
    text = formats.report_markdown(load_run(folder))
    ttft = summary["overall"]["ttft"]
    row = "| TTFT | " + " | ".join(
        format_value(ttft[stat], "s") for stat in ("mean", "p50", "p90", "p99")
    )
    assert row in text
    assert format_value(summary["qps"], "req/s") in text
    assert "`timeout`" in text


def test_run_where_nothing_finished_still_reports(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "empty", RunShape(seconds=0.05))
    assert json.loads((folder / "summary.json").read_text())["total_requests"] == 0
    page = render_report(load_run(folder))
    assert "<svg" not in page
    shown = {attrs["data-key"]: text for attrs, text in tagged(page)}
    assert shown["qps"] == "0.00 req/s"
    assert shown["ttft.mean"] == shown["error_rate"] == "—"
