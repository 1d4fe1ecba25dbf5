"""The `--live` dashboard drawn at fixed sizes: panels from what the snapshots hold, resizes,
the fallbacks, and the View that routes to it."""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text
from test_console import seed_snapshot

from tmesh.bench.output.live import MIN_SIZE, Dashboard
from tmesh.bench.output.panels import PANELS, Panel, Trend
from tmesh.bench.output.traffic_panels import TRAFFIC_PANELS
from tmesh.bench.output.view import View
from tmesh.results.records import (
    ClientHealth,
    GapStats,
    IntervalSnapshot,
    MetricStats,
    SessionStats,
    TurnStats,
    WindowStats,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def draw(dash: Dashboard, width: int = 120, height: int = 40) -> str:
    """One frame at `width` x `height`, as the terminal would show it (no colours)."""
    dash.console.size = (width, height)
    out = io.StringIO()
    Console(file=out, width=width, height=height, color_system=None).print(dash.frame())
    return out.getvalue()


def dashboard(duration: float | None = 90.0, **kwargs: object) -> Dashboard:
    console = Console(file=io.StringIO(), width=120, height=40, color_system=None)
    return Dashboard(duration, console, clock=Clock(), **kwargs)  # type: ignore[arg-type]


def snapshots(count: int, **changes: object) -> list[IntervalSnapshot]:
    found = []
    for index in range(count):
        snap = seed_snapshot(index=index, elapsed=5.0 * (index + 1), **changes)
        snap.interval_warm_ttft = MetricStats(count=index, mean=0.2 if index else None)
        snap.interval_cold_ttft = MetricStats(count=3, mean=1.5)
        found.append(snap)
    return found


def test_every_panel_of_a_run_with_server_figures() -> None:
    dash = dashboard()
    server = {"gpu_hit_rate": 0.4, "external_hit_rate": 0.9}
    for snap in snapshots(6, server=server, verdict="revisits are served from offload"):
        dash.update(snap)
    screen = draw(dash)
    for needle in (
        "tmesh benchmark  30 s elapsed, 60 s left",
        "Over the run",
        "QPS",
        "TTFT first visit",
        "TTFT revisit",
        "ITL",
        "hit rate GPU",
        "hit rate external",
        "in-flight",
        "19.6 / 20",
        "Last interval",
        "Global Average TTFT: 1.194 s",
        "Errors by kind",
        "none",
        "Cache verdict so far",
        "revisits are served from offload",
    ):
        assert needle in screen, needle
    assert "Client limit" not in screen
    assert len(screen.splitlines()) == 40


def test_panels_appear_only_for_what_the_snapshots_hold() -> None:
    dash = dashboard()
    dash.update(seed_snapshot())
    screen = draw(dash)
    assert "hit rate" not in screen, "no server figures: no hit-rate charts"
    assert "Cache verdict so far" not in screen, "no verdict yet: no verdict panel"
    assert "TTFT revisit" not in screen


def test_the_charts_update_with_each_interval() -> None:
    dash = dashboard()
    dash.update(seed_snapshot(index=0, elapsed=5.0))
    first = draw(dash)
    busier = seed_snapshot(index=1, elapsed=10.0)
    busier.interval_stats = WindowStats(requests=100)
    dash.update(busier)
    second = draw(dash)
    assert first != second
    assert "20.00" in second or "19.99" in second, "the QPS of the last interval (100 in 5 s)"
    assert "peak" in second


def test_elapsed_moves_with_the_clock_between_intervals() -> None:
    dash = dashboard(duration=60.0)
    dash.update(seed_snapshot())
    assert "10 s elapsed, 50 s left" in draw(dash)
    dash._clock.now += 3  # type: ignore[attr-defined]
    assert "13 s elapsed, 47 s left" in draw(dash)


def test_without_a_duration_it_says_how_to_stop() -> None:
    dash = dashboard(duration=None)
    dash.update(seed_snapshot())
    assert "10 s elapsed (Ctrl-C to stop)" in draw(dash)


def test_the_client_health_warning_is_across_the_top_while_it_holds() -> None:
    dash = dashboard()
    dash.update(seed_snapshot(health=ClientHealth(12.0, 20, 0.3, 180.0)))
    screen = draw(dash)
    assert "Client limit" in screen
    assert "WARNING: the client's event loop lagged 180 ms" in screen
    assert screen.index("WARNING") < screen.index("Over the run")
    dash.update(seed_snapshot(index=2, elapsed=15.0))
    assert "the client limited 1 of 2 intervals" in draw(dash)


def test_errors_by_kind_keep_the_first_message_of_each() -> None:
    dash = dashboard()
    first = seed_snapshot(interval_stats=WindowStats(errors={"http_5xx": 2}))
    first.global_stats.errors = {"http_5xx": 2}
    first.error_messages = {"http_5xx": "HTTP 503 Service Unavailable: overloaded"}
    dash.update(first)
    later = seed_snapshot(index=2, elapsed=15.0, interval_stats=WindowStats(errors={}))
    later.global_stats.errors = {"http_5xx": 2, "timeout": 1}
    later.error_messages = {"timeout": "no byte for 300 s"}
    dash.update(later)
    screen = draw(dash)
    assert "http_5xx 2 (0 in the last 5 s)  first: HTTP 503 Service Unavailable" in screen
    assert "timeout 1" in screen and "no byte for 300 s" in screen


def test_a_small_terminal_gets_the_figures_and_the_size_it_needs() -> None:
    dash = dashboard()
    dash.update(seed_snapshot())
    small = draw(dash, 70, 20)
    assert f"enlarge the terminal to {MIN_SIZE[0]}x{MIN_SIZE[1]}" in small
    assert "Global Average TTFT" in small
    assert "Over the run" not in small
    assert all(len(line) <= 70 for line in small.splitlines())
    assert "Over the run" in draw(dash, 100, 30), "back to the dashboard once it grows"


def test_every_size_from_the_minimum_up_draws_within_the_screen() -> None:
    dash = dashboard()
    for snap in snapshots(30, server={"gpu_hit_rate": 0.5}, verdict="x " * 200):
        dash.update(snap)
    for width, height in ((80, 24), (81, 25), (100, 30), (200, 60)):
        screen = draw(dash, width, height)
        lines = screen.splitlines()
        assert len(lines) == height, (width, height)
        assert all(len(line) <= width for line in lines)
        assert "Over the run" in screen


def test_a_workload_adds_its_own_panel_and_trend() -> None:
    """Panels chosen from what the snapshots hold: a panel for a figure only some runs have."""
    alive = Trend("alive", "sessions alive", "count", lambda snap: (snap.server or {}).get("alive"))

    def survival(history, width, height):  # type: ignore[no-untyped-def]
        values = [v for v in history.values(alive) if v is not None]
        return [Text(f"sessions alive so far: {values}")] if values else None

    dash = dashboard(panels=(*PANELS, Panel("Cache survival", "trends", survival, (alive,))))
    dash.update(seed_snapshot())
    assert "Cache survival" not in draw(dash)
    dash.update(seed_snapshot(index=2, elapsed=15.0, server={"alive": 7.0}))
    screen = draw(dash)
    assert "Cache survival" in screen and "sessions alive so far: [7.0]" in screen


def test_notes_said_during_the_run_are_shown() -> None:
    dash = dashboard()
    dash.update(seed_snapshot())
    dash.note("server metrics unavailable: http://127.0.0.1:1/metrics answered HTTP 404")
    assert "Messages" in draw(dash)
    assert "answered HTTP 404" in draw(dash)


def test_a_dashboard_on_a_file_prints_its_last_frame_once() -> None:
    out = io.StringIO()
    dash = Dashboard(duration=60.0, console=Console(file=out, width=120))
    with dash:
        dash.update(seed_snapshot())
    text = out.getvalue()
    assert "10 s elapsed, 50 s left" in text
    assert "Global Average TTFT" in text


def test_live_on_a_pipe_prints_the_text_blocks() -> None:
    out, err = io.StringIO(), io.StringIO()
    view = View(live=True, duration=60.0, stdout=out, stderr=err)
    view.start()
    view.interval(seed_snapshot())
    view.progress("a note")
    assert "Global Average TTFT: 1.194 s" in out.getvalue()
    assert "┃" not in out.getvalue() and "╭" not in out.getvalue()
    assert err.getvalue().splitlines() == [
        "--live: stdout is not a terminal; printing the text blocks instead",
        "a note",
    ]


class TtyText(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_countdown_rewrites_one_line_on_a_terminal_and_ends_it_before_more() -> None:
    err = TtyText()
    view = View(stdout=io.StringIO(), stderr=err)
    view.countdown("waiting: 29 s")
    view.countdown("waiting: 28 s")
    view.progress("choosing a token counter…")
    assert err.getvalue() == (
        "\rwaiting: 29 s\x1b[K\rwaiting: 28 s\x1b[K\nchoosing a token counter…\n"
    )


def test_the_countdown_is_a_line_each_elsewhere_and_nothing_when_quiet() -> None:
    err = io.StringIO()
    View(stdout=io.StringIO(), stderr=err).countdown("waiting: 29 s")
    assert err.getvalue() == "waiting: 29 s\n"
    quiet = io.StringIO()
    View(quiet=True, stdout=io.StringIO(), stderr=quiet).countdown("waiting: 29 s")
    assert quiet.getvalue() == ""


def test_traffic_panels_appear_for_scheduled_sessions_only() -> None:
    gaps = [
        GapStats(0.0, 5.0, requests=8, prompt_tokens=1000, cached_tokens=900,
                 cached_tokens_reported=8, ttft=MetricStats(count=8, mean=0.05)),
        GapStats(5.0, None, requests=4, prompt_tokens=1000, cached_tokens=300,
                 cached_tokens_reported=4, ttft=MetricStats(count=4, mean=0.4)),
    ]  # fmt: skip
    sessions = SessionStats(started=6, by_turn=[TurnStats(1)], by_gap=gaps)
    health = ClientHealth(19.6, 20, sent=40, scheduled=True, lateness_max_ms=250.0)
    plain, scheduled = (dashboard(panels=(*PANELS, *TRAFFIC_PANELS)) for _ in range(2))
    for snap in snapshots(4):
        plain.update(snap)
    for snap in snapshots(4, health=health, slo={"ttft": 1.0}, sessions=sessions):
        scheduled.update(snap)
    quiet, busy = draw(plain), draw(scheduled, height=60)
    for needle in ("Schedule and goodput", "send rate", "lateness (max)", "goodput",
                   "Cache survival by idle gap", "idle 0-5 s", "90.0% cached", "idle >5 s",
                   "30.0% cached"):  # fmt: skip
        assert needle in busy, needle
        assert needle not in quiet, needle
