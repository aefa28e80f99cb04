"""Which paste ids are taken, and the pickers of new ones.

An id is taken when it is in the served tree, acknowledged (journaled, not
yet committed: its document is served from here meanwhile), being committed
or waiting for erasure. An id picked for a new paste is reserved at once and
released only after the tree holding it is in place, so that the journal
thread, the writer and the event loop never hand one id out twice."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ..ids import random_id
from .erasure import Erasure
from .errors import StoreError
from .packs import PackBuilder
from .repository import Repository


class IdBook:
    """The ids in flight, and the three pickers (event loop, journal thread,
    writer), each looking where it can look cheaply."""

    def __init__(self, repository: Repository, erasure: Erasure, id_length: int) -> None:
        self.repository = repository
        self.erasure = erasure  # its ids wait for erasure: never given out
        self.id_length = id_length
        self.journaled: dict[str, bytes] = {}  # acknowledged, not yet committed
        self.reserved: set[str] = set()  # ids journaled or being committed
        self._lock = threading.Lock()

    def new_id(self) -> str:
        """A random id free in the current tree."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if paste_id not in self.journaled and self.repository.blob(paste_id) is None:
                return paste_id
            if attempt % 8 == 7:  # the space is crowded: grow the id
                length += 1
        raise StoreError("no free paste id")

    def free_id(self, pack: PackBuilder, root: bytes | None, taken: set[str]) -> str:
        """``new_id`` in the writer: looked up in the trees the batch edits anyway."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if (paste_id not in taken and paste_id not in self.erasure.erasing
                    and not pack.has_paste(root, paste_id.encode())
                    and self.try_reserve(paste_id)):
                return paste_id
            if attempt % 8 == 7:  # the space is crowded: grow the id
                length += 1
        raise StoreError("no free paste id")

    def reserve_id(self) -> str:
        """A free id for a journaled paste (journal thread): in no commit, not
        journaled, not being committed, not waiting for erasure. Reserved
        first, then looked up in the current tree: an id is released only
        after the tree holding it is in place."""
        length = self.id_length
        for attempt in range(64):
            paste_id = random_id(length)
            if paste_id not in self.erasure.erasing and self.try_reserve(paste_id):
                tree = self.repository.tree
                if tree is None or not self.repository.tree_cache.has_paste(
                        tree.id.raw, paste_id.encode(), self.repository.reader.odb):
                    return paste_id
                self.release([paste_id])
            if attempt % 8 == 7:
                length += 1
        raise StoreError("no free paste id")

    def renamed(self, old: str, new: str) -> None:
        """A journaled paste is committed as ``new`` (``old`` was taken meanwhile)."""
        self.journaled.pop(old, None)
        self.release([old])
        self.try_reserve(new)

    def try_reserve(self, paste_id: str) -> bool:
        with self._lock:
            if paste_id in self.reserved:
                return False
            self.reserved.add(paste_id)
            return True

    def release(self, ids: Iterable[str | None]) -> None:
        with self._lock:
            for paste_id in ids:
                self.reserved.discard(paste_id)
