"""Running the application: uvicorn (uvloop, httptools) for plain HTTP."""

from __future__ import annotations

import logging

import uvicorn

from . import https
from .app import create_app
from .config import Config
from .store import Store, StoreError

log = logging.getLogger("pasteur")

# Limits against slow or idle clients (documented in the README).
KEEPALIVE_TIMEOUT = 15
MAX_CONNECTIONS = 2048


async def run(config: Config) -> int:
    try:
        store = Store(config.repo_path, config.length)
    except (OSError, StoreError, Exception) as exc:  # noqa: BLE001 - report and exit
        log.error("cannot open the data repository %s: %s", config.repo_path, exc)
        return 1
    app = create_app(config, store)
    if https.https_requested(config):  # TLS, HTTP/2, ACME: see https.py
        await https.serve(app, config)
        return 0
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.bind,
            port=config.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_keep_alive=KEEPALIVE_TIMEOUT,
            limit_concurrency=MAX_CONNECTIONS,
        )
    )
    log.info("pasteur on http://%s:%d, pastes in %s", config.bind, config.port, config.repo_path)
    await server.serve()
    return 0 if server.started else 1
