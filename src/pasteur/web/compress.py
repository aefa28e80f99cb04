"""Compression of dynamic responses: br, zstd or gzip, as ``Accept-Encoding`` asks.

One place for every answer built per request (pages, raw text, JSON, errors):
``compressing`` turns the ``send`` of a request into one that compresses
a response's body when all of these hold:

- its type is text (``text/*``, JSON, JavaScript, XML, SVG);
- it is at least ``MIN_SIZE`` bytes;
- it has no ``Content-Encoding`` and did not negotiate one itself (its
  ``Vary`` names ``Accept-Encoding``: the static bundle and the form);
- it comes in one body message. A streamed body (show.py streams pastes over
  4 MiB) passes unchanged: compressing it would cost CPU on every read
  (nothing caches it), for a body of any size, and lose its Content-Length;
  those are downloads, read rarely, and memory stays bounded by the chunk.

Such a response gets ``Vary: Accept-Encoding`` whether compressed or not, and
its Content-Length is that of the compressed body. A HEAD goes through the
same path (Starlette's Response sends its body; the server drops it), so it
carries the GET's headers.

Levels are chosen for speed on content made per request; measured on a
650 KB highlighted page (a 133 KB Python file): brotli 5 58.6 KB in 23 ms,
zstd 3 72.9 KB in 6 ms, gzip 6 67.3 KB in 16 ms (brotli 11: 47 KB in 3 s).
Bodies over ``THREAD_SIZE`` are compressed in a thread (the three release the
GIL), so a large page does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
from collections.abc import Callable, Container, Iterable

import brotli
import zstandard

# Preference when a client accepts several encodings with the same weight.
ENCODINGS = ("br", "zstd", "gzip")
MIN_SIZE = 1024  # below this, the encoding's framing eats most of the gain
THREAD_SIZE = 64 << 10
TEXT_TYPES = (
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "image/svg+xml",
)
_ZSTD = zstandard.ZstdCompressor(level=3)


def accepted(accept_encoding: str) -> dict[str, float]:
    """The codings of an ``Accept-Encoding`` header and their weights (q=0: refused)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        token, _, params = item.partition(";")
        token = token.strip()
        if not token:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        weights[token] = q
    return weights


def negotiate(accept_encoding: str, offered: Container[str] = ENCODINGS) -> str:
    """The coding to send ("" for identity): the highest weight the client gives
    an offered coding (named, or through ``*``), ties broken by ``ENCODINGS``."""
    if not accept_encoding:
        return ""
    weights = accepted(accept_encoding)
    star = weights.get("*", 0.0)
    best, best_q = "", 0.0
    for enc in ENCODINGS:
        if enc in offered:
            q = weights.get(enc, star)
            if q > best_q:
                best, best_q = enc, q
    return best


@functools.lru_cache(maxsize=256)
def choose(accept_encoding: str) -> str:
    """``negotiate`` over ``ENCODINGS``, remembered per header value (clients send few)."""
    return negotiate(accept_encoding)


def coding(accept_encoding: str, content_type: str, size: int) -> str | None:
    """How to send a whole body: None as it is (it never varies), else "" for
    identity or a content coding, both with ``headers(...)``."""
    if size < MIN_SIZE or not compressible(content_type):
        return None
    return choose(accept_encoding)


def headers(encoding: str | None) -> dict[str, str]:
    """A response's headers for what ``coding`` said."""
    if encoding is None:
        return {}
    if not encoding:
        return {"vary": "Accept-Encoding"}
    return {"vary": "Accept-Encoding", "content-encoding": encoding}


@functools.lru_cache(maxsize=64)
def compressible(content_type: str) -> bool:
    """Whether a body of this type is worth compressing (remembered: responses have few types)."""
    ctype = content_type.partition(";")[0].strip().lower()
    return ctype.startswith("text/") or ctype in TEXT_TYPES or ctype.endswith(("+json", "+xml"))


def compress(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        return brotli.compress(data, quality=5)
    if encoding == "zstd":
        return _ZSTD.compress(data)
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    raise ValueError(f"unknown content coding {encoding!r}")


async def compress_async(data: bytes, encoding: str) -> bytes:
    """``compress``, in a thread for a large body."""
    if len(data) > THREAD_SIZE:
        return await asyncio.to_thread(compress, data, encoding)
    return compress(data, encoding)


def add_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with ``Accept-Encoding`` in their ``Vary``."""
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"accept-encoding" in value.lower() or value.strip() == b"*":
                return headers
            headers = list(headers)
            headers[i] = (name, value + b", Accept-Encoding")
            return headers
    return [*headers, (b"vary", b"Accept-Encoding")]


def compressing(scope: dict, send: Callable) -> Callable:
    """The ``send`` of a request, compressing as the module's docstring says."""
    encoding = ""
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            encoding = choose(value.decode("latin-1"))
            break
    start: dict | None = None  # an eligible response's head, held until its body

    async def compressed(message: dict) -> None:
        nonlocal start
        kind = message["type"]
        if kind == "http.response.start":
            if eligible(message.get("headers", [])):
                start = message
                return
        elif kind == "http.response.body" and start is not None:
            held, start = start, None
            body = message.get("body", b"")
            if not message.get("more_body", False) and len(body) >= MIN_SIZE:
                headers = add_vary(held.get("headers", []))
                if encoding:
                    body = await compress_async(body, encoding)
                    headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
                    headers += [(b"content-encoding", encoding.encode()),
                                (b"content-length", str(len(body)).encode())]
                    message = {**message, "body": body}
                held = {**held, "headers": headers}
            await send(held)
        await send(message)

    return compressed


def eligible(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a response's head allows compressing it (its body decides the rest)."""
    ok = False
    for name, value in headers:
        name = name.lower()
        if name == b"content-type":
            ok = compressible(value.decode("latin-1"))
        elif name == b"content-encoding":
            return False
        elif name == b"vary" and b"accept-encoding" in value.lower():
            return False  # negotiated by its handler
        elif name == b"content-length" and int(value) < MIN_SIZE:
            return False
    return ok
