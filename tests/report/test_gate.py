"""`compare --fail-on`: limits parsed in one line, and the gate over two real runs: the simulated
GPU-only engine against the same engine with a CPU KV tier, on a working set twice its GPU cache,
where revisits miss on the one and hit the CPU tier on the other."""

from __future__ import annotations

import subprocess

import pytest
from cli_helpers import cli_command, cli_env

import tmesh
from tmesh.report.gate import GateError, parse_limits
from tmesh.results.catalogue.names import UnknownMetricError

WORKLOAD = {
    "num_contexts": 6,
    "input_length": 1500,
    "output_length": 12,
    "max_inflight": 2,
    "interval": 0.5,
    "duration": 3.0,
    "quiet": True,
}
SMALL_GPU = {"gpu_kv_tokens": 4096, "max_model_len": 4096}
"""A GPU cache of 4096 tokens against a working set of 6 x 1500: revisits evict one another."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("gate")
    folders = {}
    for profile in ("cpu-offload", "gpu-only"):
        with tmesh.simulate(profile, **SMALL_GPU) as url:
            folders[profile] = str(
                tmesh.benchmark(endpoint=url, output_dir=root / profile, **WORKLOAD).path
            )
    return folders


def _compare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command("compare", *args), capture_output=True, text=True, env=cli_env(), timeout=120
    )


def test_limits_parse_by_key_or_column_name() -> None:
    limits = parse_limits("ttft_p50>+10%, qps<-5%,warm_ttft.mean > 20 %")
    assert [str(limit) for limit in limits] == [
        "ttft.p50>+10%",
        "qps<-5%",
        "warm_ttft.mean>+20%",
    ]


@pytest.mark.parametrize("text", ["ttft_p50>10", "ttft_p50=+10%", "ttft_p50>+10%,", ">+10%"])
def test_a_limit_that_does_not_parse_is_one_line(text: str) -> None:
    with pytest.raises(GateError, match=r"is not METRIC>\+N% or METRIC<-N%"):
        parse_limits(text)


def test_an_unknown_metric_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(UnknownMetricError, match="unknown metric 'ttft_p51'; known metrics: "):
        parse_limits("ttft_p51>+10%")


def test_the_gate_fails_the_regression_in_one_line(runs, tmp_path) -> None:
    done = _compare(
        runs["cpu-offload"], runs["gpu-only"], "--fail-on", "ttft_mean>+10%,qps<-5%",
        "-o", str(tmp_path / "compare.html"),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert (tmp_path / "compare.html").exists()
    reason = done.stderr.strip()
    assert "\n" not in reason
    assert reason.startswith("tmesh-cli compare: regression: B: ttft.mean +")
    assert "past ttft.mean>+10%, beyond the runs' noise" in reason


@pytest.mark.parametrize(
    ("baseline", "candidate"), [("gpu-only", "gpu-only"), ("gpu-only", "cpu-offload")]
)
def test_the_gate_passes_a_run_against_itself_and_an_improvement(
    runs, tmp_path, baseline, candidate
) -> None:
    done = _compare(
        runs[baseline], runs[candidate], "--fail-on", "ttft_mean>+10%,qps<-5%",
        "-o", str(tmp_path / "compare.html"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("ttft_p51>+10%", "unknown metric 'ttft_p51'"),
        ("ttft_p50 rises", "is not METRIC>+N% or METRIC<-N%"),
    ],
)
def test_a_bad_limit_is_exit_2_before_any_run_is_read(limits, message, tmp_path) -> None:
    done = _compare(str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on", limits)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_regressions_from_python_name_what_was_crossed(runs) -> None:
    crossed = tmesh.regressions(runs["cpu-offload"], runs["gpu-only"], "ttft_mean>+10%")
    assert len(crossed) == 1 and crossed[0].startswith("candidate: ttft.mean +")
    assert tmesh.regressions(runs["cpu-offload"], runs["gpu-only"], "ttft_mean>+100000%") == []
