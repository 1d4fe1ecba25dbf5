"""vLLM's GPU KV block pool and prefix-cache block hashing.

Semantics copied from `vllm/v1/core/block_pool.py`: blocks carry a reference count and an
optional hash; an index maps hash -> block; blocks with no reference sit in an LRU free queue and
can still be hit until they are reallocated (evicted). A request frees its blocks in reverse
order, so its suffix is evicted before its prefix, which is what keeps shared prefixes alive.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

_SEGMENT_BLOCKS = 64
_ROOT_HASH = 0x5EED_B10C_CAFE_F00D


class Block:
    """One KV block of `block_size` token slots."""

    __slots__ = ("block_hash", "block_id", "ref_cnt")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_cnt = 0
        self.block_hash: int | None = None


class BlockPool:
    """Fixed set of GPU blocks; O(1) per block for hit, allocate, cache and free."""

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self._blocks = [Block(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, Block] = OrderedDict((b.block_id, b) for b in self._blocks)
        self._index: dict[int, Block] = {}
        self.evictions = 0

    @property
    def num_free(self) -> int:
        """Blocks nobody references, cached or not (vLLM counts cached-but-idle blocks as free)."""
        return len(self._free)

    @property
    def num_cached(self) -> int:
        return len(self._index)

    def usage(self) -> float:
        """vllm:kv_cache_usage_perc: fraction of blocks pinned by live requests."""
        return 1.0 - self.num_free / self.num_blocks

    def lookup(self, block_hashes: Sequence[int], max_blocks: int) -> list[Block]:
        """The cached blocks of the longest prefix of `block_hashes` (at most max_blocks)."""
        hits = []
        index = self._index
        for h in block_hashes[:max_blocks]:
            block = index.get(h)
            if block is None:
                break
            hits.append(block)
        return hits

    def contains(self, block_hash: int) -> bool:
        return block_hash in self._index

    @staticmethod
    def num_idle(blocks: Sequence[Block]) -> int:
        """How many of these (hit) blocks would leave the free queue when touched."""
        return sum(1 for b in blocks if b.ref_cnt == 0)

    def touch(self, blocks: Sequence[Block]) -> None:
        """Take a reference on hit blocks, removing idle ones from the free queue."""
        free = self._free
        for b in blocks:
            if b.ref_cnt == 0:
                del free[b.block_id]
            b.ref_cnt += 1

    def allocate(self, n: int) -> list[Block]:
        """Pop n blocks from the LRU head, evicting any cached content they still hold."""
        if n > len(self._free):
            raise RuntimeError(f"cannot allocate {n} blocks, {len(self._free)} free")
        popitem = self._free.popitem
        out = [popitem(False)[1] for _ in range(n)]
        index = self._index
        evicted = 0
        for block in out:
            if block.block_hash is not None:
                del index[block.block_hash]
                block.block_hash = None
                evicted += 1
            block.ref_cnt = 1
        self.evictions += evicted
        return out

    def cache(self, blocks: Sequence[Block], block_hashes: Sequence[int]) -> None:
        """Register newly full blocks; a concurrent duplicate of an indexed hash stays private."""
        index = self._index
        for block, h in zip(blocks, block_hashes, strict=True):
            if block.block_hash is None and h not in index:
                block.block_hash = h
                index[h] = block

    def free(self, blocks: Sequence[Block]) -> None:
        """Drop one reference per block, last block first, so prefixes are evicted last."""
        free = self._free
        for b in reversed(blocks):
            b.ref_cnt -= 1
            if b.ref_cnt == 0:
                free[b.block_id] = b

    def reset(self) -> bool:
        """Forget every cached hash; refused (False) while any block is in use, as in vLLM."""
        if len(self._free) != self.num_blocks:
            return False
        for block in self._index.values():
            block.block_hash = None
        self._index.clear()
        return True


class BlockHasher:
    """Chained hashes of full blocks: h_i = hash((h_{i-1}, tokens of block i)).

    Python's hash of a tuple of ints is a deterministic 64-bit value (no per-process salt), fast
    in C, and collision-free enough for a simulator. Hashes are memoised per 64-block segment
    keyed by (parent hash, segment tokens), so a 32k prompt that shares its context with an earlier
    one costs one tuple comparison per 1024 tokens instead of 2000 block hashes.
    """

    def __init__(self, block_size: int, memo_segments: int = 4096) -> None:
        self.block_size = block_size
        self._memo_segments = memo_segments
        self._memo: OrderedDict[tuple[int, tuple[int, ...]], list[int]] = OrderedDict()

    def hashes(self, token_ids: Sequence[int]) -> list[int]:
        bs = self.block_size
        full = len(token_ids) // bs * bs
        span = _SEGMENT_BLOCKS * bs
        out: list[int] = []
        parent = _ROOT_HASH
        for start in range(0, full, span):
            segment = tuple(token_ids[start : min(start + span, full)])
            seg_hashes = self._segment(parent, segment)
            out.extend(seg_hashes)
            parent = seg_hashes[-1]
        return out

    def _segment(self, parent: int, segment: tuple[int, ...]) -> list[int]:
        key = (parent, segment)
        memo = self._memo
        found = memo.get(key)
        if found is not None:
            memo.move_to_end(key)
            return found
        bs = self.block_size
        out = []
        for i in range(0, len(segment), bs):
            parent = hash((parent, *segment[i : i + bs]))
            out.append(parent)
        memo[key] = out
        if len(memo) > self._memo_segments:
            memo.popitem(last=False)
        return out
