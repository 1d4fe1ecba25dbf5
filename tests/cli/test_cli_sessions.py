"""`--workload sessions` end to end over loopback HTTP against the simulated engine: conversations
whose prompt grows by exactly each answer and turn, their files and lines, the demo's two
profiles' survival curves, `--workers`, and `--find-max-users`."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from dataclasses import replace

import pytest
from cli_helpers import CLI_PROFILE, read_run, run_cli
from factories import SEED_LABELS

from tmesh.sim.server import start_simulator

SESSIONS = [
    "--workload", "sessions", "--users", "4", "--turns", "4", "--system-prompt", "300",
    "--turn-input", "60", "--output-length", "12", "--think-time", "0.3",
]  # fmt: skip
TWO_AT_A_TIME = replace(CLI_PROFILE, max_num_seqs=2, t_fixed_s=0.02)
"""An engine that serves two requests at a time, 20 ms a step: more users queue."""


@pytest.fixture
async def sim():
    async with await start_simulator(CLI_PROFILE) as handle:
        yield handle


def _by_session(requests: list[dict]) -> dict[int, list[dict]]:
    sessions: dict[int, list[dict]] = defaultdict(list)
    for record in sorted(requests, key=lambda r: (r["session"], r["turn"])):
        sessions[record["session"]].append(record)
    return sessions


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_each_turn_resends_the_conversation_token_for_token(sim, tmp_path, api) -> None:
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, "--api", api, *SESSIONS, "--duration", "8",
        "--slo", "ttft=1", "--output-dir", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    config, requests, intervals, summary = read_run(out)
    assert "Workload: sessions" in result.stdout
    assert "Users (Sessions at Once): 4" in result.stdout
    per_turn = config["session_framing"]["per_turn"]
    assert config["answers_recounted"] is False
    assert all(r["prompt_tokens"] == r["planned_prompt_tokens"] for r in requests)
    for turns in _by_session(requests).values():
        assert [r["turn"] for r in turns] == list(range(1, len(turns) + 1))
        assert turns[0]["idle_gap"] is None
        for before, after in itertools.pairwise(turns):
            grown = before["completion_tokens"] + 60 + per_turn
            assert after["prompt_tokens"] - before["prompt_tokens"] == grown
            assert after["t_intended"] >= before["t_end"]
            assert after["idle_gap"] == pytest.approx(after["t0"] - before["t_end"], abs=1e-6)
            assert after["cached_tokens"] >= before["prompt_tokens"] - 16
    sessions = summary["sessions"]
    assert sessions["started"] >= 4 and sessions["completed"] >= 4
    assert [t["turn"] for t in sessions["by_turn"]] == [1, 2, 3, 4]
    assert summary["slo"] == {"ttft": 1.0}
    assert intervals[-1]["sessions"]["started"] <= sessions["started"]
    assert "Verdict: idle conversations found" in result.stdout


async def test_the_block_keeps_the_seed_lines_first_and_adds_labelled_ones(sim, tmp_path) -> None:
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SESSIONS, "--duration", "6", "--slo", "ttft=1",
        "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    block = result.stdout.split("Elapsed Time:", 1)[1].split("\n\n", 1)[0]
    labels = ["Elapsed Time"] + [line.split(":", 1)[0] for line in block.splitlines()[1:]]
    assert labels[: len(SEED_LABELS)] == SEED_LABELS
    for label in (
        "Send Rate (interval)",
        "Client Lateness (mean / max, interval)",
        "Goodput (interval / since start)",
        "Sessions (started / completed / abandoned)",
        "TTFT By Turn (1 / 2 / 3 / 4)",
        "Cached Share By Idle Gap (0-5 s / 5-30 s / 30-120 s / >120 s)",
        "TTFT By Idle Gap (0-5 s / 5-30 s / 30-120 s / >120 s)",
    ):
        assert label in labels, label
    assert "By idle gap since the session's previous turn" in result.stdout


async def test_a_session_stays_on_one_worker(sim, tmp_path) -> None:
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SESSIONS, "--workers", "2", "--duration", "8",
        "--interval", "2", "--output-dir", str(out), "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    _, requests, _, summary = read_run(out)
    for session, turns in _by_session(requests).items():
        assert {r["worker"] for r in turns} == {session % 4 % 2}
    assert {r["worker"] for r in requests} == {0, 1}
    assert len({r["index"] for r in requests}) == len(requests)
    assert summary["sessions"]["started"] == len({r["session"] for r in requests})


async def test_sessions_can_arrive_open_loop(sim, tmp_path) -> None:
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SESSIONS, "--session-rate", "2", "--arrival",
        "constant", "--duration", "6", "--output-dir", str(out), "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    _, requests, _, summary = read_run(out)
    firsts = sorted(r["t_intended"] for r in requests if r["turn"] == 1)
    assert firsts[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert summary["sessions"]["started"] == len(firsts) >= 10


async def test_the_demo_profiles_show_different_survival_curves(tmp_path) -> None:
    """With a GPU too small for the conversations, gpu-only finds less of a conversation cached
    the longer it sat idle; cpu-offload reloads it from its CPU tier, whatever the gap."""
    args = [
        "--workload", "sessions", "--think-time", "1", "--gap-buckets", "0.5,2", "--users", "16",
        "--gpu-kv-tokens", "8000", "--system-prompt", "500", "--turn-input", "200",
        "--output-length", "20", "--duration", "25", "--quiet",
    ]  # fmt: skip
    gpu, cpu = await asyncio.gather(
        *(
            run_cli(
                "benchmark",
                "--demo",
                "--profile",
                profile,
                *args,
                "--output-dir",
                str(tmp_path / profile),
                timeout=120,
            )
            for profile in ("gpu-only", "cpu-offload")
        )
    )
    assert gpu.code == 0 and cpu.code == 0, gpu.stderr + cpu.stderr
    curves = {}
    for profile in ("gpu-only", "cpu-offload"):
        summary = json.loads((tmp_path / profile / "summary.json").read_text())
        curves[profile] = [g["cached_tokens"] / g["prompt_tokens"] for g in summary["sessions"][
            "by_gap"]]  # fmt: skip
    short, _, long = curves["gpu-only"]
    assert long < short - 0.2, curves
    assert min(curves["cpu-offload"]) > long + 0.2, curves
    assert max(curves["cpu-offload"]) - min(curves["cpu-offload"]) < 0.05, curves


async def test_find_max_users_reports_the_most_that_held(tmp_path) -> None:
    async with await start_simulator(TWO_AT_A_TIME) as sim:
        result = await run_cli(
            "benchmark", "--endpoint", sim.url, "--workload", "sessions", "--turns", "2",
            "--system-prompt", "200", "--turn-input", "40", "--output-length", "12",
            "--think-time", "0", "--find-max-users", "--slo", "ttft=0.3", "--users", "1",
            "--duration", "4", "--output-dir", str(tmp_path / "ramp"), "--quiet",
            timeout=240,
        )  # fmt: skip
    assert result.code == 0, result.stderr
    capacity = json.loads((tmp_path / "ramp" / "capacity.json").read_text())
    tried = {step["users"]: step["held"] for step in capacity["steps"]}
    assert tried[1] is True
    assert False in tried.values(), "two requests at a time cannot serve many users at 0.3 s"
    best = capacity["max_users"]
    assert tried[best] is True
    assert all(not held for users, held in tried.items() if users > best)
    assert f"Max Users: {best}" in result.stdout
    for step in capacity["steps"]:
        assert (tmp_path / "ramp" / f"users-{step['users']}" / "summary.json").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--workload", "sessions", "--request-rate", "5"], "sessions arrive with --session-rate"),
        (["--session-rate", "1"], "--session-rate needs --workload sessions"),
        (["--find-max-users"], "--find-max-users needs --workload sessions"),
        (["--workload", "sessions", "--find-max-users"], "--find-max-users needs --slo"),
        (["--gpu-kv-tokens", "8000"], "--gpu-kv-tokens sizes the simulated engine of --demo"),
    ],
)
async def test_options_that_do_not_go_together_are_one_line(args, says) -> None:
    result = await run_cli("benchmark", "--endpoint", "127.0.0.1:9", *args)
    assert result.code == 2
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--arrival", "gamma:x"], "--arrival: 'gamma:x' must be gamma:SHAPE with a number"),
        (["--slo", "ttft=0"], "--slo: 'ttft=0' must be a positive number of seconds for ttft"),
        (["--gap-buckets", "30,5"], "--gap-buckets: '30,5' must be increasing numbers"),
        (["--goodput-target", "1.5"], "--goodput-target: '1.5' must be at most 1"),
        (["--think-time-dist", "pareto"], "invalid choice"),
    ],
)
async def test_a_bad_traffic_flag_is_one_line(args, says) -> None:
    result = await run_cli("benchmark", "--endpoint", "127.0.0.1:9", *args)
    assert result.code == 2
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
