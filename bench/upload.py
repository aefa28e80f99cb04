"""A small client that streams a large upload (chunked: a multipart form or a
raw body) and stops when answered, and one that reads a paste back."""

from __future__ import annotations

import base64
import hashlib
import random
import select
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

BOUNDARY = "benchUploadB0undary"
CHUNK = 256 * 1024


@dataclass
class UploadResult:
    status: int
    sent: int
    seconds: float
    body: bytes
    digest: str = ""  # SHA-256 of the paste's bytes sent (all of them: the status was 201)


@dataclass
class ReadResult:
    status: int
    size: int
    seconds: float
    digest: str  # SHA-256 of the body read


def read_back(url: str, timeout: float = 600) -> ReadResult:
    """GET ``url`` (a paste's raw view), streamed: its size, time and digest."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    digest = hashlib.sha256()
    start = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        head = bytearray()
        while b"\r\n\r\n" not in head:
            data = sock.recv(1 << 16)
            if not data:
                break
            head += data
        head_end = head.find(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        chunked = b"transfer-encoding: chunked" in head[:head_end].lower()
        body = _ChunkedBody(digest) if chunked else None
        rest = bytes(head[head_end + 4:])
        size = 0
        while True:
            if body is not None:
                body.feed(rest)
            else:
                digest.update(rest)
                size += len(rest)
            rest = sock.recv(1 << 20)
            if not rest:
                break
    size = body.size if body is not None else size
    return ReadResult(status, size, time.monotonic() - start, digest.hexdigest())


class _ChunkedBody:
    """A chunked body's payload, decoded as it arrives, into a digest."""

    def __init__(self, digest: hashlib._Hash) -> None:
        self.digest = digest
        self.buf = bytearray()
        self.left = 0  # payload bytes due in the current chunk
        self.crlf = 0  # bytes of the CRLF after it still to skip
        self.done = False
        self.size = 0

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while pos < len(buf) and not self.done:
            if self.left:
                n = min(self.left, len(buf) - pos)
                self.digest.update(buf[pos:pos + n])
                self.size += n
                self.left -= n
                pos += n
                self.crlf = 0 if self.left else 2
            elif self.crlf:
                n = min(self.crlf, len(buf) - pos)
                self.crlf -= n
                pos += n
            else:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                self.left = int(bytes(buf[pos:end]).split(b";")[0], 16)
                self.done = self.left == 0
                pos = end + 2
        del buf[:pos]


def payload_block(n: int, kind: str = "b64url") -> bytes:
    """``n`` bytes from a seeded generator. ``b64url``: base64url text, what
    an encrypted paste is made of, and text that deflate cannot shrink much
    (a repeated alphabet compresses 100:1 and hides the cost of compression).
    ``text``: lines of words, ~60 bytes each (a newline to escape in JSON
    every line, a tab and a quote now and then)."""
    rng = random.Random(n)
    if kind == "b64url":
        return base64.urlsafe_b64encode(rng.randbytes(n * 3 // 4 + 3))[:n]
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(1, 9)))
             for _ in range(4096)]
    words += [b'"quoted"', b"\ttab"]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choices(words, k=rng.randint(4, 14))) + b"\n"
    return bytes(out[:n])


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_upload(url: str, size: int, field: str = "paste", path: str = "/",
                  extra: dict[str, str] | None = None, timeout: float = 600,
                  raw: bool = False, payload_kind: str = "b64url") -> UploadResult:
    """POST ``size`` bytes of text in field ``field`` (``raw``: as the whole
    body, ``text/plain``), chunked; returns the status.

    The body is sent while watching the socket: when the server answers early
    (413) the client stops sending and reads the answer, as a browser would.
    """
    parts = urlsplit(url)
    head = b"" if raw else b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (BOUNDARY.encode(), k.encode(), v.encode())
        for k, v in (extra or {}).items()
    )
    if not raw:
        head += b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n' % (
            BOUNDARY.encode(), field.encode())
    tail = b"" if raw else b"\r\n--%s--\r\n" % BOUNDARY.encode()
    ctype = "text/plain; charset=utf-8" if raw else f"multipart/form-data; boundary={BOUNDARY}"
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {ctype}\r\n"
        "Accept: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    payload = payload_block(CHUNK, payload_kind)
    block = _frame(payload)
    digest = hashlib.sha256()
    start = time.monotonic()
    sent_payload = 0
    answer = bytearray()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        sock.setblocking(False)
        pending = memoryview(request + (_frame(head) if head else b""))
        finished = False
        while True:
            if time.monotonic() - start > timeout:
                raise TimeoutError("upload timed out")
            want_write = [sock] if (len(pending) or not finished) else []
            readable, writable, _ = select.select([sock], want_write, [], 5)
            if readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if not data:
                    break
                answer += data
                if _complete(answer):
                    break
                continue
            if writable:
                if not len(pending):
                    if sent_payload < size:
                        n = min(CHUNK, size - sent_payload)
                        pending = memoryview(block if n == CHUNK else _frame(payload[:n]))
                        digest.update(payload if n == CHUNK else payload[:n])
                        sent_payload += n
                    else:
                        pending = memoryview((_frame(tail) if tail else b"") + b"0\r\n\r\n")
                        finished = True
                try:
                    k = sock.send(pending)
                except BlockingIOError:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    finished, pending = True, memoryview(b"")
                    continue
                pending = pending[k:]
        sock.setblocking(True)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return UploadResult(status, sent_payload, time.monotonic() - start, bytes(answer),
                        digest.hexdigest())


def _complete(answer: bytearray) -> bool:
    """True once a whole response with a Content-Length body has arrived."""
    end = answer.find(b"\r\n\r\n")
    if end < 0:
        return False
    for line in answer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(answer) - end - 4 >= int(value)
    return False
