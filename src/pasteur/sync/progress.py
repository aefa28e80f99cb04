"""How the push loop fares: the backlog of commits the remote lacks, the age of
the oldest, and a warning when pushes keep being rejected; and how instances
sharing a remote take turns.

Turns. After each push an instance waits a gap (its next commits join the
next push). A push is rejected when another instance moved the remote
between this one's fetch and its push; an instance needs a whole cycle
(fetch, replay of its backlog, push) without any other push landing, and
a busy instance pushing often never leaves one. So an instance whose pushes
were rejected ``MARK_AFTER`` times in a row sets a waiting mark on the
remote (``refs/pasteur/wait/<instance>-<unix time>``, a commit with nothing
in it), in the same push; every push answers with the marks the remote
advertised, and an instance that sees another's mark holds its next push back
until the mark is gone (it looks every ``YIELD_POLL`` s, an ``ls-remote``),
``YIELD_MAX`` s at most. The mark goes once its instance has pushed.

Marks expire. A waiting instance renews its mark every ``MARK_RENEW`` s (a
new name, the old one deleted in the same exchange), so a mark older than
``MARK_STALE`` s was left by an instance that died (``kill -9``, a crash,
a power cut) or can no longer push: it is ignored, and the next push of any
instance that sees it deletes it (``sweep``). Older means: by the time in
its name, or, whatever the clocks say (a skewed clock could name a time in
the future), seen under the same name by this instance for that long.

The age comes from the commits' author times, which a replay keeps (a paste
committed here, replayed on other instances' pushes again and again while it
waits, still shows when it was committed), so it survives a restart too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pygit2
from pygit2.enums import SortMode

log = logging.getLogger("pasteur.sync.syncer")

# After a push, the next waits a gap (commits meanwhile join it) as long as
# an instance whose push was rejected needs to fetch, replay and push, as
# this one measures it (the same machine and remote, roughly), with a margin:
# one busy instance cannot keep the remote to itself.
GAP_MARGIN = 0.5
GAP_MIN, GAP_MAX = 0.1, 1.0  # seconds
CYCLE = ("fetch", "integrate", "push")  # the steps of a rejected instance's turn
EWMA = 0.3  # weight of the newest duration
MARK_AFTER = 1  # rejected pushes in a row before setting a waiting mark
MARK_RENEW = 5.0  # seconds: a mark this old is replaced by a new one
MARK_STALE = 15.0  # seconds: an older mark is ignored and deleted (its instance died)
YIELD_MAX = 5.0  # seconds an instance holds its pushes back while others wait
YIELD_POLL = 0.25  # seconds between two looks at the remote's marks meanwhile
MARKS = "refs/pasteur/wait/"  # as in worker.MARKS
WARN_AFTER = 5.0  # seconds of rejected pushes in a row before a warning
WARN_EVERY = 10.0  # seconds between two such warnings


def backlog(repo: pygit2.Repository, head: pygit2.Oid | None, remote: pygit2.Oid | None,
            limit: int = 100_000) -> tuple[int, float | None]:
    """Commits on the local branch that the remote lacks, and the author time
    (epoch seconds) of the oldest of them (None: no backlog)."""
    if head is None or head == remote:
        return 0, None
    walker = repo.walk(head, SortMode.NONE)
    if remote is not None:
        with contextlib.suppress(KeyError, ValueError, pygit2.GitError):
            walker.hide(remote)
    n, oldest = 0, None
    for commit in walker:
        n += 1
        when = commit.author.time
        oldest = when if oldest is None else min(oldest, when)
        if n >= limit:
            break
    return n, oldest


class PushWatch:
    """Rejected pushes in a row; a warning, now and then, while they go on;
    the gap after a push, from the durations of fetches, integrations, pushes."""

    def __init__(self) -> None:
        self.rejected = 0
        self.since: float | None = None  # monotonic, the first rejection of those
        self._warned = float("-inf")
        self.took: dict[str, float] = {}  # op -> moving average of its duration (s)
        self.token = secrets.token_hex(4)  # this instance, in its marks' names
        self.mark: str | None = None  # this instance's mark on the remote, if any
        self.waiting = 0  # other instances' fresh marks seen by the last push
        self.seen: dict[str, float] = {}  # others' marks -> first seen here (monotonic)
        self.stale: set[str] = set()  # others' stale marks, deleted by the next push
        self.swept = 0  # stale marks deleted by this instance's pushes

    def push_args(self) -> dict[str, Any]:
        """The marks to set, replace or delete with the next (fast-forward)
        push; ``sweep``: others' stale marks, deleted once it went through."""
        now = int(time.time())
        args: dict[str, Any] = {"sweep": sorted(self.stale)} if self.stale else {}
        if self.rejected >= MARK_AFTER and (
                self.mark is None or now - _mark_time(self.mark) > MARK_RENEW):
            args["mark"] = f"{MARKS}{self.token}-{now}"
            if self.mark is not None:
                args["unmark"] = self.mark
            self.mark = args["mark"]
            return args
        if self.mark is not None:
            args["done"] = self.mark
        return args

    def after_push(self, reply: dict[str, Any]) -> None:
        """A push went through: its mark is gone; the others' fresh marks counted."""
        if self.since is not None and self._warned > self.since:
            log.info("sync: pushed after %d rejections over %.1f s", self.rejected,
                     time.monotonic() - self.since)
        self.rejected, self.since, self.mark = 0, None, None
        swept = set(reply.get("swept", ()))
        if swept:
            log.warning("sync: deleted %d waiting marks left on the remote by instances that "
                        "stopped pushing over %.0f s ago: %s", len(swept), MARK_STALE,
                        " ".join(sorted(swept)))
            self.swept += len(swept)
        self._count(reply)  # the marks advertised, less those deleted

    def _count(self, reply: dict[str, Any]) -> None:
        """Other instances' marks the remote advertised: the fresh ones are
        waited for, the stale ones noted for deletion."""
        now, clock = time.time(), time.monotonic()
        others = [m for m in reply.get("marks", ()) if not m.startswith(f"{MARKS}{self.token}-")]
        self.seen = {m: self.seen.get(m, clock) for m in others}
        stale = {m for m in others
                 if now - _mark_time(m) > MARK_STALE or clock - self.seen[m] > MARK_STALE}
        self.stale = stale
        self.waiting = len(others) - len(stale)

    async def rest(self, call: Callable[[str], Awaitable[dict[str, Any]]]) -> None:
        """After a push: the gap, then, while other instances wait (their marks
        were advertised), until they are done or ``YIELD_MAX`` s have passed;
        ``call``: a worker request (``head`` lists the marks)."""
        await asyncio.sleep(self.gap())
        start = time.monotonic()
        while self.waiting and time.monotonic() - start < YIELD_MAX:
            await asyncio.sleep(YIELD_POLL)
            reply = await call("head")
            if not reply.get("ok"):
                return
            self._count(reply)

    def note(self, op: str, seconds: float) -> None:
        """An operation (a worker request, an integration) took ``seconds``."""
        before = self.took.get(op)
        self.took[op] = seconds if before is None else before + EWMA * (seconds - before)

    def gap(self) -> float:
        """Seconds to wait after a push before the next (jittered)."""
        cycle = sum(self.took.get(op, 0.0) for op in CYCLE)
        return min(GAP_MAX, max(GAP_MIN, GAP_MARGIN * cycle)) * random.uniform(0.75, 1.25)

    def rejected_push(self, waiting: Callable[[], tuple[int, float | None]]) -> None:
        """A push was rejected (the remote moved); ``waiting``: the backlog."""
        now = time.monotonic()
        self.rejected += 1
        self.since = self.since or now
        if now - self.since >= WARN_AFTER and now - self._warned >= WARN_EVERY:
            self._warned = now
            count, oldest = waiting()
            age = time.time() - oldest if oldest is not None else 0.0
            log.warning("sync: the push was rejected %d times in a row over %.1f s (other "
                        "instances keep moving the remote); %d commits wait, the oldest "
                        "for %.1f s", self.rejected, now - self.since, count, age)


def _mark_time(name: str) -> float:
    """The unix time in a mark's name (0 if none: stale)."""
    try:
        return float(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0.0
