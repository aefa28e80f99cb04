"""Request limits, the same on both listeners: the size of a request head, its number
of header fields, and how many requests are served at once.

nginx's defaults are the model (``large_client_header_buffers 4 8k``): a request line
or a header line must fit in 8 KiB, the whole head in 32 KiB; the field count is
Apache's ``LimitRequestFields 100``. Beyond them the answer is 414 (URL) or 431 (head),
with ``Connection: close``, before the head reaches the application. Without them a
32 MiB ``Cookie`` on a paste page was answered 200 after 1.6 s of server CPU (httptools
grows a header value by ``bytes +=``, Starlette then parses the cookie), and stalled
``/healthz`` for 1.2 s (``bench/big_head.py``).

HTTP/1.1, plain or over TLS, is counted while the head arrives (protocol.py); HTTP/2
(hypercorn's protocol on the TLS listener, tls/alpn.py) bounds the header list with
SETTINGS_MAX_HEADER_LIST_SIZE and checks the rest here, in `Guard`.
This module imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

MAX_URL = 8 * 1024  # request target, path and query: longer is answered 414
MAX_FIELD = 8 * 1024  # one header line, "name: value": longer is answered 431
MAX_HEAD = 32 * 1024  # the request line and every header line: larger is answered 431
MAX_FIELDS = 100  # header fields: more are answered 431
MAX_CONNECTIONS = 2048  # requests in progress (and, plain, connections): beyond, 503

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Refusal:
    """A request refused for its head: the status and a line saying why."""

    status: int
    reason: str

    def http11(self) -> bytes:
        """The whole answer on HTTP/1.1, closing the connection."""
        body = self.reason.encode() + b"\n"
        phrase = PHRASES[self.status]
        return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (self.status, phrase, len(body), body))


PHRASES = {414: b"URI Too Long", 431: b"Request Header Fields Too Large",
           503: b"Service Unavailable"}
URL_TOO_LONG = Refusal(414, f"request URL longer than {MAX_URL // 1024} KiB")
FIELD_TOO_LARGE = Refusal(431, f"a header line longer than {MAX_FIELD // 1024} KiB")
HEAD_TOO_LARGE = Refusal(431, f"request head larger than {MAX_HEAD // 1024} KiB")
TOO_MANY_FIELDS = Refusal(431, f"more than {MAX_FIELDS} header fields")
BUSY = Refusal(503, "too many requests in progress, try again")


def field_size(name: bytes, value: bytes) -> int:
    """Bytes of a header line on HTTP/1.1, with its ": " and CRLF."""
    return len(name) + len(value) + 4


def head_refusal(target: int, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
    """Why a parsed head (its target's length, its fields) is refused, or None."""
    if target > MAX_URL:
        return URL_TOO_LONG
    if len(headers) > MAX_FIELDS:
        return TOO_MANY_FIELDS
    total = target
    for name, value in headers:
        size = field_size(name, value)
        if size > MAX_FIELD:
            return FIELD_TOO_LARGE
        total += size
    return HEAD_TOO_LARGE if total > MAX_HEAD else None


def target_length(scope: Scope) -> int:
    """Length of the request target of an ASGI scope (path and query)."""
    query = scope.get("query_string") or b""
    path = scope.get("raw_path") or scope["path"].encode()
    return len(path) + (len(query) + 1 if query else 0)


class Guard:
    """ASGI middleware for the HTTP/2 connections (hypercorn's protocol): refuses a head
    over the limits (what HTTP/2's header list size lets through: too many fields, a long
    line, a long URL) and answers 503 beyond `cap` requests in progress."""

    def __init__(self, app: ASGIApp, cap: int = MAX_CONNECTIONS) -> None:
        self.app = app
        self.cap = cap
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = head_refusal(target_length(scope), scope["headers"])
        if refusal is None and self.in_progress >= self.cap:
            refusal = BUSY
        if refusal is not None:
            await refuse(scope, send, refusal)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1


async def refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    body = refusal.reason.encode() + b"\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode())]
    if scope.get("http_version", "1.1") in ("1.0", "1.1"):  # HTTP/2 has no Connection
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
