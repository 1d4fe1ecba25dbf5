"""The documentation's promises, run as written: the README's Python example, the example
script, and a reference that names every public name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cli_helpers import cli_env

import tmesh

ROOT = Path(__file__).resolve().parents[2]


def _readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_example_prints_a_summary_with_non_zero_qps(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _readme_example()], capture_output=True, text=True,
        env=cli_env(), cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    qps = re.search(r"^QPS: ([0-9.]+)$", done.stdout, re.MULTILINE)
    assert qps is not None and float(qps.group(1)) > 0
    assert re.search(r"^median TTFT: [0-9.]+ s$", done.stdout, re.MULTILINE)
    assert len(list((tmp_path / "tmesh-runs").iterdir())) == 1


def test_the_example_script_runs_two_profiles_and_plots(tmp_path: Path) -> None:
    env = {**cli_env(), "TMESH_EXAMPLE_SECONDS": "3", "TMESH_EXAMPLE_OUT": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "two_profiles.py")], capture_output=True,
        text=True, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "gpu-only: revisit TTFT p50" in done.stdout
    assert "cpu-offload: revisit TTFT p50" in done.stdout
    assert (tmp_path / "two_profiles.png").read_bytes().startswith(b"\x89PNG")


def test_the_reference_documents_every_public_name() -> None:
    reference = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in tmesh.__all__ if name != "__version__" and name not in reference]
    assert missing == []
    assert sorted(tmesh.__all__) == sorted({"__version__", "report", *tmesh._PUBLIC})
