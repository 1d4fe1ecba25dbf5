"""scripts/real-vllm.sh is idempotent: users (and CI) can call start and stop blindly."""

from __future__ import annotations

import pytest
from conftest import RealVLLM, free_port, run_script

pytestmark = pytest.mark.real_engine


def test_start_when_running_is_a_no_op(real_vllm: RealVLLM) -> None:
    pid_before = real_vllm.pid_file.read_text()
    again = run_script("start", real_vllm.port, 60)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert real_vllm.pid_file.read_text() == pid_before


def test_status_says_running_and_answering(real_vllm: RealVLLM) -> None:
    status = run_script("status", real_vllm.port, 60)
    assert status.returncode == 0
    assert "answering" in status.stdout


def test_stop_and_status_when_stopped() -> None:
    port = free_port()
    stopped = run_script("stop", port, 60)
    assert stopped.returncode == 0
    assert "not running" in stopped.stderr
    status = run_script("status", port, 60)
    assert status.returncode == 3
    assert status.stdout.startswith("stopped")


def test_unknown_action_shows_usage() -> None:
    bad = run_script("restart", 8011, 60)
    assert bad.returncode == 2
    assert "start  [PORT]" in bad.stderr
