"""Pastes in a bare Git repository, one blob per paste in a sharded tree:
the facade the server uses (get, add, ids, flush, remove, erase, figures).

Layout: ``<a>/<b>/<id>`` where ``a`` and ``b`` are the first two characters of
the id (measured: ~3 ms per commit at 100k pastes, against ~450 ms for a flat
tree). History is linear on ``refs/heads/main``.

A new paste is acknowledged once its record is in the write-ahead journal
(``journal.py``), fdatasync'ed with the others that arrived with it, in the
journal thread here; it is served from memory until committed. Commits go
through one writer thread (group commit, ``writer.py``); a batch is committed
by ``batch.py``, as one pack (``packs.py``), in the committer process
(``committer.py``) or the writer thread. The pack, index, pack directory
(and any loose object) and the branch ref are fsynced (``repository.py``),
then the journal's checkpoint moves past the batch.

One pack per batch would slow lookups down after thousands of batches: the
writer starts ``Store.maintain`` (``maintenance.py``) when there are too many.
Removed pastes are erased from history by ``erasure.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pygit2

from .. import record
from ..ids import valid_id
from .batch import Pending
from .committer import Committer
from .erasure import Erasure
from .errors import StoreError
from .failures import Failures
from .idbook import IdBook
from .intake import Intake
from .journal import Journal, JournalError, Record
from .layout import Layout
from .loose import LooseBlob
from .maintenance import Maintenance
from .objects import shard_path
from .quarantine import Quarantine
from .repository import Change, Repository, remove_stale_locks
from .streams import stream_blob
from .treecache import TreeCache
from .writer import COMMIT_BUCKETS, Writer

log = logging.getLogger("pasteur.store")
T = TypeVar("T")  # what a function run in the writer thread returns

# /healthz fails when an acknowledged paste has waited longer than this for
# its commit (stalled or falling behind; a batch takes milliseconds).
BACKLOG_STALL = 5.0


@dataclass(frozen=True)
class LargeBlob:
    """A committed document too large to read whole: streamed (``Store.stream``)."""

    oid: pygit2.Oid
    size: int


class Store:
    """The paste repository: reads from the event loop, the journal in its
    thread, writes in the writer's (``writer.py``)."""

    def __init__(self, path: Path, id_length: int = 4, journal: bool = True,
                 lock_fd: int | None = None,
                 check_document: Callable[[bytes], str | None] | None = None,
                 guard: asyncio.Lock | None = None) -> None:
        """The server's store: what a crash left in the repository is cleared
        first. ``journal``: False to run without one (each create waits for
        its commit); ``lock_fd``: the descriptor holding the repository
        (``lock_repository``); ``check_document``: why a replayed document
        cannot be served (None: it can), the records it refuses are
        quarantined; ``guard``: held by every erasure and pack roll-up,
        shared with whoever must not run beside them (the syncer's fetches
        and pushes: a repack could delete the pack a fetch is writing)."""
        self.path = Path(path)
        if (self.path / "HEAD").exists():
            remove_stale_locks(Layout(self.path))
        self.repository = Repository(self.path)
        self.layout = self.repository.layout
        self.quarantine = Quarantine(self.layout.quarantine, check_document)
        # One repack at a time: the roll-up of packs or an erasure's.
        self._repacking = asyncio.Lock()
        self.guard = guard if guard is not None else asyncio.Lock()
        # Run after each erasure, the guard held (``on_erasure``).
        self._after_erase: list[Callable[[], Awaitable[None]]] = []
        self.maintenance = Maintenance(self.repository, self.run_in_writer, self._repacking)
        self.erasure = Erasure(self.repository, self._scrub_journal)
        self.idbook = IdBook(self.repository, self.erasure, id_length)
        # The write-ahead journal (journal.py): creates are acknowledged once
        # journaled; the writer commits them behind.
        self.journal: Journal | None = None
        records = self._open_journal() if journal else []
        self.writer = Writer(
            self.repository, self.idbook, self.quarantine, self.journal,
            Committer(self.path, lock_fd) if self.journal is not None else None,
            self.maintenance, self.maintain)
        # Failed removals and erasures, for /healthz (``failures.py``).
        self.failures = Failures(self.writer.figures, lambda: self.writer.figures.batches)
        self._replay(records)
        # In front of the journal: ids picked, records written, in its thread.
        self.intake = (Intake(self.journal, self.repository, self.idbook, self.writer)
                       if self.journal is not None else None)

    def _open_journal(self) -> list[Record]:
        """Open the journal (``self.journal``); the records it holds."""
        path = self.layout.journal
        existed = path.exists()
        try:
            journal = Journal(path)
            records = journal.read()
        except (OSError, JournalError) as exc:
            if existed:  # it may hold acknowledged pastes: never start without them
                raise StoreError(
                    f"the journal {path} cannot be read ({exc}); it may hold acknowledged "
                    f"pastes not yet committed. Move it away to start without them.") from exc
            log.warning("running without a journal (%s): each create waits for its commit", exc)
            return []
        self.journal = journal
        return records

    def _replay(self, records: list[Record]) -> None:
        """Journaled records left by the last run: committed when the writer
        starts (those a crash left committed already are recognised there);
        readable at once meanwhile."""
        if not records:
            return
        log.warning("journal: %d acknowledged pastes to commit", len(records))
        for r in records:
            p = Pending(r.paste_id, r.data, r.author, r.message, None, r.seq)
            reason = self.quarantine.problem(p)
            if reason is not None:
                self.quarantine.set_aside(p, reason)
            else:
                self.idbook.journaled[r.paste_id] = r.data
                self.idbook.reserved.add(r.paste_id)
            self.writer.pending.append(p)
        self.writer.handed = len(records)

    # -- the repository, as readers and the sync see it ----------------------

    @property
    def head(self) -> pygit2.Oid | None:
        return self.repository.head

    @property
    def repo(self) -> pygit2.Repository:
        return self.repository.repo

    @property
    def reader(self) -> pygit2.Repository:
        return self.repository.reader

    @property
    def tree_cache(self) -> TreeCache:
        return self.repository.tree_cache

    @property
    def on_commit(self) -> list[Callable[[pygit2.Oid], object]]:
        return self.repository.on_commit

    @property
    def generation(self) -> int:
        """Bumped whenever pastes may have left the tree (removal, rebase, reset)."""
        return self.repository.generation

    def apply(self, changes: Sequence[Change], written: list[pygit2.Oid] | None = None,
              onto: pygit2.Oid | None = None) -> None:
        """``Repository.apply`` (writer thread)."""
        self.repository.apply(changes, written, onto)

    def reset_to(self, oid: pygit2.Oid) -> None:
        """``Repository.reset_to`` (writer thread)."""
        self.repository.reset_to(oid)

    def reopen(self) -> None:
        """``Repository.reopen`` (writer thread)."""
        self.repository.reopen()

    # -- reads --------------------------------------------------------------

    def get(self, paste_id: str) -> bytes | None:
        """The stored document of a paste, or None (cheap: one tree walk)."""
        journaled = self.idbook.journaled.get(paste_id)
        if journaled is not None:
            return journaled
        obj = self._blob(paste_id)
        return None if obj is None else obj.data

    def get_bounded(self, paste_id: str, limit: int) -> bytes | LargeBlob | None:
        """Like ``get``, but a document over ``limit`` bytes is not read: its
        blob comes back to be streamed (its size from the object's header)."""
        journaled = self.idbook.journaled.get(paste_id)
        if journaled is not None:
            return journaled
        obj = self._blob(paste_id)
        if obj is None:
            return None
        _, size = self.repository.reader.odb.read_header(obj.id)
        return LargeBlob(obj.id, size) if size > limit else obj.data

    def _blob(self, paste_id: str) -> pygit2.Blob | None:
        """The blob of a committed paste, not read yet (pygit2 loads it lazily)."""
        return self.repository.blob(paste_id) if valid_id(paste_id) else None

    def stream(self, blob: LargeBlob, chunk: int = 1 << 20) -> AsyncGenerator[bytes, None]:
        """A large blob's bytes, ``chunk`` at a time, never all in memory
        (``streams.stream_blob``). Raises StoreError if the object cannot be
        read to its end."""
        return stream_blob(self.path, blob.oid, blob.size, chunk)

    @property
    def uncommitted(self) -> int:
        """Creates accepted and not yet in a commit (journaled or waiting)."""
        return (len(self.intake.queue) if self.intake is not None else 0) + len(self.writer.pending)

    def __contains__(self, paste_id: str) -> bool:
        return self.get(paste_id) is not None

    def ids(self) -> Iterable[str]:
        """Every paste id in the current tree (walks the whole tree)."""
        tree = self.repository.tree
        if tree is None:
            return
        for a in tree:
            mid = self.repository.reader[a.id]
            if not isinstance(mid, pygit2.Tree):
                continue
            for b in mid:
                leaves = self.repository.reader[b.id]
                if not isinstance(leaves, pygit2.Tree):
                    continue
                for leaf in leaves:
                    if leaf.name is not None:  # always set on a tree's entry
                        yield leaf.name

    def commit_of(self, paste_id: str, limit: int = 10_000) -> pygit2.Commit | None:
        """The commit that added a paste (walks history from the tip)."""
        if self.repository.head is None:
            return None
        path = shard_path(paste_id)
        found = None
        for n, commit in enumerate(self.repository.reader.walk(self.repository.head)):
            if n >= limit:
                break
            try:
                commit.tree[path]
            except KeyError:
                break
            found = commit
        return found


    def new_id(self) -> str:
        """A random id free in the current tree."""
        return self.idbook.new_id()

    # -- figures ------------------------------------------------------------

    @property
    def commits(self) -> int:
        return self.repository.commits

    @property
    def packs(self) -> int:
        return self.repository.packs

    @property
    def batches(self) -> int:
        """Group commits of new pastes."""
        return self.writer.figures.batches

    @property
    def added(self) -> int:
        """Pastes committed by them."""
        return self.writer.figures.added

    @property
    def commit_seconds(self) -> float:
        """Time spent in them (wall, fsyncs included)."""
        return self.writer.figures.commit_seconds

    def commit_times(self) -> tuple[list[tuple[float, int]], float]:
        """The commit-time histogram of those batches: (upper bound in
        seconds, batches that took at most that), cumulative and ending with
        infinity; and their total time."""
        figures = self.writer.figures
        counts, total = list(figures.commit_counts), figures.commit_seconds
        return list(zip((*COMMIT_BUCKETS, math.inf), itertools.accumulate(counts),
                        strict=True)), total

    @property
    def erased(self) -> int:
        return self.erasure.erased

    def backlog_age(self) -> float:
        """Seconds the oldest acknowledged, uncommitted paste has waited (0: none)."""
        return self.writer.backlog_age()

    @property
    def commit_error(self) -> str | None:
        """Why commits (of new pastes, removals, erasures) fail now (None: they do not)."""
        failure = self.writer.failure
        return str(failure) if failure is not None else self.failures.error()

    @property
    def last_commit_error(self) -> tuple[str, float] | None:
        """The last commit failure, and when (epoch seconds), kept after a success."""
        f = self.writer.figures
        return (f.last_error, f.last_error_at) if f.last_error and f.last_error_at else None

    async def problems(self) -> list[str]:
        """What keeps the store from doing its work, one sentence each (for
        /healthz; empty when all is well). A journal that failed is probed
        again here (its header written and synced), so that the answer turns
        good once the disk is back, without waiting for a create."""
        out: list[str] = []
        failure = self.writer.failure
        if failure is not None:
            since = time.monotonic() - (self.writer.failing_since or time.monotonic())
            out.append(f"commits have failed for {since:.0f} s: {failure}")
        out += self.failures.problems()
        age = self.backlog_age()
        if age > BACKLOG_STALL:
            out.append(f"an acknowledged paste has waited {age:.0f} s for its commit "
                       f"({self.uncommitted} uncommitted)")
        if self.intake is not None:
            out += await self.intake.problems()
        return out

    # -- writes -------------------------------------------------------------

    def start(self) -> None:
        self.writer.start()
        if self.intake is not None:
            self.intake.start()

    async def stop(self) -> None:
        if self.intake is not None:
            await self.intake.stop()
        await self.writer.stop()
        self.close()

    def close(self) -> None:
        """Let the threads go (``stop`` ends with this; a store never started
        is closed with it)."""
        self.writer.close()
        if self.intake is not None:
            self.intake.close()
        self.repository.close()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    async def add(
        self, data: bytes | Path | LooseBlob, author: str | None = None, message: str | None = None
    ) -> str:
        """Store a paste durably; returns its new id once journaled (or, for a
        large paste or without a journal, once committed).

        The id is picked beside the journal or in the writer, never on the
        event loop, and reserved until its commit."""
        assert self.writer.started, "Store.start() was not called"
        # Checked before anything is stored (record.RecordError, a ValueError):
        # a record that was acknowledged can be committed.
        author, message = record.checked_user(author), record.checked_comment(message)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        pending = Pending(None, data, author, message, fut)
        if self.intake is not None and self.intake.takes(data):
            self.intake.submit(pending)
        else:
            self.writer.submit(pending)
        return await fut

    async def flush(self) -> None:
        """Wait until every paste journaled so far is committed (before a
        removal: a paste is never removed before it is added). Raises the
        commit's StoreError if it fails."""
        await self.writer.flush()

    async def run_in_writer(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the writer thread (serialised with commits)."""
        return await self.writer.run_in_writer(fn)

    # -- maintenance --------------------------------------------------------

    async def maintain(self) -> None:
        """Roll small packs up (``Maintenance.run``), the guard held: no
        fetch writes a pack meanwhile."""
        async with self.guard:
            await self.maintenance.run()

    # -- deletion and erasure -----------------------------------------------

    async def remove(self, paste_ids: Sequence[str], reason: str) -> None:
        """Remove pastes from the served tree at once (one commit) and queue
        their content for erasure from the object store and history."""
        ids = [i for i in paste_ids if valid_id(i)]
        if not ids:
            return
        await self.flush()  # a journaled paste is committed before it is removed
        message = f"{reason} paste {ids[0]}" if len(ids) == 1 else f"{reason} {len(ids)} pastes"
        await self.failures.run("removal", self.run_in_writer(
            lambda: self.erasure.remove(ids, message, reason)))

    def gone(self, paste_id: str) -> str | None:
        """Why a removed paste is gone ("Burn", "Expire", "Delete"), or None."""
        return self.erasure.tombstones.reason(paste_id)

    def pending_erasure(self) -> set[str]:
        return self.erasure.pending()

    def on_erasure(self, announce: Callable[[set[str]], None],
                   after: Callable[[], Awaitable[None]]) -> None:
        """Hooks of every erasure, whoever starts it (the syncer's marker,
        ``sync.erase``): ``announce`` is given the ids in the writer thread,
        in the erasure's own step; ``after`` runs once it is done, the guard
        still held."""
        self.erasure.announce = announce
        self._after_erase.append(after)

    async def erase(self) -> int:
        """Erase removed pastes from history and the object store
        (``Erasure.erase``, in the writer thread), the guard held."""
        async with self.guard:
            return await self.erase_guarded()

    async def erase_guarded(self) -> int:
        """``erase`` for a caller already holding the guard (the syncer,
        inside a fetch or push); then the ``on_erasure`` hooks."""
        async with self._repacking:  # never beside a maintenance repack
            erased = await self.failures.run("erasure", self.run_in_writer(self.erasure.erase))
        for after in self._after_erase:
            await after()
        return erased

    def _scrub_journal(self) -> None:
        if self.journal is not None:
            self.journal.scrub()
