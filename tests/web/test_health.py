"""/healthz tells the truth: 503 and the reasons when commits fail, the backlog
stalls, the journal cannot be written or sync is stuck; 200 again once the
cause is gone, by itself. Real servers; faults from the LD_PRELOAD shim
(fixtures_faults.py) and a stopped committer process (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from pasteur.storage.layout import JOURNAL_FILE
from pasteur.storage.objects import shard_path
from pasteur.storage.store import BACKLOG_STALL

if TYPE_CHECKING:
    from tests.conftest import Server
    from tests.fixtures_faults import Faults
    from tests.fixtures_git import GitDaemon, Instance

pytest_plugins = ["tests.fixtures_faults", "tests.fixtures_git"]
pytestmark = pytest.mark.timeout(120)


def health(url: str) -> tuple[int, dict]:
    r = httpx.get(url + "/healthz", timeout=10)
    return r.status_code, r.json()


def wait_health(url: str, ok: bool, timeout: float = 30) -> dict:
    """Poll /healthz until it answers 200 (``ok``) or 503; its body."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = health(url)
        if code == (200 if ok else 503):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz still {code} after {timeout} s: {body}")
        time.sleep(0.1)


def create(url: str, text: bytes) -> httpx.Response:
    return httpx.post(url + "/", content=text, timeout=30)


def paste_id(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    return answer.text.strip().rsplit("/", 1)[1]


def committer_pid(server: Server) -> int:
    """The server's committer process (started by its first commit)."""
    assert server.proc is not None
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"pasteur.storage.committer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    raise AssertionError("no committer process")


def test_all_is_well_answers_200_with_the_figures(server: Server) -> None:
    paste_id(create(server.url, b"fine"))
    server.settle()
    code, body = health(server.url)
    assert code == 200
    assert body["status"] == "ok" and body["problems"] == []
    assert body["pastes"] == 1 and body["uncommitted"] == 0 and body["backlog_s"] == 0


def test_failing_commits_give_503_until_one_goes_through(
        server_factory: Callable[..., Server], faults: Faults) -> None:
    server = server_factory(env=faults.env)
    paste_id(create(server.url, b"before"))
    server.settle()
    faults.fail("fsync", "/objects/pack/")  # every commit's pack cannot be made durable
    acked = paste_id(create(server.url, b"acknowledged, its commit fails"))
    body = wait_health(server.url, ok=False)
    assert body["status"] == "failing"
    assert any(p.startswith("commits have failed") for p in body["problems"]), body
    assert body["uncommitted"] == 1
    faults.clear("fsync")
    body = wait_health(server.url, ok=True)  # retried every second: committed
    assert body["problems"] == [] and body["uncommitted"] == 0
    assert shard_path(acked) in server.git("ls-tree", "-r", "--name-only", "main")


def test_a_stalled_committer_gives_503_after_a_few_seconds(server: Server) -> None:
    paste_id(create(server.url, b"first"))
    server.settle()
    committer = committer_pid(server)
    os.kill(committer, signal.SIGSTOP)
    try:
        waiting = paste_id(create(server.url, b"acknowledged, not committed"))
        assert health(server.url)[0] == 200  # a backlog of a moment is no problem
        time.sleep(BACKLOG_STALL + 0.5)
        code, body = health(server.url)
        assert code == 503, body
        assert body["uncommitted"] == 1 and body["backlog_s"] > BACKLOG_STALL
        assert any("waited" in p and "for its commit" in p for p in body["problems"]), body
        # still served from the journal meanwhile
        assert httpx.get(f"{server.url}/{waiting}?raw=true").text == "acknowledged, not committed"
    finally:
        os.kill(committer, signal.SIGCONT)
    body = wait_health(server.url, ok=True)
    assert body["uncommitted"] == 0 and body["problems"] == []


def test_a_journal_that_cannot_be_written_gives_503_until_the_disk_is_back(
        server_factory: Callable[..., Server], faults: Faults) -> None:
    server = server_factory(env=faults.env)
    kept = paste_id(create(server.url, b"kept"))
    faults.fail("fdatasync", JOURNAL_FILE)
    refused = create(server.url, b"REFUSED-WHILE-FAILING")
    assert refused.status_code == 503 and "nothing was saved" in refused.text
    code, body = health(server.url)
    assert code == 503
    assert any(p.startswith("the journal cannot be written") for p in body["problems"]), body
    assert health(server.url)[0] == 503  # each probe fails while the disk does
    faults.clear("fdatasync")
    # no create needed: /healthz probes the journal again
    assert wait_health(server.url, ok=True)["problems"] == []
    # the refused record was zeroed (durably once fdatasync works again)
    assert b"REFUSED-WHILE-FAILING" not in (server.repo / JOURNAL_FILE).read_bytes()
    after = paste_id(create(server.url, b"after"))
    assert httpx.get(f"{server.url}/{after}?raw=true").text == "after"
    assert httpx.get(f"{server.url}/{kept}?raw=true").text == "kept"


def test_sync_stuck_gives_503_and_recovers_when_the_remote_is_back(
        git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path) -> None:
    from tests.fixtures_git import bare_remote, remote_ids, start_pasteur, stop

    bare = bare_remote(git_daemon.base / "h.git", first_commit=True)
    first = start_pasteur(tmp_path / "a", "-r", git_daemon.url("h.git"))  # claims its id namespace
    first.close()
    stop(first.proc)
    git_daemon.stop()
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("h.git"), "--sync-interval", "0",
                      "--sync-stuck-after", "2")
    pasteurs.append(a)
    url = a.base
    assert health(url)[0] == 200  # unreachable at start: not stuck yet
    pid = a.paste("while the remote is down")
    body = wait_health(url, ok=False, timeout=30)
    sync = body["sync"]
    assert sync["stuck"] and sync["failures"] >= 2 and sync["failing_s"] >= 2, sync
    assert any(p.startswith("sync has failed") for p in body["problems"]), body
    git_daemon.start()
    body = wait_health(url, ok=True, timeout=60)  # the next retry pushes
    assert not body["sync"]["stuck"] and body["sync"]["failures"] == 0
    assert pid in remote_ids(bare)
