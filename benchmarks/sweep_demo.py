"""How long the demo's five-point working-set sweep takes, and the curves it finds, per profile.

Runs `tmesh-cli sweep --demo --profile P` (ratios 0.5,1,2,4,8 of the 32k-token GPU cache, prompts
of 1,024 tokens, three passes per point) for each small profile in its own process, and prints the
wall time and each point's hit rates and TTFT from its sweep.json. The machine is shared: the
load average is printed beside the times.

    .venv/bin/python benchmarks/sweep_demo.py [--profiles small,small-offload]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", default="small,small-offload")
    args = parser.parse_args()
    for profile in args.profiles.split(","):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "tmesh.cli", "sweep", "--demo", "--profile", profile,
                 "--output-dir", folder],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            sweep = json.loads((Path(folder) / "sweep.json").read_text())
        print(f"{profile}: {seconds:.1f} s for {len(sweep['points'])} points "
              f"(load average {os.getloadavg()[0]:.1f})")  # fmt: skip
        print("  ratio  contexts  TTFT p50   hit rate  ideal LRU  infinite")
        for p in sweep["points"]:
            print(
                f"  {p['value']:5g}  {p['contexts']:8d}  {p['ttft_p50'] * 1000:6.1f} ms  "
                f"{p['measured_hit_rate']:8.1%}  {p['lru_hit_rate']:9.1%}  "
                f"{p['infinite_hit_rate']:8.1%}"
            )


if __name__ == "__main__":
    main()
