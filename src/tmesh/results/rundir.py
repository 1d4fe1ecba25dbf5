"""The files of a run: what the report commands read, written so no stop path loses a run.

Layout of a run folder:
- `config.json`: the run's configuration (the caller passes it with the key already masked).
- `requests.jsonl`: one JSON object per finished request: the `RequestRecord` fields plus the
  derived `ttft`, `itl`, `e2e`, `prefill_throughput`, `decode_throughput`. With `max_records` N,
  the first N lines go to `requests.jsonl`, the next N to `requests.1.jsonl`, then
  `requests.2.jsonl`, ... so reading them in that order gives the requests in finishing order.
- `requests.part<P>.jsonl` (and `requests.part<P>.1.jsonl`, …): the requests of part P of a run
  spread over processes or machines (`--workers`, `--ray`), each in its own finishing order; such
  a run leaves `requests.jsonl` empty. Parts left on their nodes (`--no-gather`) are listed, with
  their paths, in `summary.json`'s `parts`.
- `intervals.jsonl`: one `IntervalSnapshot` per line.
- `summary.json`: the `RunSummary`, replaced atomically so it is always complete, valid JSON.

Appends are buffered, and pushed to the OS at least every `FLUSH_SECONDS` and at every interval,
so a `kill -9` loses at most the last second or so of requests, and a truncated last line at worst.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from tmesh.results.decode import build_record
from tmesh.results.records import IntervalSnapshot, RequestRecord, RunSummary
from tmesh.text import scrub

CONFIG = "config.json"
SUMMARY = "summary.json"
INTERVALS = "intervals.jsonl"
REQUESTS = "requests.jsonl"
_REQUEST_FILE = re.compile(r"^requests(?:\.part(\d+))?(?:\.(\d+))?\.jsonl$")
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


def rotated_requests(number: int, part: int | None = None) -> str:
    """The name of the `number`th file of the requests of `part` (None: of the run itself):
    `requests.jsonl`, `requests.1.jsonl`, …, or `requests.part3.jsonl`, `requests.part3.1.jsonl`."""
    stem = "requests" if part is None else f"requests.part{part}"
    return f"{stem}.jsonl" if number == 0 else f"{stem}.{number}.jsonl"


def request_files(root: Path) -> list[Path]:
    """The request files of a run folder: `requests.jsonl` and its continuations, then each
    part's, in the order they were written (see `request_streams`)."""
    return [path for stream in request_streams(root) for path in stream]


def request_streams(root: Path) -> list[list[Path]]:
    """The request files of a run folder by writer: the run's own, then each part's, each list
    in the order its writer filled it, which is the order its requests finished."""
    found: dict[int, list[tuple[int, Path]]] = {}
    for entry in root.iterdir():
        match = _REQUEST_FILE.match(entry.name)
        if match:
            writer = -1 if match.group(1) is None else int(match.group(1))
            found.setdefault(writer, []).append((int(match.group(2) or 0), entry))
    return [[path for _, path in sorted(found[writer])] for writer in sorted(found)]


def finished_at(record: RequestRecord) -> float:
    return record.t_end if record.t_end is not None else record.t0


def finishing_order(streams: list[Iterator[RequestRecord]]) -> Iterator[RequestRecord]:
    """The records of several writers (the run, each part of a spread run), each stream already
    in the order its requests finished, merged in the order they all finished."""
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=finished_at)


def read_requests(paths: list[Path]) -> Iterator[RequestRecord]:
    """The requests of one writer's files, in order; a damaged line (a run killed mid-write) is
    skipped."""
    for path in paths:
        with path.open("rb") as handle:
            for line in handle:
                with contextlib.suppress(ValueError):
                    yield build_record(RequestRecord, orjson.loads(line))


class RequestLog:
    """The request files of one writer (a run, or one part of it): buffered appends pushed to
    the OS at least every `FLUSH_SECONDS`, a new file every `max_records` lines. Raises OSError;
    `RunFiles` words it."""

    def __init__(
        self,
        folder: Path,
        part: int | None = None,
        max_records: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        self.part = part
        self.max_records = max_records
        self.records_written = 0
        self.files: list[Path] = []
        self._clock = clock
        self._flushed_at = clock()
        self._lines_in_file = 0
        self._handle = self._create()

    def append(self, record: RequestRecord) -> None:
        if self.max_records is not None and self._lines_in_file >= self.max_records:
            self._handle.close()
            self._handle = self._create()
            self._lines_in_file = 0
        self._handle.write(orjson.dumps(request_row(record), option=_LINE))
        self._lines_in_file += 1
        self.records_written += 1
        if self._clock() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._handle.flush()
        self._flushed_at = self._clock()

    def close(self) -> None:
        self._handle.close()

    def _create(self) -> BinaryIO:
        """Exclusive create: appending to a previous run's files would silently mix two runs."""
        path = self.folder / rotated_requests(len(self.files), self.part)
        handle = open(path, "xb", buffering=_BUFFER_BYTES)  # noqa: SIM115 (closed in close())
        self.files.append(path)
        return handle


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
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._requests = RequestLog(self.path, None, max_records, clock)
        except OSError as exc:
            raise RunFilesError(_describe(self.path, exc)) from None
        try:
            self._intervals = open(  # noqa: SIM115 (closed in close())
                self.path / INTERVALS, "xb", buffering=_BUFFER_BYTES
            )
        except OSError as exc:
            self._requests.close()
            raise RunFilesError(_describe(self.path, exc)) from None
        self._closed = False

    @property
    def request_files(self) -> list[Path]:
        return self._requests.files

    @property
    def records_written(self) -> int:
        return self._requests.records_written

    def write_config(self, config: dict[str, Any], secret: str | None = None) -> None:
        text = orjson.dumps(config, option=_PRETTY, default=str).decode()
        self._replace(CONFIG, scrub(text, secret).encode())

    def append_request(self, record: RequestRecord) -> None:
        try:
            self._requests.append(record)
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
