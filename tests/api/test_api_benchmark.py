"""`tmesh.benchmark`, `tmesh.abenchmark` and `tmesh.simulate` end to end over loopback HTTP:
the result, its requests as a table, the progress callback, cancellation, and the same run
folders as `tmesh-cli benchmark` makes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cli_helpers import cli_command, cli_env, read_run, read_until
from net_helpers import refused_url

import tmesh
from tmesh.dataset.requests import read_parquet
from tmesh.report.load import read_jsonl
from tmesh.results.catalogue.metrics import BY_KEY
from tmesh.results.records import IntervalSnapshot, RequestRecord
from tmesh.results.rundir import request_row

WORKLOAD = {
    "num_contexts": 4,
    "input_length": 1500,
    "output_length": 12,
    "max_inflight": 2,
    "interval": 1.0,
    "quiet": True,
}
# Fast enough to finish many requests per interval, slow enough that TTFT is not just noise.
KNOBS = {"t_fixed_s": 2e-3}


@pytest.fixture(scope="module")
def engine() -> str:
    with tmesh.simulate("fast", **KNOBS) as url:
        yield url


@pytest.fixture(scope="module")
def finished(engine: str, tmp_path_factory: pytest.TempPathFactory):
    """A three-second run, and the snapshots its progress callback received."""
    seen: list[IntervalSnapshot] = []
    folder = tmp_path_factory.mktemp("api") / "run"
    result = tmesh.benchmark(
        endpoint=engine, duration=3.0, output_dir=folder, on_interval=seen.append, **WORKLOAD
    )
    return result, seen


def test_the_result_holds_typed_figures_from_the_catalogue(finished) -> None:
    result, _ = finished
    summary = result.summary
    assert result.ok and result.errors == []
    assert summary.stop_reason == "duration"
    assert summary.qps.value > 0 and summary.qps.unit == BY_KEY["qps"].unit
    assert summary.ttft.p50.key == "ttft.p50" and summary.ttft.p50.unit == "s"
    assert summary["ttft_p50"] == summary["ttft.p50"] == summary.ttft.p50
    assert summary.warm_ttft.mean.value == summary.record.warm_ttft.mean
    assert set(summary.figures) == set(BY_KEY)
    assert f"{summary.total_requests.value:.0f} requests" in str(summary)
    assert result.model == "openai/gpt-oss-20b"
    assert result.endpoint == result.config["endpoint"]


def test_the_callback_receives_every_interval_the_run_wrote(finished) -> None:
    result, seen = finished
    assert len(seen) >= 3
    assert [snap.index for snap in seen] == [snap.index for snap in result.intervals]
    written = (result.path / "intervals.jsonl").read_text().splitlines()
    assert [json.loads(line)["total_requests"] for line in written] == [
        snap.total_requests for snap in seen
    ]


def test_the_requests_table_holds_every_record_of_the_run(finished) -> None:
    result, _ = finished
    _, rows, _, summary = read_run(result.path)
    table = result.requests
    assert table.num_rows == len(rows) == summary["total_requests"] + summary["failed_requests"]
    assert table.column_names == list(rows[0])
    assert table.to_pylist() == rows


def test_parquet_round_trips_every_record_field(finished, tmp_path: Path) -> None:
    result, _ = finished
    written = result.to_parquet(tmp_path / "requests.parquet")
    back = read_parquet(written).to_pylist()
    records = list(read_jsonl(result.path / "requests.jsonl", RequestRecord, []))
    assert back == [request_row(record) for record in records]
    exported = subprocess.run(
        cli_command("export", str(result.path), "--format", "parquet"),
        capture_output=True, text=True, env=cli_env(), timeout=60,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == str(result.path / "requests.parquet")
    assert read_parquet(result.path / "requests.parquet").to_pylist() == back


def test_a_run_read_back_from_its_folder_is_the_same_result(finished) -> None:
    result, _ = finished
    again = tmesh.load_run(result.path)
    assert again.summary == result.summary
    assert again.intervals == result.intervals
    assert again.requests.num_rows == result.requests.num_rows


def test_report_compare_and_the_gate_take_results(finished, tmp_path: Path) -> None:
    result, _ = finished
    page = tmesh.report(result, tmp_path / "run.html")
    assert "<svg" in page.read_text()
    markdown = tmesh.report(str(result.path), tmp_path / "run.md")
    assert markdown.read_text().startswith("#")
    comparison = tmesh.compare(result, result.path, labels=["a", "b"])
    assert comparison.row("qps").cells[1].ratio == 1.0
    assert "compare" in tmesh.report(comparison, tmp_path / "c.html").read_text().lower()
    assert tmesh.regressions(result, result, "ttft_p50>+10%,qps<-5%") == []


def test_pandas_and_polars_when_installed_else_one_line_saying_what_to_install(finished) -> None:
    result, _ = finished
    for name, convert in (("pandas", result.to_pandas), ("polars", result.to_polars)):
        try:
            frame = convert()
        except tmesh.MissingDependency as exc:
            assert str(exc) == f"Result.to_{name}() needs {name}, which is not installed: " + (
                f"pip install {name}"
            )
        else:
            assert len(frame) == result.requests.num_rows


def test_without_pyarrow_the_requests_say_what_to_install(finished, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(tmesh.MissingDependency) as caught:
        _ = tmesh.load_run(finished[0].path).requests
    assert "pip install -e '.[data]' in tmesh's source folder" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_api_and_the_cli_write_the_same_run_from_the_same_seed(engine, tmp_path) -> None:
    """Same options, same seed, same engine: the same files, the same fields in each, and the
    same requests sent (each run stops after 120)."""
    common = {**WORKLOAD, "seed": 7, "max_requests": 120}
    api = tmesh.benchmark(endpoint=engine, output_dir=tmp_path / "api", **common)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in common.items() if k != "quiet"]
    cli = subprocess.run(
        cli_command("benchmark", "--endpoint", engine, *flags, "--quiet",
                    "--output-dir", str(tmp_path / "cli")),
        capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    runs = [read_run(tmp_path / name) for name in ("api", "cli")]
    assert sorted(p.name for p in api.path.iterdir()) == sorted(
        p.name for p in (tmp_path / "cli").iterdir()
    )
    (config_a, rows_a, snaps_a, summary_a), (config_b, rows_b, snaps_b, summary_b) = runs
    assert config_a.keys() == config_b.keys() and config_a["workload"] == config_b["workload"]
    assert summary_a.keys() == summary_b.keys()
    assert snaps_a[0].keys() == snaps_b[0].keys()
    assert rows_a[0].keys() == rows_b[0].keys()
    assert len(rows_a) == len(rows_b) == 120

    def sent(rows: list[dict]) -> list[tuple[int, int, int]]:
        return sorted((r["context_id"], r["question_id"], r["visit"]) for r in rows)

    assert sent(rows_a) == sent(rows_b)


async def test_cancelling_the_task_ends_the_run_with_its_result_and_files(engine, tmp_path) -> None:
    first = asyncio.Event()
    task = asyncio.create_task(
        tmesh.abenchmark(
            endpoint=engine, output_dir=tmp_path / "run", on_interval=lambda s: first.set(),
            **WORKLOAD,
        )
    )  # fmt: skip
    await asyncio.wait_for(first.wait(), 60)
    task.cancel()
    result = await task
    assert result.summary.stop_reason == "cancelled"
    assert result.summary.total_requests.value > 0
    _, rows, intervals, summary = read_run(tmp_path / "run")
    assert summary["stop_reason"] == "cancelled"
    assert len(rows) == summary["total_requests"] + summary["failed_requests"]
    assert len(intervals) == len(result.intervals) >= 2


async def test_a_failing_callback_stops_the_run_and_is_raised(engine, tmp_path) -> None:
    def fail(snap: IntervalSnapshot) -> None:
        raise ValueError("a bug in the caller's callback")

    with pytest.raises(ValueError, match="a bug in the caller's callback"):
        await tmesh.abenchmark(
            endpoint=engine, output_dir=tmp_path / "run", on_interval=fail, **WORKLOAD
        )
    _, _, _, summary = read_run(tmp_path / "run")
    assert summary["stop_reason"] == "failed"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "x", "bogus": 1}, "unknown option 'bogus'"),
        ({"endpoint": "x", "duration": "15"}, "duration must be a number, not '15'"),
        ({"endpoint": "x", "duration": -1}, "duration must be > 0, not -1.0"),
        ({"endpoint": "x", "max_inflight": True}, "max_inflight must be an integer, not True"),
        ({"endpoint": "x", "api": "x"}, "api must be one of completions, chat, not 'x'"),
        ({}, "endpoint is required (or use demo for the built-in simulated engine)"),
        ({"endpoint": "x", "profile": "fast"}, "profile chooses the simulated engine of demo"),
        ({"endpoint": "x", "quiet": True, "live": True}, "choose at most one of quiet, json"),
    ],
)
def test_a_bad_option_is_one_line_naming_the_keyword(options: dict, message: str) -> None:
    with pytest.raises(tmesh.OptionError) as caught:
        tmesh.benchmark(**options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_server_that_refuses_is_a_benchmark_error_and_nothing_is_written(tmp_path) -> None:
    with refused_url() as url, pytest.raises(tmesh.BenchmarkError) as caught:
        tmesh.benchmark(endpoint=url, connect_timeout=0, output_dir=tmp_path / "run", **WORKLOAD)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


async def test_inside_an_event_loop_benchmark_points_at_abenchmark() -> None:
    with pytest.raises(RuntimeError, match=r"use `await tmesh\.abenchmark\(\.\.\.\)`"):
        tmesh.benchmark(endpoint="http://127.0.0.1:1")


async def test_simulate_as_an_async_context_manager_serves_its_profile() -> None:
    small = {"model": "tiny", "gpu_kv_tokens": 8192, "max_model_len": 4096}
    async with (
        tmesh.simulate("gpu-only", **small) as url,
        aiohttp.ClientSession() as client,
        client.get(f"{url}/v1/models") as answer,
    ):
        models = await answer.json()
    assert url.startswith("http://127.0.0.1:")
    assert [m["id"] for m in models["data"]] == ["tiny"]


@pytest.mark.parametrize(
    ("profile", "knobs", "message"),
    [
        ("nope", {}, "unknown profile 'nope'"),
        ("fast", {"warp_speed": 9}, "has no knob 'warp_speed'"),
        ("fast", {"gpu_kv_tokens": 8}, "gpu_kv_tokens must hold at least one block"),
    ],
)
def test_simulate_refuses_an_unknown_profile_or_knob_in_one_line(profile, knobs, message) -> None:
    with pytest.raises(tmesh.BenchmarkError, match=message):
        tmesh.simulate(profile, **knobs)


def test_import_tmesh_loads_no_layer_until_a_name_is_used() -> None:
    code = (
        "import sys, tmesh; print(sorted(m for m in sys.modules if m.startswith('tmesh')));"
        "tmesh.benchmark; print('matplotlib' in sys.modules, 'pyarrow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True
    ).stdout.splitlines()
    assert out == ["['tmesh', 'tmesh.report']", "False False"]


def test_a_demo_run_starts_its_own_engine(tmp_path) -> None:
    result = tmesh.benchmark(
        demo=True, profile="fast", duration=1.5, output_dir=tmp_path / "run", **WORKLOAD
    )
    assert result.ok and result.summary.total_requests.value > 0
    assert result.config["options"]["demo"] is True
    assert result.config["options"]["profile"] == "fast"
    assert result.endpoint.startswith("http://127.0.0.1:")


SIGNALLED = """
import sys, tmesh
def progress(snap):
    print("interval", flush=True)
