"""What the server's child processes inherit, and how they run: at idle
priority, with malloc tuned.

Every ``PASTEUR_<NAME>`` variable is a flag of the server (``cli.EnvDefaults``),
secrets among them: ``PASTEUR_REMOTE_TOKEN``, ``PASTEUR_SSH_KEY``, ``PASTEUR_SSH_SEED``,
``PASTEUR_AUTH``, ``PASTEUR_ACCOUNT_SEED``, ``PASTEUR_CERT_SEED``,
``PASTEUR_DNS_KEY``. No child reads them: the committer and the expiry scan
take their arguments, the sync worker gets its token and seed on its stdin,
and git needs none. So every child (committer, sync worker, expiry scan,
``git repack``/``prune``/``reflog``) is started with ``env=child_env()``: the
server's environment without them. The rest stays (``PATH``, ``HOME``, the
locale, ``SSL_CERT_FILE``, proxies, ``PYTHONPATH``): git, libgit2 and Python
use it.
"""

from __future__ import annotations

import ctypes
import os
import shutil

ENV_PREFIX = "PASTEUR_"


def child_env() -> dict[str, str]:
    """The environment of a child process: the server's, without ``PASTEUR_*``."""
    return {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}


def tune_malloc() -> None:
    """Keep freed memory at the top of the heap (up to 4 MiB) instead of
    giving it back to the kernel at once (glibc does above 128 KiB), and
    keep threads to two malloc arenas.

    zlib takes ~256 KiB of state for each stream it compresses: returned and
    mapped again each time, it cost a page fault per 4 KiB (measured: 60 us
    to store 1 KiB with zlib instead of 3 us). Blocks over 4 MiB are still
    mapped and unmapped on their own. Each thread that allocates (journal,
    writer, fsyncs, executor) would otherwise get an arena of its own (up to
    8 per core), each keeping its own free memory (issue 17 item 4)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 4 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


# libgit2's memory, per process (its settings are global): its object cache
# (256 MiB by default, of commits and trees: each batch writes new ones, so
# it filled up over tens of thousands of pastes) and its maps of the packs (a
# 1 GiB window each, up to 8 GiB: every page read stays resident).
LIBGIT2_CACHE = 4 << 20
MWINDOW_SIZE = 8 << 20
MWINDOW_MAPPED = 32 << 20


def bound_libgit2() -> None:
    """Bound libgit2's object cache and pack maps in this process
    (``LIBGIT2_CACHE``, ``MWINDOW_*``): a process's RSS then stays flat in
    the number of stored pastes. Cheap; every ``Repository`` calls it, and
    the children that open the repository with pygit2 directly."""
    import pygit2

    settings = pygit2.settings
    if settings.mwindow_mapped_limit != MWINDOW_MAPPED:
        settings.cache_max_size(LIBGIT2_CACHE)
        settings.mwindow_size = MWINDOW_SIZE
        settings.mwindow_mapped_limit = MWINDOW_MAPPED


def idle_priority() -> list[str]:
    """A command prefix that runs a background job only when the CPU is idle."""
    if shutil.which("chrt"):
        return ["chrt", "--idle", "0"]
    if shutil.which("nice"):
        return ["nice", "-n", "19"]
    return []
