"""A large paste's blob, written as a Git loose object while its upload arrives.

A loose object is a zlib stream of ``blob <size>\\0`` and the content. Its size
(and the document's head: options may come after the paste in a form) is
known only at the end of the upload, so the file keeps ``ROOM`` bytes free at
its start and the content goes after them as it arrives, in *stored* deflate
blocks (no compression), written back to the disk as it goes. At the end the
start is filled in: the zlib header, one stored block holding ``blob
<size>\\0`` and the document's head (first: libgit2 reads a loose object's
header from its first 1,024 bytes), then empty deflate blocks that pad it to
exactly ``ROOM`` bytes. Then the last block (the document's tail), the
Adler-32 of it all, one read back for the SHA-1 (from the page cache), an
fdatasync of what is still dirty, and the object is renamed into place by the
writer (``install``).

Measured on a 1 GiB upload of base64url text: libgit2's
``create_blob_fromdisk`` after the upload deflated at level 6, ~36 MB/s (28 s
of CPU per GiB), and the disk got the whole object only at the end (~4.5 s for
1 GiB on this machine's disk). Stored blocks cost ~0.5 ms per MiB. The
compression is left to ``git repack`` (maintenance.py), which packs loose
objects anyway and deflates them again then (a loose object's zlib stream is
never reused in a pack).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pygit2

from .durable import fsync_path, start_writeback
from .layout import TMP_BLOB_PREFIX

ROOM = 4096  # bytes before the content: zlib header, object header, document head
ZLIB_HEAD = b"\x78\x01"  # deflate, 32 KiB window, no compression (CMF, FLG: % 31 == 0)
MAX_STORED = 0xFFFF  # bytes in a stored block
VEC_BLOCKS = 256  # blocks per pwritev (two buffers each; IOV_MAX is 1,024)
WRITEBACK_STEP = 32 << 20  # start writing back to the disk every this many bytes
READ_BACK = 1 << 20  # bytes read at a time for the SHA-1
_STORED = struct.Struct("<BHH")

# Empty deflate blocks, each leaving the stream byte-aligned at a block
# boundary: a stored one (5 bytes), one fixed-Huffman then a stored one (6),
# two fixed-Huffman then a stored one (7). Any padding of 24 bytes or more is
# a sum of them.
_EMPTY = {5: b"\x00\x00\x00\xff\xff", 6: b"\x02\x00\x00\x00\xff\xff",
          7: b"\x02\x08\x00\x00\x00\xff\xff"}
_MIN_PAD = 24

# Writeback requests, off the event loop (sync_file_range may wait for the
# device's queue).
_writeback = ThreadPoolExecutor(1, thread_name_prefix="pasteur-writeback")


class LooseError(Exception):
    """The loose object could not be written as asked."""


@dataclass(frozen=True)
class LooseBlob:
    """A blob written and synced as a loose object, not yet in the object
    database: ``path`` is renamed into place by ``install``."""

    oid: pygit2.Oid
    path: Path
    size: int  # the blob's size (the document's bytes)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def stored_block(data: bytes | memoryview, final: bool = False) -> bytes:
    n = len(data)
    assert n <= MAX_STORED
    return _STORED.pack(1 if final else 0, n, n ^ 0xFFFF)


def padding(n: int) -> bytes:
    """``n`` bytes of empty deflate blocks (``n`` >= ``_MIN_PAD``)."""
    for sixes in range(5):
        for sevens in range(5):
            rest = n - 6 * sixes - 7 * sevens
            if rest >= 0 and rest % 5 == 0:
                return _EMPTY[6] * sixes + _EMPTY[7] * sevens + _EMPTY[5] * (rest // 5)
    raise LooseError(f"cannot pad {n} bytes")


class LooseWriter:
    """The content of a large blob, written as it arrives (``write``), then
    the blob finished with its head and tail (``finish``, in a thread)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{TMP_BLOB_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o444)
        self.end = ROOM  # where the next block goes
        self.size = 0  # content bytes
        self._written_back = ROOM
        self._pending: Future[None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append content, in stored blocks (no copy: one writev)."""
        view = memoryview(data)
        n = len(view)
        if not n:
            return
        step = MAX_STORED * VEC_BLOCKS
        for at in range(0, n, step):
            vec: list[bytes | memoryview] = []
            for i in range(at, min(n, at + step), MAX_STORED):
                piece = view[i:i + MAX_STORED]
                vec += (stored_block(piece), piece)
            self._writev(vec)
        self.size += n
        if self.end - self._written_back >= WRITEBACK_STEP:
            self._start_writeback()

    def _writev(self, vec: list[bytes | memoryview]) -> None:
        total = sum(len(v) for v in vec)
        done = os.pwritev(self.fd, vec, self.end)
        while done < total:  # a short write (never seen on a regular file)
            rest = b"".join(bytes(v) for v in vec)[done:]
            done += os.pwrite(self.fd, rest, self.end + done)
        self.end += total

    def _start_writeback(self) -> None:
        if self._pending is not None and not self._pending.done():
            return  # the disk is behind: the next step asks again
        start, self._written_back = self._written_back, self.end
        self._pending = _writeback.submit(start_writeback, self.fd, start, self.end - start)

    def finish(self, head: bytes, tail: bytes) -> LooseBlob:
        """The blob ``head + content + tail``, synced; the file is closed
        (a thread: it reads the content back for the SHA-1 and syncs)."""
        if self._pending is not None:
            self._pending.result()
        size = len(head) + self.size + len(tail)
        first = b"blob %d\0" % size + head
        pad = ROOM - len(ZLIB_HEAD) - _STORED.size - len(first)
        if pad < _MIN_PAD:
            raise LooseError(f"the document's head is too long ({len(head)} bytes)")
        start = ZLIB_HEAD + stored_block(first) + first + padding(pad)
        assert len(start) == ROOM
        sha = hashlib.sha1(first)
        adler = zlib.adler32(tail, self._read_back(sha, zlib.adler32(first)))
        sha.update(tail)
        os.pwrite(self.fd, start, 0)
        end = stored_block(tail, final=True) + tail + struct.pack(">I", adler)
        os.pwrite(self.fd, end, self.end)
        self.end += len(end)
        os.fdatasync(self.fd)
        self.close()
        return LooseBlob(pygit2.Oid(raw=sha.digest()), self.path, size)

    def _read_back(self, sha: hashlib._Hash, adler: int) -> int:
        """Read the content back from its stored blocks into ``sha`` and the
        Adler-32 ``adler``, which it returns (here, off the event loop; the
        blocks are walked, not inflated: no copy but the read)."""
        buf = bytearray(READ_BACK)
        pos, got = ROOM, 0
        while pos < self.end:
            n = os.preadv(self.fd, [buf], pos)
            view = memoryview(buf)[:min(n, self.end - pos)]
            i = 0
            while i + _STORED.size <= len(view):
                final, size, check = _STORED.unpack_from(view, i)
                if final or size ^ check != 0xFFFF:
                    raise LooseError(f"not a stored block at {pos + i}")
                if i + _STORED.size + size > len(view):
                    break  # read again from its start
                piece = view[i + _STORED.size:i + _STORED.size + size]
                sha.update(piece)
                adler = zlib.adler32(piece, adler)
                got += size
                i += _STORED.size + size
            if i == 0:
                raise LooseError(f"the blob ends early at {pos}")
            pos += i
        if got != self.size:
            raise LooseError(f"the blob reads back {got} bytes of {self.size}")
        return adler

    def close(self) -> None:
        if self.fd >= 0:
            if self._pending is not None:
                self._pending.result()
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and remove the file (an upload refused or failed)."""
        self.close()
        self.path.unlink(missing_ok=True)


def install(blob: LooseBlob, objects: Path) -> pygit2.Oid:
    """Move a written blob into the object database (writer thread); the
    caller syncs it there (``Repository.sync_objects``)."""
    hexid = str(blob.oid)
    target_dir = objects / hexid[:2]
    target_dir.mkdir(exist_ok=True)
    target = target_dir / hexid[2:]
    if target.exists():  # the same paste stored before
        blob.discard()
        return blob.oid
    try:
        os.replace(blob.path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # The spool directory on another file system: copied, synced.
        tmp = target_dir / f"{TMP_BLOB_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
        shutil.copyfile(blob.path, tmp)
        fsync_path(str(tmp))
        os.replace(tmp, target)
        blob.discard()
    return blob.oid


def read_prefix(objects: Path, oid: pygit2.Oid, n: int) -> bytes | None:
    """The first ``n`` bytes of a loose blob's content, inflating no more
    than that; None when the object is not loose (packed)."""
    hexid = str(oid)
    try:
        with open(objects / hexid[:2] / hexid[2:], "rb") as f:
            data = f.read(max(ROOM, n) + (64 << 10))
    except FileNotFoundError:
        return None
    try:
        out = zlib.decompressobj().decompress(data, n + 64)
    except zlib.error:
        return None
    nul = out.find(b"\0")
    if nul < 0 or not out.startswith(b"blob "):
        return None
    return out[nul + 1:nul + 1 + n]


class LooseReader:
    """A loose blob's content, read and inflated a chunk at a time (a stored
    stream inflates at the speed of a copy); ``open`` gives None for an
    object that is not loose (packed: ``git cat-file`` streams it)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.inflate = zlib.decompressobj()
        self.header = True  # "blob <size>\0" still to skip

    @classmethod
    def open(cls, objects: Path, oid: pygit2.Oid) -> LooseReader | None:
        hexid = str(oid)
        try:
            return cls(open(objects / hexid[:2] / hexid[2:], "rb"))  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            return None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of content (b"" at its end)."""
        inflate = self.inflate
        n = max(n, 64) if self.header else n  # the header comes out whole
        while True:
            if inflate.unconsumed_tail:
                out = inflate.decompress(inflate.unconsumed_tail, n)
            elif inflate.eof:
                return b""
            else:
                data = self.f.read(n)
                if not data:
                    raise LooseError("the loose object ends early")
                out = inflate.decompress(data, n)
            if self.header and out:
                nul = out.find(b"\0")
                if nul < 0 or nul > 32:  # "blob " and at most 20 digits
                    raise LooseError("not a loose blob")
                self.header, out = False, out[nul + 1:]
            if out:
                return out

    def close(self) -> None:
        self.f.close()
