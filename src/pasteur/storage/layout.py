"""Where things are in the repository directory: the one owner of every path
the storage writes there (and of the quarantine file beside it).

The repository is a bare Git repository; besides Git's own files it holds
the write-ahead journal, the pid file that locks it, the list of pastes
waiting for erasure and the sync's erasure marker."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BRANCH = "refs/heads/main"
JOURNAL_FILE = "pasteur-journal"
PID_FILE = "pasteur.pid"
ERASE_FILE = "pasteur-erase"
ERASE_MARKER_FILE = "pasteur-erase-marker"
GONE_FILE = "pasteur-gone"
QUARANTINE_FILE = "quarantine.jsonl"  # in the data directory
TMP_PACK_PREFIX = "tmp_pasteur-"
# A large blob being written (loose.py), in the spool directory.
TMP_BLOB_PREFIX = "tmp_pasteur-blob-"


@dataclass(frozen=True)
class Layout:
    """The paths of one repository (``path``, a bare Git repository)."""

    path: Path

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL_FILE

    @property
    def pid(self) -> Path:
        """The pid file, locked by the serving process (``repository.lock_repository``)."""
        return self.path / PID_FILE

    @property
    def erase_list(self) -> Path:
        """Ids removed and not yet erased from history, one a line."""
        return self.path / ERASE_FILE

    @property
    def gone(self) -> Path:
        """Ids removed (burned, expired, deleted) and why, kept after erasure."""
        return self.path / GONE_FILE

    @property
    def erase_marker(self) -> Path:
        """The sync's record of an erasure not yet pushed."""
        return self.path / ERASE_MARKER_FILE

    @property
    def quarantine(self) -> Path:
        """Records that could not be committed, one JSON object a line (in
        the data directory, beside the repository)."""
        return self.path.parent / QUARANTINE_FILE

    @property
    def objects(self) -> Path:
        return self.path / "objects"

    @property
    def pack_dir(self) -> Path:
        return self.path / "objects" / "pack"

    @property
    def branch(self) -> Path:
        """The branch's loose ref (it overrides a packed one)."""
        return self.path / BRANCH

    @property
    def branch_lock(self) -> Path:
        return self.path / f"{BRANCH}.lock"

    def count_packs(self) -> int:
        try:
            return sum(1 for n in os.listdir(self.pack_dir)
                       if n.startswith("pack-") and n.endswith(".pack"))
        except FileNotFoundError:
            return 0

    def stale_locks(self) -> list[Path]:
        """Lock files a crash leaves (this program is the repository's only writer)."""
        return [*self.path.glob("refs/**/*.lock"), *self.path.glob("*.lock")]

    def unfinished_packs(self, pid: int | None = None) -> list[Path]:
        """Half-written packs of this program (of one process, given its
        pid); git's own temporary packs are not among them."""
        tag = TMP_PACK_PREFIX if pid is None else f"{TMP_PACK_PREFIX}{pid}-"
        return list(self.pack_dir.glob(f"{tag}*"))
