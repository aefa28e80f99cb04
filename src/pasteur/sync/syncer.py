"""Git remote synchronisation: push every commit, fetch and replay, serve misses.

The ``Syncer`` lives in the server's event loop. Network work (fetch, push)
runs in a worker process (``pasteur.sync.worker``) because pygit2 holds the GIL
while it talks to a remote. Local work (integrating what was fetched) runs in
the Store's writer thread, serialised with paste commits.

How history stays linear, and how collisions and erasures are handled: see
``pasteur.sync.merge``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pygit2

from pasteur.config import SyncSettings
from pasteur.procs import child_env
from pasteur.storage.store import Store
from pasteur.sync import branch
from pasteur.sync.claim import BurnClaims
from pasteur.sync.erase import Eraser
from pasteur.sync.merge import (
    Integration,
    absorb,
    drop_unreachable,
    integrate,
    is_rewrite,
    set_tracking,
)
from pasteur.sync.misses import MissProbe
from pasteur.sync.progress import PushWatch, backlog
from pasteur.sync.sshkeys import parse_fingerprints
from pasteur.sync.status import SyncStatus
from pasteur.sync.worker import FETCHED, TRACKING, SyncFailure, hello, is_ssh, split_credentials

log = logging.getLogger("pasteur.sync.syncer")

FATAL_KINDS = ("auth", "hostkey", "config")
BACKOFF_FIRST = 0.5  # seconds
BACKOFF_CAP = 30.0
PUSH_ROUNDS = 100  # rejected pushes in a row before backing off
START_TIMEOUT = 10.0  # the first fetch may delay the start this long, then runs on
WORKER_TIMEOUT = 120.0  # a worker request taking longer is killed


class SyncError(Exception):
    """The remote cannot be used as configured (one line for the user)."""


# -- options -----------------------------------------------------------------------


def validate(settings: SyncSettings) -> None:
    """Raise SyncError for a configuration no connection could fix."""
    url = settings.url
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in ("", "git", "ssh", "http", "https", "file"):
        raise SyncError(f"unsupported remote URL scheme {scheme!r} in {redact(url)}")
    if is_ssh(url):
        if not (settings.seed or settings.ssh_key or settings.ssh_password):
            raise SyncError("an SSH remote needs --ssh-key (make one with 'pasteur keygen'), "
                            "the original's --ssh-seed or --ssh-password")
        if settings.ssh_auth:
            try:
                parse_fingerprints(settings.ssh_auth)
            except ValueError as exc:
                raise SyncError(f"--ssh-auth: {exc}") from None
        elif not settings.ssh_insecure:
            raise SyncError(
                "refusing SSH without a pinned host key: give --ssh-auth SHA256:... "
                "(ssh-keyscan -p PORT HOST | ssh-keygen -l -E sha256 -f -) or --ssh-insecure"
            )
    if not settings.branch or any(c in settings.branch for c in " ~^:?*[\\"):
        raise SyncError(f"bad --remote-branch {settings.branch!r}")


def cleartext_secret(settings: SyncSettings) -> str | None:
    """What would be sent in clear to a plain http:// remote (a token, or a password in
    the URL), for a warning at start; None otherwise."""
    parts = urlsplit(settings.url)
    if parts.scheme != "http":
        return None
    if settings.token:
        return "the token (--remote-token)"
    return "the password in the URL" if parts.password is not None else None


def redact(url: str) -> str:
    """The URL without a password (safe to log and to show in /healthz)."""
    clean, _, _ = split_credentials(url)
    parts = urlsplit(clean)
    if parts.scheme in ("http", "https") and parts.query:
        return urlunsplit(parts._replace(query=""))
    return clean


# -- the worker process ------------------------------------------------------------


class WorkerClient:
    """The network worker process: one request at a time, restarted if it dies or hangs."""

    def __init__(self, repo: Path, settings: SyncSettings,
                 timeout: float = WORKER_TIMEOUT) -> None:
        self._hello = hello(repo, settings)
        self.timeout = timeout
        self.on_call: Callable[[str, float], None] | None = None  # (op, seconds) of each
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run one request; a cancelled caller does not cut the exchange in half."""
        task = asyncio.ensure_future(self._call({"op": op, **args}))
        t0 = time.monotonic()
        try:
            return await asyncio.shield(task)
        finally:
            if self.on_call is not None:
                self.on_call(op, time.monotonic() - t0)

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            proc = await self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                await proc.stdin.drain()
                line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
            except (TimeoutError, ConnectionError) as exc:
                await self.kill()
                what = "timed out" if isinstance(exc, TimeoutError) else f"failed: {exc}"
                return {"ok": False, "kind": "network", "error": f"sync worker {what}"}
            if not line:
                await self.kill()
                return {"ok": False, "kind": "network", "error": "the sync worker exited"}
            return json.loads(line)

    async def _ensure(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pasteur.sync.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=child_env(),
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(self._hello)
        await self._proc.stdin.drain()
        return self._proc

    async def kill(self) -> None:
        """Kill the worker (hung, or as a crash would); the next call starts another."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.kill()
        await proc.wait()

    async def close(self) -> None:
        async with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- the syncer ------------------------------------------------------------------


class Backoff:
    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> None:
        self.first, self.cap = first, cap
        self.delay = 0.0

    def next(self) -> float:
        self.delay = min(self.cap, self.delay * 2 if self.delay else self.first)
        return self.delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.delay = 0.0


class Syncer:
    """Pushes local commits, fetches others' and serves misses; state in ``status()``."""

    def __init__(self, store: Store, options: SyncSettings, eraser: Eraser,
                 guard: asyncio.Lock, worker: WorkerClient | None = None) -> None:
        """``eraser`` announces the store's erasures (hooked to it by the
        wiring); ``guard`` is the store's: held by every fetch, push, erasure
        and pack roll-up, one network or history operation at a time, each
        seeing a consistent head and remote head."""
        self.store = store
        self.options = options
        self.worker = worker or WorkerClient(store.path, options)
        self._tracking = TRACKING.format(branch=options.branch)
        self._fetched = FETCHED.format(branch=options.branch)
        self.remote_head: pygit2.Oid | None = self._tracking_head()
        self.figures = SyncStatus()
        self._backoff = Backoff()
        self._wake = asyncio.Event()
        self._sync_lock = guard
        self.eraser = eraser
        self.burns = BurnClaims(store, self, self._sync_lock)  # one reader per burn paste
        self._task: asyncio.Task[None] | None = None
        self.misses = miss_probe(self)
        self.watch = PushWatch()
        self.worker.on_call = self.watch.note

    def _tracking_head(self) -> pygit2.Oid | None:
        ref = self.store.reader.references.get(self._tracking)
        return ref.target if ref is not None and isinstance(ref.target, pygit2.Oid) else None

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """First fetch and integration; SyncError if the remote refuses us.

        An unreachable remote is not an error: the server runs on its local
        history and the push loop retries with backoff.
        """
        validate(self.options)
        url = redact(self.options.url)
        secret = cleartext_secret(self.options)
        if secret is not None:
            log.warning("remote %s is plain http: %s is sent in clear on every fetch and "
                        "push, readable by anyone on the way (use https)", url, secret)
        try:
            await asyncio.wait_for(self._first_sync(), START_TIMEOUT)
        except TimeoutError:
            exc = SyncFailure("network", f"no answer within {START_TIMEOUT:.0f} s")
            self._note_error(exc)
            log.warning("remote %s is slow or unreachable (%s): serving local pastes, "
                        "retrying", url, exc)
        except SyncFailure as exc:
            if exc.kind in FATAL_KINDS:
                await self.worker.close()
                raise SyncError(f"remote {url}: {exc}") from None
            self._note_error(exc)
            log.warning("remote %s is unreachable (%s): serving local pastes, retrying", url, exc)
        else:
            self.figures.success()
            log.info("synchronising with %s (branch %s, from %s; head %s)", url,
                     self.options.branch, self.options.branch_source, self.remote_head)
        # The miss probe's worker starts now, in the background: not beside
        # the first fetch (on a loaded machine both would be slower).
        self.misses.start()
        await self.eraser.commit_marker()
        loop = asyncio.get_running_loop()
        self.store.on_commit.append(lambda _oid: loop.call_soon_threadsafe(self._wake.set))
        self._task = loop.create_task(self._run(), name="pasteur-sync")
        self._wake.set()

    async def _first_sync(self) -> None:
        await self.fetch_and_integrate()
        await self._check_push_access()

    async def stop(self, flush_timeout: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError, SyncFailure):
            await asyncio.wait_for(self._last_push(), flush_timeout)
        await asyncio.gather(self.misses.stop(), self.worker.close())

    async def _last_push(self) -> None:
        async with self._sync_lock:  # never beside an erasure's prune
            head = self.store.head
            if head is not None and head != self.remote_head:
                await self.push_head(head)

    # -- push loop ------------------------------------------------------------

    async def _run(self) -> None:
        """Push after each commit, then a gap; fetch ``interval`` s after the last
        fetch, whatever the commits; retry a failed fetch or push with backoff."""
        interval = self.options.interval or None
        next_poll = time.monotonic() + interval if interval else float("inf")
        poll = False
        while True:
            if not poll:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(
                        0.0, next_poll - time.monotonic()) if interval else None)
            self._wake.clear()
            poll = poll or time.monotonic() >= next_poll
            try:
                if poll:
                    await self.fetch_and_integrate()
                    poll, next_poll = False, time.monotonic() + (interval or float("inf"))
                pushed = await self.push_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                failure = exc if isinstance(exc, SyncFailure) else SyncFailure("network", repr(exc))
                await self._back_off(failure)
            else:
                self._backoff.reset()
                self.figures.success()
                if pushed:
                    await self.watch.rest(self.worker.call)

    async def _back_off(self, failure: SyncFailure) -> None:
        self._note_error(failure)
        delay = self._backoff.next()
        self.figures.backing_off(delay)
        log.warning("sync: %s (%s); retrying in %.1f s", failure, failure.kind, delay)
        await asyncio.sleep(delay)
        self._wake.set()

    async def push_pending(self) -> bool:
        """Push until the remote has the local head; whether anything was pushed.
        Rejected: fetch, replay the whole backlog in one step, push again at once."""
        for rejected in range(PUSH_ROUNDS):
            async with self._sync_lock:
                head, known = self.store.head, self.remote_head
                if head is None or head == known:
                    return False

                def rewritten(h: pygit2.Oid = head, k: pygit2.Oid | None = known) -> bool:
                    return is_rewrite(self.store.repo, h, k)

                rewrite = await self.store.run_in_writer(rewritten)
                if rewrite and self.store.pending_erasure():
                    # queued erasures first (e.g. found by an integration
                    # before a crash): a forced push never carries them
                    await self.eraser.erase()
                    continue
                try:
                    await self.push_head(head, lease=known if rewrite else None)
                except SyncFailure as exc:
                    if exc.kind != "rejected":
                        raise
                else:
                    if rewrite:
                        log.info("sync: forced push of the rewritten history %s (was %s)",
                                 head, known)
                        await self._drop_unreachable()
                    return True  # one push a turn: the next after a rest
            self.watch.rejected_push(lambda: backlog(self.store.reader, self.store.head,
                                                     self.remote_head))
            if rewrite:
                await self._fetch_and_absorb()
            else:
                await self.fetch_and_integrate()
            # a jitter, longer after each defeat: instances rejected together part
            await asyncio.sleep(random.uniform(0, min(0.25, 0.005 * 2 ** rejected)))
        raise SyncFailure("network", f"the push was rejected {PUSH_ROUNDS} times in a row")

    async def push_head(self, head: pygit2.Oid, lease: pygit2.Oid | None = None) -> None:
        args = {"lease": str(lease)} if lease is not None else self.watch.push_args()
        reply = await self.worker.call("push", oid=str(head), reopens=self._reopens(), **args)
        if not reply.get("ok"):
            raise SyncFailure(reply.get("kind", "network"), reply.get("error", "push failed"))
        self.watch.after_push(reply)
        self.remote_head = head
        self.figures.pushed()

    def _reopens(self) -> int:
        """The store's handle renewals: the worker renews its own when this
        changed (a repack or prune deleted packs its handle may still list)."""
        return self.store.repository.reopens

    async def _check_push_access(self) -> None:
        reply = await self.worker.call("check")
        if not reply.get("ok"):
            raise SyncFailure(reply.get("kind", "network"), reply.get("error", "check failed"))

    # -- fetch ----------------------------------------------------------------

    async def fetch_and_integrate(self, locked: bool = False) -> Integration:
        async with contextlib.nullcontext() if locked else self._sync_lock:  # locked: by caller
            remote = await self._fetch()
            known = self.remote_head
            result = await self._in_writer(lambda: self._integrate(remote, known))
            self.remote_head = remote
            self._noted(result, remote)
            if result.remote_rewritten:
                await self._drop_unreachable()
            if await self.eraser.erase_leftovers(result):
                self._wake.set()  # then push
        return result

    async def _fetch_and_absorb(self) -> None:
        """The remote moved while our history was rewritten: take its new commits."""
        async with self._sync_lock:
            remote = await self._fetch()
            known = self.remote_head
            result = Integration("none")
            if remote is not None and known is not None:
                result = await self._in_writer(lambda: self._queued(
                    absorb(self.store.repository, known, remote)))
                self._noted(result, remote)
            await self.store.run_in_writer(
                lambda: set_tracking(self.store.repository, self._tracking, self._fetched, remote))
            self.remote_head = remote
            if await self.eraser.erase_leftovers(result):
                self._wake.set()  # then push

    def _queued(self, result: Integration) -> Integration:
        """Writer thread, right after an integration: queue, durably, what it
        found erased elsewhere and still here, before the tracking ref moves;
        and why the pastes removed elsewhere are gone (410 here as there)."""
        if result.gone:
            self.store.erasure.remember(result.gone)
        if result.erase:
            self.store.erasure.remove(result.erase, "Erase")
        return result

    def _integrate(self, remote: pygit2.Oid | None, known: pygit2.Oid | None) -> Integration:
        result = self._queued(integrate(self.store.repository, remote, known))
        set_tracking(self.store.repository, self._tracking, self._fetched, remote)
        return result

    async def _fetch(self) -> pygit2.Oid | None:
        reply = await self.worker.call("fetch", reopens=self._reopens())
        if not reply.get("ok"):
            raise SyncFailure(reply.get("kind", "network"), reply.get("error", "fetch failed"))
        self.figures.fetched()
        return pygit2.Oid(hex=reply["head"]) if reply.get("head") else None

    def _noted(self, result: Integration, remote: pygit2.Oid | None) -> None:
        self.figures.restored.extend(result.restored)
        if result.action != "none":
            log.info("sync: %s with %s (%d commits applied)", result.action, remote,
                     result.replayed)

    async def _drop_unreachable(self) -> None:
        """Delete erased pastes' objects once no ref reaches them (under the sync lock:
        no network work meanwhile)."""
        await self.store.run_in_writer(lambda: drop_unreachable(self.store.repository))

    async def _in_writer(self, fn: Callable[[], Integration]) -> Integration:
        t0 = time.monotonic()
        result = await self.store.run_in_writer(fn)
        self.watch.note("integrate", time.monotonic() - t0)
        assert isinstance(result, Integration)
        return result

    async def miss_fetch(self) -> bool:
        """Fetch because a read missed (``MissProbe``); True if it went through."""
        try:
            await self.fetch_and_integrate()
        except SyncFailure as exc:
            self._note_error(exc)
            return False
        self._wake.set()  # a replay made new local commits: push them
        return True

    # -- state ----------------------------------------------------------------

    def _note_error(self, failure: SyncFailure) -> None:
        self.figures.error(f"{failure.kind}: {failure}")

    def failing_for(self) -> float:
        """Seconds the push loop has failed in a row (0: it has not)."""
        return self.figures.failing_for()

    def status(self) -> dict[str, Any]:
        """/healthz's ``sync``: the remote, then ``SyncStatus.report``;
        ``lagging``: a commit has waited over ``max_lag`` s for its push."""
        pending, oldest = backlog(self.store.reader, self.store.head, self.remote_head)
        age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        return {
            "remote": redact(self.options.url),
            "branch": self.options.branch,
            "branch_from": self.options.branch_source,
            "remote_head": str(self.remote_head) if self.remote_head else None,
            **self.figures.report(pending, self.options.stuck_after, self.store.commit_error),
            "oldest_unpushed_s": round(age, 1),
            "lagging": age > self.options.max_lag,
            "max_lag_s": self.options.max_lag,
            "rejected": self.watch.rejected,
            "reerased": self.eraser.reerased,
            "miss_probes": self.misses.probes,
            "miss_fetches": self.misses.fetches,
            "marks_swept": self.watch.swept,
        }