result = tmesh.benchmark(
    endpoint=sys.argv[1], output_dir=sys.argv[2], on_interval=progress, **{WORKLOAD!r}
)
print("stopped:", result.summary.stop_reason, result.summary.total_requests.value > 0, flush=True)
"""


async def test_ctrl_c_ends_a_python_run_with_its_result_and_files(engine, tmp_path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SIGNALLED.format(WORKLOAD=WORKLOAD), engine, str(tmp_path / "run"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )  # fmt: skip
    assert process.stdout is not None
    await asyncio.wait_for(read_until(process.stdout, "interval"), 60)
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert "stopped: signal True" in out.decode()
    _, _, _, summary = read_run(tmp_path / "run")
    assert summary["stop_reason"] == "signal"


def test_a_sessions_run_has_its_conversations_in_the_table(tmp_path) -> None:
    result = tmesh.benchmark(
        demo=True, profile="fast", workload="sessions", duration=3.0, interval=1.0, quiet=True,
        output_dir=tmp_path / "run",
    )  # fmt: skip
    assert result.ok and result.summary["goodput_share"].unit == "%"
    table = result.requests
    assert table.num_rows == result.summary.total_requests.value > 0
    assert None not in table.column("session").to_pylist()
    assert min(table.column("turn").to_pylist()) >= 0
