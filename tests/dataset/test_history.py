"""`tmesh-cli history` over ten real run folders: two simulated engines on two ports (two
profiles), five runs each, the second engine restarted on its port with a slower front end
before its last two runs, as an upgrade that made things worse would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import cli_command, cli_env

import tmesh
from tmesh.dataset.history import history, parse_by
from tmesh.dataset.views import open_history

WORKLOAD = {
    "num_contexts": 4,
    "input_length": 1500,
    "output_length": 12,
    "max_inflight": 2,
    "interval": 0.5,
    "duration": 2.5,
    "quiet": True,
}
FAST = {"t_fixed_s": 2e-3}
SCALE = 0.01
"""The second engine's model time runs 100 times faster than real time."""
SLOWER = {**FAST, "api_overhead_s": 0.02 / SCALE}
"""20 ms (real time) more before each request reaches the engine: TTFT several times its usual
few ms."""


async def _runs(root: Path) -> tuple[str, str]:
    """Five rounds, each a run against both engines at once; the folders sort in time order."""
    a, b = tmesh.simulate("fast", **FAST), tmesh.simulate("gpu-only", **FAST, time_scale=SCALE)
    url_a, url_b = await a.__aenter__(), await b.__aenter__()
    port_b = int(url_b.rsplit(":", 1)[1])
    try:
        for round_ in range(5):
            if round_ == 3:
                await b.__aexit__(None, None, None)
                b = tmesh.simulate("gpu-only", **SLOWER, time_scale=SCALE, port=port_b)
                assert await b.__aenter__() == url_b
            await asyncio.gather(
                *(
                    tmesh.abenchmark(endpoint=url, output_dir=root / name / f"run-{round_}",
                                     **WORKLOAD)
                    for name, url in (("a", url_a), ("b", url_b))
                )
            )  # fmt: skip
    finally:
        await a.__aexit__(None, None, None)
        await b.__aexit__(None, None, None)
    return url_a, url_b


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("history")
    url_a, url_b = asyncio.run(_runs(root))
    return root, url_a, url_b


def _history(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command("history", str(root), "-o", str(root / "history.html"), *args),
        capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip


def test_the_views_hold_every_run_interval_and_request(runs) -> None:
    root, url_a, url_b = runs
    connection, rows = open_history(root)
    assert rows.skipped == []
    counted = connection.sql(
        "SELECT endpoint, count(*), sum(total_requests + failed_requests) FROM runs "
        "GROUP BY endpoint ORDER BY endpoint"
    ).fetchall()
    assert [(e, n) for e, n, _ in counted] == sorted([(f"{url_a}/v1", 5), (f"{url_b}/v1", 5)])
    per_run = dict(connection.sql("SELECT run, count(*) FROM requests GROUP BY run").fetchall())
    totals = dict(
        connection.sql("SELECT run, total_requests + failed_requests FROM runs").fetchall()
    )
    assert per_run == {run: int(total) for run, total in totals.items()}
    shortest = "SELECT min(n) FROM (SELECT count(*) AS n FROM intervals GROUP BY run)"
    assert connection.sql(shortest).fetchall()[0][0] >= 4
    unknown = "SELECT count(*) FROM runs WHERE ttft_mean_noise IS NULL"
    assert connection.sql(unknown).fetchall() == [(0,)]


def test_the_slowdown_is_the_change_flagged_in_the_slowed_series(runs) -> None:
    root, _, url_b = runs
    connection, _ = open_history(root)
    found = history(connection, ["ttft_mean"], parse_by("endpoint"))
    series = {s.label: s for s in found.series}
    slowed = series[f"{url_b}/v1"]
    assert [p.name for p in slowed.points] == [f"run-{i}" for i in range(5)]
    assert slowed.points[3].flagged and slowed.points[3].ratio > 3
    assert not any(s.points[0].flagged for s in found.series)


def test_the_history_command_prints_each_endpoint_series_and_marks_the_slowdown(runs) -> None:
    root, url_a, url_b = runs
    done = _history(root, "--metric", "ttft_mean,qps", "--by", "endpoint")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for url in (url_a, url_b):
        assert f"{url}/v1 · ttft.mean" in out
        assert f"{url}/v1 · qps" in out
    slowed = out.split(f"{url_b}/v1 · ttft.mean")[1].splitlines()
    assert "run-3" in slowed[4] and "<< +" in slowed[4] and "(worse), beyond noise" in slowed[4]
    assert "10 runs, 4 series" in out
    page = (root / "history.html").read_text()
    assert out.strip().endswith("history.html")
    assert page.count("<svg") == 2 and "run-3" in page


def test_where_keeps_the_runs_of_one_endpoint(runs) -> None:
    root, url_a, _ = runs
    done = _history(root, "--where", f"endpoint = '{url_a}/v1'", "--metric", "qps")
    assert done.returncode == 0, done.stderr
    assert "5 runs, 1 series" in done.stdout


def test_sql_runs_any_query_over_the_views(runs) -> None:
    root, url_a, url_b = runs
    done = _history(
        root, "--sql",
        "SELECT endpoint, count(*) AS runs, count(DISTINCT r.run) AS with_requests FROM runs "
        "JOIN requests r USING (run) GROUP BY endpoint ORDER BY endpoint",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["endpoint", "runs", "with_requests"]
    assert [line.split()[0] for line in lines[1:3]] == sorted([f"{url_a}/v1", f"{url_b}/v1"])
    assert all(line.split()[2] == "5" for line in lines[1:3])
    assert lines[-1] == "(2 rows)"


def test_parquet_replaces_the_json_lines_in_the_requests_view(runs) -> None:
    root, _, _ = runs
    run = root / "a" / "run-0"
    query = f"SELECT count(*), sum(ttft) FROM requests WHERE run = '{run}'"
    connection, _ = open_history(root)
    before = connection.sql(query).fetchall()[0]
    tmesh.load_run(run).to_parquet()
    connection, _ = open_history(root)
    assert connection.sql(query).fetchall()[0] == pytest.approx(before)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sql", "SELECT * FROM nowhere"], "Table with name nowhere does not exist"),
        (["--where", "no_such_column = 1"], "no_such_column"),
        (["--metric", "ttft_p51"], "unknown metric 'ttft_p51'"),
        (["--by", "colour"], "--by 'colour': choose from endpoint"),
    ],
)
def test_a_bad_query_or_option_is_one_line_and_exit_2(runs, args, message) -> None:
    done = _history(runs[0], *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_folder_without_runs_is_one_line(tmp_path) -> None:
    done = _history(tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"tmesh-cli history: error: no run folder under {tmp_path}"


def test_without_duckdb_history_says_what_to_install(runs) -> None:
    code = (
        "import sys; sys.modules['duckdb'] = None; from tmesh.cli.main import main; "
        f"sys.exit(main(['history', {str(runs[0])!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == (
        "tmesh-cli history: error: run history needs duckdb, which is not installed: "
        "pip install -e '.[data]' in tmesh's source folder\n"
    )