def miss_probe(syncer: Syncer) -> MissProbe:
    """Misses probe the remote's head with a worker of their own (never queued
    behind a push), and fetch when it moved (``MissProbe``)."""
    worker = WorkerClient(syncer.store.path, syncer.options)

    async def probe() -> str | None:
        reply = await worker.call("head")
        if not reply.get("ok"):
            raise SyncFailure(reply.get("kind", "network"), reply.get("error", "probe failed"))
        return str(reply["head"]) if reply.get("head") else None

    def known() -> str | None:
        return str(syncer.remote_head) if syncer.remote_head is not None else None

    return MissProbe(probe, known, syncer.miss_fetch, worker.close,
                     ready=lambda: worker.call("ready"))


async def resolve_branch(settings: SyncSettings, store: Store) -> SyncSettings:
    """The settings with the branch to use (``pasteur.sync.branch``) and where it came
    from, logged; SyncError for settings no connection could fix."""
    validate(settings)
    if settings.branch_from_head:
        worker = WorkerClient(store.path, settings, timeout=START_TIMEOUT)
        prefix = TRACKING.format(branch="")
        remembered = sorted(name[len(prefix):] for name in store.reader.references
                            if name.startswith(prefix))
        try:
            choice = await branch.resolve(settings, lambda: worker.call("advertised"), remembered)
        finally:
            await worker.close()
        settings = dataclasses.replace(settings, branch=choice.branch, branch_from_head=False,
                                       branch_source=choice.source)
    log.info("remote %s: branch %s (from %s)", redact(settings.url), settings.branch,
             settings.branch_source)
    return settings
