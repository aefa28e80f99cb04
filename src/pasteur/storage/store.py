"""Pastes in a bare Git repository, one blob per paste in a sharded tree.

Layout: ``<a>/<b>/<id>`` where ``a`` and ``b`` are the first two characters of
the id (measured: ~3 ms per commit at 100k pastes, against ~450 ms for a flat
tree). History is linear on ``refs/heads/main``.

A new paste is acknowledged once its record is in the write-ahead journal
(``journal.py``), fdatasync'ed with the others that arrived with it; it is
served from memory until committed. Commits go through one writer thread
(group commit): the journaled pastes (and the large ones, which skip the
journal and wait for their commit) form batches. Anonymous pastes of a batch
share one commit; a paste with a user or a comment gets its own commit
(author and message). A batch's objects (blobs, trees, commits) are computed
in memory and written as one pack and its index (v2); a large paste, given as
a file, stays a loose object written by libgit2 in a stream. The pack, index,
pack directory (and any loose object) and the branch ref are fsynced, then
the journal's checkpoint moves past the batch.

One pack per batch would slow lookups down after thousands of batches: when
there are more than ``PACK_LIMIT`` packs, ``git repack -d --geometric=2``
rolls the small ones up (``Store.maintain``, a process beside the writer).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pygit2
from pygit2.enums import FileMode

from .. import record
from ..ids import random_id, valid_id
from ..procs import child_env, idle_priority
from .batch import Pending, commit_batch
from .committer import Committer, CommitterError
from .errors import StoreBusy, StoreError
from .journal import Journal, JournalError, JournalFull
from .layout import BRANCH, Layout
from .objects import shard_path, tree_has
from .packs import Pacer, PackBuilder
from .repository import Change, Repository, remove_stale_locks
from .treecache import TreeCache

log = logging.getLogger("pasteur.store")
T = TypeVar("T")  # what a function run in the writer thread returns

MAX_BATCH = 512
MAX_BATCH_BYTES = 16 << 20

# After a commit of fewer than LINGER_BATCH journaled pastes, the next one
# waits up to LINGER seconds for more (they are acknowledged already).
LINGER = 0.05
LINGER_BATCH = 512
RETRY_DELAY = 1.0  # seconds between attempts while commits fail
# /healthz fails when an acknowledged paste has waited longer than this for
# its commit (stalled or falling behind; a batch takes milliseconds).
BACKLOG_STALL = 5.0
RETRY_AFTER_FULL = 2  # seconds, told to a create refused because the journal is full
HEALTH_PROBE_TIMEOUT = 2.0  # seconds a /healthz probe of a failed journal may take
# More packs than this and the writer rolls them up (git repack --geometric=2).
PACK_LIMIT = 50


@dataclass(frozen=True)
class LargeBlob:
    """A committed document too large to read whole: streamed (``Store.stream``)."""

    oid: pygit2.Oid
    size: int


class Store:
    """The paste repository: reads from the event loop, writes in one thread."""

    def __init__(self, path: Path, id_length: int = 4, journal: bool = True,
                 lock_fd: int | None = None,
                 check_document: Callable[[bytes], str | None] | None = None) -> None:
        """The server's store: what a crash left in the repository is cleared
        first. ``lock_fd``: the descriptor holding the repository
        (``lock_repository``); ``check_document``: why a replayed document
        cannot be served (None: it can), the records it refuses are
        quarantined."""
        self.path = Path(path)
        if (self.path / "HEAD").exists():
            remove_stale_locks(Layout(self.path))
        self.repository = Repository(self.path)
        self.layout = self.repository.layout
        self.check_document = check_document
        self.id_length = id_length
        self._pending: list[Pending] = []
        self.pacer = Pacer()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pasteur-git")
        self.batches = 0  # group commits of new pastes
        self.added = 0  # pastes they held
        self.commit_seconds = 0.0  # time spent in them (wall, fsyncs included)
        self.erased = 0
        self.max_packs = PACK_LIMIT  # repack when there are more packs than this
        self._kept_packs = 0  # packs left by the last repack
        self.maintenance_runs = 0
        self.maintenance_failures = 0
        self._repacking = asyncio.Lock()
        self._maintenance: asyncio.Task[None] | None = None
        # Removed, not yet erased: never given to a new paste (the erasure
        # strips these ids from every commit).
        self._erasing: set[str] = self.pending_erasure()
        # The write-ahead journal (journal.py): creates are acknowledged once
        # journaled; the writer commits them behind, ``linger`` seconds at
        # most after a small commit so that the next one is larger.
        self.journal: Journal | None = None
        self.linger = LINGER
        self._journaled: dict[str, bytes] = {}  # acknowledged, not yet committed
        self._reserved: set[str] = set()  # ids journaled or being committed
        self._ids_lock = threading.Lock()
        self._to_journal: list[Pending] = []
        self._journaling = False  # a group is being written
        self._jwake: asyncio.Event | None = None
        self._jtask: asyncio.Task[None] | None = None
        self._journaler = ThreadPoolExecutor(1, thread_name_prefix="pasteur-journal")
        self._urgent: asyncio.Event | None = None
        self._failure: StoreError | None = None  # the last commit's, until one succeeds
        self.failing_since: float | None = None  # monotonic, the first failure of those
        self.journal_error: str | None = None  # the last append's failure, until one works
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._handed = 0  # journaled pastes handed to the writer
        self._done = 0  # ... and committed
        # Journaled batches are committed in a process of its own (committer.py).
        self.committer: Committer | None = None
        if journal:
            self._open_journal()
            if self.journal is not None:
                self.committer = Committer(self.path, lock_fd)

    def _open_journal(self) -> None:
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
            return
        self.journal = journal
        if records:
            # Committed when the writer starts (those a crash left committed
            # already are recognised there); readable at once meanwhile.
            log.warning("journal: %d acknowledged pastes to commit", len(records))
            for r in records:
                p = Pending(r.paste_id, r.data, r.author, r.message, None, r.seq)
                reason = self._problem(p)
                if reason is not None:
                    self._set_aside(p, reason)
                else:
                    self._journaled[r.paste_id] = r.data
                    self._reserved.add(r.paste_id)
                self._pending.append(p)
            self._handed = len(records)

    def _problem(self, p: Pending) -> str | None:
        """Why a journaled record cannot be committed or served, or None."""
        reason = record.commit_problem(p.paste_id, p.author, p.message)
        if reason is None and self.check_document is not None and isinstance(p.data, bytes):
            reason = self.check_document(p.data)
        return reason

    def _set_aside(self, p: Pending, reason: str) -> None:
        """Quarantine one record: logged, appended (durably) to the quarantine
        file with its id and reason, dropped from what is served and committed."""
        log.error("paste %s set aside in %s: %s", p.paste_id, self.layout.quarantine, reason)
        p.quarantine = reason
        if isinstance(p.data, bytes):
            data, encoding = p.data.decode("utf-8", "replace"), "utf-8"
            if data.encode() != p.data:
                data, encoding = base64.b64encode(p.data).decode(), "base64"
        else:
            data, encoding = str(p.data), "path"
        line = json.dumps({"id": p.paste_id, "seq": p.seq, "reason": reason,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "user": p.author, "comment": p.message,
                           "data": data, "encoding": encoding})
        try:
            fd = os.open(self.layout.quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "backslashreplace") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("the quarantine file cannot be written (%s): the record was %s", exc, line)


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

    @property
    def commits(self) -> int:
        return self.repository.commits

    @property
    def packs(self) -> int:
        return self.repository.packs

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
        journaled = self._journaled.get(paste_id)
        if journaled is not None:
            return journaled
        obj = self._blob(paste_id)
        return None if obj is None else obj.data

    def get_bounded(self, paste_id: str, limit: int) -> bytes | LargeBlob | None:
        """Like ``get``, but a document over ``limit`` bytes is not read: its
        blob comes back to be streamed (its size from the object's header)."""
        journaled = self._journaled.get(paste_id)
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

    async def stream(
        self, blob: LargeBlob, chunk: int = 1 << 16
    ) -> AsyncGenerator[bytes, None]:
        """A large blob's bytes, ``chunk`` at a time, from ``git cat-file``
        (which inflates loose and undeltified packed objects as a stream: this
        process holds a chunk, git a window; libgit2 would read it whole).
        Raises StoreError if the object cannot be read to its end."""
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(self.path), "cat-file", "blob", str(blob.oid),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=child_env(),
        )
        assert proc.stdout is not None
        sent = 0
        try:
            while data := await proc.stdout.read(chunk):
                sent += len(data)
                yield data
            if await proc.wait() != 0 or sent != blob.size:
                raise StoreError(f"blob {blob.oid} could not be read ({sent} of {blob.size} bytes)")
        finally:
            if proc.returncode is None:  # the reader left early
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    @property
    def uncommitted(self) -> int:
        """Creates accepted and not yet in a commit (journaled or waiting)."""
        return len(self._to_journal) + len(self._pending)

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

    # -- ids ----------------------------------------------------------------

    def new_id(self) -> str:
        """A random id free in the current tree."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if paste_id not in self:
                return paste_id
            if attempt % 8 == 7:  # the space is crowded: grow the id
                length += 1
        raise StoreError("no free paste id")

    def free_id(self, pack: PackBuilder, root: bytes | None, taken: set[str]) -> str:
        """``new_id`` in the writer: looked up in the trees the batch edits anyway."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if (paste_id not in taken and paste_id not in self._erasing
                    and not pack.has_paste(root, paste_id.encode())
                    and self._try_reserve(paste_id)):
                return paste_id
            if attempt % 8 == 7:  # the space is crowded: grow the id
                length += 1
        raise StoreError("no free paste id")

    def _reserve_id(self) -> str:
        """A free id for a journaled paste (journal thread): in no commit, not
        journaled, not being committed, not waiting for erasure. Reserved
        first, then looked up in the current tree: an id is released only
        after the tree holding it is in place."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if paste_id not in self._erasing and self._try_reserve(paste_id):
                tree = self.repository.tree
                if tree is None or self.repository.tree_cache.paste_oid(
                        tree.id.raw, paste_id.encode(), self.repository.reader.odb) is None:
                    return paste_id
                self._release([paste_id])
            if attempt % 8 == 7:
                length += 1
        raise StoreError("no free paste id")

    def renamed(self, old: str, new: str) -> None:
        """A journaled paste is committed as ``new`` (``old`` was taken meanwhile)."""
        self._journaled.pop(old, None)
        self._release([old])
        self._try_reserve(new)

    def _try_reserve(self, paste_id: str) -> bool:
        with self._ids_lock:
            if paste_id in self._reserved:
                return False
            self._reserved.add(paste_id)
            return True

    def _release(self, ids: Iterable[str | None]) -> None:
        with self._ids_lock:
            for paste_id in ids:
                self._reserved.discard(paste_id)

    # -- writes -------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._jwake = asyncio.Event()
        self._urgent = asyncio.Event()
        if self._pending:
            self._wake.set()
        now = time.monotonic()
        for p in self._pending:  # replayed: their wait for a commit starts now
            p.since = now
        self._task = loop.create_task(self._run(), name="pasteur-commit")
        self._jtask = loop.create_task(self._journal_run(), name="pasteur-journal")

    async def stop(self) -> None:
        if self._jtask is not None:
            while self._to_journal or self._journaling:  # every create answered
                await asyncio.sleep(0.01)
            self._jtask.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._jtask
            self._jtask = None
        if self._task is not None:
            # Everything acknowledged is committed before the end (what a
            # failing disk keeps back stays in the journal for the next start).
            while self._pending and self._failure is None:
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
            await asyncio.get_running_loop().run_in_executor(self._writer, self.committer.close)
        self.close()

    def close(self) -> None:
        """Let the threads go (``stop`` ends with this; a store never started
        is closed with it)."""
        self._writer.shutdown(wait=True)
        self._journaler.shutdown(wait=True)
        self.repository.close()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    async def add(
        self, data: bytes | Path, author: str | None = None, message: str | None = None
    ) -> str:
        """Store a paste durably; returns its new id once journaled (or, for a
        large paste or without a journal, once committed).

        The id is picked beside the journal or in the writer, never on the
        event loop, and reserved until its commit."""
        assert self._wake is not None and self._jwake is not None and self._urgent is not None, \
            "Store.start() was not called"
        # Checked before anything is stored (record.RecordError, a ValueError):
        # a record that was acknowledged can be committed.
        author, message = record.checked_user(author), record.checked_comment(message)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        pending = Pending(None, data, author, message, fut)
        if (self.journal is not None and isinstance(data, bytes)
                and self.journal.takes(len(data))):
            self._to_journal.append(pending)
            self._jwake.set()
        else:
            self._pending.append(pending)
            self._urgent.set()
            self._wake.set()
        return await fut

    async def _journal_run(self) -> None:
        assert self._jwake is not None and self._wake is not None and self._urgent is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._jwake.wait()
            self._jwake.clear()
            while self._to_journal:
                group = self._next_group()
                self._journaling = True
                try:
                    if self._failure is not None:
                        # Commits fail (a full or read-only disk): acknowledge
                        # nothing more until one goes through.
                        await self.flush()
                    await loop.run_in_executor(self._journaler, self._journal_group, group)
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    if not isinstance(exc, StoreError):
                        log.error("journal write failed: %s", exc)
                    err = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    self._release(p.paste_id for p in group)
                    for p in group:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(err)
                    continue
                finally:
                    self._journaling = False
                for p in group:
                    assert p.paste_id is not None
                    self._journaled[p.paste_id] = p.data  # type: ignore[assignment]  # bytes: see add
                    fut, p.future = p.future, None
                    if fut is not None and not fut.done():
                        fut.set_result(p.paste_id)
                self._pending.extend(group)
                self._handed += len(group)
                if len(self._pending) >= LINGER_BATCH or (
                        self.journal is not None and self.journal.pressed):
                    self._urgent.set()
                self._wake.set()

    def _next_batch(self) -> list[Pending]:
        """The next commit: up to MAX_BATCH pastes and MAX_BATCH_BYTES of them
        (at least one), as the committer gets a copy of each."""
        n, size = 0, 0
        for p in self._pending[:MAX_BATCH]:
            size += len(p.data) if isinstance(p.data, bytes) else 0
            if n and size > MAX_BATCH_BYTES:
                break
            n += 1
        return self._pending[:n]

    def _next_group(self) -> list[Pending]:
        """The next creates to journal together: up to MAX_BATCH of them and a
        quarter of the journal (a record takes a sixteenth at most)."""
        assert self.journal is not None
        budget, n = self.journal.size // 4, 0
        for p in self._to_journal[:MAX_BATCH]:
            budget -= len(p.data) + 512  # type: ignore[arg-type]  # journaled: bytes (add)
            if budget < 0 and n:
                break
            n += 1
        group = self._to_journal[:n]
        del self._to_journal[:n]
        return group

    def _journal_group(self, group: list[Pending]) -> None:
        """Journal thread: ids, then the records, written and fdatasync'ed."""
        assert self.journal is not None
        changes = self.repository.changes  # read before the tree the ids are checked in
        for p in group:
            p.paste_id = self._reserve_id()
            p.changes = changes
        items = [(p.paste_id, p.author, p.message, p.data) for p in group]
        try:
            seqs = self.journal.append(items)  # type: ignore[arg-type]  # ids just set; bytes (add)
        except JournalFull as exc:
            raise StoreBusy(str(exc), RETRY_AFTER_FULL) from exc
        except JournalError as exc:
            raise StoreError(str(exc)) from exc
        except OSError as exc:
            self.journal_error = str(exc)
            raise
        self.journal_error = None
        for p, seq in zip(group, seqs, strict=True):
            p.seq = seq

    async def flush(self) -> None:
        """Wait until every paste journaled so far is committed (before a
        removal: a paste is never removed before it is added). Raises the
        commit's StoreError if it fails."""
        target = self._handed
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
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def _run(self) -> None:
        assert self._wake is not None and self._urgent is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None and self._pending:  # retry what is journaled
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_DELAY)
            else:
                await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if (self.linger > 0 and not self._urgent.is_set()
                        and len(self._pending) < LINGER_BATCH
                        and all(p.future is None for p in self._pending)):
                    # Only acknowledged pastes wait: let more join this commit.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), self.linger)
                self._urgent.clear()
                batch = self._next_batch()
                # Paced while the writer keeps up: all that waits is in this batch.
                relaxed = len(self._pending) == len(batch) and not (
                    self.journal is not None and self.journal.pressed)
                out = self.committer is not None and all(p.seq is not None for p in batch)
                try:
                    if out:
                        await loop.run_in_executor(self._writer, self._commit_out, batch, relaxed)
                    else:
                        await loop.run_in_executor(self._writer, self._commit_batch, batch)
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    log.error("commit failed: %s", exc)
                    if await loop.run_in_executor(self._writer, self._set_aside_bad, batch):
                        continue  # the others go on at once, without them
                    err = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    self._failure = err
                    self.failing_since = self.failing_since or time.monotonic()
                    # Journaled pastes stay (durable, retried); the others fail.
                    self._pending[:len(batch)] = [p for p in batch if p.seq is not None]
                    self._release(p.paste_id for p in batch if p.seq is None)
                    for p in batch:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(err)
                    self._notify(err)
                    break
                self._failure = None
                self.failing_since = None
                del self._pending[:len(batch)]
                for p in batch:
                    if p.seq is not None:
                        self._journaled.pop(p.paste_id, None)  # type: ignore[arg-type]  # has its id
                        self._done += 1
                    elif p.future is not None and not p.future.done():
                        p.future.set_result(p.paste_id or "")
                self._release(p.paste_id for p in batch)
                self._notify(None)
                if self._needs_maintenance() and (
                    self._maintenance is None or self._maintenance.done()
                ):
                    self._maintenance = loop.create_task(
                        self._maintain_logged(), name="pasteur-maintenance"
                    )

    def _set_aside_bad(self, batch: Sequence[Pending]) -> bool:
        """Writer thread, after a failed commit: quarantine the journaled
        records of the batch that cannot be committed; whether there were
        any (else the failure is the repository's: the batch is retried)."""
        found = False
        for p in batch:
            if p.seq is None or p.quarantine is not None or not isinstance(p.data, bytes):
                continue
            reason = self._problem(p)
            if reason is not None:
                self._set_aside(p, reason)
                self._journaled.pop(p.paste_id, None)  # type: ignore[arg-type]  # journaled: has an id
                found = True
        return found

    # -- health -------------------------------------------------------------

    def backlog_age(self) -> float:
        """Seconds the oldest acknowledged, uncommitted paste has waited (0: none)."""
        for p in self._pending:  # in order of arrival
            if p.seq is not None:
                return time.monotonic() - p.since
        return 0.0

    async def problems(self) -> list[str]:
        """What keeps the store from doing its work, one sentence each (for
        /healthz; empty when all is well). A journal that failed is probed
        again here (its header written and synced), so that the answer turns
        good once the disk is back, without waiting for a create."""
        out: list[str] = []
        if self._failure is not None:
            since = time.monotonic() - (self.failing_since or time.monotonic())
            out.append(f"commits have failed for {since:.0f} s: {self._failure}")
        age = self.backlog_age()
        if age > BACKLOG_STALL:
            out.append(f"an acknowledged paste has waited {age:.0f} s for its commit "
                       f"({self.uncommitted} uncommitted)")
        if self.journal_error is not None and self.journal is not None:
            journal = self.journal
            try:
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    self._journaler, journal.check), HEALTH_PROBE_TIMEOUT)
            except TimeoutError:
                out.append("the journal cannot be written: a check took more than "
                           f"{HEALTH_PROBE_TIMEOUT:g} s")
            except OSError as exc:
                self.journal_error = str(exc)
                out.append(f"the journal cannot be written: {exc}")
            else:
                self.journal_error = None
        return out

    def _commit_out(self, batch: Sequence[Pending], relaxed: bool) -> None:
        """Writer thread: a batch of journaled pastes committed by the
        committer process, on top of this head; then its head taken, its
        trees cached (the journal thread checks new ids in them) and the
        journal checkpointed."""
        assert self.committer is not None
        t0 = time.perf_counter()
        kept = [p for p in batch if p.quarantine is None]
        if not kept:  # only records set aside: their journal records are passed
            self._batch_done(batch, t0)
            return
        try:
            reply = self.committer.commit({
                "head": self.repository.head.raw if self.repository.head is not None else None,
                "reopens": self.repository.reopens,
                "items": [(p.paste_id, p.author, p.message, p.data) for p in kept],
                "relaxed": relaxed,
                "verify": any(p.changes != self.repository.changes for p in kept),
            })
        except CommitterError as exc:
            raise StoreError(str(exc)) from exc
        for oid, raw in reply.trees:
            self.repository.tree_cache.put_raw(oid, raw)
        renamed = dict(reply.renames)
        for p in batch:
            new_id = renamed.get(p.paste_id)  # type: ignore[arg-type]  # journaled: has an id
            if new_id is not None:  # taken meanwhile by a synced paste (logged there)
                self.renamed(p.paste_id, new_id)  # type: ignore[arg-type]  # has an id
                p.paste_id = new_id
        if reply.head is not None:
            head = pygit2.Oid(raw=reply.head)
            self.repository.take_head(head, journaled=True)
            self.repository.commits += reply.commits
            self.repository.packs += reply.packs
            for cb in self.repository.on_commit:
                cb(head)
        self._batch_done(batch, t0)

    def _batch_done(self, batch: Sequence[Pending], t0: float) -> None:
        """After a batch's commit: the journal's checkpoint, the counters."""
        seqs = [p.seq for p in batch if p.seq is not None]
        if seqs and self.journal is not None:
            self.journal.checkpoint(max(seqs))
        self.batches += 1
        self.added += len(batch)
        self.commit_seconds += time.perf_counter() - t0

    def _commit_batch(self, batch: Sequence[Pending], relaxed: bool = False,
                      verify: bool = True) -> PackBuilder:
        """Commit a batch in this thread (``batch.commit_batch``), then the
        journal's checkpoint and the counters."""
        t0 = time.perf_counter()
        pack = commit_batch(self.repository, batch, self.pacer, relaxed, verify, ids=self)
        self._batch_done(batch, t0)
        return pack

    # -- maintenance --------------------------------------------------------

    async def maintain(self) -> None:
        """Roll small packs up beside the writer, then reopen the handles in it.

        The syncer wraps this, as it wraps ``erase``, so that no fetch writes
        a pack meanwhile. ``git repack`` runs as a process of its own: commits
        go on while it works (measured: a repack in the writer thread stalled
        every 50th batch by ~0.1 s, the p99 of creates at one connection).
        It runs at idle priority (``chrt --idle``, else ``nice``): on a busy
        core it yields to the server (measured on one core at 2,000 creates/s:
        12% more throughput and a p99 of 53 instead of 175 ms)."""
        async with self._repacking:  # never beside an erasure's repack and prune
            before, t0 = self.layout.count_packs(), time.monotonic()
            proc = await asyncio.create_subprocess_exec(*idle_priority(),
                                                        *self._repack_command(),
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE,
                                                        env=child_env())
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise StoreError(f"git repack failed: {err.decode(errors='replace').strip()}")
            await self.run_in_writer(lambda: self._after_repack(before, t0))

    def _needs_maintenance(self) -> bool:
        # Packs the last repack kept (a geometric progression: ~log2 of the
        # size ratio) count for half, or a large kept set would repack often.
        return self.repository.packs > max(self.max_packs, self._kept_packs + self.max_packs // 2)

    async def _maintain_logged(self) -> None:
        try:
            await self.maintain()
        except Exception as exc:  # noqa: BLE001 - maintenance failing is not fatal
            self.maintenance_failures += 1
            log.error("pack maintenance failed: %s", exc)

    def _repack_command(self) -> list[str]:
        """``git repack -d --geometric=2``: packs (and loose objects) are rolled
        up into one pack when their sizes are not a geometric progression; only
        the packs it rewrote are deleted, and it keeps every object of those
        packs (reachable or not), so nothing another writer put there is lost;
        packs written meanwhile are left alone. No delta search
        (``pack.window=0``): measured 91 ms instead of 299 ms for 50 batches of
        64 pastes; erasure's ``repack -a`` deltifies."""
        return ["git", "-C", str(self.path), "-c", "repack.writeBitmaps=false",
                "-c", "pack.window=0", "repack", "-d", "--geometric=2", "-q"]

    def _maintain(self) -> None:
        """The same as ``maintain``, all in the writer thread (for tests and tools)."""
        before, t0 = self.layout.count_packs(), time.monotonic()
        subprocess.run(self._repack_command(), check=True, capture_output=True, env=child_env())
        self._after_repack(before, t0)

    def _after_repack(self, before: int, t0: float) -> None:
        self.repository.reopen()
        self.repository.packs = self.layout.count_packs()
        self._kept_packs = self.repository.packs
        self.maintenance_runs += 1
        log.info("repacked %d packs into %d in %.0f ms", before, self.repository.packs,
                 (time.monotonic() - t0) * 1e3)

    # -- deletion and erasure -----------------------------------------------

    async def remove(self, paste_ids: Sequence[str], reason: str) -> None:
        """Remove pastes from the served tree at once (one commit) and queue
        their content for erasure from the object store and history."""
        ids = [i for i in paste_ids if valid_id(i)]
        if not ids:
            return
        await self.flush()  # a journaled paste is committed before it is removed
        message = f"{reason} paste {ids[0]}" if len(ids) == 1 else f"{reason} {len(ids)} pastes"

        def work() -> None:
            present = [i for i in ids if self.repository.has(i)]
            if present:
                self.repository.apply([Change([], present, None, message)])
            self._erasing.update(ids)
            with self.layout.erase_list.open("a") as f:
                f.write("".join(f"{i}\n" for i in ids))
                f.flush()
                os.fsync(f.fileno())

        await self.run_in_writer(work)

    def pending_erasure(self) -> set[str]:
        try:
            return set(self.layout.erase_list.read_text().split())
        except FileNotFoundError:
            return set()

    async def erase(self) -> int:
        """Erase removed pastes from history and the object store (writer thread).

        History is rewritten without them (same authors, messages and dates;
        commits left empty are dropped), then ``git repack -a -d`` and ``git
        prune --expire=now`` delete the unreachable objects. Commit ids after
        the oldest erased paste change: a remote gets a forced push.
        """
        async with self._repacking:  # never beside a maintenance repack
            return await self.run_in_writer(self._erase)

    def _erase(self) -> int:
        ids = self.pending_erasure()
        if not ids:
            return 0
        if self.repository.head is not None:
            self._rewrite_without(ids)
        git = ["git", "-C", str(self.path)]
        for args in (["reflog", "expire", "--expire=now", "--all"],
                     ["repack", "-a", "-d", "-q"],
                     ["prune", "--expire=now"]):
            subprocess.run([*git, *args], check=True, capture_output=True, env=child_env())
        self.repository.reopen()
        self.repository.packs = self.layout.count_packs()
        if self.journal is not None:
            self.journal.scrub()
        self.layout.erase_list.unlink(missing_ok=True)
        self._erasing -= ids
        self.erased += len(ids)
        log.info("erased %d pastes from history and the object store", len(ids))
        return len(ids)

    def _rewrite_without(self, ids: set[str]) -> None:
        repo = self.repository.repo
        assert self.repository.head is not None
        chain = list(repo.walk(self.repository.head, pygit2.enums.SortMode.TOPOLOGICAL
                               | pygit2.enums.SortMode.REVERSE))
        written: list[pygit2.Oid] = []
        new_parent: pygit2.Oid | None = None
        new_parent_tree: pygit2.Oid | None = None
        rewriting = False
        for commit in chain:
            present = [i for i in ids if tree_has(commit.tree, i)]
            if not present and not rewriting:
                new_parent, new_parent_tree = commit.id, commit.tree_id
                continue
            rewriting = True
            tree_oid = (
                self._edit_tree(commit.tree, [], present, written) if present else commit.tree_id
            )
            if tree_oid == new_parent_tree:
                continue  # the commit only added what is erased
            parents = [new_parent] if new_parent is not None else []
            new_parent = repo.create_commit(
                None, commit.author, commit.committer, commit.message, tree_oid, parents
            )
            new_parent_tree = tree_oid
            written.append(new_parent)
        if not rewriting:
            return
        self.repository.sync_objects(written)
        if new_parent is None:  # nothing left at all
            self.repository.repo.references.delete(BRANCH)
            self.repository.take_head(None)
            return
        self.repository.reset_to(new_parent)
        for cb in self.repository.on_commit:
            cb(new_parent)

    def _edit_tree(
        self,
        root: pygit2.Tree | None,
        add: Iterable[tuple[str, pygit2.Oid]],
        remove: Iterable[str],
        written: list[pygit2.Oid],
    ) -> pygit2.Oid:
        repo = self.repository.repo
        edits: dict[str, dict[str, dict[str, pygit2.Oid | None]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for paste_id, oid in add:
            edits[paste_id[0]][paste_id[1]][paste_id] = oid
        for paste_id in remove:
            edits[paste_id[0]][paste_id[1]][paste_id] = None

        def sub(tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
            if tree is None:
                return None
            try:
                entry = tree[name]
            except KeyError:
                return None
            return entry if isinstance(entry, pygit2.Tree) else None

        root_b = repo.TreeBuilder(root) if root is not None else repo.TreeBuilder()
        for a, by_b in edits.items():
            mid = sub(root, a)
            mid_b = repo.TreeBuilder(mid) if mid is not None else repo.TreeBuilder()
            for b, leaves in by_b.items():
                leaf = sub(mid, b)
                leaf_b = repo.TreeBuilder(leaf) if leaf is not None else repo.TreeBuilder()
                for paste_id, blob in leaves.items():
                    if blob is None:
                        if leaf_b.get(paste_id) is not None:
                            leaf_b.remove(paste_id)
                    else:
                        leaf_b.insert(paste_id, blob, FileMode.BLOB)
                self._put(mid_b, b, leaf_b, written)
            self._put(root_b, a, mid_b, written)
        oid = root_b.write()
        written.append(oid)
        return oid

    @staticmethod
    def _put(
        parent: pygit2.TreeBuilder, name: str, child: pygit2.TreeBuilder, written: list
    ) -> None:
        if len(child) == 0:
            if parent.get(name) is not None:
                parent.remove(name)
            return
        oid = child.write()
        written.append(oid)
        parent.insert(name, oid, FileMode.TREE)
