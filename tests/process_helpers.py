"""Waiting for processes to end, without sleeps: on each one's pidfd."""

from __future__ import annotations

import os
import select


def still_running(pids: list[int], timeout: float) -> list[int]:
    """Wait on each process's pidfd (readable once it exits); return those still running."""
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], timeout)[0]:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive
