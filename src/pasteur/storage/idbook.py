"""Which paste ids are taken, and the pickers of new ones.

An id is taken when it is in the served tree, acknowledged (journaled, not
yet committed: its document is served from here meanwhile), being committed
or waiting for erasure. An id picked for a new paste is reserved at once and
released only after the tree holding it is in place, so that the journal
thread, the writer and the event loop never hand one id out twice.

Across instances sharing a remote, ids cannot collide: each instance claims
a one-character namespace on the remote once (``pasteur.sync.namespace``)
and every id it picks ends with that character (the default length 4: three
random characters and the namespace, 238,328 ids per instance before ids
grow). Until the namespace is claimed (first start with the remote down), no
id is handed out (a create answers 503). An id is also taken when the tree
holds a blob of that name at its root: the original Pasteur's pastes, taken
over from an old repository, are never reused (``taken``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

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
        # The last character of every new id, claimed on the shared remote
        # (None: no remote, any id); ``shared``: a remote is configured, so
        # no id is handed out before the namespace is claimed.
        self.namespace: str | None = None
        self.shared = False

    def candidate(self, length: int) -> str:
        """A random id of ``length`` characters in this instance's namespace."""
        if self.namespace is None:
            if self.shared:
                raise StoreError("this instance has not claimed its id namespace on the "
                                 "remote yet (is the remote reachable?): try again later")
            return random_id(length)
        return random_id(max(1, length - 1)) + self.namespace

    def taken(self, paste_id: str) -> bool:
        """Whether the current tree holds ``paste_id`` in either layout:
        ``a/b/<id>``, or a blob ``<id>`` at the root (the original's pastes)."""
        if self.legacy(paste_id):
            return True
        tree = self.repository.tree
        return tree is not None and self.repository.tree_cache.paste_oid(
            tree.id.raw, paste_id.encode(), self.repository.reader.odb) is not None

    def pick(self, free: Callable[[str], bool]) -> str:
        """The one id picker: random ids in this instance's namespace until
        ``free`` accepts one, growing the length when the space is crowded."""
        length = self.id_length
        for attempt in range(64):
            paste_id = self.candidate(length)
            if free(paste_id):
                return paste_id
            if attempt % 8 == 7:  # the space is crowded: grow the id
                length += 1
        raise StoreError("no free paste id")

    def new_id(self) -> str:
        """A random id free in the current tree."""
        return self.pick(lambda i: i not in self.journaled and not self.taken(i))

    def free_id(self, pack: PackBuilder, root: bytes | None, taken: set[str]) -> str:
        """``new_id`` in the writer: looked up in the trees the batch edits anyway."""
        return self.pick(lambda i: (i not in taken and i not in self.erasure.erasing
                                    and not pack.has_paste(root, i.encode())
                                    and not self.legacy(i)
                                    and self.try_reserve(i)))

    def reserve_id(self) -> str:
        """A free id for a journaled paste (journal thread): in no commit, not
        journaled, not being committed, not waiting for erasure. Reserved
        first, then looked up in the current tree: an id is released only
        after the tree holding it is in place."""
        def free(paste_id: str) -> bool:
            if paste_id in self.erasure.erasing or not self.try_reserve(paste_id):
                return False
            if self.taken(paste_id):
                self.release([paste_id])
                return False
            return True
        return self.pick(free)

    def legacy(self, paste_id: str) -> bool:
        """Whether the current tree holds a root-level blob ``paste_id`` (an
        original Pasteur's paste: ``taken``'s other layout)."""
        tree = self.repository.tree
        return tree is not None and paste_id in tree

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
