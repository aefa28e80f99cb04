"""The sweeper: expired pastes removed when they fall due, removed pastes
erased from history on the erase schedule."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import sys
import time

from ..paste import parse_iso
from ..procs import child_env, idle_priority
from ..storage.store import Store
from .caches import CommitLinks, PageCache

log = logging.getLogger("pasteur.access")


class Sweeper:
    """Removes expired pastes when they fall due, and erases removed ones.

    Pastes with an expiry are watched from their creation; those already in
    the repository at start-up, or brought in by sync, are found by
    ``pasteur.storage.expiryscan`` in another process. A paste read after its expiry is
    refused anyway. Removed pastes are erased from history
    and the object store every ``--erase-interval``.
    """

    TICK = 1.0
    RESCAN = 10.0  # how often to look for pastes brought in by sync
    # Pastes watched at most (~170 bytes each): past that, only the half due
    # soonest are kept, and pastes due at or after the first one let go
    # (``horizon``) are not watched; once the kept ones are swept, the whole
    # tree is scanned again. Memory stays flat however many pastes expire.
    MAX_WATCHED = 20_000

    def __init__(self, store: Store, cache: PageCache, commits: CommitLinks,
                 erase_interval: float | None) -> None:
        self.store = store
        self.cache = cache  # pages of removed pastes are forgotten
        self.commits = commits  # commit ids are rewritten by an erasure
        self.erase_interval = erase_interval
        self.due: list[tuple[float, str]] = []
        self.watched: set[str] = set()
        self.horizon = float("inf")  # pastes due from then on are not watched
        self.rescan = False  # the watched ones are swept: scan the whole tree again
        self.tasks: list[asyncio.Task[None]] = []
        self.last_erase = time.monotonic()

    def watch(self, paste_id: str, expires: str) -> None:
        if paste_id not in self.watched:
            self.watched.add(paste_id)
            try:
                due = parse_iso(expires)
            except ValueError:  # stored by an older version (year > 9999): the scan goes on
                log.error("paste %s has an unreadable expiry %r: it is not watched",
                          paste_id, expires[:40])
                return
            if due >= self.horizon:  # found again by the next full scan
                self.watched.discard(paste_id)
                return
            heapq.heappush(self.due, (due, paste_id))
            if len(self.due) > self.MAX_WATCHED:
                self._shed()

    def _shed(self) -> None:
        """Keep the half of the watched pastes due soonest (see ``MAX_WATCHED``)."""
        ordered = sorted(self.due)
        keep = self.MAX_WATCHED // 2
        self.horizon = ordered[keep][0]
        self.due = [item for item in ordered[:keep] if item[0] < self.horizon]
        self.watched = {paste_id for _, paste_id in self.due}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._watch_tree()), loop.create_task(self._run())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watch_tree(self) -> None:
        """Scan the whole tree once, then what other writers (sync) bring in."""
        store = self.store
        scanned: str | None = None
        generation = -1
        while True:
            if self.rescan:  # what was let go past the horizon is due soon
                self.rescan, self.horizon, scanned, generation = False, float("inf"), None, -1
            if store.head is not None and store.generation != generation:
                generation = store.generation
                try:
                    scanned = await self._scan(str(store.head), scanned)
                except Exception as exc:  # noqa: BLE001 - keep going; say why it failed
                    log.error("scanning pastes for expiry failed: %s", exc)
            await asyncio.sleep(self.RESCAN)

    async def _scan(self, head: str, since: str | None) -> str:
        """Watch the expiring pastes of ``head`` (added since ``since``), read by
        ``pasteur.storage.expiryscan`` in a process of its own, at idle CPU priority
        (measured: the scan of 100,000 pastes at start, on the server's core,
        made the first creates 4 ms instead of 0.8 ms)."""
        args = [str(self.store.path), head, *([since] if since else [])]
        proc = await asyncio.create_subprocess_exec(
            *idle_priority(), sys.executable, "-m", "pasteur.storage.expiryscan", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(),
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            async for line in proc.stdout:
                expires, _, paste_id = line.decode().strip().partition(" ")
                if paste_id:
                    self.watch(paste_id, expires)
            err = await proc.stderr.read()
            if await proc.wait() != 0:
                raise RuntimeError(err.decode(errors="replace").strip()[-300:])
        finally:
            if proc.returncode is None:  # stopped meanwhile: no scan outlives the server
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return head

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            try:
                await self.sweep()
                if (
                    self.erase_interval is not None
                    and time.monotonic() - self.last_erase >= self.erase_interval
                ):
                    self.last_erase = time.monotonic()
                    if await self.store.erase():
                        self.commits.clear()  # commit ids were rewritten
            except Exception as exc:  # noqa: BLE001 - keep sweeping; say why it failed
                log.error("sweeping expired pastes failed: %s", exc)

    async def sweep(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        expired = []
        while self.due and self.due[0][0] <= now:
            _, paste_id = heapq.heappop(self.due)
            self.watched.discard(paste_id)
            expired.append(paste_id)
        if not self.due and self.horizon != float("inf"):
            self.rescan = True
        if expired:
            await self.store.remove(expired, "Expire")
            for paste_id in expired:
                self.cache.forget(paste_id)
        return expired
