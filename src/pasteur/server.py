"""Running the application: uvicorn (uvloop, httptools) for plain HTTP.

Limits against slow and idle clients:

- a connection must send a complete request head within ``HEADER_TIMEOUT``
  seconds of opening (or of starting a request); otherwise it is closed
  (uvicorn alone leaves a silent connection open forever);
- an idle keep-alive connection is closed after ``KEEPALIVE_TIMEOUT`` seconds;
- a request body that stalls for ``pasteur.form.BODY_IDLE_TIMEOUT`` seconds is
  answered 408;
- above ``MAX_CONNECTIONS`` concurrent connections new requests get 503.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import https
from .app import create_app
from .config import Config
from .store import Store, lock_repository, tune_malloc
from .sync import SyncError, start_syncer

log = logging.getLogger("pasteur")

HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 15
MAX_CONNECTIONS = 2048


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


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for the request head."""

    _head_timer: asyncio.TimerHandle | None = None

    header_timeout = HEADER_TIMEOUT

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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        before = self.cycle
        super().on_headers_complete()
        # A new request's cycle (not an upgrade's early return), its task not run yet.
        if self.cycle is not None and self.cycle is not before \
                and self.cycle.scope["method"] != "HEAD":
            self.cycle.transport = _Coalescing(self.transport)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def uvicorn_config(app, config: Config) -> uvicorn.Config:  # noqa: ANN001 - ASGI app
    protocol = type("Protocol", (GuardedProtocol,), {"header_timeout": config.header_timeout})
    return uvicorn.Config(
        app,
        host=config.bind,
        port=config.port,
        loop="uvloop",
        http=protocol,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=KEEPALIVE_TIMEOUT,
        limit_concurrency=MAX_CONNECTIONS,
    )


async def run(config: Config) -> int:
    tune_malloc()
    tls = https.prepare(config)  # None for plain HTTP; bad HTTPS options exit here
    try:
        lock = lock_repository(config.repo_path)  # held until the process ends
        store = Store(config.repo_path, config.length, lock_fd=lock)
    except Exception as exc:  # noqa: BLE001 - report any start-up failure in one line
        log.error("cannot open the data repository %s: %s", config.repo_path, exc)
        return 1
    try:
        syncer = await start_syncer(config.extra, store)
    except SyncError as exc:
        log.error("%s", exc)
        return 1
    app = create_app(config, store, freeze=True)
    if syncer is not None:
        app.app.state.sync = syncer  # type: ignore[attr-defined]
    try:
        if tls is not None:  # TLS, HTTP/2, ACME: see https.py
            await https.serve(app, config, tls)
            return 0
        server = uvicorn.Server(uvicorn_config(app, config))
        log.info("pasteur on http://%s:%d, pastes in %s", config.bind, config.port,
                 config.repo_path)
        await server.serve()
        return 0 if server.started else 1
    finally:
        if syncer is not None:
            await syncer.stop()
