"""Which renderer writes which format of a report or a comparison, and the format a file's name
implies: shared by the `report`/`compare` commands and the Python API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tmesh.report import formats
from tmesh.report.compare import Comparison
from tmesh.report.compare_html import render_compare
from tmesh.report.html import render_report
from tmesh.report.load import Run

FORMATS = ("html", "md", "csv", "json")
SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".csv": "csv", ".json": "json"}
REPORT_RENDERERS: dict[str, Callable[[Run], str]] = {
    "html": render_report,
    "md": formats.report_markdown,
    "csv": formats.report_csv,
    "json": formats.report_json,
}
COMPARE_RENDERERS: dict[str, Callable[[Comparison], str]] = {
    "html": render_compare,
    "md": formats.compare_markdown,
    "csv": formats.compare_csv,
    "json": formats.compare_json,
}


def format_of(given: str | None, output: str | Path | None) -> str:
    """The format asked for, else the one the output file's suffix implies, else html."""
    if given:
        return given
    if output is not None and str(output) != "-":
        return SUFFIXES.get(Path(output).suffix.lower(), "html")
    return "html"
