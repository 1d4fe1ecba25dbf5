"""Flags are built from the option fields: one declaration gives the flag, its help, its bounds
and its default, so a renamed field, a new option or a changed default cannot drift apart."""

from __future__ import annotations

import dataclasses

import pytest

from tmesh.bench.options import BenchmarkOptions
from tmesh.cli.benchmark import options_from_args
from tmesh.cli.main import build_parser
from tmesh.fieldspec import OptionError, check, check_all, flag_name, spec_of


def _parse(*argv: str) -> BenchmarkOptions:
    return options_from_args(build_parser("benchmark").parse_args(["benchmark", *argv]))


def _field(name: str) -> dataclasses.Field[object]:
    return next(f for f in dataclasses.fields(BenchmarkOptions) if f.name == name)


def test_every_option_has_its_flag_and_the_same_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TMESH_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    args = vars(build_parser("benchmark").parse_args(["benchmark"]))
    unflagged = [f.name for f in dataclasses.fields(BenchmarkOptions) if f.name not in args]
    assert unflagged == ["grace"]
    assert _parse() == BenchmarkOptions()


def test_flags_reach_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMESH_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    opts = _parse(
        "--endpoint", "h:1", "--num-contexts", "7", "--no-server-metrics", "--workers", "3"
    )
    assert (opts.endpoint, opts.num_contexts, opts.workers) == ("h:1", 7, 3)
    assert opts.server_metrics is False
    assert opts.api_key == "sk-from-env"
    assert _parse("--api-key", "sk-flag").api_key == "sk-flag"


def test_help_shows_each_default_once() -> None:
    text = build_parser("benchmark").format_help() + _benchmark_help()
    assert "KV offload buffer size in GB (default: 100)" in text
    assert "tokens per context (default: 32000)" in text
    assert "(default: cpu-offload)" in text
    for field in dataclasses.fields(BenchmarkOptions):
        spec = spec_of(field)
        assert spec is not None, field.name
        if spec.flagged:
            assert flag_name(field) in text, field.name


def _benchmark_help() -> str:
    parser = build_parser("benchmark")
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices["benchmark"].format_help()  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("num_contexts", 0, "--num-contexts must be > 0, not 0"),
        ("offload_size", float("nan"), "--offload-size must be a finite number"),
        ("seed", -1, "--seed must be >= 0, not -1"),
        ("api", "responses", "--api must be one of completions, chat"),
    ],
)
def test_values_from_python_meet_the_same_bounds(name: str, value: object, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        check(_field(name), value)
    with pytest.raises(OptionError, match=message):
        check_all(dataclasses.replace(BenchmarkOptions(), **{name: value}))


def test_defaults_pass_their_own_bounds() -> None:
    check_all(BenchmarkOptions())
