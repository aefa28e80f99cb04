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


_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a file back to the disk, without waiting
    (Linux ``sync_file_range``; elsewhere nothing): a large object's final
    fdatasync then has little left to write."""
    fn = getattr(_libc, "sync_file_range", None)
    if fn is not None:
        fn(ctypes.c_int(fd), ctypes.c_longlong(offset), ctypes.c_longlong(length),
           ctypes.c_uint(_SYNC_FILE_RANGE_WRITE))
