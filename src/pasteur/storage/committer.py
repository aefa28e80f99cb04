"""The committer: a process of its own that commits journaled pastes to Git.

Creates are acknowledged once journaled (journal.py); the Git commits
behind them are the server's largest piece of background work (packing,
hashing, tree edits: ~60 us of CPU a paste, in batches of hundreds). In the
server's process that work held the GIL for tens of milliseconds at a time,
in turns of 5 ms with the event loop, which served at half speed meanwhile:
the creates in flight then took twice as long (the p99 at 64 connections).
Here it shares the core through the kernel's scheduler, which lets the
event loop in as soon as it has work, and paces itself (``Pacer``) while it
keeps up.

The server's writer thread stays the one writer: it sends a batch, waits for
the reply and takes the new head (erasure, sync and large pastes are still
committed in that thread, between batches). The child commits on top of the
head it is given, with the same code (``batch.commit_batch``), so a crash of
either side leaves what a crash of the writer thread left: the journal
replays what the branch lacks.

Frames on the pipes: an 8-byte length, then a pickle (private pipes between
two processes of this program).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pygit2

from .. import logsafe
from ..procs import child_env, tune_malloc
from .batch import Pending, commit_batch
from .layout import Layout
from .packs import Pacer
from .repository import Repository

log = logging.getLogger("pasteur")

_LEN = struct.Struct(">Q")
RENEW_INTERVAL = 60.0  # seconds between restarts after failed commits


class CommitterError(Exception):
    """The committer failed or is gone."""


@dataclass
class Reply:
    head: bytes | None  # the new head's raw id (None: nothing committed)
    trees: list[tuple[bytes, bytes]]  # the trees written: (raw id, content)
    dropped: list[bytes]  # the trees they replaced (raw ids): to leave the caches
    commits: int
    packs: int
    cached: int  # bytes in the committer's tree cache (``TreeCache.bytes_held``)


def _send(out: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LEN.pack(len(data)) + data)
    out.flush()


def _recv(inp: IO[bytes]) -> Any:  # noqa: ANN401 - a frame of this module's own
    head = inp.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    n = _LEN.unpack(head)[0]
    data = inp.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - a private pipe to our own child


class Committer:
    """The server's end: the child is started on first use (and again after
    it died); used from the writer thread only."""

    def __init__(self, repo_path: Path, lock_fd: int | None = None) -> None:
        self.repo_path = Path(repo_path)
        self.lock_fd = lock_fd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._renewed = -RENEW_INTERVAL

    def _start(self) -> subprocess.Popen[bytes]:
        # The lock on the repository goes to the child too: released when
        # both are gone, so a new server never starts beside an orphan.
        fds = (self.lock_fd,) if self.lock_fd is not None and self.lock_fd >= 0 else ()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pasteur.storage.committer", str(self.repo_path),
             str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds, env=child_env(),
        )
        self.starts += 1
        return proc

    def commit(self, request: dict[str, Any]) -> Reply:
        if self.proc is not None and self.proc.poll() is not None:  # died meanwhile
            self.close()
        if self.proc is None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _send(self.proc.stdin, request)
            reply = _recv(self.proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            self.close(kill=True)
            raise CommitterError(f"the committer process ended ({exc or 'no reply'})") from exc
        if "error" in reply:
            # A fresh one for the next try, so that nothing of this one's state
            # stays; at most once a minute (a full disk fails every retry).
            if time.monotonic() - self._renewed > RENEW_INTERVAL:
                self._renewed = time.monotonic()
                self.close(kill=True)
            raise CommitterError(f"the commit failed: {reply['error']}")
        return Reply(**reply)

    def close(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()  # the child ends at end of input
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if kill or proc.returncode != 0:
            self._clean_after(proc.pid)

    def _clean_after(self, pid: int) -> None:
        """What a committer killed in the middle of a commit leaves behind:
        the branch's lock file (only the committer and the server's writer
        thread, which waits for it, take it) and its unfinished packs."""
        layout = Layout(self.repo_path)
        lock = layout.branch_lock
        if lock.exists():
            log.warning("removing %s, left by the committer (pid %d)", lock, pid)
            lock.unlink(missing_ok=True)
        for tmp in layout.unfinished_packs(pid):
            tmp.unlink(missing_ok=True)


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the server ends, however it ends (Linux): never an
    orphan writing the branch beside the next server."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != parent:  # orphaned before the call above
        sys.exit(0)


def serve(repo_path: Path, inp: IO[bytes], out: IO[bytes]) -> None:
    # The server's own clears what a crash left: not this one (it would take
    # the server's lock files for stale ones).
    repository = Repository(repo_path)
    pacer = Pacer()
    reopens = 0
    while True:
        try:
            req = _recv(inp)
        except EOFError:
            return
        try:
            head = pygit2.Oid(raw=req["head"]) if req["head"] is not None else None
            if req["reopens"] != reopens:  # packs were rolled up, or history erased
                # (this side's head may be gone: the server's is taken below)
                repository.take_head(None, journaled=True)
                repository.reopen()
                reopens = req["reopens"]
            if head != repository.head:
                repository.take_head(head, journaled=True)
            batch = [Pending(paste_id, data, author, message, None, 0)
                     for paste_id, author, message, data in req["items"]]
            before = repository.head
            commits, packs = repository.commits, repository.packs
            pack = commit_batch(repository, batch, pacer, req["relaxed"], req["verify"])
            reply: dict[str, Any] = {
                "head": (repository.head.raw
                         if repository.head is not None and repository.head != before else None),
                "trees": pack.built_trees(),
                "dropped": pack.dropped_trees(),
                "commits": repository.commits - commits,
                "packs": repository.packs - packs,
                "cached": repository.tree_cache.bytes_held,
            }
        except Exception as exc:  # noqa: BLE001 - the server gets every failure
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _send(out, reply)


def main() -> None:
    _die_with_parent(int(sys.argv[2]))
    tune_malloc()
    logsafe.configure(logging.INFO, "pasteur committer: %(message)s")
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else on the reply pipe
    serve(Path(sys.argv[1]), inp, out)


if __name__ == "__main__":
    main()
