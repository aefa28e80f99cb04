"""Running the application: the wiring of store, sync, app and listeners.

Plain HTTP is uvicorn (uvloop) with Pasteur's own HTTP/1.1 protocol
(``protocol.py``: deadlines and head limits against slow and hostile clients);
HTTPS is ``tls/listener.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from pasteur.sync.erase import Eraser
from pasteur.sync.namespace import IdNamespace
from pasteur.sync.syncer import Syncer, SyncError, resolve_branch

from . import record
from .config import Config
from .procs import tune_malloc
from .protocol import KEEPALIVE_TIMEOUT, GuardedProtocol
from .storage.repository import lock_repository
from .storage.store import Store
from .tls import listener as https
from .web.app import ASGIApp, Frontdoor, create_app
from .web.frontdoor import ResponseCounts
from .web.metrics import PasteurCollector, metrics_app, registry_for

log = logging.getLogger("pasteur")

def uvicorn_config(app: Frontdoor, config: Config) -> uvicorn.Config:
    """The plain listener's: its protocol answers the front door's hot reads."""
    protocol = type("Protocol", (GuardedProtocol,),
                    {"header_timeout": config.header_timeout, "hot": app.hot})
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
        limit_concurrency=config.max_connections,
        proxy_headers=False,  # forwarded headers are read by pasteur.proxy alone
        forwarded_allow_ips="",
    )


class MetricsListener:
    """``--metrics HOST:PORT``: a plain-HTTP uvicorn of its own serving only
    /metrics (``web/metrics.py``), beside the public listener, in the same loop."""

    def __init__(self, app: ASGIApp, bind: tuple[str, int]) -> None:
        self.bind = bind
        self.server = uvicorn.Server(uvicorn.Config(
            app, loop="none", http=GuardedProtocol, lifespan="off", access_log=False,
            log_config=None, server_header=False, timeout_keep_alive=KEEPALIVE_TIMEOUT,
            limit_concurrency=16))
        self.sock: socket.socket | None = None

    async def start(self) -> bool:
        host, port = self.bind
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            log.error("cannot serve the metrics on %s:%d: %s", host, port, exc.strerror or exc)
            return False
        config = self.server.config
        config.load()
        self.server.lifespan = config.lifespan_class(config)  # as Server.serve does
        await self.server.startup(sockets=[self.sock])
        host, port = self.sock.getsockname()[:2]
        log.info("metrics on http://%s:%d/metrics", f"[{host}]" if ":" in host else host, port)
        return True

    async def stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                await self.server.shutdown(sockets=[self.sock])
            self.sock = None


async def run(config: Config, metrics_bind: tuple[str, int] | None = None) -> int:
    """Serve until stopped; the exit status. ``metrics_bind``: --metrics's
    address (its own listener), None for no /metrics (it stays out of
    `Config`, at its 20 fields: scripts/structure.py)."""
    tune_malloc()
    tls = https.prepare(config)  # None for plain HTTP; bad HTTPS options exit here
    history = asyncio.Lock()  # one fetch, push, pack roll-up or erasure at a time
    try:
        lock = lock_repository(config.repo_path)  # held until the process ends
        store = Store(config.repo_path, config.length, lock_fd=lock,
                      check_document=record.document_problem, guard=history)
    except Exception as exc:  # noqa: BLE001 - report any start-up failure in one line
        log.error("cannot open the data repository %s: %s", config.repo_path, exc)
        return 1
    syncer: Syncer | None = None
    if config.sync is not None:
        eraser = Eraser(store)  # every erasure, the sweeper's too, is announced
        store.on_erasure(announce=eraser.announce, after=eraser.commit_marker)
        try:
            # the branch: URL#branch, else the remote's HEAD (sync/branch.py)
            settings = await resolve_branch(config.sync, store)
            syncer = Syncer(store, settings, eraser, guard=history)
            await syncer.start()
        except SyncError as exc:
            log.error("%s", exc)
            return 1
    # ids that cannot collide with other instances' (see sync/namespace.py)
    namespace = IdNamespace(store, syncer.worker) if syncer is not None else None
    if namespace is not None:
        await namespace.start()
    counts = ResponseCounts() if metrics_bind is not None else None
    app = create_app(config, store, freeze=True,
                     misses=syncer.misses.miss if syncer else None,
                     claim=syncer.burns.claim if syncer else None,
                     sync_status=syncer.status if syncer else None,
                     counts=counts)
    metrics: MetricsListener | None = None
    if metrics_bind is not None and counts is not None:
        collector = PasteurCollector(counts, store,
                                     sync_status=syncer.status if syncer else None,
                                     days_left=tls.tls.days_left if tls else None)
        metrics = MetricsListener(metrics_app(registry_for(collector)), metrics_bind)
    try:
        if metrics is not None and not await metrics.start():
            return 1  # the store was never started (the app's lifespan starts it)
        if tls is not None:  # TLS, HTTP/2, ACME: see tls/listener.py
            await https.serve(app, config, tls)
            return 0
        server = uvicorn.Server(uvicorn_config(app, config))
        log.info("pasteur on http://%s:%d, pastes in %s", config.bind, config.port,
                 config.repo_path)
        await server.serve()
        return 0 if server.started else 1
    finally:
        if namespace is not None:
            await namespace.stop()
        if syncer is not None:
            await syncer.stop()
        if metrics is not None:
            await metrics.stop()
