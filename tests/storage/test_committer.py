"""The committer process (committer.py): journaled pastes committed to Git
beside the server, its death and restart, and its end with the server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from pasteur.storage.objects import shard_path, zlib_stored
from pasteur.storage.store import Store


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_journaled_pastes_are_committed_by_a_process_of_their_own(tmp_path):
    repo = tmp_path / "repo.git"

    async def main() -> tuple[list[str], int]:
        store = Store(repo)
        store.start()
        ids = [await store.add(f"paste {i}".encode(), "Ann <ann@example.org>" if i == 3 else None,
                               "a comment" if i == 3 else None) for i in range(20)]
        await store.flush()
        assert store.writer.committer is not None and store.writer.committer.proc is not None
        child = store.writer.committer.proc.pid
        assert child != os.getpid() and _alive(child)
        # the new head is the server's, its trees in the server's cache
        assert store.head is not None and _git(repo, "rev-parse", "main").strip() == str(store.head)
        tree = store.repository.tree
        assert tree is not None and tree.id.raw in store.tree_cache.raws
        assert all(store.get(i) == f"paste {n}".encode() for n, i in enumerate(ids))
        await store.stop()
        assert not _alive(child)  # ended with the store
        return ids, child

    ids, _ = asyncio.run(main())
    assert sorted(_git(repo, "ls-tree", "-r", "--name-only", "main").split()) == \
        sorted(shard_path(i) for i in ids)
    assert "Ann" in _git(repo, "log", "--format=%an").split()
    assert "a comment" in _git(repo, "log", "--format=%s")
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_killed_committer_is_started_again_and_nothing_is_lost(tmp_path):
    repo = tmp_path / "repo.git"

    async def main() -> list[str]:
        store = Store(repo)
        store.start()
        ids = [await store.add(f"before {i}".encode()) for i in range(5)]
        await store.flush()
        assert store.writer.committer is not None and store.writer.committer.proc is not None
        first = store.writer.committer.proc
        first.kill()
        first.wait()
        ids += [await store.add(f"after {i}".encode()) for i in range(5)]
        await store.flush()
        assert store.writer.committer.starts == 2 and store.writer.committer.proc.pid != first.pid
        await store.stop()
        return ids

    ids = asyncio.run(main())
    assert sorted(_git(repo, "ls-tree", "-r", "--name-only", "main").split()) == \
        sorted(shard_path(i) for i in ids)


def test_a_committer_failure_keeps_the_pastes_until_a_commit_works(tmp_path):
    repo = tmp_path / "repo.git"
    packs = repo / "objects" / "pack"
    away = repo / "objects" / "pack.away"

    async def main() -> list[str]:
        store = Store(repo)
        store.start()
        ids = [await store.add(b"first")]
        await store.flush()
        packs.rename(away)
        packs.write_bytes(b"")  # no directory to write the pack in
        try:
            ids.append(await store.add(b"kept in the journal"))
            deadline = time.monotonic() + 10
            while store.writer.failure is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert store.writer.failure is not None
            assert store.get(ids[1]) == b"kept in the journal"
        finally:
            packs.unlink()
            away.rename(packs)
        await store.flush()  # the retry goes through
        assert store.writer.failure is None
        await store.stop()
        return ids

    ids = asyncio.run(main())
    assert sorted(_git(repo, "ls-tree", "-r", "--name-only", "main").split()) == \
        sorted(shard_path(i) for i in ids)


def test_the_committer_ends_with_the_server_even_on_kill_9(server_factory):
    server = server_factory()
    assert httpx.post(server.url + "/", files={"paste": (None, "hello")}).status_code == 201
    server.settle()
    committers = [p for p in _children(server.proc.pid)
                  if "pasteur.storage.committer" in _cmdline(p)]
    assert len(committers) == 1
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    deadline = time.monotonic() + 5
    while _alive(committers[0]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(committers[0])
    server.start()  # the repository is free again
    assert httpx.post(server.url + "/", files={"paste": (None, "again")}).status_code == 201


def test_stored_zlib_streams_are_valid_zlib():
    import zlib
    for n in (0, 1, 100, 65535, 65536, 200_000):
        data = os.urandom(n)
        d = zlib.decompressobj()
        assert d.decompress(zlib_stored(data)) == data and d.eof and not d.unused_data


def test_a_commit_takes_at_most_max_batch_bytes(tmp_path, monkeypatch):
    import pasteur.storage.writer as store_module
    monkeypatch.setattr(store_module, "MAX_BATCH_BYTES", 3000)
    repo = tmp_path / "repo.git"

    async def main() -> list[str]:
        store = Store(repo)
        store.start()
        ids = await asyncio.gather(*(store.add(bytes([65 + i]) * 1000) for i in range(7)))
        await store.flush()
        assert store.batches >= 3  # 7 pastes of ~1 KiB, at most ~3 KiB a commit
        await store.stop()
        return list(ids)

    ids = asyncio.run(main())
    assert sorted(_git(repo, "ls-tree", "-r", "--name-only", "main").split()) == \
        sorted(shard_path(i) for i in ids)


def test_commits_go_on_after_an_erasure(tmp_path):
    """An erasure deletes the committer's last head: it takes the server's."""
    repo = tmp_path / "repo.git"

    async def main() -> tuple[str, str]:
        store = Store(repo)
        store.start()
        kept = await store.add(b"kept")
        gone = await store.add(b"erased")
        await store.flush()
        await store.remove([gone], "Removed")
        assert await store.erase() == 1
        after = await store.add(b"after the erasure")
        await asyncio.wait_for(store.flush(), 10)
        assert store.writer.failure is None
        assert (await store.add(b"and the next")) is not None
        await store.stop()
        return kept, after

    kept, after = asyncio.run(main())
    tree = _git(repo, "ls-tree", "-r", "--name-only", "main").split()
    assert shard_path(kept) in tree and shard_path(after) in tree


def test_a_committer_killed_inside_its_ref_update_leaves_no_lock_behind(tmp_path):
    repo = tmp_path / "repo.git"

    async def main() -> str:
        store = Store(repo)
        store.start()
        await store.add(b"one")
        await store.flush()
        assert store.writer.committer is not None and store.writer.committer.proc is not None
        # killed between creating the branch's lock and renaming it over the ref
        (repo / "refs" / "heads" / "main.lock").write_text("0" * 40 + "\n")
        store.writer.committer.proc.kill()
        store.writer.committer.proc.wait()
        two = await store.add(b"two")
        await asyncio.wait_for(store.flush(), 10)
        assert store.writer.failure is None
        await store.stop()
        return two

    two = asyncio.run(main())
    assert not (repo / "refs" / "heads" / "main.lock").exists()
    assert shard_path(two) in _git(repo, "ls-tree", "-r", "--name-only", "main").split()


def test_the_committer_ends_on_its_own_when_the_store_stops(tmp_path):
    async def main() -> int | None:
        store = Store(tmp_path / "repo.git")
        store.start()
        await store.add(b"one")
        await store.flush()
        assert store.writer.committer is not None and store.writer.committer.proc is not None
        proc = store.writer.committer.proc
        await store.stop()
        return proc.returncode

    assert asyncio.run(main()) == 0  # not killed: it read the end of its input
