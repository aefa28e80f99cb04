"""Deletion and erasure: removed pastes leave the served tree at once (one
commit) and wait in the erase list; ``erase`` then rewrites history without
them and deletes their objects (``maintenance.repack_and_prune``).

History is rewritten with the same authors, messages and dates; commits
left empty are dropped. Commit ids after the oldest erased paste change: a
remote gets a forced push. The rewritten trees and commits are built by the
one tree editor (``packs.PackBuilder``) and written as one pack."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import pygit2

from .layout import BRANCH
from .maintenance import repack_and_prune
from .objects import tree_has
from .packs import PackBuilder
from .repository import Change, Repository
from .tombstones import Tombstones

log = logging.getLogger("pasteur.store")


class Erasure:
    """The erase list and the history rewrite (writer thread). ``scrub``
    wipes the journal's copies once the pastes are erased; ``announce``, if
    set, is given the ids about to be erased, in the same writer step (a
    removal queued just before cannot slip in unannounced)."""

    def __init__(self, repository: Repository, scrub: Callable[[], None]) -> None:
        self.repository = repository
        self.scrub = scrub
        # Removed, not yet erased: never given to a new paste (the erasure
        # strips these ids from every commit).
        self.erasing: set[str] = self.pending()
        self.erased = 0
        self.announce: Callable[[set[str]], None] | None = None
        # Why each removed id is gone: kept after the erasure (410, not 404).
        self.tombstones = Tombstones(repository.layout.gone)

    def pending(self) -> set[str]:
        try:
            return set(self.repository.layout.erase_list.read_text().split())
        except FileNotFoundError:
            return set()

    def remove(self, ids: Sequence[str], message: str, reason: str = "") -> None:
        """Remove pastes from the served tree (one commit) and add them to
        the erase list, durably; with a ``reason``, remember why they are gone."""
        present = [i for i in ids if self.repository.has(i)]
        if present:
            self.repository.apply([Change([], present, None, message)])
        self.erasing.update(ids)
        with self.repository.layout.erase_list.open("a") as f:
            f.write("".join(f"{i}\n" for i in ids))
            f.flush()
            os.fsync(f.fileno())
        if reason:
            self.tombstones.add(ids, reason)

    def remember(self, reasons: dict[str, str]) -> None:
        """Why pastes removed elsewhere (another instance, by sync) are gone
        (id -> reason), for those not remembered so already."""
        by_reason: dict[str, list[str]] = {}
        for paste_id, reason in reasons.items():
            if self.tombstones.reason(paste_id) != reason:
                by_reason.setdefault(reason, []).append(paste_id)
        for reason, ids in by_reason.items():
            self.tombstones.add(ids, reason)

    def erase(self) -> int:
        """Erase the listed pastes from history and the object store; how many."""
        ids = self.pending()
        if not ids:
            return 0
        if self.announce is not None:
            self.announce(ids)
        if self.repository.head is not None:
            self._rewrite_without(ids)
        repack_and_prune(self.repository)
        self.scrub()
        self.repository.layout.erase_list.unlink(missing_ok=True)
        self.erasing -= ids
        self.erased += len(ids)
        log.info("erased %d pastes from history and the object store", len(ids))
        return len(ids)

    def _rewrite_without(self, ids: set[str]) -> None:
        repository = self.repository
        repo = repository.repo
        assert repository.head is not None
        chain = list(repo.walk(repository.head, pygit2.enums.SortMode.TOPOLOGICAL
                               | pygit2.enums.SortMode.REVERSE))
        pack = PackBuilder(repo, repository.tree_cache)
        new_parent: pygit2.Oid | None = None
        new_parent_tree: bytes | None = None
        rewriting = False
        for commit in chain:
            present = [i for i in ids if tree_has(commit.tree, i)]
            if not present and not rewriting:
                new_parent, new_parent_tree = commit.id, commit.tree_id.raw
                continue
            rewriting = True
            tree = pack.edit_tree(commit.tree_id.raw, [], present) if present \
                else commit.tree_id.raw
            if tree == new_parent_tree and "\nErased: " not in commit.message:
                continue  # the commit only added what is erased (an erase marker stays)
            parents = [new_parent] if new_parent is not None else []
            new_parent = pack.commit(tree, parents, commit.author, commit.committer,
                                     commit.message)
            new_parent_tree = tree
        if not rewriting:
            return
        if pack.write(repository.layout.pack_dir, repository.fsync_fds) is not None:
            repository.packs += 1
            pack.keep_trees()
        if new_parent is None:  # nothing left at all
            repo.references.delete(BRANCH)
            repository.take_head(None)
            return
        repository.reset_to(new_parent)
        for cb in repository.on_commit:
            cb(new_parent)
