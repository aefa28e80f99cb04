"""The write-ahead journal: records, torn tails, wrap-around, scrubbing, and the
store's recovery of acknowledged pastes that never reached a commit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pygit2
import pytest

from pasteur.storage.journal import HEADER, Journal, JournalError, record_size
from pasteur.storage.layout import JOURNAL_FILE
from pasteur.storage.objects import shard_path
from pasteur.storage.store import Store

if TYPE_CHECKING:
    from tests.fixtures_faults import Faults

pytest_plugins = ["tests.fixtures_faults"]


def _items(n: int, start: int = 0) -> list[tuple[str, str | None, str | None, bytes]]:
    return [(f"id{i}", "Ann <ann@example.org>" if i % 3 == 0 else None,
             "a comment" if i % 4 == 0 else None, f"paste number {i}".encode() * 3)
            for i in range(start, start + n)]


def test_records_survive_a_reopen_until_checkpointed(tmp_path):
    j = Journal(tmp_path / "j", size=1 << 20)
    seqs = j.append(_items(5)) + j.append(_items(3, 5))
    assert seqs == list(range(1, 9))
    j.checkpoint(4)
    j.close()
    again = Journal(tmp_path / "j")
    records = again.read()
    assert [r.seq for r in records] == [5, 6, 7, 8]
    assert [(r.paste_id, r.author, r.message, r.data) for r in records] == _items(4, 4)
    # appending goes on after the last record
    assert again.append(_items(1, 8)) == [9]
    again.close()
    assert [r.seq for r in Journal(tmp_path / "j").read()] == [5, 6, 7, 8, 9]


def test_a_torn_or_corrupt_tail_ends_the_journal(tmp_path):
    j = Journal(tmp_path / "j", size=1 << 20)
    j.append(_items(3))
    tail = j.tail
    j.append(_items(1, 3))
    j.close()
    with open(tmp_path / "j", "r+b") as f:  # a torn last record: its end never written
        f.seek(tail + 30)
        f.write(b"\0" * 10)
    again = Journal(tmp_path / "j")
    assert [r.paste_id for r in again.read()] == ["id0", "id1", "id2"]
    assert again.tail == tail and again.append(_items(1, 9)) == [4]  # written over the torn one
    again.close()
    assert [r.paste_id for r in Journal(tmp_path / "j").read()] == ["id0", "id1", "id2", "id9"]


def test_a_corrupt_header_is_refused(tmp_path):
    Journal(tmp_path / "j", size=1 << 16).close()
    with open(tmp_path / "j", "r+b") as f:
        f.seek(12)
        f.write(b"\xff")
    with pytest.raises(JournalError, match="corrupt header"):
        Journal(tmp_path / "j")


def test_the_journal_wraps_once_everything_is_committed(tmp_path):
    j = Journal(tmp_path / "j", size=HEADER + 4096)
    seq = 0
    for round_ in range(20):  # far more than fits: each round is committed, then wraps
        seqs = j.append(_items(10, round_ * 10))
        seq = seqs[-1]
        j.checkpoint(seq)
    last = j.append(_items(2, 500))
    j.close()
    again = Journal(tmp_path / "j")
    assert [(r.seq, r.paste_id) for r in again.read()] == [(seq + 1, "id500"), (seq + 2, "id501")]
    with pytest.raises(JournalError, match="larger than the journal"):
        again.append([("big", None, None, b"x" * 8192)])
    assert last == [seq + 1, seq + 2]


def test_the_ring_wraps_over_committed_records_and_keeps_the_rest(tmp_path):
    """The checkpoint lags a group behind: records wrap to the start while
    uncommitted ones are still at the end, and a reopen at any point finds
    exactly the uncommitted records, in order, across the wrap."""
    j = Journal(tmp_path / "j", size=HEADER + 3000)
    expected: list[str] = []
    previous: list[int] = []
    wraps = 0
    for round_ in range(60):
        tail = j.tail
        seqs = j.append(_items(3, round_ * 3))
        wraps += j.tail < tail
        if previous:
            j.checkpoint(previous[-1])
        previous = seqs
        expected = [f"id{i}" for i in range(round_ * 3, round_ * 3 + 3)]
        again = Journal(tmp_path / "j")
        assert [r.paste_id for r in again.read()] == expected, round_
        again.close()
    assert wraps >= 5


def test_a_full_ring_waits_for_a_checkpoint(tmp_path):
    import threading

    j = Journal(tmp_path / "j", size=HEADER + 2000)
    item = ("same", None, None, b"x" * 100)
    need = record_size(*item)
    last = 0
    while j.fits(need):
        last = j.append([item])[-1]
    done: list[list[int]] = []
    t = threading.Thread(target=lambda: done.append(j.append([("id7", None, None, b"x" * 100)])))
    t.start()
    t.join(0.3)
    assert not done  # waiting: every record in the ring is uncommitted
    j.checkpoint(last)
    t.join(5)
    assert done == [[last + 1]]
    assert [r.paste_id for r in Journal(tmp_path / "j").read()] == ["id7"]


def test_scrub_zeroes_committed_records_and_keeps_the_rest(tmp_path):
    j = Journal(tmp_path / "j", size=1 << 20)
    j.append([("gone", None, None, b"a secret to erase")])
    j.append([("kept", None, None, b"not committed yet")])
    j.checkpoint(1)
    j.scrub()
    j.close()
    raw = (tmp_path / "j").read_bytes()
    assert b"a secret to erase" not in raw and b"not committed yet" in raw
    assert [r.paste_id for r in Journal(tmp_path / "j").read()] == ["kept"]


def _lingering(path: Path) -> Store:
    store = Store(path)
    store.writer.linger = 30.0  # nothing is committed unless something asks for it
    return store


def test_acknowledged_pastes_are_committed_after_a_crash(tmp_path):
    repo = tmp_path / "repo.git"

    async def crash() -> list[str]:
        store = _lingering(repo)
        store.start()
        ids = [await store.add(f"paste {i}".encode(), "Ann" if i == 2 else None)
               for i in range(5)]
        assert store.head is None and all(store.get(i) is not None for i in ids)
        return ids  # the loop ends: no stop(), no commit, as after kill -9

    ids = asyncio.run(crash())

    async def restart() -> Store:
        store = Store(repo)
        assert [store.get(i) for i in ids] == [f"paste {i}".encode() for i in range(5)]
        store.start()
        await store.flush()
        await store.stop()
        return store

    store = asyncio.run(restart())
    tree = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "main"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert sorted(tree) == sorted(shard_path(i) for i in ids)
    authors = subprocess.run(["git", "-C", str(repo), "log", "--format=%an"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert "Ann" in authors
    assert Journal(repo / JOURNAL_FILE).read() == []  # checkpointed
    assert store.commits >= 1


def test_a_commit_without_its_checkpoint_is_not_made_twice(tmp_path):
    repo = tmp_path / "repo.git"

    async def crash_before_checkpoint() -> tuple[str, str]:
        store = Store(repo)
        assert store.journal is not None
        store.journal.checkpoint = lambda seq: None  # type: ignore[method-assign]
        store.start()
        pid = await store.add(b"committed, not checkpointed")
        await store.flush()
        return pid, str(store.head)

    pid, head = asyncio.run(crash_before_checkpoint())
    assert len(Journal(repo / JOURNAL_FILE).read()) == 1

    async def restart() -> str:
        store = Store(repo)
        store.start()
        await store.flush()
        await store.stop()
        return str(store.head)

    assert asyncio.run(restart()) == head  # nothing new committed
    assert Journal(repo / JOURNAL_FILE).read() == []


def test_a_paste_removed_before_its_commit_stays_removed(tmp_path):
    repo = tmp_path / "repo.git"

    async def main() -> str:
        store = _lingering(repo)
        store.start()
        pid = await store.add(b"short-lived")
        await store.remove([pid], "Delete")  # commits the add first, then removes
        assert store.get(pid) is None
        return pid  # no stop(): a crash

    pid = asyncio.run(main())
    store = Store(repo)
    assert store.get(pid) is None and store.uncommitted == 0


def test_without_room_for_a_journal_creates_wait_for_their_commit(tmp_path, monkeypatch):
    def no_room(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.posix_fallocate", no_room)

    async def main() -> tuple[Store, str]:
        store = Store(tmp_path / "repo.git")
        assert store.journal is None
        store.start()
        pid = await store.add(b"committed at once")
        head = store.head
        await store.stop()
        assert head is not None
        return store, pid

    store, pid = asyncio.run(main())
    assert store.get(pid) == b"committed at once"
    assert not (tmp_path / "repo.git" / JOURNAL_FILE).exists()


def test_a_large_group_after_everything_was_committed_is_found_again(tmp_path):
    """Nothing uncommitted and no room at the end: the records start over at
    the start, the header moved there first (a wrap marker could be
    overwritten by the group itself)."""
    j = Journal(tmp_path / "j", size=HEADER + 10000)
    j.checkpoint(j.append([("a", None, None, b"x" * 3000)])[-1])
    acked = j.append([(f"b{i}", None, None, b"y" * 1500) for i in range(5)])
    crash = tmp_path / "crash"
    crash.write_bytes((tmp_path / "j").read_bytes())  # kill -9 now
    assert [r.seq for r in Journal(crash).read()] == acked


def test_scrub_of_a_wrapped_ring_leaves_no_committed_record(tmp_path):
    j = Journal(tmp_path / "j", size=HEADER + 4000)

    def put(name: str, n: int, fill: bytes = b".") -> int:
        return j.append([(name, None, None, fill * n)])[-1]

    for k in range(3):
        j.checkpoint(put(f"r{k}", 1000))
    j.checkpoint(put("secret", 40, b"SECRET-TO-ERASE!"))
    j.checkpoint(put("f0", 1000))  # wraps, all committed
    j.checkpoint(put("f1", 960))
    put("f2", 950)  # uncommitted, at the end of the lap
    put("f3", 1000)  # wraps over committed records: f2 and f3 live on both sides
    j.scrub()
    assert b"SECRET-TO-ERASE!" not in (tmp_path / "j").read_bytes()
    assert [r.paste_id for r in Journal(tmp_path / "j").read()] == ["f2", "f3"]


def test_a_failed_append_leaves_no_header_pointing_at_it(tmp_path, monkeypatch):
    """A checkpoint runs while an append is being written and moves the header
    onto it; the append fails; the next one, acknowledged, is found again."""
    import pasteur.storage.journal as journal

    j = Journal(tmp_path / "j", size=HEADER + 4000)
    j.checkpoint(j.append([("c1", None, None, b"." * 2000)])[-1])
    c2 = j.append([("c2", None, None, b"." * 1000)])[-1]
    real_pwrite, real_sync = os.pwrite, os.fdatasync
    state = {"step": 0}

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if state["step"] == 0 and offset != 0:
            state["step"] = -1
            j.checkpoint(c2)  # the writer thread, meanwhile
            state["step"] = 1
        return real_pwrite(fd, data, offset)

    def fdatasync(fd: int) -> None:
        if state["step"] == 1:
            state["step"] = 2
            raise OSError(5, "Input/output error")
        real_sync(fd)

    monkeypatch.setattr(journal.os, "pwrite", pwrite)
    monkeypatch.setattr(journal.os, "fdatasync", fdatasync)
    with pytest.raises(OSError):
        j.append([("failed", None, None, b"a" * 1500)])  # wraps
    monkeypatch.setattr(journal.os, "pwrite", real_pwrite)
    monkeypatch.setattr(journal.os, "fdatasync", real_sync)
    acked = j.append([("acked", None, None, b"b" * 500)])
    crash = tmp_path / "crash"
    crash.write_bytes((tmp_path / "j").read_bytes())
    assert [(r.seq, r.paste_id) for r in Journal(crash).read()] == [(acked[0], "acked")]


def test_a_corrupt_journal_stops_the_start(tmp_path):
    from pasteur.storage.errors import StoreError

    store = Store(tmp_path / "repo.git")
    assert store.journal is not None
    store.journal.close()
    with open(tmp_path / "repo.git" / JOURNAL_FILE, "r+b") as f:
        f.write(b"garbage!")
    with pytest.raises(StoreError, match="Move it away"):
        Store(tmp_path / "repo.git")


def test_large_creates_together_and_a_stop_during_an_append(tmp_path):
    """Seventeen 1 MiB creates at once go in several groups (one would not fit
    the 16 MiB ring); a stop waits for the group being written."""
    import time

    async def main() -> None:
        store = Store(tmp_path / "repo.git")
        store.start()
        ids = await asyncio.gather(*[store.add(bytes([65 + i]) * 1_000_000) for i in range(17)])
        assert len(set(ids)) == 17
        assert store.journal is not None
        real = store.journal.append

        def slow(items: list) -> list[int]:
            time.sleep(0.3)
            return real(items)

        store.journal.append = slow  # type: ignore[method-assign]
        late = asyncio.ensure_future(store.add(b"acknowledged while stopping"))
        await asyncio.sleep(0.05)
        await store.stop()
        assert late.done() and store.get(late.result()) == b"acknowledged while stopping"

    asyncio.run(main())
    assert Journal(tmp_path / "repo.git" / JOURNAL_FILE).read() == []


def test_a_journaled_id_taken_by_a_synced_paste_keeps_it_loudly(tmp_path, capfd):
    """Only a writer outside the id namespaces can add an id of ours (a push
    by hand): the acknowledged paste keeps its id, never renamed; the other
    is named in the log and stays in history."""
    from pasteur.storage.repository import Change

    async def main() -> str:
        store = _lingering(tmp_path / "repo.git")
        store.start()
        pid = await store.add(b"mine, acknowledged")
        theirs: list[pygit2.Oid] = []

        def remote() -> None:  # what a sync brings meanwhile
            oid = store.repo.create_blob(b"the remote's paste")
            theirs.append(oid)
            store.apply([Change([(pid, oid)], [], None, "sync")])

        await store.run_in_writer(remote)
        await store.flush()
        assert store.get(pid) == b"mine, acknowledged"
        assert pid not in store.idbook.journaled and pid not in store.idbook.reserved
        assert [i for i in store.ids() if i.startswith(pid)] == [pid]  # no <id><6 hex>
        assert store.repo[theirs[0]].data == b"the remote's paste"  # kept in history
        await store.stop()
        return str(theirs[0])

    blob = asyncio.run(main())
    err = capfd.readouterr().err  # logged by the committer process, on its stderr
    assert "paste id collision" in err and blob in err, err


class _Disk:
    """The journal's file as a disk would keep it: writes reach the durable
    image at an fdatasync; at a crash, any subset of the writes since the last
    one may have reached it too (each write whole or not at all)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, journal_module: object) -> None:
        self.durable = bytearray()
        self.pending: list[tuple[int, bytes]] = []
        self.before_sync: Callable[[], None] | None = None
        self.real_pwrite, self.real_sync = os.pwrite, os.fdatasync
        monkeypatch.setattr(journal_module.os, "pwrite", self.pwrite)  # type: ignore[attr-defined]
        monkeypatch.setattr(journal_module.os, "fdatasync", self.sync)  # type: ignore[attr-defined]

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self.pending.append((offset, bytes(data)))
        return self.real_pwrite(fd, data, offset)

    def sync(self, fd: int) -> None:
        if self.before_sync is not None:
            self.before_sync()  # a crash now, with part of the pending writes
        self.real_sync(fd)
        for offset, data in self.pending:
            self._apply(self.durable, offset, data)
        self.pending.clear()

    @staticmethod
    def _apply(image: bytearray, offset: int, data: bytes) -> None:
        if len(image) < offset + len(data):
            image.extend(bytes(offset + len(data) - len(image)))
        image[offset:offset + len(data)] = data

    def crash_image(self, rng: object, size: int) -> bytes:
        image = bytearray(self.durable)
        for offset, data in self.pending:
            if rng.random() < 0.5:  # type: ignore[attr-defined]
                self._apply(image, offset, data)
        image.extend(bytes(max(0, size - len(image))))
        return bytes(image)


