"""The write-ahead journal: a new paste is durable once its record is here.

A create is acknowledged when its record is written to this file and the file
is fdatasync'ed (one system call for a whole group of creates, on space
allocated in advance: no file is created, no directory changes). The writer
thread commits the journaled pastes to Git in large batches behind the
acknowledgements, and moves the checkpoint: the sequence number up to which
every record is in a durable commit. On start, the records past the
checkpoint are committed again (``Store`` skips those the crash left already
committed).

Measured on the 2-core machine of the benchmarks: creating a file there costs
0.02–1 ms of CPU (it varies with the disk's state), and a Git commit creates
three (pack, index, ref lock); an fdatasync of the journal costs ~0.1 ms.

Layout: a header block, then records one after the other.

- header (``HEADER`` bytes): magic, version, ``base`` (the sequence number of
  the first record), ``start`` (its offset), ``committed`` (the checkpoint),
  CRC-32;
- record: magic, sequence number, payload length, CRC-32 of the sequence
  number, length and payload; the payload holds the id, author, message and
  the stored document.

The file is a ring: records go on at the start again (after a wrap marker at
the old end) over records already committed, while the uncommitted ones stay;
a create waits only when the ring is full of uncommitted records. Each
checkpoint moves ``base``/``start`` to the oldest uncommitted record; a
region is overwritten only once a header that no longer points into it is
durable. Reading follows the records from ``start`` (and the wrap marker) and
stops at the first one that is torn, has a bad CRC or does not carry the next
sequence number (what is left of an earlier lap). ``scrub`` (when pastes are
erased) zeroes every committed record.

A group whose write or fdatasync fails is answered with an error: its bytes
may still be in the file (the page cache keeps them after a failed
fdatasync), so they are zeroed and synced before the error goes out, and a
replay after a crash never finds them. If that fails too, the next append
zeroes them first (and fails while it cannot); ``check`` does the same for
a health probe.

When the ring is full of uncommitted records, an append waits ``full_wait``
seconds for a checkpoint, then raises ``JournalFull``: the caller answers
"try again" rather than holding the create.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"PASTEURJ"
VERSION = 1
HEADER = 4096
_HEAD = struct.Struct(">8sIQQQ")  # magic, version, base, start, committed (+ CRC-32)
_REC = struct.Struct(">4sQII")  # magic, seq, payload length, CRC-32
REC_MAGIC = b"PREC"
WRAP_MAGIC = b"PWRP"  # "the next record is at the start": a header only
MARK = _REC.size
_FIELDS = struct.Struct(">BHH")  # id, author and message lengths
DEFAULT_SIZE = 16 << 20
FULL_WAIT = 1.0  # seconds an append waits for room before JournalFull


class JournalError(Exception):
    pass


class JournalFull(JournalError):
    """No room for the records now: the ring is full of uncommitted ones."""


@dataclass
class Record:
    seq: int
    paste_id: str
    author: str | None
    message: str | None
    data: bytes


def _payload(paste_id: str, author: str | None, message: str | None, data: bytes) -> bytes:
    i, a, m = paste_id.encode(), (author or "").encode(), (message or "").encode()
    return _FIELDS.pack(len(i), len(a), len(m)) + i + a + m + data


def record_size(paste_id: str, author: str | None, message: str | None, data: bytes) -> int:
    """Bytes the record of a paste takes in the ring (see ``Journal.fits``)."""
    return _REC.size + len(_payload(paste_id, author, message, data))


def _record(seq: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(struct.pack(">QI", seq, len(payload))))
    return _REC.pack(REC_MAGIC, seq, len(payload), crc) + payload


class Journal:
    """One journal file. ``append`` runs in one thread at a time, ``checkpoint``
    in another (the Git writer): the header is written under a lock."""

    def __init__(self, path: Path, size: int = DEFAULT_SIZE,
                 full_wait: float = FULL_WAIT) -> None:
        self.path = Path(path)
        self.full_wait = full_wait
        # Regions a failed append wrote and could not zero durably yet.
        self._unclean: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self.room = threading.Condition(self._lock)
        if self.path.exists():
            self.fd = os.open(self.path, os.O_RDWR)
            self.size = os.fstat(self.fd).st_size
            head = os.pread(self.fd, _HEAD.size + 4, 0)
            try:
                magic, version, self.base, self.start, self.committed = _HEAD.unpack(
                    head[:_HEAD.size])
            except struct.error:
                raise JournalError(f"{self.path}: truncated header") from None
            if magic != MAGIC or version != VERSION:
                raise JournalError(f"{self.path}: not a Pasteur journal (version {version})")
            if zlib.crc32(head[:_HEAD.size]) != struct.unpack(">I", head[_HEAD.size:])[0]:
                raise JournalError(f"{self.path}: corrupt header")
        else:
            tmp = self.path.with_name(self.path.name + ".new")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                # Blocks allocated now: a full disk refuses the journal at
                # start, never an acknowledged record later.
                os.posix_fallocate(fd, 0, size)
                os.pwrite(fd, self._header(1, HEADER, 0), 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            os.rename(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self.fd, self.size, self.base, self.start, self.committed = fd, size, 1, HEADER, 0
        self.tail = self.start
        self.next_seq = self.base
        self._offsets: deque[tuple[int, int]] = deque()  # (seq, offset) not committed
        self._header_version = self._synced_version = 0
        self._durable_start = self.start  # where the header on disk starts reading
        self._wrap_at: int | None = None  # the last wrap marker's offset

    @staticmethod
    def _header(base: int, start: int, committed: int) -> bytes:
        head = _HEAD.pack(MAGIC, VERSION, base, start, committed)
        return head + struct.pack(">I", zlib.crc32(head))

    def _write_header(self) -> int:
        """Under the lock; returns the header's version, durable after an fdatasync."""
        os.pwrite(self.fd, self._header(self.base, self.start, self.committed), 0)
        self._header_version += 1
        return self._header_version

    def _synced(self, version: int, start: int) -> None:
        with self._lock:
            if version > self._synced_version:
                self._synced_version, self._durable_start = version, start

    def _endangers(self, pos: int, end: int, live_end: int) -> bool:
        """Whether writing [pos, end) could cut the path a reader of the header
        on disk follows: from its start to the oldest uncommitted record (or
        the tail), through committed records that may be overwritten."""
        ds = self._durable_start
        if ds <= live_end:
            return pos < live_end and end > ds
        return end > ds or pos < live_end  # the path wraps past the end

    def read(self) -> list[Record]:
        """Every record after the checkpoint, in order; the tail is set after
        the last valid record."""
        out: list[Record] = []
        pos, seq = self.start, self.base
        wrapped_at = -1
        while pos >= HEADER and pos + _REC.size <= self.size:
            magic, rseq, length, crc = _REC.unpack(os.pread(self.fd, _REC.size, pos))
            if magic == WRAP_MAGIC and rseq == seq and length == 0 and wrapped_at != seq \
                    and crc == zlib.crc32(struct.pack(">QI", rseq, 0)):
                self._wrap_at = pos
                pos, wrapped_at = HEADER, seq
                continue
            if magic != REC_MAGIC or rseq != seq or pos + _REC.size + length > self.size:
                break
            payload = os.pread(self.fd, length, pos + _REC.size)
            if len(payload) != length or zlib.crc32(
                payload, zlib.crc32(struct.pack(">QI", rseq, length))
            ) != crc:
                break
            if seq > self.committed:
                out.append(self._parse(seq, payload))
                self._offsets.append((seq, pos))
            pos += _REC.size + length
            seq += 1
        self.tail, self.next_seq = pos, seq
        return out

    @staticmethod
    def _parse(seq: int, payload: bytes) -> Record:
        li, la, lm = _FIELDS.unpack_from(payload)
        p = _FIELDS.size
        # Bad UTF-8 is kept (surrogates) for the replay's check to set aside.
        paste_id = payload[p:p + li].decode("utf-8", "surrogateescape")
        author = payload[p + li:p + li + la].decode("utf-8", "surrogateescape") or None
        message = payload[p + li + la:p + li + la + lm].decode("utf-8", "surrogateescape") or None
        return Record(seq, paste_id, author, message, payload[p + li + la + lm:])

    def takes(self, data_size: int) -> bool:
        """Whether a document of this size goes through the journal: up to a
        sixteenth of it (larger ones are committed to Git directly)."""
        return data_size <= self.size // 16

    def fits(self, need: int) -> bool:
        """Whether ``need`` bytes of records would be appended now, without
        waiting for a checkpoint."""
        with self._lock:
            return self._place(need) is not None

    def _place(self, need: int) -> tuple[int, str] | None:
        """Where ``need`` bytes go, and how: "" (at the tail), "wrap" (at the
        start, after a wrap marker at the tail) or "reset" (at the start, the
        header moved there first: nothing is uncommitted); None when the
        uncommitted records leave no room."""
        live = self._offsets[0][1] if self._offsets else None
        tail = self.tail
        if live is None:
            if tail + need + MARK <= self.size:  # (room is kept for a wrap marker)
                return tail, ""
            return HEADER, "reset"
        if live <= tail:  # uncommitted records in [live, tail)
            if tail + need + MARK <= self.size:
                return tail, ""
            return (HEADER, "wrap") if HEADER + need <= live else None
        return (tail, "") if tail + need <= live else None  # wrapped: up to [live

    @property
    def pressed(self) -> bool:
        """Half the ring or more holds uncommitted records."""
        live = self._offsets[0][1] if self._offsets else None
        if live is None:
            return False
        used = self.tail - live if live <= self.tail else self.size - live + self.tail - HEADER
        return used * 2 >= self.size - HEADER

    def append(self, items: list[tuple[str, str | None, str | None, bytes]]) -> list[int]:
        """Write records durably; their sequence numbers. Waits, when the ring
        is full of uncommitted records, ``full_wait`` seconds at most for the
        writer to commit some (then JournalFull). On an OSError nothing of
        the records is left in the file (see the module's docstring)."""
        payloads = [_payload(*item) for item in items]
        need = sum(_REC.size + len(p) for p in payloads)
        if self._unclean:
            self._zero(self._unclean)
        with self._lock:
            if HEADER + need + MARK > self.size:
                raise JournalError("a record larger than the journal")
            deadline = time.monotonic() + self.full_wait
            while (place := self._place(need)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JournalFull(f"the journal is full of pastes not committed yet "
                                      f"(waited {self.full_wait:g} s for room)")
                self.room.wait(timeout=left)
            pos, how = place
            first = self.next_seq
            old_tail = self.tail
            live_end = self._offsets[0][1] if self._offsets else old_tail
            old_wrap = self._wrap_at
            if how == "reset":  # durable before the records: nothing else is live
                self.base, self.start = first, HEADER
                self._write_header()
            elif how == "wrap":
                self._wrap_at = old_tail
            records = [_record(first + n, p) for n, p in enumerate(payloads)]
            at = pos
            for n, rec in enumerate(records):
                self._offsets.append((first + n, at))
                at += len(rec)
            blob = b"".join(records)
            self.tail = pos + len(blob)
            self.next_seq += len(payloads)
            # What is overwritten must not be on the path from the header on
            # disk to the live records: else the newer header is synced first.
            dirty = self._header_version > self._synced_version
            header = self._header_version if dirty and (
                how != "" or self._endangers(pos, self.tail, live_end)) else 0
            start = self.start
        written: list[tuple[int, int]] = []  # what may be in the file, to zero on failure
        try:
            if header:
                os.fdatasync(self.fd)
                self._synced(header, start)
            if how == "wrap":
                written.append((old_tail, MARK))
                os.pwrite(self.fd, _REC.pack(WRAP_MAGIC, first, 0,
                                             zlib.crc32(struct.pack(">QI", first, 0))), old_tail)
            written.append((pos, len(blob)))
            os.pwrite(self.fd, blob, pos)
            os.fdatasync(self.fd)
        except OSError:
            # Nothing written is acknowledged: zeroed before the error is
            # answered (the regions were free: nothing on the path from the
            # header on disk to the live records, or the header sync above
            # would have come first). The next append writes over them.
            # A header written meanwhile may point at these records: it is
            # rewritten (and synced before the next records go to disk).
            if written:
                with contextlib.suppress(OSError):  # kept in _unclean
                    self._zero(written)
            with self._lock:
                if self.next_seq == first + len(payloads):
                    self.tail, self.next_seq, self._wrap_at = old_tail, first, old_wrap
                    while self._offsets and self._offsets[-1][0] >= first:
                        self._offsets.pop()
                    self.base, self.start = self._offsets[0] if self._offsets else (
                        first, old_tail)
                    self._write_header()
            raise
        return list(range(first, first + len(payloads)))

    def _zero(self, regions: list[tuple[int, int]]) -> None:
        """Zero what a failed append wrote, durably; until that succeeds the
        regions stay in ``_unclean`` (appending thread only)."""
        self._unclean = regions
        for pos, length in regions:
            os.pwrite(self.fd, bytes(length), pos)
        os.fdatasync(self.fd)
        self._unclean = []

    def check(self) -> None:
        """Whether the file can be written and synced now (a health probe, in
        the appending thread): what a failed append left is zeroed, the
        header written again and synced. Raises OSError if not."""
        if self._unclean:
            self._zero(self._unclean)
        with self._lock:
            version, start = self._write_header(), self.start
        os.fdatasync(self.fd)
        self._synced(version, start)

    def checkpoint(self, seq: int) -> None:
        """Every record up to ``seq`` is in a durable commit."""
        written = self.begin_checkpoint(seq)
        if written is None:
            return
        os.fdatasync(self.fd)
        self.end_checkpoint(*written)

    def begin_checkpoint(self, seq: int) -> tuple[int, int] | None:
        """``checkpoint`` up to its fdatasync: the header moved past ``seq``,
        written not synced; its (version, start) for ``end_checkpoint``, None
        if ``seq`` was checkpointed already."""
        with self._lock:
            if seq <= self.committed:
                return None
            self.committed = seq
            while self._offsets and self._offsets[0][0] <= seq:
                self._offsets.popleft()
            self.base, self.start = self._offsets[0] if self._offsets else (
                self.next_seq, self.tail)
            version, start = self._write_header(), self.start
            self.room.notify_all()
        return version, start

    def end_checkpoint(self, version: int, start: int) -> None:
        """``checkpoint`` after its fdatasync: the header ``begin_checkpoint``
        wrote is durable."""
        self._synced(version, start)

    def scrub(self) -> None:
        """Zero every committed record (erased pastes leave no copy here);
        the records not yet committed stay, and ``start`` moves to the first."""
        with self._lock:
            live = self._offsets[0][1] if self._offsets else None
            if live is not None:
                self.base, self.start = self._offsets[0]
            else:
                self.base, self.start = self.next_seq, self.tail
            version = self._write_header()
            os.fdatasync(self.fd)  # the header first: never a start among zeroes
            self._synced_version, self._durable_start = version, self.start
            if live is None:
                dead = [(HEADER, self.size)]
            elif live <= self.tail:
                dead = [(HEADER, live), (self.tail, self.size)]
            else:  # wrapped: live up to the wrap marker, and from the start
                end = self._wrap_at + MARK if self._wrap_at is not None else self.size
                dead = [(self.tail, live), (end, self.size)]
            zero = bytes(1 << 20)
            for lo, hi in dead:
                for pos in range(lo, hi, len(zero)):
                    os.pwrite(self.fd, zero[:min(len(zero), hi - pos)], pos)
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
