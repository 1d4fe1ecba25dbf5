"""A metric's key where a dot cannot go: SQL columns, `--metric`, `--fail-on`, Python names.

The catalogue's keys (`ttft.p50`, `steady.itl.mean`) hold dots; a column of a table cannot without
quoting, and `ttft_p50` is what people type. Each key has one such name, its dots made
underscores, and either spelling is accepted wherever a user names a metric.
"""

from __future__ import annotations

from tmesh.results.catalogue.metrics import BY_KEY, Metric


class UnknownMetricError(ValueError):
    """A metric name the catalogue does not hold; `str()` is one line with the names it does."""


def column(key: str) -> str:
    """`ttft.p50` → `ttft_p50`: the key as a column name."""
    return key.replace(".", "_")


COLUMNS: dict[str, str] = {column(key): key for key in BY_KEY}
"""Every metric's column name, to its key."""


def metric_named(name: str) -> Metric:
    """The metric a user named, by its key (`ttft.p50`) or its column name (`ttft_p50`)."""
    key = name.strip()
    metric = BY_KEY.get(key) or BY_KEY.get(COLUMNS.get(key, ""))
    if metric is None:
        raise UnknownMetricError(
            f"unknown metric {name!r}; known metrics: {', '.join(sorted(COLUMNS))}"
        )
    return metric
