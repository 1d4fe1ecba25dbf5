"""`tmesh-cli simulate`: flags map onto EngineConfig/FaultConfig, bad input is one line and exit 2,
and a real process serves, prints where it listens and stops cleanly on SIGINT."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from tmesh.cli.simulate import (
    ENGINE_FLAGS,
    add_arguments,
    engine_config_from_args,
    fault_config_from_args,
    run_command,
)
from tmesh.sim.config import EngineConfig
from tmesh.sim.faults import FaultConfig
from tmesh.sim.profiles import PROFILES

# Runs this module's parser in a child process (independent of how the lead wires tmesh-cli).
CHILD = (
    "import argparse, sys\n"
    "from tmesh.cli.simulate import add_arguments, run_command\n"
    "parser = argparse.ArgumentParser(prog='tmesh-cli simulate')\n"
    "add_arguments(parser)\n"
    "sys.exit(run_command(parser.parse_args(sys.argv[1:])))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_every_engine_knob_has_a_flag_with_unit_and_default() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    helps = {action.dest: action.help for action in parser._actions}
    knobs = {f.name for f in dataclasses.fields(EngineConfig)} - {"name"}
    assert set(ENGINE_FLAGS) == knobs
    for name in knobs:
        assert "default" in helps[f"engine_{name}"], name
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and "\n" not in action.help


def test_profile_and_overrides() -> None:
    args = parse("--profile", "gpu-only")
    assert engine_config_from_args(args) == PROFILES["gpu-only"]
    args = parse("--profile", "fast", "--max-model-len", "2048", "--time-scale", "0.5")
    config = engine_config_from_args(args)
    assert config == dataclasses.replace(PROFILES["fast"], max_model_len=2048, time_scale=0.5)
    assert engine_config_from_args(parse()) == PROFILES["cpu-offload"]


def test_fault_flags() -> None:
    args = parse(
        "--fault-error-rate", "0.1", "--fault-error-status", "502,503", "--fault-error-body",
        "html", "--fault-retry-after", "none", "--fault-cut-after", "7", "--fault-seed", "9",
    )  # fmt: skip
    assert fault_config_from_args(args) == FaultConfig(
        error_rate=0.1,
        error_statuses=(502, 503),
        error_body="html",
        retry_after=None,
        cut_after=7,
        seed=9,
    )
    assert fault_config_from_args(parse()) == FaultConfig()


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault-error-rate", "0.7", "--fault-429-rate", "0.7"],
        ["--fault-error-status", "429"],
        ["--fault-error-body", "xml"],
        ["--max-model-len", "99999999"],
        ["--time-scale", "0"],
    ],
)
def test_invalid_combinations_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert run_command(parse(*argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("tmesh-cli simulate: error: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv", [["--port", "70000"], ["--fault-cut-rate", "2"], ["--max-num-seqs", "many"]]
)
def test_bad_flag_values_are_rejected_by_the_parser(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2


def test_list_profiles(capsys: pytest.CaptureFixture) -> None:
    assert run_command(parse("--list-profiles")) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PROFILES)


def run_child(*argv: str) -> subprocess.Popen[str]:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    small = ["--profile", "fast", "--gpu-kv-tokens", "65536", "--max-model-len", "4096"]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *small, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_serves_until_sigint() -> None:
    child = run_child("--port", "0", "--api-key", "sk-secret-key-42")
    try:
        line = child.stdout.readline() if child.stdout else ""
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line
        assert "sk-secret-key-42" not in line
        request = urllib.request.Request(
            match.group(1) + "/v1/models", headers={"Authorization": "Bearer sk-secret-key-42"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert b"gpt-oss" in resp.read()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=15)
    finally:
        child.kill()
    assert child.returncode == 0
    assert "Traceback" not in err
    assert "sk-secret-key-42" not in out + err


def test_port_in_use_is_one_line() -> None:
    first = run_child("--port", "0")
    try:
        line = first.stdout.readline() if first.stdout else ""
        port = re.search(r":(\d+)/v1", line)
        assert port, line
        second = run_child("--port", port.group(1))
        _, err = second.communicate(timeout=15)
        assert second.returncode == 1
        assert err.startswith("tmesh-cli simulate: error: cannot listen on")
        assert "Traceback" not in err
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=15)
