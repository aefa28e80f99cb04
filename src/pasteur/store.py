"""Pastes in a bare Git repository, one blob per paste in a sharded tree.

Layout: ``<a>/<b>/<id>`` where ``a`` and ``b`` are the first two characters of
the id (measured: ~3 ms per commit at 100k pastes, against ~450 ms for a flat
tree). History is linear on ``refs/heads/main``.

A new paste is acknowledged once its record is in the write-ahead journal
(``journal.py``), fdatasync'ed with the others that arrived with it; it is
served from memory until committed. Commits go through one writer thread
(group commit): the journaled pastes (and the large ones, which skip the
journal and wait for their commit) form batches. Anonymous pastes of a batch
share one commit; a paste with a user or a comment gets its own commit
(author and message). A batch's objects (blobs, trees, commits) are computed
in memory and written as one pack and its index (v2); a large paste, given as
a file, stays a loose object written by libgit2 in a stream. The pack, index,
pack directory (and any loose object) and the branch ref are fsynced, then
the journal's checkpoint moves past the batch.

One pack per batch would slow lookups down after thousands of batches: when
there are more than ``PACK_LIMIT`` packs, ``git repack -d --geometric=2``
rolls the small ones up (``Store.maintain``, a process beside the writer).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import string
import struct
import subprocess
import threading
import time
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pygit2
from pygit2.enums import FileMode

from . import entropy, record
from .committer import Committer, CommitterError
from .journal import Journal, JournalError, JournalFull
from .procs import child_env

log = logging.getLogger("pasteur.store")
T = TypeVar("T")  # what a function run in the writer thread returns

BRANCH = "refs/heads/main"
ALPHABET = string.ascii_letters + string.digits
ID_RE = re.compile(r"[A-Za-z0-9]{2,64}")
DEFAULT_NAME = "Pasteur"
DEFAULT_EMAIL = "pasteur@localhost"
MAX_BATCH = 512
MAX_BATCH_BYTES = 16 << 20
JOURNAL_FILE = "pasteur-journal"
QUARANTINE_FILE = "quarantine.jsonl"  # in the data directory
PID_FILE = "pasteur.pid"
# After a commit of fewer than LINGER_BATCH journaled pastes, the next one
# waits up to LINGER seconds for more (they are acknowledged already).
LINGER = 0.05
LINGER_BATCH = 512
RETRY_DELAY = 1.0  # seconds between attempts while commits fail
# /healthz fails when an acknowledged paste has waited longer than this for
# its commit (stalled or falling behind; a batch takes milliseconds).
BACKLOG_STALL = 5.0
RETRY_AFTER_FULL = 2  # seconds, told to a create refused because the journal is full
HEALTH_PROBE_TIMEOUT = 2.0  # seconds a /healthz probe of a failed journal may take
# Below this many files to sync, fsync each one in parallel (ext4 merges
# concurrent fsyncs into few journal commits); above, one syncfs is cheaper.
FSYNC_FILES_LIMIT = 96
# More packs than this and the writer rolls them up (git repack --geometric=2).
PACK_LIMIT = 50
TMP_PACK_PREFIX = "tmp_pasteur-"

_libc = ctypes.CDLL(None, use_errno=True)


class StoreError(Exception):
    """The repository cannot be written (disk full, read-only, corrupt)."""


class StoreBusy(StoreError):
    """Nothing was stored, try again later (the journal is full)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def random_id(length: int) -> str:
    """``length`` characters from [A-Za-z0-9], uniformly, from one read of the CSPRNG."""
    out: list[str] = []
    while len(out) < length:
        # 248 = 4 × 62: rejecting larger bytes keeps every character equally likely
        out += [ALPHABET[b % 62] for b in entropy.token_bytes(length + 4) if b < 248]
    return "".join(out[:length])


def shard_path(paste_id: str) -> str:
    return f"{paste_id[0]}/{paste_id[1]}/{paste_id}"


def _tree_has(tree: pygit2.Tree, paste_id: str) -> bool:
    try:
        tree[shard_path(paste_id)]
    except KeyError:
        return False
    return True


def valid_id(paste_id: str) -> bool:
    return ID_RE.fullmatch(paste_id) is not None


@dataclass
class Pending:
    paste_id: str | None  # None: the writer picks a free one
    data: bytes | Path  # the document, or a file holding it (large pastes)
    author: str | None
    message: str | None
    future: asyncio.Future[str] | None = field(repr=False)
    seq: int | None = None  # its journal record: acknowledged already
    # Store.changes when its id was reserved: if the tree changed since other
    # than by journaled batches (a sync may have brought the id), or if it
    # was replayed (-1: committed before a crash?), the commit checks for it.
    changes: int = -1
    # Set aside (the reason): never committed, never served; its journal
    # record is passed by the checkpoint like a committed one.
    quarantine: str | None = None
    since: float = field(default_factory=time.monotonic, repr=False)  # accepted (monotonic)


@dataclass
class Change:
    """A group of tree edits committed together: additions and removals."""

    add: list[tuple[str, pygit2.Oid]]
    remove: list[str]
    author: str | None
    message: str


LOCK_WAIT = 2.0  # seconds


def lock_repository(path: Path) -> int:
    """Take the repository for this process (one server per repository: two
    would write over each other's journal and branch). An flock on
    ``pasteur.pid``, released by the kernel when the process ends, even by
    kill -9; the file holds the pid. Returns the descriptor, kept open."""
    path.mkdir(parents=True, exist_ok=True)
    # Held open read-only (an flock needs no more): a file open for writing
    # would keep the file system from being remounted read-only.
    try:
        fd = os.open(path / PID_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:  # a read-only data directory: no server can write it anyway
        log.warning("cannot take %s: not locked against a second server", path / PID_FILE)
        return -1
    # A server that just ended may hold it a moment longer, through its
    # committer process (killed with it, see committer.py): wait a little.
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"another pasteur (pid {other}) is serving {path}: one server per "
                         f"repository (instances share pastes through a remote)") from None
    with contextlib.suppress(OSError):  # the pid is for the message above only
        (path / PID_FILE).write_text(f"{os.getpid()}\n")
    return fd


def tune_malloc() -> None:
    """Keep freed memory at the top of the heap (up to 16 MiB) instead of
    giving it back to the kernel at once (glibc does above 128 KiB).

    zlib takes ~256 KiB of state for each stream it compresses: returned and
    mapped again each time, it cost a page fault per 4 KiB (measured: 60 us
    to store 1 KiB with zlib instead of 3 us). Blocks over 4 MiB are still
    mapped and unmapped on their own."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 16 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def idle_priority() -> list[str]:
    """A command prefix that runs a background job only when the CPU is idle."""
    if shutil.which("chrt"):
        return ["chrt", "--idle", "0"]
    if shutil.which("nice"):
        return ["nice", "-n", "19"]
    return []


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


_OBJ_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3}
_BLOB = 3
_ZLIB_STORED_HEAD = b"\x78\x01"  # deflate, 32 KiB window, no compression
_STORED_BLOCK = struct.Struct("<BHH")
_ADLER = struct.Struct(">I")


def zlib_stored(data: bytes) -> bytes:
    """``data`` as a zlib stream of stored (not compressed) deflate blocks.

    For trees and commits: their object ids hardly compress, and setting
    zlib up costs more than the rest of their packing (measured: 13 us for a
    110-byte leaf, 65 us for a 1.5 KiB middle tree; this takes ~1 us)."""
    n = len(data)
    if 0 < n <= 0xFFFF:  # one block (every tree and commit but huge ones)
        return b"".join((_ZLIB_STORED_HEAD, _STORED_BLOCK.pack(1, n, n ^ 0xFFFF), data,
                         _ADLER.pack(zlib.adler32(data))))
    out = [_ZLIB_STORED_HEAD]
    if n == 0:
        out.append(b"\x01\x00\x00\xff\xff")
    for i in range(0, n, 0xFFFF):
        chunk = data[i:i + 0xFFFF]
        out.append(struct.pack("<BHH", i + 0xFFFF >= n, len(chunk), len(chunk) ^ 0xFFFF))
        out.append(chunk)
    out.append(struct.pack(">I", zlib.adler32(data)))
    return b"".join(out)

# A tree's entries, keyed the way Git sorts them (a subtree's name + "/", a
# file's name), each the bytes it takes in the tree object ("<mode> <name>\0"
# and the 20-byte id): serialising is a sort of the keys and a join.
Entries = dict[bytes, bytes]


def tree_entry(name: bytes, oid: bytes) -> bytes:
    return b"40000 " + name + b"\0" + oid


def blob_entry(name: bytes, oid: bytes) -> bytes:
    return b"100644 " + name + b"\0" + oid


def object_id(kind: bytes, data: bytes) -> bytes:
    """The raw SHA-1 id Git gives an object of this kind and content."""
    h = hashlib.sha1(b"%s %d\0" % (kind, len(data)))
    h.update(data)
    return h.digest()


def tree_bytes(entries: Entries) -> bytes:
    """A tree object's content: its entries in Git's order."""
    return b"".join([entries[key] for key in sorted(entries)])


def parse_tree(data: bytes) -> Entries:
    """A tree object's entries from its raw content (the inverse of ``tree_bytes``)."""
    out: Entries = {}
    find = data.find
    i, n = 0, len(data)
    while i < n:
        sp = find(b" ", i)
        nul = find(b"\0", sp)
        if sp < 0 or nul < 0 or nul + 21 > n:
            raise StoreError("corrupt tree object")
        end = nul + 21
        name = data[sp + 1:nul]
        out[name + b"/" if data[i:sp] == b"40000" else name] = data[i:end]
        i = end
    return out


