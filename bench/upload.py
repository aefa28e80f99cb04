"""A small client that streams a large multipart upload (chunked) and stops when answered."""

from __future__ import annotations

import base64
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


def payload_block(n: int) -> bytes:
    """``n`` bytes of base64url text from a seeded generator: what an
    encrypted paste is made of, and text that deflate cannot shrink much (a
    repeated alphabet compresses 100:1 and hides the cost of compression)."""
    rng = random.Random(n)
    return base64.urlsafe_b64encode(rng.randbytes(n * 3 // 4 + 3))[:n]


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_upload(url: str, size: int, field: str = "paste", path: str = "/",
                  extra: dict[str, str] | None = None, timeout: float = 600) -> UploadResult:
    """POST ``size`` bytes of text in field ``field``, chunked; returns the status.

    The body is sent while watching the socket: when the server answers early
    (413) the client stops sending and reads the answer, as a browser would.
    """
    parts = urlsplit(url)
    head = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (BOUNDARY.encode(), k.encode(), v.encode())
        for k, v in (extra or {}).items()
    )
    head += b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n' % (
        BOUNDARY.encode(), field.encode())
    tail = b"\r\n--%s--\r\n" % BOUNDARY.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    block = _frame(payload_block(CHUNK))
    start = time.monotonic()
    sent_payload = 0
    answer = bytearray()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        sock.setblocking(False)
        pending = memoryview(request + _frame(head))
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
                        pending = memoryview(block if n == CHUNK else _frame(block[:n]))
                        sent_payload += n
                    else:
                        pending = memoryview(_frame(tail) + b"0\r\n\r\n")
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
    return UploadResult(status, sent_payload, time.monotonic() - start, bytes(answer))


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
