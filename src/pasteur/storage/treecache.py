"""Trees by id, parsed and raw, bounded: shared by the writer, the journal
thread (which checks new ids in them) and the pack writer."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import pygit2

from .objects import Entries, parse_tree

# What an entry costs beyond its bytes (measured with tracemalloc: a bytes
# object's head, the OrderedDict's node and slot; a parsed entry's two bytes
# objects and its dict slot).
RAW_OVERHEAD = 160
ENTRY_OVERHEAD = 120
TREE_OVERHEAD = 400


def entries_cost(entries: Entries) -> int:
    """The bytes a parsed tree holds, about (``ENTRY_OVERHEAD`` per entry)."""
    return TREE_OVERHEAD + sum(len(k) + len(v) + ENTRY_OVERHEAD for k, v in entries.items())


class TreeCache:
    """Parsed entries of recently used trees, by id (ids name content, so an
    entry never goes stale), least recently used first out. Bounded in bytes
    (``max_bytes`` parsed, ``max_raw`` raw, overheads counted): the root and
    the 62 middle trees stay (parsed, ~0.8 MB); the leaves, raw, ~32 bytes a
    paste (~37 MB at a million pastes), come and go past the budget. A tree
    replaced by a commit is dropped at once (``drop``): only the served
    tree's are worth keeping, so old versions never push live ones out.
    Shared by the writer and the journal thread (which checks new ids
    against it): a lock guards it. The server and the committer process each
    have one.

    It also spares libgit2's lookups, which grow with the number of packs: an
    object not in its cache is searched pack after pack (measured: creates
    ~15% slower after 10 s at full load, with ~150 packs waiting for a
    repack)."""

    def __init__(self, max_bytes: int = 2 << 20, max_raw: int = 8 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0  # bytes of the parsed entries, overheads counted
        self.items: OrderedDict[bytes, Entries] = OrderedDict()
        self._costs: dict[bytes, int] = {}
        self._lock = threading.Lock()
        # Below the parsed entries, the trees' raw content, so a miss above
        # costs a parse, not a search through the packs and an inflate; id
        # checks read it directly.
        self.max_raw = max_raw
        self.raw_size = 0
        self.raws: OrderedDict[bytes, bytes] = OrderedDict()
        # Raw leaves known to be fixed-stride records of files named with this
        # many characters (built by _edit_leaf_raw): not checked again.
        self.strides: dict[bytes, int] = {}

    @property
    def bytes_held(self) -> int:
        """What the cache holds, parsed and raw, overheads counted."""
        return self.size + self.raw_size

    def raw(self, oid: bytes, odb: pygit2.Odb) -> bytes:
        """A tree's raw content (empty if ``oid`` is not a tree)."""
        with self._lock:
            data = self.raws.get(oid)
            if data is not None:
                self.raws.move_to_end(oid)
                return data
        kind, data = odb.read(pygit2.Oid(raw=oid))
        if kind != pygit2.enums.ObjectType.TREE:
            data = b""
        self.put_raw(oid, data)
        return data

    def put_raw(self, oid: bytes, data: bytes, stride: int = 0) -> None:
        cost = len(data) + RAW_OVERHEAD
        with self._lock:
            if oid in self.raws:
                if stride:
                    self.strides[oid] = stride
                return
            if stride:
                self.strides[oid] = stride
            self.raws[oid] = data
            self.raw_size += cost
            while self.raw_size > self.max_raw and len(self.raws) > 1:
                gone, old = self.raws.popitem(last=False)
                self.raw_size -= len(old) + RAW_OVERHEAD
                self.strides.pop(gone, None)

    def drop(self, oids: Iterable[bytes]) -> None:
        """Forget trees (replaced by a commit: no lookup will start from them)."""
        with self._lock:
            for oid in oids:
                data = self.raws.pop(oid, None)
                if data is not None:
                    self.raw_size -= len(data) + RAW_OVERHEAD
                self.strides.pop(oid, None)
                if self.items.pop(oid, None) is not None:
                    self.size -= self._costs.pop(oid)

    def has_paste(self, root: bytes | None, name: bytes, odb: pygit2.Odb) -> bool:
        """Whether the id ``name`` is taken in the tree ``root``, in either
        layout: ``a/b/<name>`` or the original Pasteur's root-level ``<name>``."""
        return (self.paste_oid(root, name, odb) is not None
                or self.legacy_oid(root, name, odb) is not None)

    def legacy_oid(
        self, root: bytes | None, name: bytes, odb: pygit2.Odb,
        built: dict[bytes, Entries] | None = None,
    ) -> bytes | None:
        """The raw id of the blob ``<name>`` at the root of the tree ``root``
        (where the original OCaml Pasteur left its pastes), if any."""
        if root is None:
            return None
        entries = (built or {}).get(root)
        entry = (entries if entries is not None else self.entries(root, odb)).get(name)
        if entry is None or not entry.startswith((b"100644 ", b"100755 ")):
            return None
        return entry[-20:]

    def paste_oid(
        self, root: bytes | None, name: bytes, odb: pygit2.Odb,
        built: dict[bytes, Entries] | None = None, built_raw: dict[bytes, bytes] | None = None,
    ) -> bytes | None:
        """The raw id of the blob at ``a/b/<name>`` in the tree ``root``, if any
        (``built``, ``built_raw``: trees of a batch not written yet).

        A leaf is searched in its raw bytes for "100644 <name>\\0" (12 bytes or
        more: found inside the object ids around it by chance with odds below
        1e-28), not parsed: at a million pastes a leaf holds ~260 entries."""
        built, built_raw = built or {}, built_raw or {}
        tree = root
        for part in (name[:1], name[1:2]):
            if tree is None:
                return None
            entries = built.get(tree)
            entry = (entries if entries is not None else self.entries(tree, odb)).get(
                part + b"/")
            tree = None if entry is None else entry[-20:]
        if tree is None:
            return None
        entries = built.get(tree)
        if entries is not None:
            found = entries.get(name)
            return None if found is None else found[-20:]
        raw = built_raw.get(tree)
        if raw is None:
            raw = self.raw(tree, odb)
        key = b"100644 " + name + b"\0"
        i = raw.find(key)
        return None if i < 0 else raw[i + len(key):i + len(key) + 20]

    def get(self, oid: bytes) -> Entries | None:
        with self._lock:
            entries = self.items.get(oid)
            if entries is not None:
                self.items.move_to_end(oid)
            return entries

    def put(self, oid: bytes, entries: Entries) -> None:
        cost = entries_cost(entries)
        with self._lock:
            if oid in self.items:
                self.items.move_to_end(oid)
                return
            self.items[oid] = entries
            self._costs[oid] = cost
            self.size += cost
            while self.size > self.max_bytes and len(self.items) > 1:
                gone, _ = self.items.popitem(last=False)
                self.size -= self._costs.pop(gone)

    def entries(self, oid: bytes, odb: pygit2.Odb) -> Entries:
        """A tree's entries (not to be modified), parsed from ``odb`` on a miss."""
        mem = self.get(oid)
        if mem is None:
            mem = parse_tree(self.raw(oid, odb))
            self.put(oid, mem)
        return mem
