"""The web application (plain ASGI, Starlette routing): ``create_app`` builds
the parts, maps the routes to their handlers and puts the front door before
them. The handlers live in a module per page kind (``create.py``,
``show.py``, ``delete.py``, ``health.py``; the static files: ``assets.py``)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import Config
from ..proxy import TrustedProxies
from ..storage.store import Store
from .assets import Bundle, StaticFiles
from .caches import BaseUrls, CommitLinks, PageCache
from .create import CreatePage
from .delete import DeletePage
from .frontdoor import AccessLog, ASGIApp, FastPath, Frontdoor, ResponseCounts
from .health import Health, SyncStatus
from .hotpath import HotReads
from .pastes import Pastes
from .render import Renderer, environment
from .show import ShowPage
from .sweeper import Sweeper

__all__ = ["ASGIApp", "Frontdoor", "create_app"]

log = logging.getLogger("pasteur.access")


def create_app(
    config: Config,
    store: Store,
    freeze: bool = False,
    *,
    misses: Callable[[], Awaitable[bool]] | None = None,
    claim: Callable[[str], Awaitable[str]] | None = None,
    sync_status: SyncStatus | None = None,
    counts: ResponseCounts | None = None,  # answers counted for /metrics (metrics.py); None: off
) -> Frontdoor:
    """The ASGI app over ``store`` (opened, and locked, by whoever calls).

    ``misses``: asked when a paste is not found whether a fetch brought new
    pastes (sync's ``MissProbe.miss``); ``sync_status``: sync's figures for
    ``/healthz``; ``claim``: claims a burn paste on the remote before it is
    served (sync's ``BurnClaims.claim``). All None when the server does not sync.

    Its ``hot`` (``hotpath.py``): the reads of cached pages, for the plain
    listener's protocol to answer before the app (None when every request
    must pass the front door: basic auth, a trusted proxy).

    ``freeze`` (the server's own process): once started, the objects alive
    then (modules, classes, the templates, lexers) move out of the garbage
    collector's sight with ``gc.freeze()``. Measured: a full collection over
    them took 15-50 ms on this machine, every few seconds under load, a stall
    of the event loop that made the 64-connection p99 of creates; after the
    freeze it takes well under a millisecond."""
    bundle = Bundle()
    templates = environment(bundle.url)
    templates.globals.update(title=config.title, subtitle=config.subtitle)
    pages = Renderer(templates)
    cache = PageCache(store)
    commits = CommitLinks(config.commit_url, store)
    sweeper = Sweeper(store, cache, commits, config.erase_interval)
    pastes = Pastes(store, pages, cache, sweeper.watch, misses, claim)
    base_urls = BaseUrls(config.url)
    create = CreatePage(config, store, pages, base_urls, sweeper.watch)
    show = ShowPage(pastes, pages, cache, commits, base_urls)
    delete = DeletePage(pastes, pages, config.body_timeout)
    static = StaticFiles(bundle, pages)
    health = Health(store, sync_status)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store.start()
        sweeper.start()
        if freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await sweeper.stop()
            await store.stop()

    routes = [
        Route("/", create.index, methods=["GET"]),
        Route("/", create.create, methods=["POST"]),
        Route("/healthz", health.health, methods=["GET"]),
        Route("/static/{path:path}", static.static, methods=["GET"]),
        Route("/{paste_id}", show.show, methods=["GET"]),
        Route("/{paste_id}", delete.delete_paste, methods=["DELETE"]),
        Route("/{paste_id}/read", show.read_burn, methods=["POST"]),
        Route("/{paste_id}/delete", delete.delete_confirm, methods=["GET"]),
        Route("/{paste_id}/delete", delete.delete_paste, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)

    async def not_found(request: Request, exc: Exception) -> Response:
        return pages.error(request, 404, "no such page")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return pages.error(request, 405, f"method {request.method} not allowed here")

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("error on %s %s", request.method, request.url.path, exc_info=exc)
        return pages.error(request, 500, "internal error: nothing was changed")

    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)
    fast = FastPath(app, create.create, show.show, crashed)
    proxies = TrustedProxies(config.trusted_proxies)
    access_log = AccessLog()
    hot = None if config.auth is not None or proxies else HotReads(cache, access_log, counts)
    return Frontdoor(app, config.auth, proxies, fast, counts, access_log, hot)
