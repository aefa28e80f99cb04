"""One reader per burn-after-reading paste across instances (issue 14, item 4).

Before a burn paste is served, its removal must win on the remote: under the
sync lock (no other push of this instance meanwhile), a round fetches and
integrates, removes the paste locally (one commit) and pushes the head with a
lease on the remote head just integrated, a compare-and-swap of the branch.
Only the instance whose push lands serves the paste. A rejected push means another instance pushed
meanwhile: the next round integrates its history, and if a remote head that
held the paste now lacks it, that instance burned (or deleted) it first: the
answer is "already read". If no fetch or push gets through, the read is
refused rather than risk a second reader.

Cost: one fetch and one push per burn read (``bench/burn_claim.py``, git
daemon on the same 2-core machine at load ~7: median 184 ms against 26 ms
without a remote); the other paths are untouched.
"""

from __future__ import annotations

import asyncio
import logging
import random
from functools import partial
from typing import Protocol

import pygit2

from pasteur.storage.store import Store
from pasteur.sync.erase import Eraser
from pasteur.sync.merge import Integration, drop_unreachable, has_paste, is_rewrite
from pasteur.sync.worker import SyncFailure

log = logging.getLogger("pasteur.sync.syncer")

ROUNDS = 50  # rejected claims in a row before the read is refused


class Remote(Protocol):
    """What a claim needs of the syncer."""

    remote_head: pygit2.Oid | None
    eraser: Eraser

    async def fetch_and_integrate(self, locked: bool = False) -> Integration: ...

    async def push_head(self, head: pygit2.Oid, lease: pygit2.Oid | None = None) -> None: ...


class BurnClaims:
    """``claim``: remove a burn paste on the remote before it is served;
    ``lock``: the syncer's lock (one fetch, push or erasure at a time)."""

    def __init__(self, store: Store, remote: Remote, lock: asyncio.Lock) -> None:
        self.store = store
        self.remote = remote
        self.lock = lock

    async def claim(self, paste_id: str) -> str:
        """``"won"`` (serve it: this instance's removal is on the remote),
        ``"read"`` (another instance removed it first) or ``"unreachable"``."""
        removed = seen = False  # seen: a remote head we integrated held the paste
        try:
            async with self.lock:  # no push of ours but the claim's meanwhile
                for rejected in range(ROUNDS):
                    await self.remote.fetch_and_integrate(locked=True)
                    remote = self.remote.remote_head
                    on_remote = remote is not None and await self.store.run_in_writer(
                        partial(has_paste, self.store.repo, remote, paste_id))
                    if not removed:
                        await self.store.flush()
                        if paste_id not in self.store:
                            return "read"
                        await self.store.remove([paste_id], "Burn")
                        removed = True
                    elif seen and not on_remote:
                        return "read"
                    seen = seen or on_remote
                    if await self._push(remote):
                        log.info("burn of %s claimed on the remote (%d rejected)",
                                 paste_id, rejected)
                        return "won"
                    await asyncio.sleep(random.uniform(0, min(0.5, 0.02 * 2 ** rejected)))
        except SyncFailure as exc:
            log.warning("burn of %s not claimed: the remote is unreachable (%s)%s", paste_id,
                        exc, "; removed here, never served" if removed else "")
            return "unreachable"
        log.warning("burn of %s not claimed: %d pushes rejected in a row", paste_id, ROUNDS)
        return "unreachable"

    async def _push(self, remote: pygit2.Oid | None) -> bool:
        """Push the head if the remote is still at ``remote`` (lock held);
        False when another instance's push came first."""
        head = self.store.head
        if head is None or head == remote:
            return True
        rewrite = await self.store.run_in_writer(
            partial(is_rewrite, self.store.repo, head, remote))
        if rewrite:  # as the push loop: a forced push never carries erased content
            await self.remote.eraser.erase()
            head = self.store.head
            assert head is not None
        try:
            await self.remote.push_head(head, lease=remote)
        except SyncFailure as exc:
            if exc.kind != "rejected":
                raise
            return False
        if rewrite:
            await self.store.run_in_writer(partial(drop_unreachable, self.store.repository))
        return True
