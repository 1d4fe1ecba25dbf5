"""GPU block pool (vLLM semantics) and chained block hashing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tmesh.sim.blocks import BlockHasher, BlockPool


def _check_invariants(pool: BlockPool) -> None:
    pinned = sum(1 for b in pool._blocks if b.ref_cnt > 0)
    assert pinned + pool.num_free == pool.num_blocks
    assert all(b.ref_cnt >= 0 for b in pool._blocks)
    for h, block in pool._index.items():
        assert block.block_hash == h


def test_free_in_reverse_order_evicts_suffix_first() -> None:
    pool = BlockPool(6)
    blocks = pool.allocate(4)
    pool.cache(blocks, [100, 101, 102, 103])
    pool.free(blocks)
    assert [b.block_id for b in pool.lookup([100, 101, 102, 103], 4)] == [0, 1, 2, 3]
    pool.allocate(2)  # the two never-used blocks go first
    assert pool.evictions == 0
    pool.allocate(1)  # then the request's last block, freed first
    assert len(pool.lookup([100, 101, 102, 103], 4)) == 3
    pool.allocate(2)
    assert pool.evictions == 3
    assert len(pool.lookup([100, 101, 102, 103], 4)) == 1
    _check_invariants(pool)


def test_hit_on_idle_block_takes_it_off_the_free_queue() -> None:
    pool = BlockPool(2)
    [b] = pool.allocate(1)
    pool.cache([b], [7])
    pool.free([b])
    assert pool.num_free == 2 and pool.usage() == 0.0
    hits = pool.lookup([7], 1)
    assert pool.num_idle(hits) == 1
    pool.touch(hits)
    assert pool.num_free == 1 and pool.usage() == 0.5
    pool.allocate(1)
    assert pool.contains(7) and pool.evictions == 0


def test_duplicate_hash_stays_private_and_lookup_stops_at_first_miss() -> None:
    pool = BlockPool(4)
    a, b, c = pool.allocate(3)
    pool.cache([a, b, c], [1, 1, 3])
    assert b.block_hash is None
    assert [x.block_id for x in pool.lookup([1, 2, 3], 3)] == [a.block_id]


def test_reset_refused_while_blocks_in_use() -> None:
    pool = BlockPool(2)
    [b] = pool.allocate(1)
    pool.cache([b], [5])
    assert not pool.reset()
    pool.free([b])
    assert pool.reset()
    assert pool.num_cached == 0 and not pool.contains(5)


_OPS = st.lists(
    st.tuples(st.sampled_from(["alloc", "free", "hit"]), st.integers(0, 9)), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_pool_invariants_hold_under_any_operation_sequence(ops: list[tuple[str, int]]) -> None:
    pool = BlockPool(16)
    held: list[list] = []
    next_hash = 0
    for op, arg in ops:
        if op == "alloc" and arg <= pool.num_free:
            blocks = pool.allocate(arg)
            pool.cache(blocks, [(next_hash + i) % 12 for i in range(arg)])
            next_hash += arg
            held.append(blocks)
        elif op == "free" and held:
            pool.free(held.pop(arg % len(held)))
        elif op == "hit":
            hits = pool.lookup(list(range(arg)), arg)
            assert len(hits) <= arg
            pool.touch(hits)
            held.append(hits)
        _check_invariants(pool)
    for blocks in held:
        pool.free(blocks)
    assert pool.num_free == pool.num_blocks


def test_block_hashes_are_chained_and_cover_full_blocks_only() -> None:
    hasher = BlockHasher(4)
    a = hasher.hashes(list(range(10)))
    assert len(a) == 2
    b = hasher.hashes([*range(8), 99, 98, 97, 96, 95])
    assert b[:2] == a and len(b) == 3
    changed_first = hasher.hashes([42, *range(1, 10)])
    assert all(x != y for x, y in zip(changed_first, a, strict=True))


def test_memoised_segments_give_the_same_hashes() -> None:
    prompt = list(range(5000))
    fresh = BlockHasher(16).hashes(prompt)
    warm = BlockHasher(16)
    warm.hashes(prompt[:3000] + [7] * 2000)
    assert warm.hashes(prompt) == fresh
    assert BlockHasher(16, memo_segments=1).hashes(prompt) == fresh
