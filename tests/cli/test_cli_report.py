"""report.cli: where output goes, which format, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from fixtures.runs.synthetic import RunShape, write_run

from tmesh.cli.report import (
    add_compare_arguments,
    add_report_arguments,
    run_compare,
    run_report,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    short = {"seconds": 20.0, "warmup": 5.0}
    return {
        "gpu": write_run(root / "gpu", RunShape(profile="gpu-only", **short)),
        "cpu": write_run(root / "cpu", RunShape(profile="cpu-offload", **short)),
        "long-input": write_run(root / "long", RunShape(input_length=8000, **short)),
    }


def _report(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    return run_report(parser.parse_args(argv))


def _compare(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    return run_compare(parser.parse_args(argv))


def test_report_writes_html_into_the_run_folder_by_default(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(shutil.copytree(folders["gpu"], tmp_path / "run"))
    assert _report(str(folder)) == 0
    assert capsys.readouterr().out == f"{folder / 'report.html'}\n"
    assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        (["--format", "json"], lambda out: json.loads(out)["metrics"]["qps"] > 0),
        (["--format", "csv"], lambda out: out.startswith("key,label,unit,value\nqps,QPS,")),
        (["--format", "md"], lambda out: out.startswith("## tmesh report: sim/llama-3.1-8b")),
        (["-o", "-"], lambda out: out.startswith("<!DOCTYPE html>")),
    ],
)
def test_pipeline_formats_go_to_stdout(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str], argv: list[str], check
) -> None:
    assert _report(str(folders["gpu"]), *argv) == 0
    assert check(capsys.readouterr().out)


def test_format_follows_the_output_suffix(folders: dict[str, Path], tmp_path: Path) -> None:
    assert _report(str(folders["gpu"]), "-o", str(tmp_path / "r.md")) == 0
    assert (tmp_path / "r.md").read_text().startswith("## tmesh report")
    assert _report(str(folders["gpu"]), "-o", str(tmp_path / "r.json")) == 0
    assert "metrics" in json.loads((tmp_path / "r.json").read_text())


def test_compare_writes_compare_html_in_the_current_folder(
    folders: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _compare(str(folders["gpu"]), str(folders["cpu"]), "--labels", "gpu,offload") == 0
    assert capsys.readouterr().out == "compare.html\n"
    page = (tmp_path / "compare.html").read_text()
    assert "gpu vs offload" in page and "offload served" in page


def test_compare_markdown_to_stdout(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _compare(str(folders["gpu"]), str(folders["cpu"]), "--format", "md") == 0
    assert capsys.readouterr().out.startswith("## tmesh comparison: A vs B\n\nB served ")


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("report", ["{tmp}/absent"], "tmesh-cli report: error: {tmp}/absent: no such directory"),
        ("report", ["{tmp}"], "tmesh-cli report: error: {tmp}: not a tmesh run folder"),
        (
            "report",
            ["{gpu}", "-o", "{tmp}/no/such/dir/r.md"],
            "tmesh-cli report: error: {tmp}/no/such/dir/r.md: cannot write",
        ),
        ("compare", ["{gpu}"], "tmesh-cli compare: error: compare needs at least two run folders"),
        (
            "compare",
            ["{gpu}", "{long}", "--format", "md"],
            "tmesh-cli compare: error: the runs' workloads differ (input length: A 4000, B 8000)",
        ),
        (
            "compare",
            ["{gpu}", "{cpu}", "--labels", "x"],
            "tmesh-cli compare: error: --labels gives 1 names for 2 runs",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    folders: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    argv: list[str],
    message: str,
) -> None:
    names = {"tmp": tmp_path, "gpu": folders["gpu"], "cpu": folders["cpu"]}
    names["long"] = folders["long-input"]
    argv = [arg.format(**names) for arg in argv]
    run = _report if command == "report" else _compare
    assert run(*argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message.format(**names))
    assert captured.err.count("\n") == 1


def test_force_compares_differing_workloads(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(folders["gpu"]), str(folders["long-input"]), "--force", "--format", "json"]
    assert _compare(*argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["warnings"][0].startswith("Workloads differ, compared anyway (--force)")
