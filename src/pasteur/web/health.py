"""``/healthz``: the store's figures, and sync's when it runs; 503 with the
reasons when something is failing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..storage.store import Store

# The sync status, for /healthz: a dict with "stuck", "failing_s",
# "last_error", "lagging", "oldest_unpushed_s" and "pending" (``Syncer.status``
# when the server syncs with a remote).
SyncStatus = Callable[[], dict[str, Any]]


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
            "commit_error": store.commit_error,
            "last_commit_error": _last(store.last_commit_error),
        }
        if self.sync_status is not None:
            body["sync"] = status = self.sync_status()
            if status["stuck"]:
                problems.append(f"sync has failed for {status['failing_s']:.0f} s: "
                                f"{status['last_error']}")
            if status.get("lagging"):
                problems.append(f"a commit has waited {status['oldest_unpushed_s']:.0f} s for "
                                f"its push ({status['pending']} commits not on the remote)")
        body["problems"] = problems
        if problems:
            body["status"] = "failing"
        return Response(json.dumps(body), 503 if problems else 200,
                        media_type="application/json",
                        headers={"cache-control": "no-store"})


def _last(failure: tuple[str, float] | None) -> dict[str, str] | None:
    if failure is None:
        return None
    error, at = failure
    return {"error": error, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))}
