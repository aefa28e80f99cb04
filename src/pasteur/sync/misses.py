"""Reads that miss: fetch as soon as the remote may hold the paste, within bounds.

A paste pushed by another instance should be served here as soon as it has
landed on the remote. A miss therefore asks the remote for its branch head
(an ``ls-remote``: one small exchange, nothing written) and fetches only if
that head is not the one already integrated.

Bounded work, even under a flood of misses for ids that do not exist:

- concurrent misses share one probe, and a miss waits for a probe that
  started after it arrived (a probe already under way may predate the push);
- probes start at most once per ``interval`` (10 a second by default);
- a fetch happens only when the remote moved, which the instances' own
  pushes bound, not the readers.

The probe's worker process is started with the syncer (``start``), not by
the first miss: starting it (a Python process importing pygit2) took 1-2.7 s
on a loaded 2-core machine, which the first miss after a start waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("pasteur.sync.syncer")

PROBE_INTERVAL = 0.1  # seconds between two probes of the remote's head
MISS_WAIT = 10.0  # how long a request waits for a probe (and its fetch)


class MissProbe:
    """``probe``: the remote branch head (hex, None for none; raises if
    unreachable); ``known``: the remote head integrated here (hex or None);
    ``fetch``: fetch and integrate, True if done; ``close``: what ``stop``
    calls (the probe's worker); ``ready``: what ``start`` runs (starts it)."""

    def __init__(self, probe: Callable[[], Awaitable[str | None]],
                 known: Callable[[], str | None], fetch: Callable[[], Awaitable[bool]],
                 close: Callable[[], Awaitable[None]] | None = None,
                 interval: float = PROBE_INTERVAL, wait: float = MISS_WAIT,
                 ready: Callable[[], Awaitable[object]] | None = None) -> None:
        self.probe = probe
        self.close = close
        self.ready = ready
        self._warming: asyncio.Task[object] | None = None
        self.known = known
        self.fetch = fetch
        self.interval = interval
        self.wait = wait
        self._task: asyncio.Task[bool] | None = None
        self._started = float("-inf")  # when the last probe started (monotonic)
        self.probes = 0
        self.fetches = 0

    def start(self) -> None:
        """Start the probe's worker now, in the background (``ready``): a
        miss right after the server's start does not wait for it."""
        if self.ready is not None and self._warming is None:
            self._warming = asyncio.ensure_future(self.ready())

    async def miss(self) -> bool:
        """A read missed: True if the integrated remote head moved since (the
        paste may be here now, whoever fetched it: this miss's probe, an
        earlier one, or the push loop)."""
        known = self.known()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._after(time.monotonic()), self.wait)
        return self.known() != known

    async def _after(self, arrived: float) -> bool:
        """The result of the first probe that starts at or after ``arrived``."""
        while True:
            task = self._task
            if task is not None and self._started >= arrived:
                return await asyncio.shield(task)
            if task is not None and not task.done():
                await asyncio.shield(task)  # it started before this miss: the next one
                continue
            delay = self._started + self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # another miss may have started one meanwhile
            self._started = time.monotonic()
            self._task = asyncio.ensure_future(self._probe_and_fetch())

    async def _probe_and_fetch(self) -> bool:
        self.probes += 1
        try:
            head = await self.probe()
        except Exception as exc:  # noqa: BLE001 - the miss stays a miss
            log.debug("sync: probing the remote for a miss failed: %s", exc)
            return False
        if head is None or head == self.known():
            return False
        self.fetches += 1
        try:
            return await self.fetch()
        except Exception as exc:  # noqa: BLE001 - logged; the push loop retries
            log.warning("sync: a fetch for a miss failed: %s", exc)
            return False

    async def stop(self) -> None:
        warming, self._warming = self._warming, None
        if warming is not None and not warming.done():
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await warming
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.close is not None:
            await self.close()
