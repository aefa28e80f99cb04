"""Pack maintenance: small packs rolled up beside the writer, and the one
repack-and-prune that deletes what no ref reaches (after an erasure or a
history rewrite brought by the sync).

One pack per batch would slow lookups down after thousands of batches: when
there are more than ``PACK_LIMIT`` packs, ``git repack -d --geometric=2``
rolls the small ones up, in a process beside the writer. Plain git is the
maintenance tool (libgit2 has no gc)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Awaitable, Callable

from ..procs import child_env, idle_priority
from .errors import StoreError
from .repository import Repository

log = logging.getLogger("pasteur.store")

# More packs than this and the writer rolls them up (git repack --geometric=2).
PACK_LIMIT = 50
# git's memory in a repack, bounded: its maps of the packs (1 GiB windows up
# to 8 GiB by default: the pages read stay resident), its cache of delta
# bases (96 MiB), one thread, and the delta search's window and cache
# (``repack -a``). Measured on 54 packs of a 100,000-paste repository: a peak
# RSS of 378-678 MB with git's defaults, 42 MB with these, in the same time;
# rolling up everything at 1,000,000 pastes (+35,000 created): 158 MB (197 MB
# without the delta base cache's limit, once 2.2 GB).
GIT_MEMORY = ("-c", "core.packedGitLimit=32m", "-c", "core.packedGitWindowSize=8m",
              "-c", "core.deltaBaseCacheLimit=8m", "-c", "pack.threads=1",
              "-c", "pack.windowMemory=32m", "-c", "pack.deltaCacheSize=8m")


def repack_and_prune(repository: Repository) -> None:
    """Delete the objects no ref reaches (erased pastes, an old history):
    ``git reflog expire``, ``git repack -a -d`` and ``git prune
    --expire=now``, then new handles (writer thread)."""
    git = ["git", "-C", str(repository.path), *GIT_MEMORY]
    for args in (["reflog", "expire", "--expire=now", "--all"],
                 ["repack", "-a", "-d", "-q"],
                 ["prune", "--expire=now"]):
        subprocess.run([*git, *args], check=True, capture_output=True, env=child_env())
    repository.reopen()  # let go of the deleted packs
    repository.packs = repository.layout.count_packs()


def repack_command(repository: Repository) -> list[str]:
    """``git repack -d --geometric=2``: packs (and loose objects) are rolled
    up into one pack when their sizes are not a geometric progression; only
    the packs it rewrote are deleted, and it keeps every object of those
    packs (reachable or not), so nothing another writer put there is lost;
    packs written meanwhile are left alone. No delta search
    (``pack.window=0``): measured 91 ms instead of 299 ms for 50 batches of
    64 pastes; erasure's ``repack -a`` deltifies."""
    return ["git", "-C", str(repository.path), *GIT_MEMORY, "-c", "repack.writeBitmaps=false",
            "-c", "pack.window=0", "repack", "-d", "--geometric=2", "-q"]


class Maintenance:
    """The roll-up of small packs: when it is due, and running it.

    ``run_in_writer`` runs a function in the writer thread (the handles are
    renewed there); ``guard`` is held while git repacks, shared with the
    erasure (never two repacks at once)."""

    def __init__(self, repository: Repository,
                 run_in_writer: Callable[[Callable[[], None]], Awaitable[None]],
                 guard: asyncio.Lock) -> None:
        self.repository = repository
        self.run_in_writer = run_in_writer
        self.guard = guard
        self.max_packs = PACK_LIMIT  # repack when there are more packs than this
        self.kept_packs = 0  # packs left by the last repack
        self.runs = 0
        self.failures = 0

    def due(self) -> bool:
        # Packs the last repack kept (a geometric progression: ~log2 of the
        # size ratio) count for half, or a large kept set would repack often.
        return self.repository.packs > max(self.max_packs,
                                           self.kept_packs + self.max_packs // 2)

    async def run(self) -> None:
        """Roll small packs up beside the writer, then reopen the handles in it.

        ``git repack`` runs as a process of its own: commits go on while it
        works (measured: a repack in the writer thread stalled every 50th
        batch by ~0.1 s, the p99 of creates at one connection). It runs at
        idle priority (``chrt --idle``, else ``nice``): on a busy core it
        yields to the server (measured on one core at 2,000 creates/s: 12%
        more throughput and a p99 of 53 instead of 175 ms)."""
        async with self.guard:  # never beside an erasure's repack and prune
            before, t0 = self.repository.layout.count_packs(), time.monotonic()
            proc = await asyncio.create_subprocess_exec(*idle_priority(),
                                                        *repack_command(self.repository),
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE,
                                                        env=child_env())
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise StoreError(f"git repack failed: {err.decode(errors='replace').strip()}")
            await self.run_in_writer(lambda: self._after_repack(before, t0))

    def run_here(self) -> None:
        """The same as ``run``, all in this thread, the writer's (for tests and tools)."""
        before, t0 = self.repository.layout.count_packs(), time.monotonic()
        subprocess.run(repack_command(self.repository), check=True, capture_output=True,
                       env=child_env())
        self._after_repack(before, t0)

    def _after_repack(self, before: int, t0: float) -> None:
        repository = self.repository
        repository.reopen()
        repository.packs = repository.layout.count_packs()
        self.kept_packs = repository.packs
        self.runs += 1
        log.info("repacked %d packs into %d in %.0f ms", before, repository.packs,
                 (time.monotonic() - t0) * 1e3)
