"""Pasteur's own listeners for HTTPS mode: TLS by the event loop on the live context,
each connection served by ALPN, HTTP/1.1 by the plain listener's protocol.

A `Listener` is uvicorn's server machinery (`uvicorn.Server`: its connection set,
lifespan, Date header ticks and graceful stop) on a socket Pasteur binds and a server it
makes itself with ``loop.create_server(ssl=LiveTLS.context, ssl_handshake_timeout=...)``,
so the TLS is uvloop's on the one `ssl.SSLContext` that a renewal loads the new
certificate into (new handshakes get it, open connections keep theirs). The protocol
factory returns an `AlpnDispatch`; its ``connection_made`` comes after the handshake, when
the ALPN choice is known:

- ``http/1.1`` (or none) goes to `pasteur.protocol.GuardedProtocol`, the protocol of the
  plain listener: httptools, the head's size limits and deadline, the idle keep-alive
  timeout, the connection cap (503), the head and body in one send;
- ``h2`` goes to hypercorn's HTTP/2 protocol (`H2Connection`: its ``TCPServer`` on a
  stream reader and writer over the same transport), with the app behind
  `limits.Guard` and HTTP/2's header list limited to ``limits.MAX_HEAD``.

Measured (docs/performance.md, ``bench/tls.py``): raw reads over HTTPS/1.1 at ~0.85x the
plain listener's req/s (TLS adds ~10 µs of CPU per request, ~3 µs of it OpenSSL's
records); hypercorn's whole server did ~0.25x; h2 is still hypercorn's speed. Plain
(``context=None``) the same class serves port 80 (redirect and ACME HTTP-01).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

import uvicorn

from pasteur import limits

if TYPE_CHECKING:
    from hypercorn.asyncio.worker_context import WorkerContext
    from hypercorn.config import Config as HypercornConfig

log = logging.getLogger("pasteur.tls")

HANDSHAKE_TIMEOUT = 10.0  # seconds for a TLS handshake, then the connection is closed
H2_IDLE_TIMEOUT = 15  # an HTTP/2 connection without a stream, as KEEPALIVE_TIMEOUT
H2_READ_TIMEOUT = 30  # an HTTP/2 connection that sends nothing at all


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (IPv6 if host has a colon); OSError if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def h2_config() -> HypercornConfig:
    """Hypercorn's settings for the HTTP/2 connections."""
    from hypercorn.config import Config

    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("pasteur.hypercorn")
    config.include_server_header = False
    config.keep_alive_timeout = H2_IDLE_TIMEOUT
    config.read_timeout = H2_READ_TIMEOUT
    # A larger header list is refused by HTTP/2 itself (a connection error); limits.Guard,
    # around the app, refuses what gets through over the limits (a long URL or field).
    config.h2_max_header_list_size = limits.MAX_HEAD
    return config


class H2Connection:
    """One HTTP/2 connection, served by hypercorn's protocol on a transport accepted and
    handshaken by the event loop. It stands in uvicorn's connection set while it lives,
    so the cap counts it and a stop waits for it (`shutdown`: GOAWAY once idle)."""

    def __init__(self, transport: asyncio.Transport, listener: Listener) -> None:
        from hypercorn.asyncio.tcp_server import TCPServer

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        assert listener.h2 is not None
        app, config, context = listener.h2
        self.context = context
        self.task = loop.create_task(TCPServer(app, loop, config, context,
                                               listener.server.lifespan.state, reader,
                                               writer).run())
        self.connections = listener.server.server_state.connections
        self.connections.add(self)  # type: ignore[arg-type]  # duck-types uvicorn's protocols
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.connections.discard(self)
        if not task.cancelled() and task.exception() is not None:
            log.warning("HTTP/2 connection failed: %r", task.exception())

    def shutdown(self) -> None:
        """Close once no stream is in progress (hypercorn: its workers' `terminated`)."""
        self._closing = asyncio.ensure_future(self.context.terminated.set())

    def cancel(self) -> None:
        """Stop serving at once (a stop whose graceful time is over)."""
        self.task.cancel()


class AlpnDispatch(asyncio.Protocol):
    """The protocol a TLS connection starts with: once the handshake is done, hands the
    transport to the HTTP/1.1 protocol or to HTTP/2, by the ALPN choice."""

    __slots__ = ("listener",)

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvloop's is no asyncio.Transport subclass
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            H2Connection(transport, self.listener)
            return
        protocol = self.listener.http11()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


class Listener:
    """`uvicorn.Server` on one socket of ours: TLS with `context` (HTTP/1.1 and, given
    `h2_app`, HTTP/2), or plain HTTP/1.1 without it. `start`, then `stop`."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket,
                 context: ssl.SSLContext | None = None, h2_app: limits.ASGIApp | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.config = config
        self.sock = sock
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.server = uvicorn.Server(config)
        self.h2: tuple[Any, HypercornConfig, WorkerContext] | None = None
        if h2_app is not None:
            from hypercorn.asyncio.worker_context import WorkerContext
            from hypercorn.utils import wrap_app

            guarded = limits.Guard(h2_app, config.limit_concurrency or limits.MAX_CONNECTIONS)
            self.h2 = (wrap_app(guarded, None, "asgi"),  # type: ignore[arg-type]  # ASGI; no WSGI
                       h2_config(), WorkerContext(None))
        self._ticks: asyncio.Task | None = None

    def http11(self) -> asyncio.Protocol:
        """A new HTTP/1.1 connection's protocol (GuardedProtocol, as on the plain listener)."""
        return self.config.http_protocol_class(  # type: ignore[call-arg]  # uvicorn's protocols
            config=self.config, server_state=self.server.server_state,
            app_state=self.server.lifespan.state, _loop=asyncio.get_running_loop())

    async def start(self) -> None:
        """Run the app's lifespan startup (if the config says so), then accept."""
        config = self.config
        if not config.loaded:
            config.load()
        server = self.server
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[])  # lifespan, no uvicorn-made listener
        loop = asyncio.get_running_loop()
        if self.context is None:
            made = await loop.create_server(self.http11, sock=self.sock)
        else:
            made = await loop.create_server(lambda: AlpnDispatch(self), sock=self.sock,
                                            ssl=self.context,
                                            ssl_handshake_timeout=self.handshake_timeout)
        server.servers.append(made)
        self._ticks = asyncio.create_task(server.main_loop())  # Date header, once a second

    async def stop(self) -> None:
        """Stop accepting, let requests in progress end (up to the config's graceful
        timeout), close the connections, run the app's lifespan shutdown."""
        if self._ticks is None:
            return
        self.server.should_exit = True
        await self._ticks
        self._ticks = None
        await self.server.shutdown()
        for connection in list(self.server.server_state.connections):
            if isinstance(connection, H2Connection):  # still open after the graceful time
                connection.cancel()
        self.sock.close()
