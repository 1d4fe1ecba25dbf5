"""The files of a run: what the report commands read, written so no stop path loses a run.

Layout of a run folder:
- `config.json`: the run's configuration (the caller passes it with the key already masked).
- `requests.jsonl`: one JSON object per finished request: the `RequestRecord` fields plus the
  derived `ttft`, `itl`, `e2e`, `prefill_throughput`, `decode_throughput`. With `max_records` N,
  the first N lines go to `requests.jsonl`, the next N to `requests.1.jsonl`, then
  `requests.2.jsonl`, ... so reading them in that order gives the requests in finishing order.
- `intervals.jsonl`: one `IntervalSnapshot` per line.
- `summary.json`: the `RunSummary`, replaced atomically so it is always complete, valid JSON.

Appends are buffered, and pushed to the OS at least every `FLUSH_SECONDS` and at every interval,
so a `kill -9` loses at most the last second or so of requests, and a truncated last line at worst.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from tmesh.results.records import IntervalSnapshot, RequestRecord, RunSummary
from tmesh.text import scrub

CONFIG = "config.json"
SUMMARY = "summary.json"
INTERVALS = "intervals.jsonl"
REQUESTS = "requests.jsonl"
_REQUEST_FILE = re.compile(r"^requests(?:\.(\d+))?\.jsonl$")
FLUSH_SECONDS = 1.0
_BUFFER_BYTES = 1 << 16
_LINE = orjson.OPT_APPEND_NEWLINE
_PRETTY = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS


class RunFilesError(Exception):
    """The run folder cannot be written; `str()` is one line naming the path and the cause."""


def default_run_dir(root: Path = Path("tmesh-runs"), now: datetime | None = None) -> Path:
    """`tmesh-runs/<UTC YYYYmmdd-HHMMSS>`, suffixed `-1`, `-2`, ... if that folder exists."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 0
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def check_run_dir(path: Path) -> None:
    """Raise the `RunFilesError` that creating the run folder at `path` would raise, before the
    run has cost anything, and leave nothing behind: folders made to try are removed."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFilesError(f"cannot write run files in {path}: it is a file, not a folder")
    for name in (CONFIG, SUMMARY, INTERVALS, REQUESTS):
        if (path / name).exists():
            raise RunFilesError(f"{path} already holds a run ({name}); choose another --output-dir")
    made = [parent for parent in (path, *path.parents) if not parent.exists()]
    probe = path / ".tmesh-write-check"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise RunFilesError(_describe(path, exc)) from None
    finally:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()


DERIVED = ("ttft", "itl", "e2e", "prefill_throughput", "decode_throughput")
"""The metrics `requests.jsonl` holds beside each record's own fields (`request_row`)."""


def request_row(record: RequestRecord) -> dict[str, Any]:
    """A record as written to `requests.jsonl`, derived metrics included for readers' convenience.

    RequestRecord is flat, so a copy of its `__dict__` equals `dataclasses.asdict` at a fraction
    of the cost, which matters on the per-request path.
    """
    row = dict(vars(record))
    row["ttft"] = record.ttft
    row["itl"] = record.itl
    row["e2e"] = record.e2e
    row["prefill_throughput"] = record.prefill_throughput
    row["decode_throughput"] = record.decode_throughput
    return row


def rotated_requests(number: int) -> str:
    """The name of the `number`th continuation of `requests.jsonl` (`requests.1.jsonl`, …)."""
    return f"requests.{number}.jsonl"


def request_files(root: Path) -> list[Path]:
    """`requests.jsonl` then its continuations `requests.1.jsonl`, `requests.2.jsonl`, …: the
    order the benchmark wrote them, which is the order the requests finished."""
    found = []
    for entry in root.iterdir():
        match = _REQUEST_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1) or 0), entry))
    return [entry for _, entry in sorted(found)]


class RunFiles:
    """Owns the files of one run folder; refuses a folder that already holds a run."""

    def __init__(
        self,
        path: Path,
        max_records: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_records is not None and max_records < 1:
            raise RunFilesError(f"--max-records must be at least 1, got {max_records}")
        self.path = Path(path)
        self.max_records = max_records
        self.records_written = 0
        self.request_files: list[Path] = []
        self._clock = clock
        self._flushed_at = clock()
        self._lines_in_file = 0
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._requests = self._create(REQUESTS)
        except OSError as exc:
            raise RunFilesError(_describe(self.path, exc)) from None
        try:
            self._intervals = self._create(INTERVALS)
        except OSError as exc:
            self._requests.close()
            raise RunFilesError(_describe(self.path, exc)) from None
        self._closed = False

    def write_config(self, config: dict[str, Any], secret: str | None = None) -> None:
        text = orjson.dumps(config, option=_PRETTY, default=str).decode()
        self._replace(CONFIG, scrub(text, secret).encode())

    def append_request(self, record: RequestRecord) -> None:
        try:
            if self.max_records is not None and self._lines_in_file >= self.max_records:
                self._rotate()
            self._requests.write(orjson.dumps(request_row(record), option=_LINE))
            self._lines_in_file += 1
            self.records_written += 1
            if self._clock() - self._flushed_at >= FLUSH_SECONDS:
                self.flush()
        except OSError as exc:
            raise RunFilesError(_describe(self.path, exc)) from None

    def append_interval(self, snap: IntervalSnapshot) -> None:
        try:
            self._intervals.write(orjson.dumps(snap, option=_LINE))
        except OSError as exc:
            raise RunFilesError(_describe(self.path, exc)) from None
        self.flush()

    def write_summary(self, summary: RunSummary) -> None:
        """Written even when flushing the appends fails (disk full): it is small, and whole."""
        try:
            self.flush()
        finally:
            self._replace(SUMMARY, orjson.dumps(summary, option=_PRETTY))

    def flush(self) -> None:
        if self._closed:
            return
        try:
            self._requests.flush()
            self._intervals.flush()
        except OSError as exc:
            raise RunFilesError(_describe(self.path, exc)) from None
        self._flushed_at = self._clock()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._requests.close()
        self._intervals.close()

    def __enter__(self) -> RunFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self, name: str) -> BinaryIO:
        """Exclusive create: appending to a previous run's files would silently mix two runs."""
        path = self.path / name
        handle = open(path, "xb", buffering=_BUFFER_BYTES)  # noqa: SIM115 (closed in close())
        if name.startswith("requests"):
            self.request_files.append(path)
        return handle

    def _rotate(self) -> None:
        self._requests.close()
        self._requests = self._create(rotated_requests(len(self.request_files)))
        self._lines_in_file = 0

    def _replace(self, name: str, data: bytes) -> None:
        """Temp file, fsync, rename over `name`: readers see the old or the new file, whole."""
        target = self.path / name
        temporary = self.path / f".{name}.tmp"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise RunFilesError(_describe(self.path, exc)) from None


def _describe(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileExistsError):
        name = Path(exc.filename).name
        return f"{path} already holds a run ({name}); choose another --output-dir"
    return f"cannot write run files in {path}: {exc.strerror or exc}"
