"""Reading an upload as a stream: multipart/form-data or a raw body.

The body is parsed while it arrives (``multipart.PushMultipartParser``), the
paste field is kept up to its limit and nothing else is buffered: memory is
bounded by ``--max`` whatever the body size, and a body that crosses the limit
is refused with 413 at once, without reading the rest.
"""

from __future__ import annotations

import asyncio
import tempfile
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from multipart import (
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
)

from .. import mediatype
from ..record import MAX_COMMENT, MAX_USER

# Small fields and their limits (bytes).
FIELDS = {
    "hl": 64,
    "ln": 16,
    "raw": 16,
    "encrypted": 16,
    "iv": 64,
    "user": MAX_USER,
    "comment": MAX_COMMENT,
    "expiry": 16,
    "burn": 16,
    "salt": 64,
    "iter": 16,
    "fmt": 16,  # encryption format (record.py)
    "password": 1024,  # only to refuse it (record.py: PASSWORD_SENT)
    "token": 64,
    "form": 16,
}
PASTE_FIELD = "paste"
MAX_PARTS = 32
MAX_HEADER = 4096
# Room for the multipart framing and small fields around the paste.
FORM_OVERHEAD = 64 * 1024


# Seconds a request body may stall before the upload is answered 408.
BODY_IDLE_TIMEOUT = 30.0
# A paste field larger than this goes to a temporary file, not memory.
SPOOL_THRESHOLD = 4 << 20


class Spool:
    """The paste field's bytes: in memory up to SPOOL_THRESHOLD, then on disk."""

    def __init__(self, directory: Path | None = None, threshold: int = SPOOL_THRESHOLD) -> None:
        self.directory = directory
        self.threshold = threshold
        self.buf = bytearray()
        self.file: BinaryIO | None = None
        self.size = 0

    @property
    def spooled(self) -> bool:
        return self.file is not None

    def write(self, chunk: bytes | bytearray) -> None:
        self.size += len(chunk)
        if self.file is None and len(self.buf) + len(chunk) > self.threshold:
            self.file = tempfile.TemporaryFile(dir=self.directory, prefix="upload-")  # noqa: SIM115
            self.file.write(self.buf)
            self.buf = bytearray()
        if self.file is not None:
            self.file.write(chunk)
        else:
            self.buf += chunk

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        if self.file is None:
            yield bytes(self.buf)
            return
        self.file.seek(0)
        while block := self.file.read(size):
            yield block

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.buf = bytearray()


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    body: Spool = field(default_factory=Spool)
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    has_paste: bool = False
    multipart: bool = False  # a form (else a raw body: options in the query string)

    @property
    def paste(self) -> bytes:
        """The paste field in memory (only when it was not spooled to disk)."""
        assert not self.body.spooled, "a spooled paste is read with body.chunks()"
        return bytes(self.body.buf)

    def close(self) -> None:
        self.body.close()

    def flag(self, name: str) -> bool:
        return self.fields.get(name, "").lower() in ("1", "true", "on", "yes")


def b64_length(n: int) -> int:
    """Length of n bytes in unpadded base64."""
    return (n * 4 + 2) // 3


def body_limit(max_paste: int) -> int:
    return b64_length(max_paste + 16) + FORM_OVERHEAD


def too_large(max_paste: int) -> FormError:
    return FormError(413, f"paste too large: the limit is {format_size(max_paste)}")


def format_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


class IdleWatch:
    """Cancels the reading task when no chunk arrived for ``idle`` seconds.

    The uploads of a loop share one ticking timer (``_Watchdog``); a chunk
    only records the time. (A timeout context per chunk cost ~4% of a small
    create, a timer per upload ~3%.)"""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.last = loop.time()
        self.fired = False
        self.watchdog = _Watchdog.of(loop)
        self.watchdog.add(self)

    def touch(self) -> None:
        self.last = self.watchdog.loop.time()

    def fire(self) -> None:
        self.fired = True
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        self.watchdog.watches.discard(self)

    def stalled(self) -> FormError | None:
        """After a CancelledError: the 408 to answer if this watch cancelled."""
        if not self.fired:
            return None
        if self.task is not None:
            self.task.uncancel()
        return FormError(408, f"the upload stalled for {self.idle:g} s and was dropped")


