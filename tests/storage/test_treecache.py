"""The tree cache (treecache.py): bounded in bytes, replaced trees dropped."""

from __future__ import annotations

from pasteur.storage.objects import object_id, parse_tree, tree_bytes
from pasteur.storage.treecache import RAW_OVERHEAD, TreeCache, entries_cost


def _leaf(n: int, width: int = 40) -> tuple[bytes, bytes]:
    """A distinct raw leaf of ``width`` entries, and its id."""
    entries = {}
    for k in range(width):
        name = b"%07d" % (n * width + k)
        entries[name] = b"100644 " + name + b"\0" + object_id(b"blob", name)
    raw = tree_bytes(entries)
    return object_id(b"tree", raw), raw


def test_raw_trees_stay_within_their_byte_budget():
    cache = TreeCache(max_bytes=1 << 20, max_raw=256 << 10)
    leaves = [_leaf(n) for n in range(2000)]  # ~2.3 MB of distinct trees
    for oid, raw in leaves:
        cache.put_raw(oid, raw)
        assert cache.raw_size <= cache.max_raw
    assert cache.raw_size == sum(len(r) + RAW_OVERHEAD for r in cache.raws.values())
    assert len(cache.raws) < 300
    # least recently used out: the newest stay
    assert leaves[-1][0] in cache.raws and leaves[0][0] not in cache.raws


def test_parsed_trees_stay_within_their_byte_budget():
    cache = TreeCache(max_bytes=200 << 10, max_raw=1 << 20)
    for n in range(500):
        oid, raw = _leaf(n)
        cache.put(oid, parse_tree(raw))
        assert cache.size <= cache.max_bytes
    assert cache.size == sum(entries_cost(e) for e in cache.items.values())
    assert 0 < len(cache.items) < 100


def test_one_tree_larger_than_the_budget_is_still_kept():
    """A huge tree (an old repository's root) is parsed once, not on every lookup."""
    cache = TreeCache(max_bytes=1 << 10, max_raw=1 << 10)
    oid, raw = _leaf(1, width=200)
    cache.put(oid, parse_tree(raw))
    cache.put_raw(oid, raw)
    assert cache.get(oid) is not None and oid in cache.raws


def test_dropped_trees_leave_with_their_bytes():
    cache = TreeCache()
    trees = [_leaf(n) for n in range(10)]
    for oid, raw in trees:
        cache.put_raw(oid, raw, stride=35)
        cache.put(oid, parse_tree(raw))
    cache.drop([oid for oid, _ in trees[:7]] + [b"\0" * 20])  # an unknown id is ignored
    assert set(cache.raws) == set(cache.items) == {oid for oid, _ in trees[7:]}
    assert set(cache.strides) == set(cache.raws)
    assert cache.raw_size == sum(len(r) + RAW_OVERHEAD for _, r in trees[7:])
    assert cache.size == sum(entries_cost(parse_tree(r)) for _, r in trees[7:])
    assert cache.bytes_held == cache.size + cache.raw_size
