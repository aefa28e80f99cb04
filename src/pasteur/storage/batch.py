"""Commit a batch of new pastes on a given head: the one code path of the
server's writer thread and of the committer process (``committer.py``), so
that a crash of either leaves the same state (the journal replays what the
branch lacks).

Anonymous pastes of a batch share one commit; a paste with a user or a
comment gets its own commit (author and message). The batch's objects go
into one pack (``packs.py``); a large paste's blob, written as a loose
object while it arrived (``loose.py``), is moved into place (one given as a
file is written by libgit2)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pygit2

from .loose import LooseBlob, install
from .packs import Pacer, PackBuilder
from .repository import Change, Repository

log = logging.getLogger("pasteur.store")


@dataclass
class Pending:
    paste_id: str | None  # None: the writer picks a free one
    data: bytes | Path | LooseBlob  # the document, a file holding it, or its blob (large)
    author: str | None
    message: str | None
    future: asyncio.Future[str] | None = field(repr=False)
    seq: int | None = None  # its journal record: acknowledged already
    # Repository.changes when its id was reserved: if the tree changed since other
    # than by journaled batches (a sync may have brought the id), or if it
    # was replayed (-1: committed before a crash?), the commit checks for it.
    changes: int = -1
    # Set aside (the reason): never committed, never served; its journal
    # record is passed by the checkpoint like a committed one.
    quarantine: str | None = None
    since: float = field(default_factory=time.monotonic, repr=False)  # accepted (monotonic)



class Ids(Protocol):
    """The writer's paste ids, as a batch needs them."""

    def free_id(self, pack: PackBuilder, root: bytes | None, taken: set[str]) -> str:
        """A free id for a paste that has none: in no tree ``pack`` sees from
        ``root``, not in ``taken``, now reserved."""
        ...


def _displaced(paste_id: str, there: bytes) -> None:
    """A journaled paste's id was taken, since it was journaled, by another
    paste that a sync brought. With id namespaces (``sync.namespace``) no
    instance picks an id of ours: only a writer outside that scheme (a push
    by hand) can. The id was acknowledged to the client for its paste, so
    the journaled paste keeps it (it replaces the other in the tree, never
    renamed behind the client's back); the other stays in history, named
    here so that it can be recovered."""
    log.error("paste id collision: %s, acknowledged here for a journaled paste, was added "
              "meanwhile by a writer outside the id namespaces (blob %s, kept in history); "
              "the acknowledged paste keeps the id", paste_id, there.hex())


def commit_batch(repository: Repository, batch: Sequence[Pending], pacer: Pacer,
                 relaxed: bool = False, verify: bool = True, ids: Ids | None = None
                 ) -> PackBuilder:
    """Commit a batch on ``repository``'s head (``relaxed``: paced, see
    ``Pacer``; ``verify``: look for journaled pastes' ids in the tree first,
    committed before a crash or brought by a sync). Pastes without an id get
    one from ``ids``. Returns the pack builder, whose trees are the batch's."""
    repo = repository.repo
    pacer.start(relaxed)
    pack = PackBuilder(repo, repository.tree_cache, pacer)
    written: list[pygit2.Oid] = []  # loose objects (large pastes, streamed)
    changes: list[Change] = []
    anonymous: list[tuple[str, pygit2.Oid]] = []
    root = repository.tree.id.raw if repository.tree is not None else None
    taken = {p.paste_id for p in batch if p.paste_id is not None}
    for p in batch:
        if p.paste_id is None:
            assert ids is not None, "the committer process is given ids"
            p.paste_id = ids.free_id(pack, root, taken)
            taken.add(p.paste_id)
    for p in batch:
        assert p.paste_id is not None
        if p.quarantine is not None:
            continue
        pack.pace()
        if isinstance(p.data, LooseBlob):  # written and synced as it arrived
            oid = install(p.data, repository.layout.objects)
            written.append(oid)
        elif isinstance(p.data, Path):
            oid = repo.create_blob_fromdisk(str(p.data))
            written.append(oid)
        else:
            oid = pack.blob(p.data)
        if p.seq is not None and verify:
            there = pack.paste_oid(root, p.paste_id.encode())
            if there == oid.raw:
                continue  # committed before a crash, not checkpointed
            if there is not None:
                _displaced(p.paste_id, there)
        if p.author is None and p.message is None:
            anonymous.append((p.paste_id, oid))
        else:
            msg = p.message or f"Add paste {p.paste_id}"
            changes.append(Change([(p.paste_id, oid)], [], p.author, msg))
    if anonymous:
        msg = (
            f"Add paste {anonymous[0][0]}"
            if len(anonymous) == 1
            else f"Add {len(anonymous)} pastes"
        )
        changes.insert(0, Change(anonymous, [], None, msg))
    repository.apply(changes, written, pack=pack)
    return pack
