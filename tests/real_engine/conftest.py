"""Real engines for the real-engine tests, started and stopped by the repo's scripts: one vLLM (CPU)
for the whole session, and a llama.cpp server per model.

The server is started through `scripts/real-vllm.sh`, the same path a user takes on a laptop, so the
script itself is under test. A server that does not come up is a test failure carrying vLLM's log
tail, never a skip: in CI a silent skip would read as "real engine verified". `REAL_VLLM_PORT`
points the tests at a server already started with the script (kept running afterwards), to iterate
quickly.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "real-vllm.sh"
STATE = Path(os.environ.get("REAL_VLLM_HOME", REPO / ".real-vllm"))
SERVED_MODEL = "tiny-llama"
# A clean machine installs vLLM (~3.5 GB) and builds the model inside `start`.
START_TIMEOUT_S = 1800


@dataclass(frozen=True)
class RealVLLM:
    port: int
    root: str
    model_dir: Path
    log: Path
    pid_file: Path

    @property
    def v1(self) -> str:
        return f"{self.root}/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_script(
    action: str, port: int, timeout: float, script: Path = SCRIPT, *more: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), action, str(port), *more],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def real_vllm() -> Iterator[RealVLLM]:
    port = int(os.environ.get("REAL_VLLM_PORT") or free_port())
    already_running = run_script("status", port, 60).returncode == 0
    started = run_script("start", port, START_TIMEOUT_S)
    if started.returncode != 0:
        run_script("stop", port, 60)
        pytest.fail(
            f"scripts/real-vllm.sh start {port} failed (exit {started.returncode}):\n"
            f"{started.stderr[-8000:]}",
            pytrace=False,
        )
    try:
        yield RealVLLM(
            port=port,
            root=f"http://127.0.0.1:{port}",
            model_dir=STATE / "tiny-llama",
            log=STATE / f"vllm-{port}.log",
            pid_file=STATE / f"vllm-{port}.pid",
        )
    finally:
        if not already_running:
            run_script("stop", port, 120)


LLAMACPP_SCRIPT = REPO / "scripts" / "real-llamacpp.sh"
LLAMACPP_STATE = Path(os.environ.get("REAL_LLAMACPP_HOME", REPO / ".real-llamacpp"))
LLAMACPP_MODELS = {"tiny": "tiny-llama", "small-vocab": "small-vocab-llama"}
LLAMACPP_SLOT_CONTEXT = 8192


@dataclass(frozen=True)
class RealLlamaCpp:
    port: int
    model: str
    served: str
    model_dir: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module", params=list(LLAMACPP_MODELS))
def real_llamacpp(request: pytest.FixtureRequest) -> Iterator[RealLlamaCpp]:
    """llama.cpp's own llama-server (a prebuilt wheel, on the CPU) serving one tiny GGUF model:
    `tiny` (a 4096-entry vocabulary) or `small-vocab` (384 entries: most English words are
    several tokens). Like the vLLM fixture, a server that does not start fails the test."""
    model: str = request.param
    port = free_port()
    started = run_script("start", port, START_TIMEOUT_S, LLAMACPP_SCRIPT, model)
    if started.returncode != 0:
        run_script("stop", port, 60, LLAMACPP_SCRIPT)
        pytest.fail(
            f"scripts/real-llamacpp.sh start {port} {model} failed (exit {started.returncode}):\n"
            f"{started.stderr[-8000:]}",
            pytrace=False,
        )
    try:
        yield RealLlamaCpp(port, model, LLAMACPP_MODELS[model], LLAMACPP_STATE / model)
    finally:
        run_script("stop", port, 120, LLAMACPP_SCRIPT)
