"""The optional CPU KV tier and its PCIe links, as vLLM's native CPU offloading behaves.

Inclusive write-through: every prompt block computed on the GPU is queued for a store on the
device-to-host link and becomes CPU-resident when that transfer completes; GPU eviction does not
touch the CPU copy. Lookups and stores refresh an LRU keyed by block hash; inserting into a full
tier evicts its least recently used block. Each direction is one FIFO link, so concurrent loads
queue behind each other and heavy CPU-hit traffic saturates the link as on real hardware.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass
class Link:
    """A FIFO transfer server: one op at a time, per_op latency plus bytes / bandwidth."""

    bytes_per_s: float
    per_op_s: float
    busy_until: float = 0.0

    def schedule(self, now: float, num_bytes: int) -> tuple[float, float]:
        """Queue a transfer; returns (start, done) in model time."""
        start = max(now, self.busy_until)
        self.busy_until = start + self.per_op_s + num_bytes / self.bytes_per_s
        return start, self.busy_until


class CpuTier:
    """CPU-resident block hashes (LRU), filled by the store link and read by the load link."""

    def __init__(
        self,
        capacity_blocks: int,
        block_bytes: int,
        load_gbps: float,
        store_gbps: float,
        per_op_latency_s: float,
    ) -> None:
        self.capacity_blocks = capacity_blocks
        self.block_bytes = block_bytes
        self.load_link = Link(load_gbps * 1e9, per_op_latency_s)
        self.store_link = Link(store_gbps * 1e9, per_op_latency_s)
        self._resident: OrderedDict[int, None] = OrderedDict()
        self._in_flight: set[int] = set()
        self._stores: deque[tuple[float, list[int]]] = deque()
        self.evictions = 0

    @property
    def num_resident(self) -> int:
        return len(self._resident)

    def usage(self) -> float:
        return len(self._resident) / self.capacity_blocks

    def lookup(self, block_hashes: Sequence[int], start: int, max_blocks: int) -> int:
        """Number of consecutive resident blocks from index `start` (at most up to max_blocks)."""
        resident = self._resident
        n = 0
        for h in block_hashes[start:max_blocks]:
            if h not in resident:
                break
            n += 1
        return n

    def touch(self, block_hashes: Iterable[int]) -> None:
        """Mark blocks as just used (a hit on the GPU or CPU), keeping the working set resident."""
        resident = self._resident
        for h in block_hashes:
            if h in resident:
                resident.move_to_end(h)

    def load(self, now: float, num_blocks: int) -> tuple[int, float, float]:
        """Schedule a CPU-to-GPU load; returns (bytes, seconds on the link, completion time)."""
        num_bytes = num_blocks * self.block_bytes
        start, done = self.load_link.schedule(now, num_bytes)
        return num_bytes, done - start, done

    def store(self, now: float, block_hashes: Iterable[int]) -> tuple[int, float]:
        """Write-through newly computed blocks; returns (bytes, link seconds), (0, 0) if none new.

        Blocks already resident are refreshed instead of copied again.
        """
        resident = self._resident
        new = []
        for h in block_hashes:
            if h in resident:
                resident.move_to_end(h)
            elif h not in self._in_flight:
                new.append(h)
        if not new:
            return 0, 0.0
        self._in_flight.update(new)
        num_bytes = len(new) * self.block_bytes
        start, done = self.store_link.schedule(now, num_bytes)
        self._stores.append((done, new))
        return num_bytes, done - start

    def complete_stores(self, now: float) -> None:
        """Make blocks whose store finished by `now` resident (FIFO link: done times ascend)."""
        stores = self._stores
        resident = self._resident
        while stores and stores[0][0] <= now:
            _, hashes = stores.popleft()
            self._in_flight.difference_update(hashes)
            for h in hashes:
                resident[h] = None
            overflow = len(resident) - self.capacity_blocks
            for _ in range(max(0, overflow)):
                resident.popitem(last=False)
                self.evictions += 1

    def reset(self) -> None:
        """Drop everything resident or on its way (vLLM's reset_prefix_cache, reset_external)."""
        self._resident.clear()
        self._in_flight.clear()
        self._stores.clear()