class TreeCache:
    """Parsed entries of recently used trees, by id (ids name content, so an
    entry never goes stale), least recently used first out. Bounded by the
    number of entries held: the root and the 62 middle trees stay; at a
    million pastes, the leaves come and go. Shared by the writer and the
    journal thread (which checks new ids against it): a lock guards it.

    It also spares libgit2's lookups, which grow with the number of packs: an
    object not in its cache is searched pack after pack (measured: creates
    ~15% slower after 10 s at full load, with ~150 packs waiting for a
    repack)."""

    def __init__(self, max_entries: int = 100_000, max_raw: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.size = 0
        self.items: OrderedDict[bytes, Entries] = OrderedDict()
        self._lock = threading.Lock()
        # Below the parsed entries, the trees' raw content (~32 bytes a paste:
        # a million pastes' trees fit), so a miss above costs a parse, not a
        # search through the packs and an inflate; id checks read it directly.
        self.max_raw = max_raw
        self.raw_size = 0
        self.raws: OrderedDict[bytes, bytes] = OrderedDict()
        # Raw leaves known to be fixed-stride records of files named with this
        # many characters (built by _edit_leaf_raw): not checked again.
        self.strides: dict[bytes, int] = {}

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
        with self._lock:
            if stride:
                self.strides[oid] = stride
            if oid in self.raws:
                return
            self.raws[oid] = data
            self.raw_size += len(data) + 64
            while self.raw_size > self.max_raw and len(self.raws) > 1:
                gone, old = self.raws.popitem(last=False)
                self.raw_size -= len(old) + 64
                self.strides.pop(gone, None)

    def has_paste(self, root: bytes | None, name: bytes, odb: pygit2.Odb) -> bool:
        """Whether ``a/b/<name>`` is in the tree ``root``."""
        return self.paste_oid(root, name, odb) is not None

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
        with self._lock:
            if oid in self.items:
                self.items.move_to_end(oid)
                return
            self.items[oid] = entries
            self.size += len(entries)
            while self.size > self.max_entries and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.size -= len(old)

    def entries(self, oid: bytes, odb: pygit2.Odb) -> Entries:
        """A tree's entries (not to be modified), parsed from ``odb`` on a miss."""
        mem = self.get(oid)
        if mem is None:
            mem = parse_tree(self.raw(oid, odb))
            self.put(oid, mem)
        return mem


def _signature_bytes(sig: pygit2.Signature) -> bytes:
    offset = sig.offset
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    return b"%s <%s> %d %s%02d%02d" % (sig.raw_name, sig.raw_email, sig.time,
                                       sign.encode(), offset // 60, offset % 60)


class Pacer:
    """Spreads the committer's work on a busy core: after each ``slice``
    seconds of it, a ``gap`` of sleep, in which the server has the core to
    itself. Used while the committer keeps up (the backlog fits in one
    batch); behind, it runs flat out.

    Measured at 64 connections on one core, with a stand-in for a batch's
    work (17 ms of CPU every 117 ms) in a process beside the server: at once,
    a p99 of 49 ms; in 1 ms slices with gaps, 26.5 ms (committer.py)."""

    def __init__(self, slice_: float = 0.001, gap: float = 0.002) -> None:
        self.slice, self.gap = slice_, gap
        self.on = False
        self._t = 0.0

    def start(self, on: bool) -> None:
        self.on, self._t = on, time.perf_counter()

    def __call__(self) -> None:
        if self.on and time.perf_counter() - self._t >= self.slice:
            time.sleep(self.gap)
            self._t = time.perf_counter()


def _no_pace() -> None:
    pass


class PackBuilder:
    """The new objects of one batch, in memory, written as one pack + idx v2.

    Trees are edited and serialised here (pygit2's TreeBuilder writes loose
    objects); existing trees are read through ``repo``.
    """

    def __init__(self, repo: pygit2.Repository, cache: TreeCache | None = None,
                 pace: Callable[[], None] = _no_pace) -> None:
        self.repo = repo
        self.pace = pace
        self.objects: dict[bytes, tuple[int, bytes]] = {}  # raw id -> (type, content)
        self._trees: dict[bytes, Entries] = {}  # trees built here
        self._raw_built: dict[bytes, bytes] = {}  # leaves built here, raw
        self._raw_width: dict[bytes, int] = {}  # ... and their names' length
        self.cache = cache if cache is not None else TreeCache()

    def __len__(self) -> int:
        return len(self.objects)

    def add(self, kind: bytes, data: bytes) -> bytes:
        oid = object_id(kind, data)
        self.objects.setdefault(oid, (_OBJ_TYPES[kind], data))
        return oid

    def blob(self, data: bytes) -> pygit2.Oid:
        return pygit2.Oid(raw=self.add(b"blob", data))

    def entries(self, tree: bytes | None) -> Entries:
        """A copy of a tree's entries (one built here or one in the repository)."""
        return dict(self.peek(tree))

    def peek(self, tree: bytes | None) -> Entries:
        """A tree's entries, not to be modified: from this batch, the cache, or
        parsed from the object database (and cached)."""
        if tree is None:
            return {}
        mem = self._trees.get(tree)
        if mem is None and tree in self._raw_built:  # a leaf edited raw in this batch
            mem = self._trees[tree] = parse_tree(self._raw_built[tree])
        return mem if mem is not None else self.cache.entries(tree, self.repo.odb)

    def has_paste(self, root: bytes | None, name: bytes) -> bool:
        """Whether ``a/b/<name>`` is in the tree ``root``."""
        return self.paste_oid(root, name) is not None

    def paste_oid(self, root: bytes | None, name: bytes) -> bytes | None:
        """The raw id of the blob at ``a/b/<name>`` in the tree ``root`` (which
        may have been built in this batch), if any."""
        return self.cache.paste_oid(root, name, self.repo.odb, self._trees, self._raw_built)

    def built_trees(self) -> list[tuple[bytes, bytes]]:
        """The trees built here, raw: (id, content)."""
        return [*((oid, self.objects[oid][1]) for oid in self._trees), *self._raw_built.items()]

    def keep_trees(self) -> None:
        """Once the pack is written: its trees go to the cache (the next batch
        starts from them)."""
        for oid, entries in self._trees.items():
            self.cache.put(oid, entries)
            self.cache.put_raw(oid, self.objects[oid][1])
        for oid, raw in self._raw_built.items():
            self.cache.put_raw(oid, raw, self._raw_width.get(oid, 0))

    def tree(self, entries: Entries) -> bytes:
        oid = self.add(b"tree", tree_bytes(entries))
        self._trees.setdefault(oid, dict(entries))
        return oid

    def edit_tree(
        self,
        root: bytes | None,
        add: Iterable[tuple[str, pygit2.Oid]],
        remove: Iterable[str],
    ) -> bytes:
        """The root tree after adding and removing pastes in the sharded layout."""
        edits: dict[bytes, dict[bytes, dict[bytes, bytes | None]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for paste_id, oid in add:
            name = paste_id.encode()
            edits[name[:1]][name[1:2]][name] = oid.raw
        for paste_id in remove:
            name = paste_id.encode()
            edits[name[:1]][name[1:2]][name] = None
        root_e = self.entries(root)
        for a, by_b in edits.items():
            mid_e = self._sub(root_e, a)
            for b, leaves in by_b.items():
                self.pace()
                if self._edit_leaf_raw(mid_e, b, leaves):
                    continue
                leaf_e = self._sub(mid_e, b)
                for name, blob in leaves.items():
                    if blob is None:
                        leaf_e.pop(name, None)
                    else:
                        leaf_e.pop(name + b"/", None)  # never two entries of one name
                        leaf_e[name] = blob_entry(name, blob)
                self._put(mid_e, b, leaf_e)
            self._put(root_e, a, mid_e)
        return self.tree(root_e)

    def _edit_leaf_raw(self, mid_e: Entries, b: bytes, leaves: dict[bytes, bytes | None]) -> bool:
        """Edit the leaf ``b`` of a middle tree in its raw bytes, when it holds
        files only, all named with as many characters as the edited ones (the
        usual case): a record per entry at a fixed stride, found by bisection,
        spliced in or out. No parse, no sort (at a million pastes a leaf holds
        ~260 entries). False when the leaf is not like that: edit it parsed."""
        width = len(next(iter(leaves)))
        if any(len(name) != width for name in leaves):
            return False
        entry = mid_e.get(b + b"/")
        known = True
        if entry is None:
            raw = b""
        elif entry[-20:] in self._trees:  # built parsed in this batch: edit it so
            return False
        else:
            old = entry[-20:]
            built = self._raw_built.get(old)
            if built is not None:
                raw, known = built, self._raw_width.get(old) == width
            else:
                raw = self.cache.raw(old, self.repo.odb)
                known = self.cache.strides.get(old) == width
        rec = 28 + width  # "100644 " + name + "\0" + 20-byte id
        n, rest = divmod(len(raw), rec)
        if rest or not known and (
                any(raw[k::rec] != bytes([c]) * n for k, c in enumerate(b"100644 "))
                or raw[7 + width::rec] != bytes(n)):
            return False
        for name in sorted(leaves):
            oid = leaves[name]
            i = bisect.bisect_left(range(n), name,
                                   key=lambda j: raw[j * rec + 7:j * rec + 7 + width])
            there = i < n and raw[i * rec + 7:i * rec + 7 + width] == name
            at = i * rec
            if oid is None:
                if there:
                    raw = raw[:at] + raw[at + rec:]
                    n -= 1
            else:
                record = b"100644 " + name + b"\0" + oid
                raw = raw[:at] + record + raw[at + rec if there else at:]
                n += 0 if there else 1
        if not raw:
            mid_e.pop(b + b"/", None)
            return True
        oid = self.add(b"tree", raw)
        self._raw_built[oid] = raw
        self._raw_width[oid] = width
        mid_e.pop(b, None)  # never two entries of one name
        mid_e[b + b"/"] = tree_entry(b, oid)
        return True

    def _sub(self, entries: Entries, name: bytes) -> Entries:
        entry = entries.get(name + b"/")
        if entry is None:
            return {}
        return self.entries(entry[-20:])

    def _put(self, parent: Entries, name: bytes, child: Entries) -> None:
        if not child:
            parent.pop(name + b"/", None)
        else:
            parent.pop(name, None)  # never two entries of one name
            parent[name + b"/"] = tree_entry(name, self.tree(child))

    def commit(
        self, tree: bytes, parents: Sequence[pygit2.Oid], author: pygit2.Signature,
        committer: pygit2.Signature, message: str,
    ) -> pygit2.Oid:
        lines = [b"tree " + tree.hex().encode()]
        lines += [b"parent " + str(p).encode() for p in parents]
        lines.append(b"author " + _signature_bytes(author))
        lines.append(b"committer " + _signature_bytes(committer))
        data = b"\n".join(lines) + b"\n\n" + message.encode()
        return pygit2.Oid(raw=self.add(b"commit", data))

    def write(self, pack_dir: Path, fsync: Callable[[list[int]], object]) -> str | None:
        """Write the pack and its index under temporary names, fsync both (with
        ``fsync``, given the file descriptors), rename them (index last: a
        reader never sees an index without its pack) and fsync the directory.
        Returns the pack's name (its checksum), or None when there is nothing."""
        if not self.objects:
            return None
        tag = f"{TMP_PACK_PREFIX}{os.getpid()}-{entropy.token_bytes(6).hex()}"
        # Not "*.pack"/"*.idx" until renamed: a concurrent `git repack` lists
        # those and fails on a pack whose index is not there yet.
        tmp_pack, tmp_idx = pack_dir / f"{tag}-pack.tmp", pack_dir / f"{tag}-idx.tmp"
        index: list[tuple[bytes, int, int]] = []
        fds: list[int] = []
        try:
            fd = os.open(tmp_pack, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            fds.append(fd)
            head = b"PACK" + struct.pack(">II", 2, len(self.objects))
            parts = [head]
            offset = len(head)
            compress, stored, crc32, pace = zlib.compress, zlib_stored, zlib.crc32, self.pace
            for oid, (kind, data) in self.objects.items():
                pace()
                entry = pack_entry_header(kind, len(data)) + (
                    compress(data, 1) if kind == _BLOB else stored(data))
                parts.append(entry)
                index.append((oid, crc32(entry), offset))
                offset += len(entry)
            body = b"".join(parts)
            checksum = hashlib.sha1(body).digest()
            with open(fd, "wb", closefd=False) as f:
                f.write(body)
                f.write(checksum)
            fd = os.open(tmp_idx, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            fds.append(fd)
            with open(fd, "wb", closefd=False, buffering=1 << 20) as f:
                f.write(_idx_v2(index, checksum))
            fsync(fds)
        except BaseException:
            tmp_pack.unlink(missing_ok=True)
            tmp_idx.unlink(missing_ok=True)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        name = checksum.hex()
        os.rename(tmp_pack, pack_dir / f"pack-{name}.pack")
        os.rename(tmp_idx, pack_dir / f"pack-{name}.idx")
        _fsync_path(str(pack_dir))
        return name


def pack_entry_header(kind: int, size: int) -> bytes:
    """A pack entry's header: the object type and size, 7 bits a byte."""
    c = (kind << 4) | (size & 15)
    size >>= 4
    hdr = bytearray()
    while size:
        hdr.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    hdr.append(c)
    return bytes(hdr)


def _idx_v2(index: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    index.sort()
    fan = [0] * 256
    for oid, _, _ in index:
        fan[oid[0]] += 1
    acc, fanout = 0, []
    for n in fan:
        acc += n
        fanout.append(acc)
    large: list[int] = []
    offsets = []
    for _, _, off in index:
        if off < 0x80000000:
            offsets.append(off)
        else:
            offsets.append(0x80000000 | len(large))
            large.append(off)
    parts = [b"\377tOc", struct.pack(">I", 2), struct.pack(">256I", *fanout)]
    parts += [oid for oid, _, _ in index]
    parts.append(struct.pack(f">{len(index)}I", *(crc for _, crc, _ in index)))
    parts.append(struct.pack(f">{len(offsets)}I", *offsets))
    parts.append(struct.pack(f">{len(large)}Q", *large))
    parts.append(pack_checksum)
    idx = b"".join(parts)
    return idx + hashlib.sha1(idx).digest()


def signature(name: str | None, when: int | None = None) -> pygit2.Signature:
    """A commit signature for an optional user name ("Name <mail>" accepted).

    New pastes' users are checked before they are acknowledged (record.py);
    an author that does not pass (one replayed from a remote's history) is
    cleaned rather than refused: a signature never stops a commit."""
    when = int(time.time()) if when is None else when
    if not name:
        return pygit2.Signature(DEFAULT_NAME, DEFAULT_EMAIL, when, 0)
    try:
        user, email = record.signature_parts(name)
    except record.RecordError:
        m = re.fullmatch(r"\s*(.*?)\s*<([^<>]*)>\s*", name, re.DOTALL)
        user, email = (m.group(1), m.group(2)) if m else (name, None)
        user = _UNSAFE.sub("", user).strip() or DEFAULT_NAME
        email = _UNSAFE.sub("", email or "").strip() or None
    return pygit2.Signature(user, email or DEFAULT_EMAIL, when, 0)


# What a signature's name or email may not hold (git fsck, libgit2).
_UNSAFE = re.compile(r"[<>\x00-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class LargeBlob:
    """A committed document too large to read whole: streamed (``Store.stream``)."""

    oid: pygit2.Oid
    size: int


class Store:
    """The paste repository: reads from the event loop, writes in one thread."""

    def __init__(self, path: Path, id_length: int = 4, journal: bool = True,
                 owner: bool = True, lock_fd: int | None = None,
                 check_document: Callable[[bytes], str | None] | None = None) -> None:
        """``owner``: the server's store (not the committer's, which leaves
        the repository's locks and unfinished packs alone); ``lock_fd``: the
        descriptor holding the repository (``lock_repository``);
        ``check_document``: why a replayed document cannot be served (None: it
        can), the records it refuses are quarantined."""
        self.path = Path(path)
        self.check_document = check_document
        self.id_length = id_length
        self.repo = self._open_or_init(self.path, owner)
        # A second handle for reads on the event loop: the writer thread owns
        # ``self.repo``; libgit2 finds new loose objects and packs on disk.
        self.reader = pygit2.Repository(str(self.path))
        self._lock = threading.Lock()  # guards head/tree swaps
        self.head: pygit2.Oid | None = None
        self._tree: pygit2.Tree | None = None
        self._load_head()
        self._pending: list[Pending] = []
        self.tree_cache = TreeCache()
        self.pacer = Pacer()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pasteur-git")
        self._fsyncers = ThreadPoolExecutor(4, thread_name_prefix="pasteur-fsync")
        self.on_commit: list[Callable[[pygit2.Oid], object]] = []
        self.commits = 0
        self.batches = 0  # group commits of new pastes
        self.added = 0  # pastes they held
        self.commit_seconds = 0.0  # time spent in them (wall, fsyncs included)
        self.erased = 0
        # Bumped whenever pastes may have left the tree (removal, rebase, reset).
        self.generation = 0
        self.packs = self._count_packs()
        self.max_packs = PACK_LIMIT  # repack when there are more packs than this
        self._kept_packs = 0  # packs left by the last repack
        self.maintenance_runs = 0
        self.maintenance_failures = 0
        self._repacking = asyncio.Lock()
        self._maintenance: asyncio.Task[None] | None = None
        self._erase_file = self.path / "pasteur-erase"
        # Removed, not yet erased: never given to a new paste (the erasure
        # strips these ids from every commit).
        self._erasing: set[str] = self.pending_erasure()
        # The write-ahead journal (journal.py): creates are acknowledged once
        # journaled; the writer commits them behind, ``linger`` seconds at
        # most after a small commit so that the next one is larger.
        self.journal: Journal | None = None
        self.linger = LINGER
        self._journaled: dict[str, bytes] = {}  # acknowledged, not yet committed
        self._reserved: set[str] = set()  # ids journaled or being committed
        self._ids_lock = threading.Lock()
        self._to_journal: list[Pending] = []
        self._journaling = False  # a group is being written
        self._jwake: asyncio.Event | None = None
        self._jtask: asyncio.Task[None] | None = None
        self._journaler = ThreadPoolExecutor(1, thread_name_prefix="pasteur-journal")
        self._urgent: asyncio.Event | None = None
        self._failure: StoreError | None = None  # the last commit's, until one succeeds
        self.failing_since: float | None = None  # monotonic, the first failure of those
        self.journal_error: str | None = None  # the last append's failure, until one works
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._handed = 0  # journaled pastes handed to the writer
        self._done = 0  # ... and committed
        self.reopens = 0  # repository handles renewed (packs deleted)
        self.changes = 0  # tree changes other than journaled batches (see Pending)
        # Journaled batches are committed in a process of its own (committer.py).
        self.committer: Committer | None = None
        if journal:
            self._open_journal()
            if self.journal is not None and owner:
                self.committer = Committer(self.path, lock_fd)

    def _open_journal(self) -> None:
        path = self.path / JOURNAL_FILE
        existed = path.exists()
        try:
            journal = Journal(path)
            records = journal.read()
        except (OSError, JournalError) as exc:
            if existed:  # it may hold acknowledged pastes: never start without them
                raise StoreError(
                    f"the journal {path} cannot be read ({exc}); it may hold acknowledged "
                    f"pastes not yet committed. Move it away to start without them.") from exc
            log.warning("running without a journal (%s): each create waits for its commit", exc)
            return
        self.journal = journal
        if records:
            # Committed when the writer starts (those a crash left committed
            # already are recognised there); readable at once meanwhile.
            log.warning("journal: %d acknowledged pastes to commit", len(records))
            for r in records:
                p = Pending(r.paste_id, r.data, r.author, r.message, None, r.seq)
                reason = self._problem(p)
                if reason is not None:
                    self._set_aside(p, reason)
                else:
                    self._journaled[r.paste_id] = r.data
                    self._reserved.add(r.paste_id)
                self._pending.append(p)
            self._handed = len(records)

    def _problem(self, p: Pending) -> str | None:
        """Why a journaled record cannot be committed or served, or None."""
        reason = record.commit_problem(p.paste_id, p.author, p.message)
        if reason is None and self.check_document is not None and isinstance(p.data, bytes):
            reason = self.check_document(p.data)
        return reason

    @property
    def quarantine_path(self) -> Path:
        """Records that could not be committed, one JSON object a line (in
        the data directory, beside the repository)."""
        return self.path.parent / QUARANTINE_FILE

    def _set_aside(self, p: Pending, reason: str) -> None:
        """Quarantine one record: logged, appended (durably) to the quarantine
        file with its id and reason, dropped from what is served and committed."""
        log.error("paste %s set aside in %s: %s", p.paste_id, self.quarantine_path, reason)
        p.quarantine = reason
        if isinstance(p.data, bytes):
            data, encoding = p.data.decode("utf-8", "replace"), "utf-8"
            if data.encode() != p.data:
                data, encoding = base64.b64encode(p.data).decode(), "base64"
        else:
            data, encoding = str(p.data), "path"
        line = json.dumps({"id": p.paste_id, "seq": p.seq, "reason": reason,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "user": p.author, "comment": p.message,
                           "data": data, "encoding": encoding})
        try:
            fd = os.open(self.quarantine_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "backslashreplace") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("the quarantine file cannot be written (%s): the record was %s", exc, line)

    # -- set-up -------------------------------------------------------------

    @staticmethod
    def _open_or_init(path: Path, owner: bool = True) -> pygit2.Repository:
        if (path / "HEAD").exists():
            if owner:
                Store._remove_stale_locks(path)
            repo = pygit2.Repository(str(path))
        else:
            path.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
            cfg = repo.config
            cfg["core.fsync"] = "objects,reference"
            cfg["gc.auto"] = "0"
            cfg["receive.denyCurrentBranch"] = "ignore"
        return repo

    @staticmethod
    def _remove_stale_locks(path: Path) -> None:
        """Lock files and half-written packs left by a crash (this process is
        the only writer; git's own temporary packs are left alone)."""
        for lock in [*path.glob("refs/**/*.lock"), *path.glob("*.lock")]:
            log.warning("removing stale lock %s", lock)
            lock.unlink(missing_ok=True)
        for tmp in path.glob(f"objects/pack/{TMP_PACK_PREFIX}*"):
            log.warning("removing unfinished pack %s", tmp)
            tmp.unlink(missing_ok=True)

    def _count_packs(self) -> int:
        try:
            return sum(1 for n in os.listdir(self.path / "objects" / "pack")
                       if n.startswith("pack-") and n.endswith(".pack"))
        except FileNotFoundError:
            return 0

    def _load_head(self) -> None:
        try:
            ref = self.repo.references.get(BRANCH)
        except pygit2.GitError:
            ref = None
        if ref is None:
            self.head, self._tree = None, None
            return
        commit = self.reader[ref.target]
        assert isinstance(commit, pygit2.Commit)
        self.head, self._tree = commit.id, commit.tree

    # -- reads --------------------------------------------------------------

    def get(self, paste_id: str) -> bytes | None:
        """The stored document of a paste, or None (cheap: one tree walk)."""
        journaled = self._journaled.get(paste_id)
        if journaled is not None:
            return journaled
        obj = self._blob(paste_id)
        return None if obj is None else obj.data

    def get_bounded(self, paste_id: str, limit: int) -> bytes | LargeBlob | None:
        """Like ``get``, but a document over ``limit`` bytes is not read: its
        blob comes back to be streamed (its size from the object's header)."""
        journaled = self._journaled.get(paste_id)
        if journaled is not None:
            return journaled
        obj = self._blob(paste_id)
        if obj is None:
            return None
        _, size = self.reader.odb.read_header(obj.id)
        return LargeBlob(obj.id, size) if size > limit else obj.data

    def _blob(self, paste_id: str) -> pygit2.Blob | None:
        """The blob of a committed paste, not read yet (pygit2 loads it lazily)."""
        tree = self._tree
        if tree is None or not valid_id(paste_id):
            return None
        try:
            obj = tree[shard_path(paste_id)]
        except KeyError:
            return None
        return obj if isinstance(obj, pygit2.Blob) else None

    async def stream(
        self, blob: LargeBlob, chunk: int = 1 << 16
    ) -> AsyncGenerator[bytes, None]:
        """A large blob's bytes, ``chunk`` at a time, from ``git cat-file``
        (which inflates loose and undeltified packed objects as a stream: this
        process holds a chunk, git a window; libgit2 would read it whole).
        Raises StoreError if the object cannot be read to its end."""
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(self.path), "cat-file", "blob", str(blob.oid),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=child_env(),
        )
        assert proc.stdout is not None
        sent = 0
        try:
            while data := await proc.stdout.read(chunk):
                sent += len(data)
                yield data
            if await proc.wait() != 0 or sent != blob.size:
                raise StoreError(f"blob {blob.oid} could not be read ({sent} of {blob.size} bytes)")
        finally:
            if proc.returncode is None:  # the reader left early
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    @property
    def uncommitted(self) -> int:
        """Creates accepted and not yet in a commit (journaled or waiting)."""
        return len(self._to_journal) + len(self._pending)

    def __contains__(self, paste_id: str) -> bool:
        return self.get(paste_id) is not None

    def ids(self) -> Iterable[str]:
        """Every paste id in the current tree (walks the whole tree)."""
        tree = self._tree
        if tree is None:
            return
        for a in tree:
            mid = self.reader[a.id]
            if not isinstance(mid, pygit2.Tree):
                continue
            for b in mid:
                leaves = self.reader[b.id]
                if not isinstance(leaves, pygit2.Tree):
                    continue
                for leaf in leaves:
                    if leaf.name is not None:  # always set on a tree's entry
                        yield leaf.name

    def commit_of(self, paste_id: str, limit: int = 10_000) -> pygit2.Commit | None:
        """The commit that added a paste (walks history from the tip)."""
        if self.head is None:
            return None
        path = shard_path(paste_id)
        found = None
        for n, commit in enumerate(self.reader.walk(self.head)):
            if n >= limit:
                break
            try:
                commit.tree[path]
            except KeyError:
                break
            found = commit
        return found

    # -- ids ----------------------------------------------------------------

    def new_id(self) -> str:
        """A random id free in the current tree."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if paste_id not in self:
                return paste_id
            if attempt % 8 == 7:  # the space is crowded: grow the id
                length += 1
        raise StoreError("no free paste id")

    def _free_id(self, pack: PackBuilder, root: bytes | None, taken: set[str]) -> str:
        """``new_id`` in the writer: looked up in the trees the batch edits anyway."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if (paste_id not in taken and paste_id not in self._erasing
                    and not pack.has_paste(root, paste_id.encode())
                    and self._try_reserve(paste_id)):
                return paste_id
            if attempt % 8 == 7:  # the space is crowded: grow the id
                length += 1
        raise StoreError("no free paste id")

    def _reserve_id(self) -> str:
        """A free id for a journaled paste (journal thread): in no commit, not
        journaled, not being committed, not waiting for erasure. Reserved
        first, then looked up in the current tree: an id is released only
        after the tree holding it is in place."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if paste_id not in self._erasing and self._try_reserve(paste_id):
                tree = self._tree
                if tree is None or self.tree_cache.paste_oid(
                        tree.id.raw, paste_id.encode(), self.reader.odb) is None:
                    return paste_id
                self._release([paste_id])
            if attempt % 8 == 7:
                length += 1
        raise StoreError("no free paste id")

    def _try_reserve(self, paste_id: str) -> bool:
        with self._ids_lock:
            if paste_id in self._reserved:
                return False
            self._reserved.add(paste_id)
            return True

    def _release(self, ids: Iterable[str | None]) -> None:
        with self._ids_lock:
            for paste_id in ids:
                self._reserved.discard(paste_id)

    # -- writes -------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._jwake = asyncio.Event()
        self._urgent = asyncio.Event()
        if self._pending:
            self._wake.set()
        now = time.monotonic()
        for p in self._pending:  # replayed: their wait for a commit starts now
            p.since = now
        self._task = loop.create_task(self._run(), name="pasteur-commit")
        self._jtask = loop.create_task(self._journal_run(), name="pasteur-journal")

    async def stop(self) -> None:
        if self._jtask is not None:
            while self._to_journal or self._journaling:  # every create answered
                await asyncio.sleep(0.01)
            self._jtask.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._jtask
            self._jtask = None
        if self._task is not None:
            # Everything acknowledged is committed before the end (what a
            # failing disk keeps back stays in the journal for the next start).
            while self._pending and self._failure is None:
                assert self._urgent is not None and self._wake is not None
                self._urgent.set()
                self._wake.set()
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._maintenance is not None:  # started by the commit task, now stopped
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self.committer is not None:
            # From the writer thread, before it ends: the committer dies with
            # the thread that started it (PR_SET_PDEATHSIG); it ends on its own.
            await asyncio.get_running_loop().run_in_executor(self._writer, self.committer.close)
        self._writer.shutdown(wait=True)
        self._journaler.shutdown(wait=True)
        self._fsyncers.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    async def add(
        self, data: bytes | Path, author: str | None = None, message: str | None = None
    ) -> str:
        """Store a paste durably; returns its new id once journaled (or, for a
        large paste or without a journal, once committed).

        The id is picked beside the journal or in the writer, never on the
        event loop, and reserved until its commit."""
        assert self._wake is not None and self._jwake is not None and self._urgent is not None, \
            "Store.start() was not called"
        # Checked before anything is stored (record.RecordError, a ValueError):
        # a record that was acknowledged can be committed.
        author, message = record.checked_user(author), record.checked_comment(message)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        pending = Pending(None, data, author, message, fut)
        if (self.journal is not None and isinstance(data, bytes)
                and self.journal.takes(len(data))):
            self._to_journal.append(pending)
            self._jwake.set()
        else:
            self._pending.append(pending)
            self._urgent.set()
            self._wake.set()
        return await fut

    async def _journal_run(self) -> None:
        assert self._jwake is not None and self._wake is not None and self._urgent is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._jwake.wait()
            self._jwake.clear()
            while self._to_journal:
                group = self._next_group()
                self._journaling = True
                try:
                    if self._failure is not None:
                        # Commits fail (a full or read-only disk): acknowledge
                        # nothing more until one goes through.
                        await self.flush()
                    await loop.run_in_executor(self._journaler, self._journal_group, group)
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    if not isinstance(exc, StoreError):
                        log.error("journal write failed: %s", exc)
                    err = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    self._release(p.paste_id for p in group)
                    for p in group:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(err)
                    continue
                finally:
                    self._journaling = False
                for p in group:
                    assert p.paste_id is not None
                    self._journaled[p.paste_id] = p.data  # type: ignore[assignment]  # bytes: see add
                    fut, p.future = p.future, None
                    if fut is not None and not fut.done():
                        fut.set_result(p.paste_id)
                self._pending.extend(group)
                self._handed += len(group)
                if len(self._pending) >= LINGER_BATCH or (
                        self.journal is not None and self.journal.pressed):
                    self._urgent.set()
                self._wake.set()

    def _next_batch(self) -> list[Pending]:
        """The next commit: up to MAX_BATCH pastes and MAX_BATCH_BYTES of them
        (at least one), as the committer gets a copy of each."""
        n, size = 0, 0
        for p in self._pending[:MAX_BATCH]:
            size += len(p.data) if isinstance(p.data, bytes) else 0
            if n and size > MAX_BATCH_BYTES:
                break
            n += 1
        return self._pending[:n]

    def _next_group(self) -> list[Pending]:
        """The next creates to journal together: up to MAX_BATCH of them and a
        quarter of the journal (a record takes a sixteenth at most)."""
        assert self.journal is not None
        budget, n = self.journal.size // 4, 0
        for p in self._to_journal[:MAX_BATCH]:
            budget -= len(p.data) + 512  # type: ignore[arg-type]  # journaled: bytes (add)
            if budget < 0 and n:
                break
            n += 1
        group = self._to_journal[:n]
        del self._to_journal[:n]
        return group

    def _journal_group(self, group: list[Pending]) -> None:
        """Journal thread: ids, then the records, written and fdatasync'ed."""
        assert self.journal is not None
        changes = self.changes  # read before the tree the ids are checked in
        for p in group:
            p.paste_id = self._reserve_id()
            p.changes = changes
        items = [(p.paste_id, p.author, p.message, p.data) for p in group]
        try:
            seqs = self.journal.append(items)  # type: ignore[arg-type]  # ids just set; bytes (add)
        except JournalFull as exc:
            raise StoreBusy(str(exc), RETRY_AFTER_FULL) from exc
        except JournalError as exc:
            raise StoreError(str(exc)) from exc
        except OSError as exc:
            self.journal_error = str(exc)
            raise
        self.journal_error = None
        for p, seq in zip(group, seqs, strict=True):
            p.seq = seq

    async def flush(self) -> None:
        """Wait until every paste journaled so far is committed (before a
        removal: a paste is never removed before it is added). Raises the
        commit's StoreError if it fails."""
        target = self._handed
        if self._done >= target or self._wake is None or self._urgent is None:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((target, fut))
        self._urgent.set()
        self._wake.set()
        await fut

    def _notify(self, failure: StoreError | None) -> None:
        waiters, self._flush_waiters = self._flush_waiters, []
        for target, fut in waiters:
            if fut.done():
                continue
            if failure is not None:
                fut.set_exception(failure)
            elif self._done >= target:
                fut.set_result(None)
            else:
                self._flush_waiters.append((target, fut))

    async def run_in_writer(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the writer thread (serialised with commits)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def _run(self) -> None:
        assert self._wake is not None and self._urgent is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None and self._pending:  # retry what is journaled
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_DELAY)
            else:
                await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if (self.linger > 0 and not self._urgent.is_set()
                        and len(self._pending) < LINGER_BATCH
                        and all(p.future is None for p in self._pending)):
                    # Only acknowledged pastes wait: let more join this commit.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), self.linger)
                self._urgent.clear()
                batch = self._next_batch()
                # Paced while the writer keeps up: all that waits is in this batch.
                relaxed = len(self._pending) == len(batch) and not (
                    self.journal is not None and self.journal.pressed)
                out = self.committer is not None and all(p.seq is not None for p in batch)
                try:
                    if out:
                        await loop.run_in_executor(self._writer, self._commit_out, batch, relaxed)
                    else:
                        await loop.run_in_executor(self._writer, self._commit_batch, batch)
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    log.error("commit failed: %s", exc)
                    if await loop.run_in_executor(self._writer, self._set_aside_bad, batch):
                        continue  # the others go on at once, without them
                    err = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    self._failure = err
                    self.failing_since = self.failing_since or time.monotonic()
                    # Journaled pastes stay (durable, retried); the others fail.
                    self._pending[:len(batch)] = [p for p in batch if p.seq is not None]
                    self._release(p.paste_id for p in batch if p.seq is None)
                    for p in batch:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(err)
                    self._notify(err)
                    break
                self._failure = None
                self.failing_since = None
                del self._pending[:len(batch)]
                for p in batch:
                    if p.seq is not None:
                        self._journaled.pop(p.paste_id, None)  # type: ignore[arg-type]  # has its id
                        self._done += 1
                    elif p.future is not None and not p.future.done():
                        p.future.set_result(p.paste_id or "")
                self._release(p.paste_id for p in batch)
                self._notify(None)
                if self._needs_maintenance() and (
                    self._maintenance is None or self._maintenance.done()
                ):
                    self._maintenance = loop.create_task(
                        self._maintain_logged(), name="pasteur-maintenance"
                    )

    def _set_aside_bad(self, batch: Sequence[Pending]) -> bool:
        """Writer thread, after a failed commit: quarantine the journaled
        records of the batch that cannot be committed; whether there were
        any (else the failure is the repository's: the batch is retried)."""
        found = False
        for p in batch:
            if p.seq is None or p.quarantine is not None or not isinstance(p.data, bytes):
                continue
            reason = self._problem(p)
            if reason is not None:
                self._set_aside(p, reason)
                self._journaled.pop(p.paste_id, None)  # type: ignore[arg-type]  # journaled: has an id
                found = True
        return found

    # -- health -------------------------------------------------------------

    def backlog_age(self) -> float:
        """Seconds the oldest acknowledged, uncommitted paste has waited (0: none)."""
        for p in self._pending:  # in order of arrival
            if p.seq is not None:
                return time.monotonic() - p.since
        return 0.0

    async def problems(self) -> list[str]:
        """What keeps the store from doing its work, one sentence each (for
        /healthz; empty when all is well). A journal that failed is probed
        again here (its header written and synced), so that the answer turns
        good once the disk is back, without waiting for a create."""
        out: list[str] = []
        if self._failure is not None:
            since = time.monotonic() - (self.failing_since or time.monotonic())
            out.append(f"commits have failed for {since:.0f} s: {self._failure}")
        age = self.backlog_age()
        if age > BACKLOG_STALL:
            out.append(f"an acknowledged paste has waited {age:.0f} s for its commit "
                       f"({self.uncommitted} uncommitted)")
        if self.journal_error is not None and self.journal is not None:
            journal = self.journal
            try:
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    self._journaler, journal.check), HEALTH_PROBE_TIMEOUT)
            except TimeoutError:
                out.append("the journal cannot be written: a check took more than "
                           f"{HEALTH_PROBE_TIMEOUT:g} s")
            except OSError as exc:
                self.journal_error = str(exc)
                out.append(f"the journal cannot be written: {exc}")
            else:
                self.journal_error = None
        return out

    def _commit_out(self, batch: Sequence[Pending], relaxed: bool) -> None:
        """Writer thread: a batch of journaled pastes committed by the
        committer process, on top of this head; then its head taken, its
        trees cached (the journal thread checks new ids in them) and the
        journal checkpointed."""
        assert self.committer is not None
        t0 = time.perf_counter()
        kept = [p for p in batch if p.quarantine is None]
        if not kept:  # only records set aside: their journal records are passed
            self._batch_done(batch, t0)
            return
        try:
            reply = self.committer.commit({
                "head": self.head.raw if self.head is not None else None,
                "reopens": self.reopens,
                "items": [(p.paste_id, p.author, p.message, p.data) for p in kept],
                "relaxed": relaxed,
                "verify": any(p.changes != self.changes for p in kept),
            })
        except CommitterError as exc:
            raise StoreError(str(exc)) from exc
        for oid, raw in reply.trees:
            self.tree_cache.put_raw(oid, raw)
        renamed = dict(reply.renames)
        for p in batch:
            new_id = renamed.get(p.paste_id)  # type: ignore[arg-type]  # journaled: has an id
            if new_id is not None:  # taken meanwhile by a synced paste (logged there)
                self._journaled.pop(p.paste_id, None)  # type: ignore[arg-type]  # has an id
                self._release([p.paste_id])
                self._try_reserve(new_id)
                p.paste_id = new_id
        if reply.head is not None:
            head = pygit2.Oid(raw=reply.head)
            self._take_head(head, journaled=True)
            self.commits += reply.commits
            self.packs += reply.packs
            for cb in self.on_commit:
                cb(head)
        self._batch_done(batch, t0)

    def _batch_done(self, batch: Sequence[Pending], t0: float) -> None:
        """After a batch's commit: the journal's checkpoint, the counters."""
        seqs = [p.seq for p in batch if p.seq is not None]
        if seqs and self.journal is not None:
            self.journal.checkpoint(max(seqs))
        self.batches += 1
        self.added += len(batch)
        self.commit_seconds += time.perf_counter() - t0

    def _commit_batch(self, batch: Sequence[Pending], relaxed: bool = False,
                      verify: bool = True) -> PackBuilder:
        """Commit a batch (``verify``: look for journaled pastes' ids in the
        tree first, committed before a crash or brought by a sync)."""
        t0 = time.perf_counter()
        repo = self.repo
        self.pacer.start(relaxed)
        pack = PackBuilder(repo, self.tree_cache, self.pacer)
        written: list[pygit2.Oid] = []  # loose objects (large pastes, streamed)
        changes: list[Change] = []
        anonymous: list[tuple[str, pygit2.Oid]] = []
        root = self._tree.id.raw if self._tree is not None else None
        taken = {p.paste_id for p in batch if p.paste_id is not None}
        for p in batch:
            if p.paste_id is None:
                p.paste_id = self._free_id(pack, root, taken)
                taken.add(p.paste_id)
        for p in batch:
            assert p.paste_id is not None
            if p.quarantine is not None:
                continue
            pack.pace()
            if isinstance(p.data, Path):
                oid = repo.create_blob_fromdisk(str(p.data))
                written.append(oid)
            else:
                oid = pack.blob(p.data)
            if p.seq is not None and verify:
                there = pack.paste_oid(root, p.paste_id.encode())
                if there == oid.raw:
                    continue  # committed before a crash, not checkpointed
                if there is not None:
                    # Another instance's paste arrived by sync with this id
                    # since it was journaled: keep both (as syncmerge does).
                    new_id = f"{p.paste_id}{str(oid)[:6]}"
                    log.error("id %s was taken meanwhile by a paste from the remote: the "
                              "journaled paste is committed as %s", p.paste_id, new_id)
                    self._journaled.pop(p.paste_id, None)
                    self._release([p.paste_id])
                    self._try_reserve(new_id)
                    p.paste_id = new_id
                    if pack.paste_oid(root, new_id.encode()) == oid.raw:
                        continue  # renamed and committed before a crash
            if p.author is None and p.message is None:
                anonymous.append((p.paste_id, oid))
            else:
                msg = p.message or f"Add paste {p.paste_id}"
                changes.append(Change([(p.paste_id, oid)], [], p.author, msg))
        if anonymous:
            msg = (
                f"Add paste {anonymous[0][0]}"
                if len(anonymous) == 1
                else f"Add {len(anonymous)} pastes"
            )
            changes.insert(0, Change(anonymous, [], None, msg))
        self.apply(changes, written, pack=pack)
        self._batch_done(batch, t0)
        return pack

    def apply(
        self,
        changes: Sequence[Change],
        written: list[pygit2.Oid] | None = None,
        onto: pygit2.Oid | None = None,
        pack: PackBuilder | None = None,
    ) -> None:
        """Commit changes on top of the branch and make them durable.

        Runs in the writer thread. The new trees and commits are written with
        the objects of ``pack`` (e.g. the batch's blobs) as one pack. ``written``
        lists loose objects already written by the caller that must be synced
        too. With ``onto``, the changes are committed on that commit instead
        of the head and the branch moves to the result in one durable step (a
        rebase: the branch never points at a state missing the old head's
        pastes).
        """
        repo = self.repo
        pack = pack if pack is not None else PackBuilder(repo, self.tree_cache)
        written = list(written or [])
        if onto is not None or any(change.remove for change in changes):
            self.generation += 1  # pastes may disappear: caches must forget
        if onto is not None:
            parent: pygit2.Oid | None = onto
            tree: bytes | None = repo[onto].peel(pygit2.Tree).id.raw
        else:
            parent = self.head
            tree = self._tree.id.raw if self._tree is not None else None
        now = int(time.time())
        for change in changes:
            tree = pack.edit_tree(tree, change.add, change.remove)
            author = signature(change.author, now)
            committer = signature(None, now)
            parents = [parent] if parent is not None else []
            message = change.message if change.message.endswith("\n") else change.message + "\n"
            parent = pack.commit(tree, parents, author, committer, message)
            self.commits += 1
        if parent is None or parent == self.head:
            return
        if pack.write(self.path / "objects" / "pack", self._fsync_fds) is not None:
            self.packs += 1
            pack.keep_trees()
        if written:
            self._sync_objects(written)
        self._set_ref(parent)
        self._take_head(parent)
        for cb in self.on_commit:
            cb(parent)

    # -- maintenance --------------------------------------------------------

    async def maintain(self) -> None:
        """Roll small packs up beside the writer, then reopen the handles in it.

        The syncer wraps this, as it wraps ``erase``, so that no fetch writes
        a pack meanwhile. ``git repack`` runs as a process of its own: commits
        go on while it works (measured: a repack in the writer thread stalled
        every 50th batch by ~0.1 s, the p99 of creates at one connection).
        It runs at idle priority (``chrt --idle``, else ``nice``): on a busy
        core it yields to the server (measured on one core at 2,000 creates/s:
        12% more throughput and a p99 of 53 instead of 175 ms)."""
        async with self._repacking:  # never beside an erasure's repack and prune
            before, t0 = self._count_packs(), time.monotonic()
            proc = await asyncio.create_subprocess_exec(*idle_priority(),
                                                        *self._repack_command(),
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE,
                                                        env=child_env())
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise StoreError(f"git repack failed: {err.decode(errors='replace').strip()}")
            await self.run_in_writer(lambda: self._after_repack(before, t0))

    def _needs_maintenance(self) -> bool:
        # Packs the last repack kept (a geometric progression: ~log2 of the
        # size ratio) count for half, or a large kept set would repack often.
        return self.packs > max(self.max_packs, self._kept_packs + self.max_packs // 2)

    async def _maintain_logged(self) -> None:
        try:
            await self.maintain()
        except Exception as exc:  # noqa: BLE001 - maintenance failing is not fatal
            self.maintenance_failures += 1
            log.error("pack maintenance failed: %s", exc)

    def _repack_command(self) -> list[str]:
        """``git repack -d --geometric=2``: packs (and loose objects) are rolled
        up into one pack when their sizes are not a geometric progression; only
        the packs it rewrote are deleted, and it keeps every object of those
        packs (reachable or not), so nothing another writer put there is lost;
        packs written meanwhile are left alone. No delta search
        (``pack.window=0``): measured 91 ms instead of 299 ms for 50 batches of
        64 pastes; erasure's ``repack -a`` deltifies."""
        return ["git", "-C", str(self.path), "-c", "repack.writeBitmaps=false",
                "-c", "pack.window=0", "repack", "-d", "--geometric=2", "-q"]

    def _maintain(self) -> None:
        """The same as ``maintain``, all in the writer thread (for tests and tools)."""
        before, t0 = self._count_packs(), time.monotonic()
        subprocess.run(self._repack_command(), check=True, capture_output=True, env=child_env())
        self._after_repack(before, t0)

    def _after_repack(self, before: int, t0: float) -> None:
        self.reopen()
        self.packs = self._count_packs()
        self._kept_packs = self.packs
        self.maintenance_runs += 1
        log.info("repacked %d packs into %d in %.0f ms", before, self.packs,
                 (time.monotonic() - t0) * 1e3)

    def reopen(self) -> None:
        """New repository handles after packs were deleted (writer thread).

        libgit2 keeps every pack it has opened open until the repository is
        freed, deleted or not: without this, each repack would leave its
        rolled-up packs' descriptors and maps behind."""
        self.repo = pygit2.Repository(str(self.path))
        self.reopens += 1
        reader = pygit2.Repository(str(self.path))
        with self._lock:
            self.reader = reader
            if self.head is not None:
                self._tree = reader[self.head].tree

    # -- deletion and erasure -----------------------------------------------

    async def remove(self, paste_ids: Sequence[str], reason: str) -> None:
        """Remove pastes from the served tree at once (one commit) and queue
        their content for erasure from the object store and history."""
        ids = [i for i in paste_ids if valid_id(i)]
        if not ids:
            return
        await self.flush()  # a journaled paste is committed before it is removed
        message = f"{reason} paste {ids[0]}" if len(ids) == 1 else f"{reason} {len(ids)} pastes"

        await self.run_in_writer(lambda: self.queue_erasure(ids, message))

    def queue_erasure(self, ids: Sequence[str], message: str) -> None:
        """Remove pastes from the served tree (one commit) and queue them for
        erasure, durably (writer thread; the syncer queues here the ids another
        instance erased that this history still holds)."""
        present = [i for i in ids if self._in_tree(i)]
        if present:
            self.apply([Change([], present, None, message)])
        self._erasing.update(ids)
        with self._erase_file.open("a") as f:
            f.write("".join(f"{i}\n" for i in ids))
            f.flush()
            os.fsync(f.fileno())

    def _in_tree(self, paste_id: str) -> bool:
        tree = self._tree
        return tree is not None and _tree_has(tree, paste_id)

    def pending_erasure(self) -> set[str]:
        try:
            return set(self._erase_file.read_text().split())
        except FileNotFoundError:
            return set()

    async def erase(self) -> int:
        """Erase removed pastes from history and the object store (writer thread).

        History is rewritten without them (same authors, messages and dates;
        commits left empty are dropped), then ``git repack -a -d`` and ``git
        prune --expire=now`` delete the unreachable objects. Commit ids after
        the oldest erased paste change: a remote gets a forced push.
        """
        async with self._repacking:  # never beside a maintenance repack
            return await self.run_in_writer(self._erase)

    def _erase(self) -> int:
        ids = self.pending_erasure()
        if not ids:
            return 0
        if self.head is not None:
            self._rewrite_without(ids)
        git = ["git", "-C", str(self.path)]
        for args in (["reflog", "expire", "--expire=now", "--all"],
                     ["repack", "-a", "-d", "-q"],
                     ["prune", "--expire=now"]):
            subprocess.run([*git, *args], check=True, capture_output=True, env=child_env())
        self.reopen()
        self.packs = self._count_packs()
        if self.journal is not None:
            self.journal.scrub()
        self._erase_file.unlink(missing_ok=True)
        self._erasing -= ids
        self.erased += len(ids)
        log.info("erased %d pastes from history and the object store", len(ids))
        return len(ids)

    def _rewrite_without(self, ids: set[str]) -> None:
        repo = self.repo
        assert self.head is not None
        chain = list(repo.walk(self.head, pygit2.enums.SortMode.TOPOLOGICAL
                               | pygit2.enums.SortMode.REVERSE))
        written: list[pygit2.Oid] = []
        new_parent: pygit2.Oid | None = None
        new_parent_tree: pygit2.Oid | None = None
        rewriting = False
        for commit in chain:
            present = [i for i in ids if _tree_has(commit.tree, i)]
            if not present and not rewriting:
                new_parent, new_parent_tree = commit.id, commit.tree_id
                continue
            rewriting = True
            tree_oid = (
                self._edit_tree(commit.tree, [], present, written) if present else commit.tree_id
            )
            if tree_oid == new_parent_tree and "\nErased: " not in commit.message:
                continue  # the commit only added what is erased (an erase marker stays)
            parents = [new_parent] if new_parent is not None else []
            new_parent = repo.create_commit(
                None, commit.author, commit.committer, commit.message, tree_oid, parents
            )
            new_parent_tree = tree_oid
            written.append(new_parent)
        if not rewriting:
            return
        self._sync_objects(written)
        if new_parent is None:  # nothing left at all
            self.repo.references.delete(BRANCH)
            self._take_head(None)
            return
        self.reset_to(new_parent)
        for cb in self.on_commit:
            cb(new_parent)

    def reset_to(self, oid: pygit2.Oid) -> None:
        """Move the branch to an existing commit (writer thread; e.g. after a rebase)."""
        self.generation += 1
        self._set_ref(oid)
        self._take_head(oid)

    def _take_head(self, oid: pygit2.Oid | None, journaled: bool = False) -> None:
        """Serve the branch's new head (written already). ``journaled``: a
        batch of journaled pastes, whose ids were reserved; any other change
        counts in ``changes``, after the swap (see _journal_group)."""
        tree = self.reader[oid].peel(pygit2.Tree) if oid is not None else None
        with self._lock:
            self.head, self._tree = oid, tree
        if not journaled:
            self.changes += 1

    def _edit_tree(
        self,
        root: pygit2.Tree | None,
        add: Iterable[tuple[str, pygit2.Oid]],
        remove: Iterable[str],
        written: list[pygit2.Oid],
    ) -> pygit2.Oid:
        repo = self.repo
        edits: dict[str, dict[str, dict[str, pygit2.Oid | None]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for paste_id, oid in add:
            edits[paste_id[0]][paste_id[1]][paste_id] = oid
        for paste_id in remove:
            edits[paste_id[0]][paste_id[1]][paste_id] = None

        def sub(tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
            if tree is None:
                return None
            try:
                entry = tree[name]
            except KeyError:
                return None
            return entry if isinstance(entry, pygit2.Tree) else None

        root_b = repo.TreeBuilder(root) if root is not None else repo.TreeBuilder()
        for a, by_b in edits.items():
            mid = sub(root, a)
            mid_b = repo.TreeBuilder(mid) if mid is not None else repo.TreeBuilder()
            for b, leaves in by_b.items():
                leaf = sub(mid, b)
                leaf_b = repo.TreeBuilder(leaf) if leaf is not None else repo.TreeBuilder()
                for paste_id, blob in leaves.items():
                    if blob is None:
                        if leaf_b.get(paste_id) is not None:
                            leaf_b.remove(paste_id)
                    else:
                        leaf_b.insert(paste_id, blob, FileMode.BLOB)
                self._put(mid_b, b, leaf_b, written)
            self._put(root_b, a, mid_b, written)
        oid = root_b.write()
        written.append(oid)
        return oid

    @staticmethod
    def _put(
        parent: pygit2.TreeBuilder, name: str, child: pygit2.TreeBuilder, written: list
    ) -> None:
        if len(child) == 0:
            if parent.get(name) is not None:
                parent.remove(name)
            return
        oid = child.write()
        written.append(oid)
        parent.insert(name, oid, FileMode.TREE)

    # -- durability ---------------------------------------------------------

    def _fsync_fds(self, fds: list[int]) -> None:
        list(self._fsyncers.map(os.fsync, fds))

    def _sync_objects(self, oids: Sequence[pygit2.Oid]) -> None:
        objects = self.path / "objects"
        files = []
        dirs = set()
        for oid in oids:
            hexid = str(oid)
            files.append(f"{objects}/{hexid[:2]}/{hexid[2:]}")
            dirs.add(f"{objects}/{hexid[:2]}")
        paths = files + sorted(dirs) + [str(objects)]
        if len(paths) > FSYNC_FILES_LIMIT:
            _syncfs(str(objects))
        else:
            list(self._fsyncers.map(_fsync_path, paths))

    def _set_ref(self, oid: pygit2.Oid) -> None:
        """Point the branch at ``oid`` durably, the way git does (``<ref>.lock``
        created exclusively, written, fsynced, renamed over the ref, directory
        fsynced), here rather than in libgit2 so that the GIL is released
        during the system calls. A loose ref overrides a packed one."""
        ref = self.path / BRANCH
        lock = ref.with_name(ref.name + ".lock")
        ref.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise StoreError(f"{lock} exists: another git process is updating the branch") \
                from None
        try:
            os.write(fd, f"{oid}\n".encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            lock.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.rename(lock, ref)
        _fsync_path(str(ref.parent))
