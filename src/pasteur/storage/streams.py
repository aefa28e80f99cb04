"""A large blob's bytes as a stream, never all in memory: a loose object
read and inflated here, in a thread (``loose.LooseReader``: a blob written
by ``loose.LooseWriter`` is stored, its inflation a copy), a packed one from
``git cat-file`` (which inflates undeltified packed objects as a stream: this
process holds a chunk, git a window; libgit2 would read it whole).

Measured on a 1 GiB paste: from ``git cat-file`` in 64 KiB reads, ~2.5 s of
CPU (both processes); read here in 1 MiB chunks, see docs/performance.md."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path

import pygit2

from ..procs import child_env
from .errors import StoreError
from .loose import LooseError, LooseReader


async def stream_blob(repo: Path, oid: pygit2.Oid, size: int, chunk: int
                      ) -> AsyncGenerator[bytes, None]:
    """The ``size`` bytes of the blob ``oid``, ``chunk`` at a time (StoreError
    if it cannot be read to its end)."""
    reader = LooseReader.open(repo / "objects", oid)
    chunks = _loose(reader, chunk) if reader is not None else _git(repo, oid, chunk)
    sent = 0
    try:
        async for data in chunks:
            sent += len(data)
            yield data
    finally:
        await chunks.aclose()
    if sent != size:
        raise StoreError(f"blob {oid} could not be read ({sent} of {size} bytes)")


async def _loose(reader: LooseReader, chunk: int) -> AsyncGenerator[bytes, None]:
    try:
        while data := await asyncio.to_thread(reader.read, chunk):
            yield data
    except LooseError as exc:
        raise StoreError(str(exc)) from exc
    finally:
        reader.close()


async def _git(repo: Path, oid: pygit2.Oid, chunk: int) -> AsyncGenerator[bytes, None]:
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", str(repo), "cat-file", "blob", str(oid),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=child_env(),
    )
    assert proc.stdout is not None
    try:
        while data := await proc.stdout.read(chunk):
            yield data
        if await proc.wait() != 0:
            raise StoreError(f"blob {oid} could not be read (git cat-file failed)")
    finally:
        if proc.returncode is None:  # the reader left early
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