@pytest.mark.parametrize("seed", range(8))
def test_a_crash_at_any_point_keeps_every_acknowledged_record(tmp_path, monkeypatch, seed):
    """Random groups, a checkpoint lagging behind, wraps; after every step, a
    crash image (with any subset of the unsynced writes) must give back every
    acknowledged record whose commit was not checkpointed durably."""
    import random

    import pasteur.storage.journal as journal

    rng = random.Random(seed)
    size = HEADER + 6000

    def check(step: int) -> None:
        image = tmp_path / "crash"
        image.write_bytes(disk.crash_image(rng, size))
        after = Journal(image)
        got = {r.seq: r.paste_id for r in after.read()}
        after.close()
        for seq in acked:  # acknowledged, not committed as far as the disk knows
            if seq > after.committed:
                assert got.get(seq) == names[seq], (step, seq, sorted(got))

    Journal(tmp_path / "j", size=size).close()
    disk = _Disk(monkeypatch, journal)
    disk.durable = bytearray((tmp_path / "j").read_bytes())
    j = Journal(tmp_path / "j")
    disk.before_sync = lambda: check(-1)
    acked: list[int] = []
    in_flight: tuple[int, int] | None = None
    names: dict[int, str] = {}
    for step in range(150):
        if rng.random() < 0.6 or not acked:
            items = [(f"s{step}n{k}", None, None, b"." * rng.randrange(10, 700))
                     for k in range(rng.randrange(1, 4))]
            need = sum(record_size(*it) for it in items)
            if not j.fits(need):
                continue  # full: it would wait for a checkpoint
            seqs = j.append(items)
            acked += seqs
            names.update({s: it[0] for s, it in zip(seqs, items, strict=True)})
        elif in_flight and rng.random() < 0.5:  # a checkpoint's fdatasync returns
            disk.sync(j.fd)
            j.end_checkpoint(*in_flight)
            in_flight = None
        else:
            upto = rng.choice(acked[-6:])  # the writer lags a little
            if upto > j.committed and in_flight is None:
                # checkpoint() up to its fdatasync, which is still in flight
                in_flight = j.begin_checkpoint(upto)
        check(step)


