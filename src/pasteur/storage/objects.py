"""Git's bytes, computed here rather than by libgit2: object ids, tree
entries in the sharded ``a/b/<id>`` layout, zlib streams, pack entry
headers, the pack index (v2) and commit signatures.

Plain functions over bytes, as dulwich's ``pack.py``: the pack writer
(``packs.py``) and the tree cache (``treecache.py``) are built on them."""

from __future__ import annotations

import hashlib
import re
import struct
import time
import zlib

import pygit2

from .. import record
from .errors import StoreError

DEFAULT_NAME = "Pasteur"
DEFAULT_EMAIL = "pasteur@localhost"


def shard_path(paste_id: str) -> str:
    return f"{paste_id[0]}/{paste_id[1]}/{paste_id}"


def tree_has(tree: pygit2.Tree, paste_id: str) -> bool:
    try:
        tree[shard_path(paste_id)]
    except KeyError:
        return False
    return True


OBJ_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3}
BLOB = 3
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


def signature_bytes(sig: pygit2.Signature) -> bytes:
    offset = sig.offset
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    return b"%s <%s> %d %s%02d%02d" % (sig.raw_name, sig.raw_email, sig.time,
                                       sign.encode(), offset // 60, offset % 60)


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


def idx_v2(index: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
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
