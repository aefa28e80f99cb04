"""The write path: one pack per batch, no loose objects, and pack maintenance."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pygit2

from pasteur.storage.batch import Pending
from pasteur.storage.objects import parse_tree, tree_bytes
from pasteur.storage.repository import Change
from pasteur.storage.store import Store


def _fsck(path: Path) -> None:
    r = subprocess.run(["git", "-C", str(path), "fsck", "--strict", "--no-dangling"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _loose(path: Path) -> list[str]:
    objects = path / "objects"
    return [f"{d}/{f}" for d in os.listdir(objects) if len(d) == 2
            for f in os.listdir(objects / d)]


def _packs(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "objects" / "pack").glob("pack-*.pack"))


def _close(store: Store) -> None:
    store.close()


def test_batch_is_one_pack_without_loose_objects(tmp_path):
    store = Store(tmp_path / "repo.git")
    pastes: dict[str, bytes] = {}
    try:
        for r in range(30):
            batch = [Pending(store.new_id(), f"paste {r} {i}".encode(),
                             "Ada Lovelace <ada@example.org>" if i == 3 else None,
                             "a comment\n\nbody" if i == 5 else None, None)
                     for i in range(12)]
            store.writer.commit_batch(batch)
            assert len(_packs(store.path)) == r + 1  # one pack per batch
            for p in batch:  # readable at once through the reader handle
                assert isinstance(p.data, bytes)
                pastes[p.paste_id] = p.data
                assert store.get(p.paste_id) == p.data
                commit = store.commit_of(p.paste_id)
                assert commit is not None and commit.id in {
                    c.id for c in store.reader.walk(store.head)}
        assert _loose(store.path) == []
        # the pack holds the blobs, the trees and the commits of its batch
        idx = next((store.path / "objects" / "pack").glob("pack-*.idx"))
        out = subprocess.run(["git", "verify-pack", "-v", str(idx)], check=True,
                             capture_output=True, text=True).stdout
        kinds = [line.split()[1] for line in out.splitlines() if len(line.split()) > 2
                 and line.split()[1] in ("blob", "tree", "commit")]
        assert kinds.count("blob") == 12 and kinds.count("commit") == 3  # anonymous + 2 own
        _fsck(store.path)
        # removal is a pack too, and a second handle (another process) sees everything
        gone = next(iter(pastes))
        store.apply([Change([], [gone], None, "Remove paste")])
        assert store.get(gone) is None and _loose(store.path) == []
        other = pygit2.Repository(str(store.path))
        assert other.head.target == store.head
        store.maintenance.run_here()
        _fsck(store.path)
        assert _loose(store.path) == []
        for pid, data in pastes.items():
            assert store.get(pid) == (None if pid == gone else data)
    finally:
        _close(store)
    # a restart reads the same
    again = Store(tmp_path / "repo.git")
    try:
        assert sum(1 for _ in again.ids()) == len(pastes) - 1
    finally:
        _close(again)


def test_large_paste_from_file_stays_loose(tmp_path):
    store = Store(tmp_path / "repo.git")
    big = tmp_path / "big"
    big.write_bytes(b"y" * 100_000)
    try:
        store.writer.commit_batch([Pending(store.new_id(), big, None, None, None),
                             Pending("small1", b"small", None, None, None)])
        assert len(_loose(store.path)) == 1 and len(_packs(store.path)) == 1
        assert store.get("small1") == b"small"
        _fsck(store.path)
    finally:
        _close(store)


def test_maintenance_bounds_the_number_of_packs(tmp_path, monkeypatch):
    # At idle CPU priority the repack waits while the machine is busy (the
    # point of it); here it runs at normal priority, to check the bound.
    monkeypatch.setattr("pasteur.storage.maintenance.idle_priority", lambda: [])

    async def main() -> tuple[Store, list[str], int]:
        store = Store(tmp_path / "repo.git", journal=False)  # a commit per create
        store.maintenance.max_packs = 8
        store.start()
        most = 0
        ids = []
        for i in range(60):  # one at a time: one batch, one pack each
            ids.append(await store.add(f"paste {i}".encode()))
            most = max(most, len(_packs(store.path)))
        await store.stop()
        return store, ids, most

    store, ids, most = asyncio.run(main())
    assert store.maintenance.runs >= 3 and store.maintenance.failures == 0
    # the repack runs beside the writer: batches go on landing while it works
    assert most <= 2 * 8
    assert len(_packs(store.path)) <= 2 * 8
    assert _loose(store.path) == []
    _fsck(store.path)
    for i, pid in enumerate(ids):
        assert store.get(pid) == f"paste {i}".encode()


def test_tree_entries_round_trip_in_gits_order(tmp_path):
    """Trees written by git itself (a subtree sorts as "name/", so "a" the
    directory comes after "a-b" and "a.b" the files) parse and serialise back
    to the same bytes."""
    work = tmp_path / "w"
    work.mkdir()
    for rel in ("a/x", "a-b", "a.b", "a0", "b/c/d", "Z"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(rel)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    tree = subprocess.run(["git", "-C", str(work), "write-tree"], check=True,
                          capture_output=True, text=True).stdout.strip()
    repo = pygit2.Repository(str(work))
    for obj in [repo[tree], repo[tree] / "a", repo[tree] / "b" / "c"]:
        raw = repo.odb.read(obj.id)[1]
        entries = parse_tree(raw)
        assert tree_bytes(entries) == raw
    assert list(parse_tree(repo.odb.read(repo[tree].id)[1])) == [
        b"Z", b"a-b", b"a.b", b"a/", b"a0", b"b/"]


def test_the_tree_cache_finds_pastes_in_raw_trees(tmp_path):
    store = Store(tmp_path / "repo.git", journal=False)
    try:
        ids = ["Ab12", "Ab13", "Ac99", "zz00", "Ab1"]
        store.writer.commit_batch([Pending(i, f"paste {i}".encode(), None, None, None)
                                   for i in ids])
        tree = store.repository.tree
        assert tree is not None
        root, odb = tree.id.raw, store.reader.odb
        fresh = type(store.tree_cache)()  # nothing cached: read through the object database
        for cache in (store.tree_cache, fresh):
            assert all(cache.has_paste(root, i.encode(), odb) for i in ids)
            assert not any(cache.has_paste(root, i.encode(), odb)
                           for i in ("Ab14", "Ab", "b123", "Ab12x", "Ad12"))
        assert not fresh.has_paste(None, b"Ab12", odb)
    finally:
        _close(store)


def test_leaves_edited_in_their_raw_bytes_stay_valid_trees(tmp_path):
    """Inserts, replacements and removals in one leaf, in one batch and across
    batches; a name of another length (the parsed path); the leaf emptied."""
    store = Store(tmp_path / "repo.git", journal=False)
    expected: dict[str, bytes] = {}

    def step(add: list[str], remove: list[str]) -> None:
        blobs = []
        for pid in add:
            data = f"paste {pid} {len(expected)}".encode()
            blobs.append((pid, store.repo.create_blob(data)))
            expected[pid] = data
        for pid in remove:
            expected.pop(pid, None)
        store.apply([Change(blobs, remove, None, "step")])
        listed = subprocess.run(["git", "-C", str(store.path), "ls-tree", "-r", "--name-only",
                                 "main"], capture_output=True, text=True).stdout.split()
        assert sorted(listed) == sorted(f"{p[0]}/{p[1]}/{p}" for p in expected)
        for pid, data in expected.items():
            assert store.get(pid) == data
        _fsck(store.path)

    try:
        step(["Ab05", "Ab01", "Ab09"], [])
        step(["Ab03", "Ab00", "Ab0z", "AbZZ"], [])  # before, between, after (bytes order)
        step(["Ab03"], ["Ab01"])  # replaced and removed in one commit
        step(["Ab1"], [])  # another length: the leaf is edited parsed
        step(["Ab07"], ["Ab1"])  # uniform again
        step([], [p for p in list(expected) if p.startswith("Ab")])  # the leaf goes
        step(["Ab42"], [])
    finally:
        _close(store)
