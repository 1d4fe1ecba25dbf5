"""`report` and `compare` of sessions runs: the survival curve, TTFT by turn, goodput over time,
every breakdown figure tagged with its exact value; and runs of older versions, without any of
it, still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.runs.pages import exact, tagged
from fixtures.runs.sessions import SessionShape, write_sessions_run
from fixtures.runs.synthetic import RunShape, summary_value, write_run

from tmesh.report import formats
from tmesh.report.compare import CompareError, compare_runs
from tmesh.report.compare_html import render_compare
from tmesh.report.html import render_report
from tmesh.report.load import load_run
from tmesh.results.catalogue.sessions import BY_GAP, BY_TURN


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sessions")
    return {
        "gpu": write_sessions_run(root / "gpu", SessionShape(survives=20.0)),
        "offload": write_sessions_run(root / "offload", SessionShape(survives=None)),
    }


def test_the_report_draws_the_sessions_charts(runs: dict[str, Path]) -> None:
    page = render_report(load_run(runs["gpu"]))
    for chart in ("goodput", "ttft-by-turn", "survival", "ttft-by-gap"):
        assert f'aria-label="{chart}"' in page, chart
    assert 'aria-label="ttft-rotation"' not in page, "a session has no context rotations"
    assert "Users (sessions at once)" in page
    assert "Cache survival by idle gap" in page


def test_every_breakdown_figure_is_the_summarys(runs: dict[str, Path]) -> None:
    summary = json.loads((runs["gpu"] / "summary.json").read_text())
    figures = {
        attrs["data-key"]: attrs for attrs, _ in tagged(render_report(load_run(runs["gpu"])))
    }
    sessions = summary["sessions"]
    for turn in sessions["by_turn"]:
        assert exact(figures[f"ttft_by_turn.{turn['turn']}"]) == turn["ttft"]["mean"]
    for index, gap in enumerate(sessions["by_gap"]):
        share = gap["cached_tokens"] / gap["prompt_tokens"] if gap["requests"] else None
        assert exact(figures[f"cached_share_by_gap.{index}"]) == share
    keys = {b.key for b in BY_TURN} | {b.key for b in BY_GAP}
    assert {key.rsplit(".", 1)[0] for key in figures if key[-1].isdigit()} >= keys
    for key in ("goodput", "goodput_share", "sessions_completed", "mean_turns", "request_rate"):
        assert exact(figures[key]) == summary_value(summary, key), key


def test_the_survival_curve_falls_only_without_an_offload_tier(runs: dict[str, Path]) -> None:
    gpu = load_run(runs["gpu"]).summary.sessions
    offload = load_run(runs["offload"]).summary.sessions
    assert gpu is not None and offload is not None
    share = [g.cached_tokens / g.prompt_tokens for g in gpu.by_gap if g.requests]
    kept = [g.cached_tokens / g.prompt_tokens for g in offload.by_gap if g.requests]
    assert share[-1] < share[0] - 0.2
    assert max(kept) - min(kept) < 0.01


def test_compare_overlays_the_survival_curves(runs: dict[str, Path]) -> None:
    comparison = compare_runs([load_run(runs["gpu"]), load_run(runs["offload"])], ["gpu", "cpu"])
    page = render_compare(comparison)
    assert 'aria-label="compare-survival"' in page
    assert 'aria-label="compare-ttft-gap"' in page


def test_runs_of_different_conversations_are_not_compared_unforced(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    longer = write_sessions_run(tmp_path / "longer", SessionShape(turns=9))
    with pytest.raises(CompareError, match="turns: A 6, B 9"):
        compare_runs([load_run(runs["gpu"]), load_run(longer)])


def test_the_json_export_carries_goodput_and_sessions(runs: dict[str, Path]) -> None:
    document = json.loads(formats.report_json(load_run(runs["gpu"])))
    assert document["metrics"]["goodput_share"] is not None
    assert document["metrics"]["sessions_started"] > 0
    assert document["units"]["mean_turns"] == "turns"


def test_a_sessions_run_without_its_summary_is_recomputed(runs: dict[str, Path],
                                                           tmp_path: Path) -> None:  # fmt: skip
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "requests.jsonl"):
        (copy / name).write_bytes((runs["gpu"] / name).read_bytes())
    original = load_run(runs["gpu"]).summary
    replayed = load_run(copy).summary
    assert replayed.sessions == original.sessions
    assert replayed.overall.good_requests == original.overall.good_requests
    assert replayed.slo == {"ttft": 0.05}


def test_a_run_written_before_sessions_existed_still_loads(tmp_path: Path) -> None:
    """Files of an older tmesh have none of the new fields: they default, and the report has
    none of the new sections."""
    folder = write_run(tmp_path / "old", RunShape(seconds=20))
    new_fields = {"t_intended", "session", "turn", "idle_gap"}
    lines = (folder / "requests.jsonl").read_text().splitlines()
    old = [json.dumps({k: v for k, v in json.loads(line).items() if k not in new_fields})
           for line in lines]  # fmt: skip
    (folder / "requests.jsonl").write_text("\n".join(old) + "\n")
    summary = json.loads((folder / "summary.json").read_text())
    _forget(summary, ("sessions", "slo", "sent_requests", "request_rate", "cap_hits"),
            ("overall", "steady"))  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    snaps = [json.loads(line) for line in (folder / "intervals.jsonl").read_text().splitlines()]
    for snap in snaps:
        _forget(snap, ("sessions", "slo"), ("global_stats", "interval_stats"))
        for key in ("sent", "target_rate", "cap_hits", "lateness_ms", "lateness_max_ms",
                    "scheduled"):  # fmt: skip
            del snap["health"][key]
    (folder / "intervals.jsonl").write_text("".join(json.dumps(s) + "\n" for s in snaps))
    config = json.loads((folder / "config.json").read_text())
    for key in ("workload", "request_rate", "arrival", "sessions"):
        del config["workload"][key]
    (folder / "config.json").write_text(json.dumps(config))
    run = load_run(folder)
    assert run.notes == []
    assert run.summary.sessions is None and run.spec.workload == "contexts"
    page = render_report(run)
    assert 'aria-label="survival"' not in page
    assert "Schedule and goodput" not in page


def _forget(document: dict, keys: tuple[str, ...], windows: tuple[str, ...]) -> None:
    for key in keys:
        del document[key]
    for window in windows:
        for key in ("good_requests", "lateness", "ttft_from_intended", "e2e_from_intended"):
            del document[window][key]
