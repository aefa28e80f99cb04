"""Ids never collide across instances sharing a remote (issue 14, item 5).

Each instance claims a one-character namespace on the remote and ends its
ids with it; the original's root-level pastes count as taken.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2
import pytest

from pasteur.storage.errors import StoreError
from pasteur.storage.store import Store

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
    GitDaemon,
    Instance,
    bare_remote,
    git,
    remote_ids,
    start_pasteur,
)

if TYPE_CHECKING:
    from tests.fixtures_faults import Faults

pytest_plugins = ["tests.fixtures_faults", "tests.fixtures_git"]
pytestmark = pytest.mark.timeout(300)


def wait_until(what: str, check, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def test_root_level_blobs_of_the_original_are_taken(tmp_path: Path) -> None:
    """Every two-character id of namespace Z is a root-level blob: the picker grows."""
    store = Store(tmp_path / "r.git", id_length=2, journal=False)
    repo = store.repo
    builder = repo.TreeBuilder()
    legacy = [f"{c}Z" for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]
    for pid in legacy:
        builder.insert(pid, repo.create_blob(b'{ "contents": "old" }'), pygit2.GIT_FILEMODE_BLOB)
    sig = pygit2.Signature("Git KV", "git-noreply@robur.coop", 0, 0)
    store.reset_to(repo.create_commit(None, sig, sig, "Committed by git-kv",
                                      builder.write(), []))
    store.idbook.namespace = "Z"
    picked = {store.idbook.new_id() for _ in range(200)}
    assert all(len(p) >= 3 and p.endswith("Z") for p in picked)
    assert all(store.idbook.taken(p) for p in legacy)
    store.idbook.namespace = None
    store.idbook.shared = True  # a remote, no namespace claimed yet: no id
    with pytest.raises(StoreError, match="namespace"):
        store.idbook.new_id()
    store.close()


def _create(inst: Instance, text: str) -> str:
    r = inst.client().post("/", files={"paste": (None, text.encode())},
                           headers={"accept": "application/json"})
    r.raise_for_status()
    return r.json()["code"]


def test_two_instances_400_pastes_length_2_no_collision(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare = bare_remote(git_daemon.base / "n.git", first_commit=True)
    url = git_daemon.url("n.git")
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "1", "--length", "2",
                       "--rate-limit", "off")
    b = start_pasteur(tmp_path / "b", "-r", url, "--sync-interval", "1", "--length", "2",
                       "--rate-limit", "off")
    pasteurs += [a, b]
    texts = [f"{n} {i}" for i in range(200) for n in "ab"]  # 400 pastes, at once

    def create(text: str) -> tuple[str, str]:
        return _create(a if text[0] == "a" else b, text), text

    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(create, texts))
    ids = [pid for pid, _ in made]
    assert len(set(ids)) == 400
    ends = {name: {pid[-1] for pid, t in made if t[0] == name} for name in "ab"}
    assert len(ends["a"]) == 1 and len(ends["b"]) == 1 and ends["a"] != ends["b"]
    wait_until("every paste on the remote", lambda: set(ids) <= set(remote_ids(bare)), 90)
    # each acknowledged URL serves its own paste, on the remote and on both instances
    for pid, text in made:
        doc = json.loads(git("-C", bare, "cat-file", "-p", f"main:{pid[0]}/{pid[1]}/{pid}"))
        assert doc["text"] == text, pid
    claims = git("-C", bare, "for-each-ref", "--format=%(refname)", "refs/pasteur/ids/")
    assert sorted(claims.split()) == sorted(f"refs/pasteur/ids/{next(iter(ends[n]))}"
                                            for n in "ab")
    for inst in (a, b):
        wait_until(f"every paste on {inst.base}", lambda inst=inst: all(
            inst.get(p) == 200 for p in ids), 60)
        got = {pid: inst.client().get(f"/{pid}", params={"raw": "true"}).text for pid in ids}
        assert got == dict(made)


def test_a_namespace_survives_kill_and_waits_for_the_remote(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    """kill -9 keeps the claim; a first start with the remote down refuses
    creates (503) until the namespace is claimed."""
    bare_remote(git_daemon.base / "k.git", first_commit=True)
    url = git_daemon.url("k.git")
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "1")
    pasteurs.append(a)
    first = _create(a, "one")
    a.proc.kill()
    a.proc.wait()
    a2 = start_pasteur(a.data, "-r", url, "--sync-interval", "1")
    pasteurs.append(a2)
    assert _create(a2, "two")[-1] == first[-1]  # the same namespace
    git_daemon.stop()
    c = start_pasteur(tmp_path / "c", "-r", url, "--sync-interval", "1")
    pasteurs.append(c)
    r = c.client().post("/", files={"paste": (None, b"x")}, headers={"accept": "application/json"})
    assert r.status_code == 503 and "namespace" in r.text, r.text
    git_daemon.start()

    def created() -> bool:
        r = c.client().post("/", files={"paste": (None, b"y")},
                            headers={"accept": "application/json"})
        return r.status_code == 201 and r.json()["code"][-1] != first[-1]

    wait_until("a namespace for C", created, 60)


def test_a_journaled_id_pushed_by_hand_meanwhile_keeps_the_clients_paste(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path, faults: Faults
) -> None:
    """Only a writer outside the namespaces can add an id of ours: if it does
    while the paste is journaled and not yet committed, the acknowledged URL
    still serves the client's paste (never renamed), and the log says so."""
    bare = bare_remote(git_daemon.base / "h.git", first_commit=True)
    url = git_daemon.url("h.git")
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "0", env=faults.env)
    pasteurs.append(a)
    first = a.paste("first")
    wait_until("pushed", lambda: first in remote_ids(bare), 30)
    faults.fail("fsync", "tmp_pasteur-")  # commits fail: the next paste stays journaled
    r = a.client().post("/", content=b"mine, acknowledged")
    assert r.status_code == 201, r.text
    pid = r.text.strip().rsplit("/", 1)[1]
    # a push by hand adds the same id with other content
    work = tmp_path / "hand"
    git("clone", "-q", bare, work)
    (work / pid[0] / pid[1]).mkdir(parents=True, exist_ok=True)
    (work / pid[0] / pid[1] / pid).write_text("pushed by hand")
    git("-C", work, "add", "-A")
    git("-C", work, "commit", "-qm", "by hand")
    git("-C", work, "push", "-q", "origin", "HEAD:main")
    # a miss for another id makes A fetch and integrate it
    assert a.get("Zz9z") == 404
    wait_until("fetched", lambda: a.health()["sync"]["miss_fetches"] >= 1, 30)
    assert a.client().get(f"/{pid}", params={"raw": "true"}).text == "mine, acknowledged"
    faults.clear("fsync")
    wait_until("committed and pushed", lambda: a.health()["uncommitted"] == 0
               and a.health()["sync"]["pending"] == 0, 60)
    assert a.client().get(f"/{pid}", params={"raw": "true"}).text == "mine, acknowledged"
    on_remote = git("-C", bare, "show", f"main:{pid[0]}/{pid[1]}/{pid}")
    assert "mine, acknowledged" in on_remote and "pushed by hand" not in on_remote
    assert [i for i in remote_ids(bare) if i.startswith(pid)] == [pid]  # nothing renamed
    assert "paste id collision" in a.output() and pid in a.output()
