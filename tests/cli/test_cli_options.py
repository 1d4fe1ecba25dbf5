"""Flags and BenchmarkOptions stay one to one: a renamed flag or field fails here, not in a run."""

from __future__ import annotations

import dataclasses

from tmesh.bench.options import BenchmarkOptions
from tmesh.cli.main import build_parser, options_from_args


def _parse(*argv: str) -> BenchmarkOptions:
    return options_from_args(build_parser("benchmark").parse_args(["benchmark", *argv]))


def test_every_option_has_its_flag_and_the_same_default() -> None:
    args = vars(build_parser("benchmark").parse_args(["benchmark"]))
    unflagged = [f.name for f in dataclasses.fields(BenchmarkOptions) if f.name not in args]
    assert unflagged == ["server_metrics", "grace"]
    assert _parse() == BenchmarkOptions()


def test_flags_reach_their_fields(monkeypatch) -> None:
    monkeypatch.delenv("TMESH_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    opts = _parse(
        "--endpoint", "h:1", "--num-contexts", "7", "--no-server-metrics", "--workers", "3"
    )
    assert (opts.endpoint, opts.num_contexts, opts.workers) == ("h:1", 7, 3)
    assert opts.server_metrics is False
    assert opts.api_key == "sk-from-env"
    assert _parse("--api-key", "sk-flag").api_key == "sk-flag"
