"""Local remotes (a plain path or file://) under concurrent pushes (issue 14, item 3).

libgit2's local transport writes the remote's ref itself, with no compare-and-swap:
two instances pushing at once overwrote each other, and acknowledged pastes
vanished from the remote head until the loser noticed (4 of 8 trials). Pasteur
pushes to such remotes with ``git push``, whose receive-pack updates the ref under
its lock only if it still holds the old value: once a paste is on the remote head,
it stays there.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from pasteur.config import SyncSettings
from pasteur.sync.worker import TRACKING, SyncFailure, Worker

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
    GIT_ENV,
    Instance,
    bare_remote,
    git,
    remote_ids,
    start_pasteur,
)

pytest_plugins = ["tests.fixtures_git"]
pytestmark = pytest.mark.timeout(240)

LOAD_S = 8.0  # both instances create pastes at full speed this long
CLIENTS = 2  # creating threads per instance, each at most RATE creates/s
RATE = 5.0
CONVERGE_S = 90.0  # then every acknowledged paste must reach the remote within this


def _create_until(inst: Instance, stop: threading.Event, acked: list[str]) -> None:
    with httpx.Client(base_url=inst.base, timeout=30) as client:
        while not stop.is_set():
            text = f"{inst.port} {threading.get_ident()} {time.monotonic()}"
            r = client.post("/", files={"paste": (None, text.encode())},
                            headers={"accept": "application/json"})
            r.raise_for_status()
            acked.append(r.json()["code"])
            stop.wait(1 / RATE)


@pytest.mark.parametrize("kind", ["path", "file"])
def test_concurrent_pushes_to_a_local_remote_lose_nothing(
    tmp_path: Path, pasteurs: list[Instance], kind: str
) -> None:
    bare = bare_remote(tmp_path / "remote.git", first_commit=True)
    url = str(bare) if kind == "path" else f"file://{bare}"
    a, b = (start_pasteur(tmp_path / n, "-r", url, "--sync-interval", "1",
                          "--rate-limit", "off") for n in "ab")
    pasteurs.extend([a, b])
    acked: dict[str, list[str]] = {"a": [], "b": []}
    stop = threading.Event()
    threads = [threading.Thread(target=_create_until, args=(inst, stop, acked[name]))
               for name, inst in (("a", a), ("b", b)) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    seen: set[str] = set()  # ids that were once on the remote head
    vanished: dict[str, int] = {}  # id -> polls during which it was missing
    polls = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < LOAD_S:
            now = set(remote_ids(bare))
            polls += 1
            for gone in seen - now:
                vanished[gone] = vanished.get(gone, 0) + 1
            seen |= now
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    everything = set(acked["a"]) | set(acked["b"])
    deadline = time.monotonic() + CONVERGE_S
    while not everything <= set(remote_ids(bare)) and time.monotonic() < deadline:
        now = set(remote_ids(bare))
        for gone in seen - now:
            vanished[gone] = vanished.get(gone, 0) + 1
        seen |= now
        time.sleep(0.2)
    on_remote = set(remote_ids(bare))
    print(f"{kind}: {len(acked['a'])} + {len(acked['b'])} pastes acknowledged, "
          f"{polls} polls of the remote head, {len(vanished)} vanished, "
          f"{len(everything - on_remote)} missing at the end, "
          f"pushes a={a.health()['sync']['pushes']} b={b.health()['sync']['pushes']}")
    assert len(acked["a"]) > 20 and len(acked["b"]) > 20
    assert not vanished, f"{len(vanished)} pastes vanished from the remote head after landing"
    assert everything <= on_remote
    assert seen <= on_remote
    # history stays linear: no merge commit on the remote
    assert git("-C", bare, "rev-list", "--merges", "main").strip() == ""


# -- the worker's push, deterministically ------------------------------------------


def _git_in(stdin: str, *args: str | Path) -> str:
    return subprocess.run(["git", *map(str, args)], input=stdin, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


def _repo_with_commit(path: Path, parent: str | None, text: str) -> tuple[Path, str]:
    """A bare repository (as an instance's) holding a commit with one file on ``parent``."""
    if not path.exists():
        git("init", "-q", "--bare", path)
    blob = _git_in(text, "-C", path, "hash-object", "-w", "--stdin")
    tree = _git_in(f"100644 blob {blob}\t{text}\n", "-C", path, "mktree")
    args = ["-p", parent] if parent else []
    return path, git("-C", path, "commit-tree", tree, *args, "-m", text).strip()


def _worker(repo: Path, url: str) -> Worker:
    return Worker(str(repo), SyncSettings(url=url))


def _push(worker: Worker, oid: str, lease: str | None = None) -> str:
    try:
        worker.push(oid, lease)
    except SyncFailure as exc:
        return exc.kind
    return "ok"


def test_two_pushes_held_at_once_one_wins(tmp_path: Path) -> None:
    """Both receive-packs advertise the same head, then wait in a pre-receive hook
    until both are in: the second to swap the ref finds it moved and is rejected."""
    bare = bare_remote(tmp_path / "remote.git")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\ncat >/dev/null\nsleep 1\n")
    hook.chmod(0o755)
    _, base = _repo_with_commit(tmp_path / "seed.git", None, "base")
    git("-C", tmp_path / "seed.git", "push", "-q", bare, f"{base}:refs/heads/main")
    commits = {}
    for name in "ab":
        repo = tmp_path / f"{name}.git"
        git("init", "-q", "--bare", repo)
        git("-C", repo, "fetch", "-q", bare, "main")
        commits[name] = (repo, _repo_with_commit(repo, base, name)[1])
    results: dict[str, str] = {}

    def run(name: str) -> None:
        repo, oid = commits[name]
        results[name] = _push(_worker(repo, f"file://{bare}"), oid)

    threads = [threading.Thread(target=run, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["ok", "rejected"], results
    winner = next(n for n, r in results.items() if r == "ok")
    assert git("-C", bare, "rev-parse", "main").strip() == commits[winner][1]


@pytest.mark.parametrize("kind", ["path", "file"])
def test_forced_push_needs_its_lease(tmp_path: Path, kind: str) -> None:
    bare = bare_remote(tmp_path / "remote.git")
    url = str(bare) if kind == "path" else f"file://{bare}"
    repo, first = _repo_with_commit(tmp_path / "a.git", None, "first")
    worker = _worker(repo, url)
    assert _push(worker, first) == "ok"
    _, second = _repo_with_commit(repo, first, "second")
    assert _push(worker, second) == "ok"
    _, rewritten = _repo_with_commit(repo, first, "rewritten")
    assert _push(worker, rewritten) == "rejected"  # not a fast-forward
    assert _push(worker, rewritten, lease=first) == "rejected"  # stale lease
    assert git("-C", bare, "rev-parse", "main").strip() == second
    assert _push(worker, rewritten, lease=second) == "ok"
    assert git("-C", bare, "rev-parse", "main").strip() == rewritten
    assert git("-C", repo, "rev-parse", TRACKING.format(branch="main")).strip() == rewritten


def test_a_missing_local_remote_is_a_config_error(tmp_path: Path) -> None:
    repo, first = _repo_with_commit(tmp_path / "a.git", None, "first")
    assert _push(_worker(repo, str(tmp_path / "nowhere.git")), first) == "config"
