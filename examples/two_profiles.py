"""Two stacks, one workload: does a CPU KV tier pay off once the GPU cache overflows?

A notebook-style script (run it whole, or cell by cell in an editor that knows `# %%`): it
benchmarks the simulated engine twice, GPU-only and with a CPU offload tier, on a working set
about twice its GPU cache, compares the runs, and plots each request's TTFT over the run. Needs
the `data` extra for the request tables (`pip install -e '.[data]'`); writes `two_profiles.png`
and the runs' folders under `./tmesh-runs/`. About a minute with the default duration;
`TMESH_EXAMPLE_SECONDS=5` makes it quick.
"""

# %% The runs: one per profile, the same workload and seed.
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import tmesh

SECONDS = float(os.environ.get("TMESH_EXAMPLE_SECONDS", "30"))
OUT = Path(os.environ.get("TMESH_EXAMPLE_OUT", "."))
SMALL_GPU = {"gpu_kv_tokens": 16_000, "max_model_len": 16_000, "time_scale": 0.2}
WORKLOAD = {"num_contexts": 8, "input_length": 4000, "output_length": 32, "max_inflight": 2}

results = {}
for profile in ("gpu-only", "cpu-offload"):
    with tmesh.simulate(profile, **SMALL_GPU) as url:
        results[profile] = tmesh.benchmark(
            endpoint=url,
            duration=SECONDS,
            interval=max(1.0, SECONDS / 10),
            output_dir=OUT / "tmesh-runs" / profile,
            quiet=True,
            **WORKLOAD,
        )

# %% Side by side: every ratio to the first run, set against the runs' own noise.
comparison = tmesh.compare(*results.values(), labels=list(results))
print(comparison.verdict)
for profile, result in results.items():
    ttft, qps = result.summary.warm_ttft.p50, result.summary.qps
    print(f"{profile}: revisit TTFT p50 {ttft.value * 1000:.1f} ms, QPS {qps.value:.1f}")


# %% TTFT of each request over the run, with a rolling median.
def rolling_median(values: np.ndarray, window: int = 25) -> np.ndarray:
    return np.array([np.median(values[max(0, i - window) : i + 1]) for i in range(len(values))])


figure = Figure(figsize=(9, 4))
axes = figure.add_subplot()
for (profile, result), color in zip(results.items(), ("#ea580c", "#2563eb"), strict=True):
    table = result.requests.filter(result.requests.column("error").is_null())
    finished = table.column("t_end").to_numpy()
    ttft_ms = table.column("ttft").to_numpy() * 1000
    order = np.argsort(finished)
    axes.scatter(finished[order], ttft_ms[order], s=4, alpha=0.3, color=color)
    axes.plot(finished[order], rolling_median(ttft_ms[order]), color=color, label=profile)
axes.set_xlabel("time since the run started (s)")
axes.set_ylabel("TTFT (ms)")
axes.set_yscale("log")
axes.legend()
figure.savefig(OUT / "two_profiles.png", dpi=120, bbox_inches="tight")
print("plot:", OUT / "two_profiles.png")
