"""The repository: opened (or made) once, locked for one server, its branch
moved durably, its head served to readers.

Two libgit2 handles: ``repo`` for the writer thread (or the committer
process), ``reader`` for reads on the event loop; libgit2 finds new loose
objects and packs on disk. The served head and its tree are swapped under a
lock, so a reader sees a head and its tree together."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pygit2

from ..procs import bound_libgit2
from .durable import FSYNC_FILES_LIMIT, fsync_path, syncfs
from .errors import StoreError
from .layout import BRANCH, Layout
from .objects import shard_path, signature, tree_has
from .packs import PackBuilder
from .treecache import TreeCache

log = logging.getLogger("pasteur.store")


@dataclass
class Change:
    """A group of tree edits committed together: additions and removals."""

    add: list[tuple[str, pygit2.Oid]]
    remove: list[str]
    author: str | None
    message: str
    # The author time, when it is not now: a replayed commit keeps its own
    # (as git rebase does), which is what erase markers are compared with.
    when: int | None = None


LOCK_WAIT = 2.0  # seconds



def lock_repository(path: Path) -> int:
    """Take the repository for this process (one server per repository: two
    would write over each other's journal and branch). An flock on
    ``pasteur.pid``, released by the kernel when the process ends, even by
    kill -9; the file holds the pid. Returns the descriptor, kept open."""
    path.mkdir(parents=True, exist_ok=True)
    # Held open read-only (an flock needs no more): a file open for writing
    # would keep the file system from being remounted read-only.
    try:
        fd = os.open(Layout(path).pid, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:  # a read-only data directory: no server can write it anyway
        log.warning("cannot take %s: not locked against a second server", Layout(path).pid)
        return -1
    # A server that just ended may hold it a moment longer, through its
    # committer process (killed with it, see committer.py): wait a little.
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"another pasteur (pid {other}) is serving {path}: one server per "
                         f"repository (instances share pastes through a remote)") from None
    with contextlib.suppress(OSError):  # the pid is for the message above only
        (Layout(path).pid).write_text(f"{os.getpid()}\n")
    return fd


def remove_stale_locks(layout: Layout) -> None:
    """Lock files and half-written packs left by a crash (the serving process
    is the only writer; git's own temporary packs are left alone)."""
    for lock in layout.stale_locks():
        log.warning("removing stale lock %s", lock)
        lock.unlink(missing_ok=True)
    for tmp in layout.unfinished_packs():
        log.warning("removing unfinished pack %s", tmp)
        tmp.unlink(missing_ok=True)


def open_or_init(path: Path) -> pygit2.Repository:
    """The bare repository at ``path``, made if there is none."""
    if (path / "HEAD").exists():
        return pygit2.Repository(str(path))
    path.mkdir(parents=True, exist_ok=True)
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    cfg = repo.config
    cfg["core.fsync"] = "objects,reference"
    cfg["gc.auto"] = "0"
    cfg["receive.denyCurrentBranch"] = "ignore"
    return repo


class Repository:
    """A bare repository's branch: its head, its tree, its durable moves.

    Used by the server (through ``Store``) and by the committer process,
    each with its own; the server's alone clears what a crash left
    (``remove_stale_locks``, before it is opened)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.layout = Layout(self.path)
        bound_libgit2()
        self.repo = open_or_init(self.path)
        # A second handle for reads on the event loop: the writer thread owns
        # ``self.repo``; libgit2 finds new loose objects and packs on disk.
        self.reader = pygit2.Repository(str(self.path))
        self._lock = threading.Lock()  # guards head/tree swaps
        self.head: pygit2.Oid | None = None
        self.tree: pygit2.Tree | None = None
        self._load_head()
        self.tree_cache = TreeCache()
        self._fsyncers = ThreadPoolExecutor(4, thread_name_prefix="pasteur-fsync")
        self.on_commit: list[Callable[[pygit2.Oid], object]] = []
        self.commits = 0
        # Bumped whenever pastes may have left the tree (removal, rebase, reset).
        self.generation = 0
        self.packs = self.layout.count_packs()
        self.reopens = 0  # repository handles renewed (packs deleted)
        self.changes = 0  # tree changes other than journaled batches (see Pending)

    def close(self) -> None:
        self._fsyncers.shutdown(wait=True)

    def _load_head(self) -> None:
        try:
            ref = self.repo.references.get(BRANCH)
        except pygit2.GitError:
            ref = None
        if ref is None:
            self.head, self.tree = None, None
            return
        commit = self.reader[ref.target]
        assert isinstance(commit, pygit2.Commit)
        self.head, self.tree = commit.id, commit.tree

    def has(self, paste_id: str) -> bool:
        """Whether the served tree holds ``paste_id`` (a valid id)."""
        tree = self.tree
        return tree is not None and tree_has(tree, paste_id)

    def blob(self, paste_id: str) -> pygit2.Blob | None:
        """The blob of a committed paste (a valid id), not read yet (pygit2
        loads it lazily): at ``a/b/<id>``, or else at the root of the tree,
        where the original OCaml Pasteur wrote its pastes (UPSTREAM.md §1)."""
        tree = self.tree
        if tree is None:
            return None
        for path in (shard_path(paste_id), paste_id):  # the original's at the root
            try:
                obj = tree[path]
            except KeyError:
                continue
            if isinstance(obj, pygit2.Blob):
                return obj
        return None

    def apply(
        self,
        changes: Sequence[Change],
        written: list[pygit2.Oid] | None = None,
        onto: pygit2.Oid | None = None,
        pack: PackBuilder | None = None,
    ) -> None:
        """Commit changes on top of the branch and make them durable.

        Runs in the writer thread. The new trees and commits are written with
        the objects of ``pack`` (e.g. the batch's blobs) as one pack. ``written``
        lists loose objects already written by the caller that must be synced
        too. With ``onto``, the changes are committed on that commit instead
        of the head and the branch moves to the result in one durable step (a
        rebase: the branch never points at a state missing the old head's
        pastes).
        """
        repo = self.repo
        pack = pack if pack is not None else PackBuilder(repo, self.tree_cache)
        written = list(written or [])
        if onto is not None or any(change.remove for change in changes):
            self.generation += 1  # pastes may disappear: caches must forget
        if onto is not None:
            parent: pygit2.Oid | None = onto
            tree: bytes | None = repo[onto].peel(pygit2.Tree).id.raw
        else:
            parent = self.head
            tree = self.tree.id.raw if self.tree is not None else None
        now = int(time.time())
        for change in changes:
            tree = pack.edit_tree(tree, change.add, change.remove)
            author = signature(change.author, now if change.when is None else change.when)
            committer = signature(None, now)
            parents = [parent] if parent is not None else []
            message = change.message if change.message.endswith("\n") else change.message + "\n"
            parent = pack.commit(tree, parents, author, committer, message)
            self.commits += 1
        if parent is None or parent == self.head:
            return
        if pack.write(self.layout.pack_dir, self.fsync_fds) is not None:
            self.packs += 1
            pack.keep_trees()
        if written:
            self.sync_objects(written)
        self.set_ref(parent)
        self.take_head(parent)
        for cb in self.on_commit:
            cb(parent)

    def reopen(self) -> None:
        """New repository handles after packs were deleted (writer thread).

        libgit2 keeps every pack it has opened open until the repository is
        freed, deleted or not: without this, each repack would leave its
        rolled-up packs' descriptors and maps behind."""
        self.repo = pygit2.Repository(str(self.path))
        self.reopens += 1
        reader = pygit2.Repository(str(self.path))
        with self._lock:
            self.reader = reader
            if self.head is not None:
                self.tree = reader[self.head].tree

    def reset_to(self, oid: pygit2.Oid) -> None:
        """Move the branch to an existing commit (writer thread; e.g. after a rebase)."""
        self.generation += 1
        self.set_ref(oid)
        self.take_head(oid)

    def take_head(self, oid: pygit2.Oid | None, journaled: bool = False) -> None:
        """Serve the branch's new head (written already). ``journaled``: a
        batch of journaled pastes, whose ids were reserved; any other change
        counts in ``changes``, after the swap (see Intake._journal_group)."""
        tree = self.reader[oid].peel(pygit2.Tree) if oid is not None else None
        with self._lock:
            self.head, self.tree = oid, tree
        if not journaled:
            self.changes += 1

    # -- durability ---------------------------------------------------------

    def fsync_fds(self, fds: list[int]) -> None:
        list(self._fsyncers.map(os.fsync, fds))

    def sync_objects(self, oids: Sequence[pygit2.Oid]) -> None:
        objects = self.layout.objects
        files = []
        dirs = set()
        for oid in oids:
            hexid = str(oid)
            files.append(f"{objects}/{hexid[:2]}/{hexid[2:]}")
            dirs.add(f"{objects}/{hexid[:2]}")
        paths = files + sorted(dirs) + [str(objects)]
        if len(paths) > FSYNC_FILES_LIMIT:
            syncfs(str(objects))
        else:
            list(self._fsyncers.map(fsync_path, paths))

    def set_ref(self, oid: pygit2.Oid) -> None:
        """Point the branch at ``oid`` durably, the way git does (``<ref>.lock``
        created exclusively, written, fsynced, renamed over the ref, directory
        fsynced), here rather than in libgit2 so that the GIL is released
        during the system calls. A loose ref overrides a packed one."""
        ref, lock = self.layout.branch, self.layout.branch_lock
        ref.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise StoreError(f"{lock} exists: another git process is updating the branch") \
                from None
        try:
            os.write(fd, f"{oid}\n".encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            lock.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.rename(lock, ref)
        fsync_path(str(ref.parent))
