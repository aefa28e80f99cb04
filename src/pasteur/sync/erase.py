"""Erasure among instances sharing a remote: the marker that announces it.

An erasure rewrites history; before anything is pushed, a marker commit
(``Erased: <ids>``) names the erased ids, so that other instances know the
pastes are gone on purpose: they neither restore them nor keep their content
(merge's ``leftovers``). The ids to announce are kept, durably, in a file
of the repository (``Layout.erase_marker``) from before the erasure until the
marker is committed, so a crash in between loses no announcement.
"""

from __future__ import annotations

import os

from pasteur.storage.repository import Change
from pasteur.storage.store import Store
from pasteur.sync.merge import Integration, erase_message


class Eraser:
    """Announces the store's erasures, whoever starts them: ``announce``
    writes the ids before each erasure and ``commit_marker`` commits the
    marker after it (both registered by the wiring with
    ``Store.on_erasure``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.marker_file = store.layout.erase_marker
        self.reerased: list[str] = []  # ids erased elsewhere, found here and erased again

    def announce(self, ids: set[str]) -> None:
        """Writer thread, just before the erasure: the ids it erases, added to
        what an earlier marker may still have to announce. Read from the
        erase list here and not before the erasure was queued: a removal
        queued in between (a burn or delete racing the timer) would be erased
        unannounced, and other instances would bring it back."""
        self._write(self._ids() | ids)

    async def erase(self) -> int:
        """Erase the queued ids (announced by ``announce``), then commit the
        marker naming them; the caller holds the store's guard (no fetch or
        push meanwhile)."""
        return await self.store.erase_guarded()

    async def erase_leftovers(self, result: Integration) -> bool:
        """Erase at once what another instance erased and the integration found
        still here (queued by it, durably), before any push; whether it did."""
        if not result.erase:
            return False
        await self.erase()
        self.reerased.extend(result.erase)
        return True

    async def commit_marker(self) -> None:
        """Commit the marker naming the ids erased (also after a crash between
        erasure and marker). Ids queued again meanwhile (a removal between the
        erasure and now) stay in the file for the next marker: an erased id is
        always announced."""
        ids = self._ids()
        if not ids:
            return
        pending = self.store.pending_erasure()
        done, left = ids - pending, ids & pending
        if done:  # with why each was removed: 410 everywhere, in the same words
            reasons = {i: r for i in done if (r := self.store.gone(i)) is not None}
            marker = Change([], [], None, erase_message(done, reasons))
            await self.store.run_in_writer(lambda: self.store.apply([marker]))
        if left:
            self._write(left)
        else:
            self.marker_file.unlink(missing_ok=True)

    def _ids(self) -> set[str]:
        try:
            return set(self.marker_file.read_text().split())
        except FileNotFoundError:
            return set()

    def _write(self, ids: set[str]) -> None:
        """Durably, before the erasure: a crash must not lose an announcement."""
        tmp = self.marker_file.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write("".join(f"{i}\n" for i in sorted(ids)))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.marker_file)
