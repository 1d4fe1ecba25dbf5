"""Does the server agree with tmesh? One row per run folder: token and cached-token agreement,
first-visit and revisit TTFT, errors.

- tokens: the share of successful requests whose `usage.prompt_tokens` is within 0.5 % of what
  tmesh planned (context + question + the tokens the server adds per request), and the largest
  difference in tokens;
- cached: the cached prompt tokens the server reported in `usage`, summed, against the prefix-cache
  hits its own Prometheus counters show over the run (the summary's server view), as a ratio;
- TTFT: medians of first visits and revisits.

    .venv/bin/python benchmarks/agreement.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

TOLERANCE = 0.005


def _requests(run: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(run.glob("requests*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s" if values else "n/a"


def row(run: Path) -> str:
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    records = _requests(run)
    ok = [r for r in records if r["error"] is None]
    off = [abs(r["prompt_tokens"] - r["planned_prompt_tokens"]) for r in ok]
    within = sum(d <= TOLERANCE * r["planned_prompt_tokens"] for d, r in zip(off, ok, strict=True))
    usage_cached = sum(r["cached_tokens"] or 0 for r in ok)
    server = summary.get("server") or {}
    hits = server.get("gpu_hit_tokens", 0) + server.get("external_hit_tokens", 0)
    cached = f"{usage_cached / hits:.3f}" if hits else "n/a"
    cold = [r["ttft"] for r in ok if r["visit"] == 0]
    warm = [r["ttft"] for r in ok if r["visit"] > 0]
    return " | ".join(
        [
            run.name,
            config["options"]["api"],
            f"{within}/{len(ok)} ({max(off, default=0)} max)",
            f"{usage_cached} / {hits:.0f} = {cached}",
            _median(cold),
            _median(warm),
            str(summary["failed_requests"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    args = parser.parse_args()
    print("run | api | prompt tokens within 0.5 % | usage cached / server hits | cold TTFT"
          " | warm TTFT | errors")  # fmt: skip
    for run in args.runs:
        print(row(run))


if __name__ == "__main__":
    main()
