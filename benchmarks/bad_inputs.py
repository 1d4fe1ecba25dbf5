"""How fast `tmesh-cli benchmark` refuses a bad input: twelve mistakes, each its own process
timed from start to exit (Python's start included), against a loopback port that counts
connections. Target: each under 2 s, one line, exit 2, no connection. The machine is shared, so
the load average is printed with the figures.

    .venv/bin/python benchmarks/bad_inputs.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "cli"))

from cli_helpers import SMALL_WORKLOAD, cli_command, cli_env  # noqa: E402
from test_cli_startup import _bad_inputs  # noqa: E402


def _count_connections(server: socket.socket, seen: list[int]) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        seen.append(1)
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seen: list[int] = []
    with socket.socket() as wire, socket.socket() as busy, tempfile.TemporaryDirectory() as tmp:
        wire.bind(("127.0.0.1", 0))
        wire.listen()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        threading.Thread(target=_count_connections, args=(wire, seen), daemon=True).start()
        url = f"http://127.0.0.1:{wire.getsockname()[1]}"
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'bad input':32} {'best s':>7} {'worst s':>8}  exit  lines  error")
        for name, flags, _ in _bad_inputs(Path(tmp), busy.getsockname()[1]):
            if "--output-dir" not in flags:
                flags = [*flags, "--output-dir", str(Path(tmp) / "never")]
            times, done = [], None
            for _ in range(args.rounds):
                started = time.monotonic()
                done = subprocess.run(
                    cli_command("benchmark", "--endpoint", url, *SMALL_WORKLOAD, *flags),
                    capture_output=True, text=True, env=cli_env(),
                )  # fmt: skip
                times.append(time.monotonic() - started)
            assert done is not None
            lines = done.stderr.splitlines()
            print(
                f"{name:32} {min(times):7.2f} {max(times):8.2f}  {done.returncode:>4}  "
                f"{len(lines):>5}  {lines[-1][:60] if lines else ''}"
            )
    print(f"connections to the server: {len(seen)}")


if __name__ == "__main__":
    main()
