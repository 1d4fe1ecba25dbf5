"""Fault choice of the simulated engine, without a network: the header vocabulary, the seeded draws
and the counting. Acting the faults out over HTTP is tested in test_sim_server_faults.py."""

from __future__ import annotations

import pytest

from tmesh.sim.faults import Fault, FaultConfig, FaultInjector, describe_fault, parse_fault_header

DEFAULT = FaultConfig()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("503", Fault("503", status=503, body="json")),
        ("500:html", Fault("500", status=500, body="html")),
        ("502:TEXT", Fault("502", status=502, body="text")),
        ("429", Fault("429", status=429, retry_after=1.0)),
        ("429:none", Fault("429", status=429, retry_after=None)),
        ("429:2.5", Fault("429", status=429, retry_after=2.5)),
        ("cut", Fault("cut", after_tokens=5)),
        ("cut:0", Fault("cut", after_tokens=0)),
        ("stall", Fault("stall", seconds=3.0)),
        ("stall:0.5", Fault("stall", seconds=0.5)),
        ("stall:2:4", Fault("stall", seconds=2.0, after_tokens=4)),
        ("malformed", Fault("malformed", after_tokens=1)),
        ("error-in-stream:3", Fault("error-in-stream", after_tokens=3)),
        (" none ", None),
    ],
)
def test_header_vocabulary(header: str, expected: Fault | None) -> None:
    assert parse_fault_header(header, DEFAULT) == expected


@pytest.mark.parametrize(
    "header", ["teapot", "200", "503:xml", "cut:x", "cut:-1", "stall:1:2:3", "429:-1", "stall:nan"]
)
def test_bad_header_is_a_one_line_error(header: str) -> None:
    with pytest.raises(ValueError, match="X-Sim-Fault") as info:
        parse_fault_header(header, DEFAULT)
    assert "\n" not in str(info.value)


def test_header_defaults_come_from_the_config() -> None:
    config = FaultConfig(retry_after=None, cut_after=9, stall_seconds=0.25)
    assert parse_fault_header("429", config) == Fault("429", status=429, retry_after=None)
    assert parse_fault_header("cut", config) == Fault("cut", after_tokens=9)
    assert parse_fault_header("stall", config) == Fault("stall", seconds=0.25)


def test_before_response_split() -> None:
    assert Fault("503", status=503).before_response
    assert Fault("stall", seconds=1).before_response
    assert not Fault("stall", seconds=1, after_tokens=2).before_response
    assert not Fault("cut", after_tokens=0).before_response


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"cut_rate": -0.1},
        {"error_rate": 0.6, "rate_429": 0.6},
        {"error_statuses": ()},
        {"error_statuses": (429,)},
        {"error_statuses": (200,)},
        {"error_body": "xml"},
        {"retry_after": -1.0},
        {"cut_after": -1},
        {"stall_seconds": float("nan")},
    ],
)
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**kwargs)


def test_off_by_default_never_injects() -> None:
    injector = FaultInjector()
    assert not injector.config.enabled
    assert all(injector.choose(None) is None for _ in range(1000))


def test_draws_are_seeded_and_follow_the_rates() -> None:
    config = FaultConfig(error_rate=0.1, rate_429=0.2, cut_rate=0.05, malformed_rate=0.05, seed=7)
    a, b = FaultInjector(config), FaultInjector(config)
    draws_a = [a.choose(None) for _ in range(20_000)]
    assert draws_a == [b.choose(None) for _ in range(20_000)]
    names = [f.name if f else None for f in draws_a]
    share = {name: names.count(name) / len(names) for name in ("429", "cut", "malformed", None)}
    errors = (names.count("500") + names.count("503")) / len(names)
    assert errors == pytest.approx(0.1, abs=0.02)
    assert share["429"] == pytest.approx(0.2, abs=0.02)
    assert share["cut"] == pytest.approx(0.05, abs=0.01)
    assert share["malformed"] == pytest.approx(0.05, abs=0.01)
    assert share[None] == pytest.approx(0.6, abs=0.02)


def test_forced_faults_do_not_shift_the_random_sequence() -> None:
    config = FaultConfig(error_rate=0.5, seed=3)
    plain, forced = FaultInjector(config), FaultInjector(config)
    expected = [plain.choose(None) for _ in range(50)]
    got = []
    for _ in range(50):
        forced.choose("cut:2")
        got.append(forced.choose(None))
    assert got == expected


def test_mixed_bodies_and_statuses() -> None:
    injector = FaultInjector(
        FaultConfig(error_rate=1.0, error_statuses=(500, 503), error_body="mixed")
    )
    faults = [injector.choose(None) for _ in range(200)]
    assert {f.body for f in faults if f} == {"json", "text", "html"}
    assert {f.status for f in faults if f} == {500, 503}


def test_record_counts_logs_and_exports(caplog: pytest.LogCaptureFixture) -> None:
    injector = FaultInjector()
    assert injector.summary() == "no faults injected"
    with caplog.at_level("INFO", logger="tmesh.sim.server"):
        injector.record(Fault("503", status=503, body="html"), "/v1/completions")
        injector.record(Fault("cut", after_tokens=5), "/v1/completions")
        injector.record(Fault("cut", after_tokens=5), "/v1/chat/completions")
    assert injector.counts == {"503": 1, "cut": 2}
    assert injector.summary() == "faults injected: 503=1, cut=2"
    assert "503 (html body)" in caplog.text
    assert "cut after 5 tokens on /v1/chat/completions" in caplog.text
    value = injector.registry.get_sample_value("tmesh_sim_faults_injected_total", {"fault": "cut"})
    assert value == 2


def test_descriptions() -> None:
    assert describe_fault(Fault("429", status=429, retry_after=None)) == "429 (no Retry-After)"
    assert describe_fault(Fault("429", status=429, retry_after=2)) == "429 (Retry-After 2)"
    assert describe_fault(Fault("stall", seconds=1.5)) == "stall 1.5s after 0 tokens"
