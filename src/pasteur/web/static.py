"""The pages that show no paste: the static files and ``/healthz``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..store import Store
from .assets import Bundle, choose_encoding
from .render import Renderer

# The sync status, for /healthz: a dict with "stuck", "failing_s" and
# "last_error" (``Syncer.status`` when the server syncs with a remote).
SyncStatus = Callable[[], dict[str, Any]]


class StaticFiles:
    """``GET /static/<path>``: the precompressed bundle (``assets.py``)."""

    def __init__(self, bundle: Bundle, pages: Renderer) -> None:
        self.bundle = bundle
        self.pages = pages

    async def static(self, request: Request) -> Response:
        asset = self.bundle.get(request.path_params["path"])
        if asset is None:
            return self.pages.error(request, 404, "no such file")
        encoding = choose_encoding(asset, request.headers.get("accept-encoding", ""))
        etag = asset.etag(encoding)
        headers = {
            "etag": etag,
            "cache-control": "public, max-age=31536000, immutable",
            "vary": "Accept-Encoding",
        }
        if encoding:
            headers["content-encoding"] = encoding
        inm = request.headers.get("if-none-match")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            return Response(status_code=304, headers=headers)
        return Response(asset.variants[encoding], headers=headers, media_type=asset.content_type)


class Health:
    """``GET /healthz``: the store's figures, and sync's when it runs."""

    def __init__(self, store: Store, sync_status: SyncStatus | None = None) -> None:
        self.store = store
        self.sync_status = sync_status

    async def health(self, request: Request) -> Response:
        """200 and the store's figures when all is well; 503, the same and
        the reasons in ``problems`` when commits fail, the backlog stalls,
        the journal cannot be written or sync is stuck."""
        store = self.store
        problems = await store.problems()
        body: dict[str, Any] = {
            "status": "ok",
            "head": str(store.head) if store.head else None,
            "commits": store.commits,
            "batches": store.batches,
            "pastes": store.added,
            "uncommitted": store.uncommitted,
            "backlog_s": round(store.backlog_age(), 3),
            "commit_ms": round(store.commit_seconds * 1000 / max(1, store.batches), 3),
            "pending_erasure": len(store.pending_erasure()),
            "erased": store.erased,
        }
        if self.sync_status is not None:
            body["sync"] = status = self.sync_status()
            if status["stuck"]:
                problems.append(f"sync has failed for {status['failing_s']:.0f} s: "
                                f"{status['last_error']}")
        body["problems"] = problems
        if problems:
            body["status"] = "failing"
        return Response(json.dumps(body), 503 if problems else 200,
                        media_type="application/json",
                        headers={"cache-control": "no-store"})
