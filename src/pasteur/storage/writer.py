"""Group commit: every commit goes through one writer thread.

The journaled pastes (and the large ones, which skip the journal and wait
for their commit) form batches of up to ``MAX_BATCH`` pastes: after a
commit of fewer than ``LINGER_BATCH`` journaled pastes, the next one waits
up to ``LINGER`` seconds for more (they are acknowledged already). Batches
of journaled pastes are committed by the committer process
(``committer.py``), the others here (``batch.commit_batch``); then the
journal's checkpoint moves past the batch. While commits fail, journaled
pastes stay and are retried every ``RETRY_DELAY`` seconds; the others fail.

Removals, erasure, maintenance and sync run their repository work in the
same thread (``run_in_writer``), between batches."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import pygit2

from .batch import Pending, commit_batch
from .committer import Committer, CommitterError
from .errors import StoreError
from .idbook import IdBook
from .journal import Journal
from .maintenance import Maintenance
from .packs import Pacer, PackBuilder
from .quarantine import Quarantine
from .repository import Repository

log = logging.getLogger("pasteur.store")
T = TypeVar("T")  # what a function run in the writer thread returns

MAX_BATCH = 512
MAX_BATCH_BYTES = 16 << 20
# After a commit of fewer than LINGER_BATCH journaled pastes, the next one
# waits up to LINGER seconds for more (they are acknowledged already).
LINGER = 0.05
LINGER_BATCH = 512
RETRY_DELAY = 1.0  # seconds between attempts while commits fail
# Upper bounds (seconds) of the commit-time histogram's buckets (/metrics);
# measured: a batch of journaled pastes commits in 2-20 ms on an idle disk.
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Figures:
    """The group commits of new pastes so far. Written by the writer thread
    alone; read at any time (a reader may see one batch half counted)."""

    # Batches by commit time: per COMMIT_BUCKETS bound, and one past the last.
    commit_counts: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS) + 1))
    batches: int = 0
    added: int = 0  # pastes they held
    commit_seconds: float = 0.0  # time spent in them (wall, fsyncs included)
    last_error: str | None = None  # the last failed commit's error, kept after a success
    last_error_at: float | None = None  # when (epoch seconds)
    committer_cached: int = 0  # bytes in the committer's tree cache, after its last batch


class Writer:
    """The writer thread and its queue of pastes to commit.

    ``maintain`` starts a roll-up of packs when ``maintenance`` says one is
    due (``Store.maintain``: under the store's guard)."""

    def __init__(self, repository: Repository, idbook: IdBook, quarantine: Quarantine,
                 journal: Journal | None, committer: Committer | None,
                 maintenance: Maintenance, maintain: Callable[[], Awaitable[None]]) -> None:
        self.repository = repository
        self.idbook = idbook
        self.quarantine = quarantine
        self.journal = journal
        # Journaled batches are committed in a process of its own (committer.py).
        self.committer = committer
        self.maintenance = maintenance
        self._maintain = maintain
        self.pending: list[Pending] = []
        self.linger = LINGER
        self.figures = Figures()
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None  # the one running
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="pasteur-git")
        self.failure: StoreError | None = None  # the last commit's, until one succeeds
        self.failing_since: float | None = None  # monotonic, the first failure of those
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.handed = 0  # journaled pastes handed to the writer
        self._done = 0  # ... and committed

    @property
    def started(self) -> bool:
        return self._wake is not None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        if self.pending:
            self._wake.set()
        now = time.monotonic()
        for p in self.pending:  # replayed: their wait for a commit starts now
            p.since = now
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pasteur-commit")

    async def stop(self) -> None:
        if self._task is not None:
            # Everything acknowledged is committed before the end (what a
            # failing disk keeps back stays in the journal for the next start).
            while self.pending and self.failure is None:
                assert self._urgent is not None and self._wake is not None
                self._urgent.set()
                self._wake.set()
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._maintenance is not None:  # started by the commit task, now stopped
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self.committer is not None:
            # From the writer thread, before it ends: the committer dies with
            # the thread that started it (PR_SET_PDEATHSIG); it ends on its own.
            await asyncio.get_running_loop().run_in_executor(self._thread, self.committer.close)

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    def submit(self, p: Pending) -> None:
        """A paste that waits for its commit (large, or no journal)."""
        assert self._wake is not None and self._urgent is not None
        self.pending.append(p)
        self._urgent.set()
        self._wake.set()

    def hand(self, group: list[Pending]) -> None:
        """Journaled pastes, acknowledged already: committed behind."""
        assert self._wake is not None and self._urgent is not None
        self.pending.extend(group)
        self.handed += len(group)
        if len(self.pending) >= LINGER_BATCH or (
                self.journal is not None and self.journal.pressed):
            self._urgent.set()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every paste journaled so far is committed (before a
        removal: a paste is never removed before it is added). Raises the
        commit's StoreError if it fails."""
        target = self.handed
        if self._done >= target or self._wake is None or self._urgent is None:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((target, fut))
        self._urgent.set()
        self._wake.set()
        await fut

    def _notify(self, failure: StoreError | None) -> None:
        waiters, self._flush_waiters = self._flush_waiters, []
        for target, fut in waiters:
            if fut.done():
                continue
            if failure is not None:
                fut.set_exception(failure)
            elif self._done >= target:
                fut.set_result(None)
            else:
                self._flush_waiters.append((target, fut))

    async def run_in_writer(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the writer thread (serialised with commits)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def backlog_age(self) -> float:
        """Seconds the oldest acknowledged, uncommitted paste has waited (0: none)."""
        for p in self.pending:  # in order of arrival
            if p.seq is not None:
                return time.monotonic() - p.since
        return 0.0

    def _next_batch(self) -> list[Pending]:
        """The next commit: up to MAX_BATCH pastes and MAX_BATCH_BYTES of them
        (at least one), as the committer gets a copy of each."""
        n, size = 0, 0
        for p in self.pending[:MAX_BATCH]:
            size += len(p.data) if isinstance(p.data, bytes) else 0
            if n and size > MAX_BATCH_BYTES:
                break
            n += 1
        return self.pending[:n]

    async def _run(self) -> None:
        assert self._wake is not None and self._urgent is not None
        loop = asyncio.get_running_loop()
        while True:
            if self.failure is not None and self.pending:  # retry what is journaled
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_DELAY)
            else:
                await self._wake.wait()
            self._wake.clear()
            while self.pending:
                if (self.linger > 0 and not self._urgent.is_set()
                        and len(self.pending) < LINGER_BATCH
                        and all(p.future is None for p in self.pending)):
                    # Only acknowledged pastes wait: let more join this commit.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), self.linger)
                self._urgent.clear()
                batch = self._next_batch()
                # Paced while the writer keeps up: all that waits is in this batch.
                relaxed = len(self.pending) == len(batch) and not (
                    self.journal is not None and self.journal.pressed)
                out = self.committer is not None and all(p.seq is not None for p in batch)
                try:
                    if out:
                        await loop.run_in_executor(self._thread, self._commit_out, batch, relaxed)
                    else:
                        await loop.run_in_executor(self._thread, self.commit_batch, batch)
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    log.error("commit failed: %s", exc)
                    if await loop.run_in_executor(self._thread, self._set_aside_bad, batch):
                        continue  # the others go on at once, without them
                    err = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    self.failure = err
                    self.failing_since = self.failing_since or time.monotonic()
                    self.figures.last_error, self.figures.last_error_at = str(err), time.time()
                    # Journaled pastes stay (durable, retried); the others fail.
                    self.pending[:len(batch)] = [p for p in batch if p.seq is not None]
                    self.idbook.release(p.paste_id for p in batch if p.seq is None)
                    for p in batch:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(err)
                    self._notify(err)
                    break
                self.failure = None
                self.failing_since = None
                del self.pending[:len(batch)]
                for p in batch:
                    if p.seq is not None:
                        self.idbook.journaled.pop(p.paste_id, None)  # type: ignore[arg-type]  # has its id
                        self._done += 1
                    elif p.future is not None and not p.future.done():
                        p.future.set_result(p.paste_id or "")
                self.idbook.release(p.paste_id for p in batch)
                self._notify(None)
                if self.maintenance.due() and (
                    self._maintenance is None or self._maintenance.done()
                ):
                    self._maintenance = loop.create_task(
                        self._maintain_logged(), name="pasteur-maintenance"
                    )

    async def _maintain_logged(self) -> None:
        try:
            await self._maintain()
        except Exception as exc:  # noqa: BLE001 - maintenance failing is not fatal
            self.maintenance.failures += 1
            log.error("pack maintenance failed: %s", exc)

    def _set_aside_bad(self, batch: Sequence[Pending]) -> bool:
        """Writer thread, after a failed commit: quarantine the journaled
        records of the batch that cannot be committed; whether there were
        any (else the failure is the repository's: the batch is retried)."""
        found = False
        for p in batch:
            if p.seq is None or p.quarantine is not None or not isinstance(p.data, bytes):
                continue
            reason = self.quarantine.problem(p)
            if reason is not None:
                self.quarantine.set_aside(p, reason)
                self.idbook.journaled.pop(p.paste_id, None)  # type: ignore[arg-type]  # journaled: has an id
                found = True
        return found

    def _commit_out(self, batch: Sequence[Pending], relaxed: bool) -> None:
        """Writer thread: a batch of journaled pastes committed by the
        committer process, on top of this head; then its head taken, its
        trees cached (the journal thread checks new ids in them) and the
        journal checkpointed."""
        assert self.committer is not None
        repository = self.repository
        t0 = time.perf_counter()
        kept = [p for p in batch if p.quarantine is None]
        if not kept:  # only records set aside: their journal records are passed
            self._batch_done(batch, t0)
            return
        try:
            reply = self.committer.commit({
                "head": repository.head.raw if repository.head is not None else None,
                "reopens": repository.reopens,
                "items": [(p.paste_id, p.author, p.message, p.data) for p in kept],
                "relaxed": relaxed,
                "verify": any(p.changes != repository.changes for p in kept),
            })
        except CommitterError as exc:
            raise StoreError(str(exc)) from exc
        repository.tree_cache.drop(reply.dropped)
        self.figures.committer_cached = reply.cached
        for oid, raw in reply.trees:
            repository.tree_cache.put_raw(oid, raw)
        if reply.head is not None:
            head = pygit2.Oid(raw=reply.head)
            repository.take_head(head, journaled=True)
            repository.commits += reply.commits
            repository.packs += reply.packs
            for cb in repository.on_commit:
                cb(head)
        self._batch_done(batch, t0)

    def _batch_done(self, batch: Sequence[Pending], t0: float) -> None:
        """After a batch's commit: the journal's checkpoint, the figures."""
        seqs = [p.seq for p in batch if p.seq is not None]
        if seqs and self.journal is not None:
            self.journal.checkpoint(max(seqs))
        seconds = time.perf_counter() - t0
        self.figures.batches += 1
        self.figures.added += len(batch)
        self.figures.commit_seconds += seconds
        self.figures.commit_counts[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1

    def commit_batch(self, batch: Sequence[Pending], relaxed: bool = False,
                     verify: bool = True) -> PackBuilder:
        """Commit a batch in this thread, the writer's (``batch.commit_batch``),
        then the journal's checkpoint and the figures."""
        t0 = time.perf_counter()
        pack = commit_batch(self.repository, batch, Pacer(), relaxed, verify, ids=self.idbook)
        self._batch_done(batch, t0)
        return pack
