"""Making files durable: fsync a file or a directory, or syncfs a whole
file system (cheaper than many fsyncs, see ``FSYNC_FILES_LIMIT``)."""

from __future__ import annotations

import ctypes
import os

# Below this many files to sync, fsync each one in parallel (ext4 merges
# concurrent fsyncs into few journal commits); above, one syncfs is cheaper.
FSYNC_FILES_LIMIT = 96

_libc = ctypes.CDLL(None, use_errno=True)


def fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
