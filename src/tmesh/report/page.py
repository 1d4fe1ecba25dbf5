"""The parts every page of the report is made of: the stylesheet, a page, a section, a metric's
cell (with its exact value and key for machine checks), a chart panel and a key-value table.

`report.html`, `compare.html` and the sessions' sections share them, so every page looks alike.
"""

from __future__ import annotations

from html import escape

from tmesh import __version__
from tmesh.results.catalogue.metrics import Metric
from tmesh.results.catalogue.units import format_value
from tmesh.results.records import RunSummary

CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --soft:#f9fafb; --accent:#2563eb;
  --good:#15803d; --bad:#b91c1c; --warn-bg:#fffbeb; --warn-line:#f59e0b; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: var(--ink);
  font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header { margin-bottom: 20px; }
.brand { color: var(--accent); font-weight: 600; letter-spacing: .04em; text-transform: uppercase;
  font-size: 12px; }
h1 { font-size: 26px; margin: 4px 0 2px; }
h2 { font-size: 17px; margin: 0 0 12px; }
h3 { font-size: 14px; margin: 0 0 4px; }
.meta { color: var(--muted); margin: 0; }
section, .panel { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 20px; margin: 16px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin: 16px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .03em; }
.card .value { font-size: 22px; font-weight: 600; margin: 2px 0;
  font-variant-numeric: tabular-nums; }
.card .sub { color: var(--muted); font-size: 12px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid2 > section { margin: 0; }
@media (max-width: 800px) { .grid2 { grid-template-columns: 1fr; } }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
th:first-child, td:first-child, .left { text-align: left; }
tbody tr:last-child td { border-bottom: none; }
table.kv td:first-child { color: var(--muted); width: 40%; }
table.kv td, table.kv th { text-align: left; white-space: normal; word-break: break-word; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background: var(--soft); padding: 1px 4px; border-radius: 4px; }
.note { background: var(--warn-bg); border: 1px solid var(--warn-line); border-radius: 10px;
  padding: 10px 16px; margin: 16px 0; }
.note ul { margin: 4px 0 0; padding-left: 18px; }
.verdict { border-left: 4px solid var(--accent); font-size: 15px; }
.chart-panel p { color: var(--muted); margin: 0 0 6px; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; }
tr.group td { background: var(--soft); color: var(--muted); font-size: 12px; font-weight: 600;
  text-transform: uppercase; letter-spacing: .03em; text-align: left; }
.good { color: var(--good); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
.ns { color: var(--muted); }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
footer dt { font-weight: 600; color: var(--ink); }
footer dd { margin: 0; }
.differs { background: var(--warn-bg); }
td.meaning { text-align: left; white-space: normal; color: var(--muted); }
"""


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="tmesh {escape(__version__)}">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def section(title: str, content: str, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<section{attr}><h2>{escape(title)}</h2>{content}</section>"


def figure(metric: Metric, summary: RunSummary, tag: str = "td", css: str = "") -> str:
    """One metric of a run as an element, exact value and key attached for machine checks."""
    value = metric.value(summary)
    exact = "" if value is None else repr(value)
    css = f"value {css}".strip() if tag == "div" else css
    attr = f' class="{css}"' if css else ""
    return (
        f'<{tag}{attr} data-key="{escape(metric.key)}" data-value="{exact}">'
        f"{escape(format_value(value, metric.unit))}</{tag}>"
    )


def kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{escape(key)}</td><td>{value}</td></tr>" for key, value in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def chart_panel(title: str, caption: str, svg: str) -> str:
    return (
        f'<section class="chart-panel"><h2>{escape(title)}</h2><p>{escape(caption)}</p>'
        f"{svg}</section>"
    )
