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
from .store import Store, lock_repository
from .sync import SyncError, start_syncer

log = logging.getLogger("pasteur")

HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 15
MAX_CONNECTIONS = 2048


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
        super().on_headers_complete()

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
    tls = https.prepare(config)  # None for plain HTTP; bad HTTPS options exit here
    try:
        lock_repository(config.repo_path)  # held until the process ends
        store = Store(config.repo_path, config.length)
    except Exception as exc:  # noqa: BLE001 - report any start-up failure in one line
        log.error("cannot open the data repository %s: %s", config.repo_path, exc)
        return 1
    try:
        syncer = await start_syncer(config.extra, store)
    except SyncError as exc:
        log.error("%s", exc)
        return 1
    app = create_app(config, store)
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
