"""The sync worker process's side (sync/worker.py): its repository handle."""

from __future__ import annotations

from pathlib import Path

import pygit2

from pasteur.config import SyncSettings
from pasteur.sync.worker import Worker, handle


def test_the_worker_renews_its_handle_when_the_server_renewed_its_own(tmp_path: Path) -> None:
    """A roll-up of packs or an erasure's prune deletes packs that a libgit2
    handle opened before may still list: the worker takes a new handle when
    the server's count of renewals (``reopens``, sent with each request)
    changed, and keeps its handle otherwise."""
    repo = tmp_path / "r.git"
    pygit2.init_repository(str(repo), bare=True)
    remote = tmp_path / "remote.git"
    pygit2.init_repository(str(remote), bare=True)
    worker = Worker(str(repo), SyncSettings(url=str(remote)))
    first = worker.repo
    worker.follow(0)
    worker.follow(None)  # a request that names none (an older parent)
    assert worker.repo is first
    reply = handle(worker, None, {"op": "fetch", "reopens": 2})
    assert reply == {"ok": True, "head": None}
    renewed = worker.repo
    assert renewed is not first and worker.reopens == 2
    worker.follow(2)
    assert worker.repo is renewed