def _paste_id(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    return answer.text.strip().rsplit("/", 1)[1]


def test_a_record_whose_fdatasync_failed_never_comes_back_after_a_crash(
        server_factory, faults: Faults):
    """Its bytes reached the file (the page cache) but not surely the disk,
    and the client was told nothing was saved: they are zeroed and synced
    before that answer, so no crash brings the paste back at the replay."""
    server = server_factory("--rate-limit", "off", env=faults.env)
    kept = _paste_id(httpx.post(server.url + "/", content=b"kept before the fault"))
    faults.fail("fdatasync", JOURNAL_FILE, once=True)
    refused = httpx.post(server.url + "/", content=b"REFUSED-PASTE " * 20)
    assert faults.fired("fdatasync")
    assert refused.status_code == 503 and "nothing was saved" in refused.text
    server.stop(signal.SIGKILL)  # the file stays as the kernel has it
    assert b"REFUSED-PASTE" not in (server.repo / JOURNAL_FILE).read_bytes()
    server.start()
    assert httpx.get(f"{server.url}/{kept}?raw=true").text == "kept before the fault"
    server.settle()
    found = subprocess.run(["git", "-C", str(server.repo), "grep", "-c", "REFUSED-PASTE",
                            "main"], capture_output=True, text=True)
    assert found.returncode == 1, found.stdout  # in no committed paste
    # and the journal goes on: a new create is kept
    after = _paste_id(httpx.post(server.url + "/", content=b"after the crash"))
    assert httpx.get(f"{server.url}/{after}?raw=true").text == "after the crash"


def test_a_full_journal_answers_503_with_retry_after_and_recovers(server_factory):
    """The committer stopped (SIGSTOP): acknowledged pastes fill the 16 MiB
    ring; then a create waits a moment for room and gets 503 with
    Retry-After, nothing stored. Once the committer runs again, creates go
    through by themselves and every acknowledged paste is committed."""
    from tests.web.test_health import committer_pid

    server = server_factory("--rate-limit", "off")
    _paste_id(httpx.post(server.url + "/", content=b"first"))
    server.settle()
    committer = committer_pid(server)
    acked: dict[str, bytes] = {}
    os.kill(committer, signal.SIGSTOP)
    try:
        for i in range(60):  # 700 kB each: ~23 fill the ring
            body = f"{i:04d}".encode() * 175_000
            answer = httpx.post(server.url + "/", content=body, timeout=30)
            if answer.status_code != 201:
                break
            acked[_paste_id(answer)] = body
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "2"
        assert "journal is full" in answer.text and "nothing was saved" in answer.text
        assert len(acked) >= 16
        some = next(iter(acked))
        assert httpx.get(f"{server.url}/{some}?raw=true").content == acked[some]
    finally:
        os.kill(committer, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while (answer := httpx.post(server.url + "/", content=b"after", timeout=30)).status_code \
            != 201:
        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    acked[_paste_id(answer)] = b"after"
    server.settle()
    tree = server.git("ls-tree", "-r", "--name-only", "main").split()
    assert {shard_path(i) for i in acked} <= set(tree)
    assert all(httpx.get(f"{server.url}/{i}?raw=true").content == body
               for i, body in acked.items())
