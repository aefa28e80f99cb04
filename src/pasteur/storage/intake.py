"""The journal thread: new pastes get their ids and are journaled together.

A create is acknowledged once its record is in the write-ahead journal
(``journal.py``), fdatasync'ed with the others that arrived with it (one
group: up to ``MAX_BATCH`` pastes and a quarter of the journal). Its id is
picked here, beside the journal, never on the event loop, and reserved until
its commit (``idbook.py``). Journaled pastes are served from memory and
handed to the writer (``writer.py``), which commits them behind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from .batch import Pending
from .errors import StoreBusy, StoreError
from .idbook import IdBook
from .journal import Journal, JournalError, JournalFull
from .repository import Repository
from .writer import MAX_BATCH, Writer

log = logging.getLogger("pasteur.store")

RETRY_AFTER_FULL = 2  # seconds, told to a create refused because the journal is full
HEALTH_PROBE_TIMEOUT = 2.0  # seconds a /healthz probe of a failed journal may take


class Intake:
    """The queue of creates in front of the journal, and its thread."""

    def __init__(self, journal: Journal, repository: Repository, idbook: IdBook,
                 writer: Writer) -> None:
        self.journal = journal
        self.repository = repository
        self.idbook = idbook
        self.writer = writer
        self.queue: list[Pending] = []
        self._busy = False  # a group is being written
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="pasteur-journal")
        self.error: str | None = None  # the last append's failure, until one works

    def takes(self, data: object) -> bool:
        """Whether a document is journaled (else it waits for its commit)."""
        return isinstance(data, bytes) and self.journal.takes(len(data))

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pasteur-journal")

    async def stop(self) -> None:
        if self._task is not None:
            while self.queue or self._busy:  # every create answered
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    def submit(self, p: Pending) -> None:
        assert self._wake is not None, "Store.start() was not called"
        self.queue.append(p)
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                group = self._next_group()
                self._busy = True
                try:
                    if self.writer.failure is not None:
                        # Commits fail (a full or read-only disk): acknowledge
                        # nothing more until one goes through.
                        await self.writer.flush()
                    await loop.run_in_executor(self._thread, self._journal_group, group)
                except Exception as exc:  # noqa: BLE001 - every waiter gets the error
                    if not isinstance(exc, StoreError):
                        log.error("journal write failed: %s", exc)
                    err = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    self.idbook.release(p.paste_id for p in group)
                    for p in group:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(err)
                    continue
                finally:
                    self._busy = False
                for p in group:
                    assert p.paste_id is not None
                    self.idbook.journaled[p.paste_id] = p.data  # type: ignore[assignment]  # bytes: see takes
                    fut, p.future = p.future, None
                    if fut is not None and not fut.done():
                        fut.set_result(p.paste_id)
                self.writer.hand(group)

    def _next_group(self) -> list[Pending]:
        """The next creates to journal together: up to MAX_BATCH of them and a
        quarter of the journal (a record takes a sixteenth at most)."""
        budget, n = self.journal.size // 4, 0
        for p in self.queue[:MAX_BATCH]:
            budget -= len(p.data) + 512  # type: ignore[arg-type]  # journaled: bytes (takes)
            if budget < 0 and n:
                break
            n += 1
        group = self.queue[:n]
        del self.queue[:n]
        return group

    def _journal_group(self, group: list[Pending]) -> None:
        """Journal thread: ids, then the records, written and fdatasync'ed."""
        changes = self.repository.changes  # read before the tree the ids are checked in
        for p in group:
            p.paste_id = self.idbook.reserve_id()
            p.changes = changes
        items = [(p.paste_id, p.author, p.message, p.data) for p in group]
        try:
            seqs = self.journal.append(items)  # type: ignore[arg-type]  # ids just set; bytes (takes)
        except JournalFull as exc:
            raise StoreBusy(str(exc), RETRY_AFTER_FULL) from exc
        except JournalError as exc:
            raise StoreError(str(exc)) from exc
        except OSError as exc:
            self.error = str(exc)
            raise
        self.error = None
        for p, seq in zip(group, seqs, strict=True):
            p.seq = seq

    async def problems(self) -> list[str]:
        """A journal that failed is probed again (its header written and
        synced), so that /healthz turns good once the disk is back, without
        waiting for a create."""
        if self.error is None:
            return []
        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                self._thread, self.journal.check), HEALTH_PROBE_TIMEOUT)
        except TimeoutError:
            return ["the journal cannot be written: a check took more than "
                    f"{HEALTH_PROBE_TIMEOUT:g} s"]
        except OSError as exc:
            self.error = str(exc)
            return [f"the journal cannot be written: {exc}"]
        self.error = None
        return []
