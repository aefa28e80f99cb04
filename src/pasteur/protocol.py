"""Pasteur's HTTP/1.1 connection protocol: uvicorn's httptools protocol with limits.

Limits against slow and idle clients:

- a connection must send a complete request head within ``HEADER_TIMEOUT``
  seconds of opening (or of starting a request); otherwise it is closed
  (uvicorn alone leaves a silent connection open forever);
- an idle keep-alive connection is closed after ``KEEPALIVE_TIMEOUT`` seconds;
- a request body that stalls for ``pasteur.web.form.BODY_IDLE_TIMEOUT`` seconds is
  answered 408;
- above ``limits.MAX_CONNECTIONS`` concurrent connections new requests get 503;
- a request head over the limits of limits.py is answered 414 or 431 while it
  arrives, before it is parsed whole (see `GuardedProtocol`).

A request whose whole answer is already known (``HotAnswers``: the cached reads
of ``pasteur.web.hotpath``) is answered when its head is parsed, without an ASGI
request cycle.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import limits

HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 15
LINGER = 5.0  # seconds a refused connection's input is still read (and dropped), as nginx


class _Coalescing:
    """A response's transport for uvicorn's request cycle: the head is held
    until the body's first write and leaves with it, in one send instead of
    two (uvicorn writes them apart; measured: the head's send was 10% of the
    event loop's time under load). A "100 Continue" is never held and is not
    the response's head: the final head after it is held as well (it used to
    leave alone, and a client could read it without its body). Nothing after
    the body's first write is held; not used for HEAD requests (uvicorn
    writes no body for them)."""

    __slots__ = ("_transport", "_head", "_wrote")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._wrote = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._wrote and data.startswith(b"HTTP/"):
            if data.startswith(b"HTTP/1.1 100 "):  # interim: out now, the head is still to come
                self._transport.write(data)
                return
            self._head, self._wrote = data, True
            return
        self._wrote = True
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class HotAnswers(Protocol):
    """Whole answers known before a request's cycle (``pasteur.web.hotpath``)."""

    def answer(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
               keep_alive: bool, client: tuple[str, int] | None,
               default_headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The response's bytes, as the application would send them after
        ``default_headers`` (uvicorn's Date), with ``connection: close`` when not
        ``keep_alive``; None: the request goes to the application."""
        ...


class _Refused(Exception):
    """Raised in a parser callback to stop the parser; `GuardedProtocol` answers."""


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for the request head and the
    limits of limits.py on its size, counted while it arrives.

    The head is fed to the parser at most ``MAX_HEAD`` bytes at a time, so a head
    that has not ended within them is refused before the parser holds more (httptools
    grows an unfinished header value by ``bytes +=``: quadratic); the URL is counted
    as it comes (``on_url``), each field and the fields' sum when complete. A refused
    connection gets its answer with ``Connection: close`` and a FIN, then its input is
    read and dropped for up to ``LINGER`` seconds, so that a client still sending
    its head reads the answer instead of a reset."""

    _head_timer: asyncio.TimerHandle | None = None
    _linger: asyncio.TimerHandle | None = None
    _refusal: limits.Refusal | None = None
    _in_head = True  # from a message's end (or the connection's start) to its head's end
    _head_bytes = 0  # fed to the parser while in the head
    _head_sum = 0  # the URL and complete fields of this head
    _fields = 0

    header_timeout = HEADER_TIMEOUT
    hot: HotAnswers | None = None  # set on a subclass by whoever builds the listener
    _answered = False  # this message was answered by `hot`: no cycle was made for it

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn does
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:  # lingering: the rest of a refused head is dropped
            return
        self._unset_keepalive_if_required()
        while data and self._in_head:
            room = limits.MAX_HEAD - self._head_bytes
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            if not self._feed(piece):
                return
            if self._in_head and self._head_bytes >= limits.MAX_HEAD:
                self._refuse(limits.HEAD_TOO_LARGE)
                return
        if data:
            self._feed(data)

    def _feed(self, data: bytes) -> bool:
        """Parse `data`; False when the connection is done with (refused, bad, upgraded)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        return True

    def _stop_parser(self, refusal: limits.Refusal) -> None:
        self._refusal = refusal
        raise _Refused(refusal.reason)

    def _refuse(self, refusal: limits.Refusal) -> None:
        self._refusal = refusal
        self._disarm_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined head while an answer is on its way
            return
        self.logger.info("refused a request head: %s", refusal.reason)
        self.transport.write(refusal.http11())
        try:
            self.transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            self.transport.close()
            return
        self._linger = self.loop.call_later(LINGER, self.transport.close)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()
        self._head_sum = self._fields = 0
        self._answered = False

    def on_url(self, url: bytes) -> None:
        self._head_sum += len(url)
        if self._head_sum > limits.MAX_URL:
            self._stop_parser(limits.URL_TOO_LONG)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = limits.field_size(name, value)
        self._head_sum += size
        self._fields += 1
        if self._fields > limits.MAX_FIELDS:
            self._stop_parser(limits.TOO_MANY_FIELDS)
        if size > limits.MAX_FIELD:
            self._stop_parser(limits.FIELD_TOO_LARGE)
        if self._head_sum > limits.MAX_HEAD:
            self._stop_parser(limits.HEAD_TOO_LARGE)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        self._in_head = False
        if self.hot is not None and self._answer_hot(self.hot):
            return
        before = self.cycle
        super().on_headers_complete()
        # A new request's cycle (not an upgrade's early return), its task not run yet.
        if self.cycle is not None and self.cycle is not before \
                and self.cycle.scope["method"] != "HEAD":
            self.cycle.transport = _Coalescing(self.transport)  # type: ignore[assignment]  # duck-types one

    def _answer_hot(self, hot: HotAnswers) -> bool:
        """Write ``hot``'s answer, as uvicorn's cycle would end (keep-alive timer,
        close), if it has one and no earlier request's answer is still due."""
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline \
                or self.expect_100_continue or self.transport.is_closing():
            return False
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            return False  # the 503 of uvicorn's own
        parser = self.parser
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        data = hot.answer(parser.get_method(), self.url, self.headers, keep_alive, self.client,
                          self.server_state.default_headers)
        if data is None:
            return False
        self._answered = True
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()
        return True

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._answered:
            super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)
