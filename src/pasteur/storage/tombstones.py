"""Removed pastes, remembered: a burned, expired or deleted paste's id answers
410 "gone" with the reason in plain words, not 404, also after its content is
erased from history (the erase list is emptied then).

One line per removal in ``pasteur-gone`` beside the erase list: ``<id>
<reason> <unix time>``, appended and fsynced with it. Only ids, reasons and
times: nothing of a paste's content. Bounded: entries older than ``KEEP``
seconds, and beyond the newest ``MAX`` (about 100 bytes of memory each), are
forgotten when the file is loaded, and the file is then rewritten without them.
This module imports nothing of ours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

KEEP = 365 * 86400
MAX = 200_000


class Tombstones:
    """Why each removed id is gone (``reason``), loaded from and appended to ``path``."""

    def __init__(self, path: Path, keep: float = KEEP, limit: int = MAX) -> None:
        self.path = path
        self.keep = keep
        self.limit = limit
        self.gone: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return
        oldest = time.time() - self.keep
        kept: dict[str, tuple[str, str]] = {}
        for line in lines:
            parts = line.split()
            if len(parts) != 3:
                continue  # a line cut short by a crash
            paste_id, reason, when = parts
            try:
                if float(when) < oldest:
                    continue
            except ValueError:
                continue
            kept.pop(paste_id, None)  # the newest removal of an id wins
            kept[paste_id] = (reason, line)
        while len(kept) > self.limit:
            del kept[next(iter(kept))]
        self.gone = {paste_id: reason for paste_id, (reason, _) in kept.items()}
        if len(kept) < len(lines):
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(f"{line}\n" for _, line in kept.values()))
            os.replace(tmp, self.path)

    def add(self, ids: Iterable[str], reason: str) -> None:
        """Remember ``ids`` as removed for ``reason`` (one word), durably."""
        word = "".join(reason.split()) or "Remove"
        now = int(time.time())
        ids = list(ids)
        with self.path.open("a") as f:
            f.write("".join(f"{i} {word} {now}\n" for i in ids))
            f.flush()
            os.fsync(f.fileno())
        for paste_id in ids:
            self.gone.pop(paste_id, None)
            self.gone[paste_id] = word
        while len(self.gone) > self.limit:
            del self.gone[next(iter(self.gone))]

    def reason(self, paste_id: str) -> str | None:
        """Why ``paste_id`` is gone ("Burn", "Expire", "Delete", ...), or None."""
        return self.gone.get(paste_id)
