"""tmesh: benchmark LLM inference stacks on a KV-cache-reuse workload, from the command line
(`tmesh-cli`) or from Python.

The Python API, every name below, is loaded on first use, so `import tmesh` stays instant and
`tmesh-cli` (which imports this package) pays only for what its command runs:

- `benchmark(endpoint=..., duration=..., **options) -> Result` and `await abenchmark(...)`;
- `simulate(profile="cpu-offload", **knobs)`: the simulated engine, a context manager yielding
  its URL;
- `load_run(path) -> Result`, `compare(*runs) -> Comparison`, `report(run_or_comparison, path)`,
  `regressions(baseline, candidate, "ttft_p50>+10%")`;
- `history(*directories)`: every run under them as DuckDB views (`runs`, `intervals`,
  `requests`).

`docs/api.md` documents each of them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The subpackage `tmesh.report` is imported first (its `__init__` is empty, so this costs
# nothing) because importing a subpackage for the first time binds its name in this module,
# which would replace the function `report` below the first time anything read a run.
import tmesh.report as _report_package  # noqa: F401

__version__ = "0.2.0"

_PUBLIC = {
    "benchmark": "tmesh.api.benchmark",
    "abenchmark": "tmesh.api.benchmark",
    "simulate": "tmesh.api.engine",
    "Simulation": "tmesh.api.engine",
    "load_run": "tmesh.api.runs",
    "compare": "tmesh.api.runs",
    "regressions": "tmesh.api.runs",
    "history": "tmesh.api.runs",
    "Result": "tmesh.api.result",
    "Summary": "tmesh.api.summary",
    "Figure": "tmesh.api.summary",
    "Distribution": "tmesh.api.summary",
    "BenchmarkOptions": "tmesh.bench.options",
    "IntervalSnapshot": "tmesh.results.records",
    "Comparison": "tmesh.report.compare",
    "BenchmarkError": "tmesh.bench.prepare",
    "OptionError": "tmesh.fieldspec",
    "RunLoadError": "tmesh.report.load",
    "CompareError": "tmesh.report.compare",
    "MissingDependency": "tmesh.dataset.optional",
}
__all__ = [
    "BenchmarkError",
    "BenchmarkOptions",
    "CompareError",
    "Comparison",
    "Distribution",
    "Figure",
    "IntervalSnapshot",
    "MissingDependency",
    "OptionError",
    "Result",
    "RunLoadError",
    "Simulation",
    "Summary",
    "__version__",
    "abenchmark",
    "benchmark",
    "compare",
    "history",
    "load_run",
    "regressions",
    "report",
    "simulate",
]

if TYPE_CHECKING:
    from tmesh.api.benchmark import abenchmark, benchmark
    from tmesh.api.engine import Simulation, simulate
    from tmesh.api.result import Result
    from tmesh.api.runs import compare, history, load_run, regressions, report
    from tmesh.api.summary import Distribution, Figure, Summary
    from tmesh.bench.options import BenchmarkOptions
    from tmesh.bench.prepare import BenchmarkError
    from tmesh.dataset.optional import MissingDependency
    from tmesh.fieldspec import OptionError
    from tmesh.report.compare import CompareError, Comparison
    from tmesh.report.load import RunLoadError
    from tmesh.results.records import IntervalSnapshot
else:

    def report(run: Any, path: str | Path | None = None, format: str | None = None) -> Path:
        """Write the report of a run or of a comparison: `tmesh.api.runs.report`."""
        return importlib.import_module("tmesh.api.runs").report(run, path, format)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tmesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