class _Watchdog:
    """One timer per event loop, ticking while uploads are being read."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = (
        weakref.WeakKeyDictionary())

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watches: set[IdleWatch] = set()
        self.tick = 1.0
        self.handle: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Watchdog:
        dog = cls._by_loop.get(loop)
        if dog is None:
            dog = cls._by_loop[loop] = cls(loop)
        return dog

    def add(self, watch: IdleWatch) -> None:
        self.watches.add(watch)
        if watch.idle / 4 < self.tick:  # a 408 at most a quarter late
            self.tick = max(0.01, watch.idle / 4)
            if self.handle is not None:
                self.handle.cancel()
                self.handle = None
        if self.handle is None:
            self.handle = self.loop.call_later(self.tick, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        for watch in list(self.watches):
            if now - watch.last >= watch.idle:
                self.watches.discard(watch)
                watch.fire()
        self.handle = self.loop.call_later(self.tick, self._check) if self.watches else None


async def _watched(chunks: AsyncIterator[bytes], watch: IdleWatch) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        watch.touch()
        yield chunk


async def read_upload(
    chunks: AsyncIterator[bytes],
    content_type: str,
    content_length: int | None,
    max_paste: int,
    idle_timeout: float = BODY_IDLE_TIMEOUT,
    spool_dir: Path | None = None,
) -> Upload:
    """Read a POST body into an Upload, enforcing every limit while streaming."""
    watch = IdleWatch(idle_timeout)
    try:
        return await _read_upload(_watched(chunks, watch), content_type, content_length,
                                  max_paste, spool_dir)
    except asyncio.CancelledError:
        stalled = watch.stalled()
        if stalled is None:
            raise
        raise stalled from None
    finally:
        watch.close()


async def _read_upload(
    chunks: AsyncIterator[bytes],
    content_type: str,
    content_length: int | None,
    max_paste: int,
    spool_dir: Path | None,
) -> Upload:
    limit = body_limit(max_paste)
    if content_length is not None and content_length > limit:
        raise too_large(max_paste)
    mime, options = mediatype.parse(content_type or "")
    if mime == "multipart/form-data":
        boundary = options.get("boundary")
        if not boundary:
            raise FormError(400, "multipart/form-data without a boundary")
        upload = Upload(Spool(spool_dir), multipart=True)
        try:
            await _read_multipart(upload, chunks, boundary, content_length or -1, max_paste, limit)
        except BaseException:
            upload.close()
            raise
        return upload
    upload = Upload(Spool(spool_dir), has_paste=True)
    try:
        async for chunk in chunks:
            if upload.body.size + len(chunk) > max_paste:
                raise too_large(max_paste)
            upload.body.write(chunk)
    except BaseException:
        upload.close()
        raise
    return upload


class _Parts:
    """What the parts of a form become: the paste field in the upload's
    spool, the known small fields as text, the rest skipped; every limit
    checked as the bytes come (from the streaming parser or ``whole_form``)."""

    __slots__ = ("upload", "max_paste", "paste_limit", "name", "buf", "cap")

    def __init__(self, upload: Upload, max_paste: int, paste_limit: int) -> None:
        self.upload = upload
        self.max_paste = max_paste
        self.paste_limit = paste_limit
        self.name: str | None = None
        self.buf = bytearray()
        self.cap = 0

    def start(self, segment: MultipartSegment) -> None:
        if segment.name == PASTE_FIELD:
            if self.upload.has_paste:
                raise FormError(400, "more than one paste field")
            self.upload.filename = segment.filename
            self.name, self.cap = PASTE_FIELD, self.paste_limit
        elif segment.name in FIELDS:
            self.name, self.cap = segment.name, FIELDS[segment.name]
        else:
            self.name = None  # unknown fields are skipped, not stored
        self.buf = bytearray()

    def data(self, chunk: bytes | bytearray) -> None:
        name = self.name
        if name is None:
            return
        if name == PASTE_FIELD:
            if self.upload.body.size + len(chunk) > self.cap:
                raise too_large(self.max_paste)
            self.upload.body.write(chunk)
            return
        if len(self.buf) + len(chunk) > self.cap:
            raise FormError(400, f"field {name!r} is too long")
        self.buf += chunk

    def end(self) -> None:
        if self.name == PASTE_FIELD:
            self.upload.has_paste = True
        elif self.name is not None:
            self.upload.fields[self.name] = _text(self.name, self.buf)
        self.name = None


_KNOWN_HEADERS = {b"Content-Disposition": "Content-Disposition",
                  b"Content-Type": "Content-Type"}


def whole_form(body: bytes, boundary: bytes) -> list[tuple[MultipartSegment, bytes]] | None:
    """The parts of a complete multipart body written the way browsers and
    curl write one: each part a ``Content-Disposition`` line, maybe a
    ``Content-Type`` line, its bytes. None for anything else (other headers,
    a preamble, a bad line, more than MAX_PARTS parts ...): the streaming
    parser then reads the body and says what is wrong with it, if anything.

    What it returns is what the streaming parser (strict) yields for the same
    body: the headers are read by the same code (``MultipartSegment``), a
    part's bytes end at the first CRLF ``--boundary``, the parts at the first
    ``--boundary--``, whatever follows it is ignored. (A small create arrives
    in one chunk; the parser's generator and its per-event work cost a third
    of the handler's CPU.)"""
    delimiter = b"\r\n--" + boundary
    step = len(delimiter)
    pos = step  # after the first boundary and its CRLF
    if body[:pos] != delimiter[2:] + b"\r\n":
        return None
    parts: list[tuple[MultipartSegment, bytes]] = []
    while len(parts) < MAX_PARTS:
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return None
        lines = body[pos:head_end].split(b"\r\n")
        if len(lines) > 2:
            return None
        headers = []
        for line in lines:
            raw_name, _, raw_value = line.partition(b":")
            name = _KNOWN_HEADERS.get(raw_name)
            if name is None or len(line) > MAX_HEADER or b"\n" in line or b"\r" in line:
                return None
            try:
                value = raw_value.decode("utf-8")
            except UnicodeDecodeError:
                return None
            headers.append((name, value.lstrip(" \t")))
        segment = MultipartSegment(headers)
        if segment.disposition != "form-data" or segment.name is None:
            return None
        start = head_end + 4
        end = body.find(delimiter, start)
        if end < 0:
            return None
        parts.append((segment, body[start:end]))
        tail = body[end + step:end + step + 2]
        if tail == b"--":
            return parts
        if tail != b"\r\n":
            return None
        pos = end + step + 2
    return None


async def _read_multipart(
    upload: Upload,
    chunks: AsyncIterator[bytes],
    boundary: str,
    length: int,
    max_paste: int,
    limit: int,
) -> None:
    # An encrypted paste arrives as base64url of the ciphertext (+16 bytes tag).
    paste_limit = max(max_paste, b64_length(max_paste + 16))
    try:
        parser = PushMultipartParser(
            boundary,
            content_length=length,
            max_header_size=MAX_HEADER,
            max_header_count=8,
            max_segment_count=MAX_PARTS,
            strict=True,
        )
    except MultipartError as exc:
        raise FormError(400, f"malformed multipart body: {exc}") from exc
    received = 0
    parts = _Parts(upload, max_paste, paste_limit)
    whole = False  # read by whole_form
    try:
        async for chunk in chunks:
            if whole:
                if chunk:
                    raise FormError(400, "malformed multipart body: Content-Length limit "
                                         "exceeded")
                continue
            received += len(chunk)
            if received > limit:
                raise too_large(max_paste)
            if received == length and len(chunk) == length:
                found = whole_form(chunk, parser.boundary)
                if found is not None:
                    whole = True
                    parser.close(check_complete=False)
                    for segment, data in found:
                        parts.start(segment)
                        if data:
                            parts.data(data)
                        parts.end()
                    continue
            for event in parser.parse(chunk):
                if event is None:  # end of a part
                    parts.end()
                elif isinstance(event, bytes | bytearray):
                    parts.data(event)
                else:
                    parts.start(event)
        if not whole:
            parser.close()  # MultipartError if the stream did not end
    except ParserLimitReached as exc:
        raise FormError(400, f"form refused: {exc}") from exc
    except MultipartError as exc:
        raise FormError(400, f"malformed multipart body: {exc}") from exc
    finally:
        if not parser.closed:
            parser.close(check_complete=False)


def _text(name: str, value: bytearray) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError(400, f"field {name!r} is not valid UTF-8") from exc
