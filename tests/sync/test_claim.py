"""One reader per burn paste across instances sharing a remote (issue 14, item 4).

A read of a burn paste claims it on the remote first (its removal pushed with
a lease on the remote head just fetched); only the winner serves it, the
other instance answers 410, and with the remote down the read is refused (503).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
    GitDaemon,
    Instance,
    bare_remote,
    remote_ids,
    start_pasteur,
)

pytest_plugins = ["tests.fixtures_git"]
pytestmark = pytest.mark.timeout(240)


def wait_until(what: str, check, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def burn_paste(inst: Instance, text: str) -> str:
    r = inst.client().post("/", files={"paste": (None, text.encode()), "burn": (None, "true")},
                           headers={"accept": "application/json"})
    r.raise_for_status()
    return r.json()["code"]


def peek(inst: Instance, pid: str) -> int:
    """GET as a stranger (the instance's shared client holds the creator's cookie)."""
    with httpx.Client(base_url=inst.base, timeout=60) as anon:
        return anon.get(f"/{pid}", params={"raw": "true"}).status_code


def read(inst: Instance, pid: str) -> httpx.Response:
    with httpx.Client(base_url=inst.base, timeout=60) as anon:  # not the creator
        return anon.post(f"/{pid}/read", params={"raw": "true"})


@pytest.mark.parametrize("n", [2, 3])
def test_a_burn_paste_has_one_reader_across_instances(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path, n: int
) -> None:
    bare = bare_remote(git_daemon.base / "b.git", first_commit=True)
    url = git_daemon.url("b.git")
    insts = [start_pasteur(tmp_path / f"i{k}", "-r", url, "--sync-interval", "1")
             for k in range(n)]
    pasteurs += insts
    pids = [burn_paste(insts[k % n], f"secret {k}") for k in range(6)]
    wait_until("the burn pastes on the remote", lambda: set(pids) <= set(remote_ids(bare)), 30)
    for inst in insts:  # every instance holds them (a GET asks to POST: 409)
        wait_until(f"the pastes on {inst.base}",
                   lambda inst=inst: all(peek(inst, p) == 409 for p in pids), 30)
    lost: list[httpx.Response] = []
    for k, pid in enumerate(pids):
        barrier = threading.Barrier(n)

        def race(inst: Instance, pid: str = pid, barrier: threading.Barrier = barrier
                 ) -> httpx.Response:
            barrier.wait()
            return read(inst, pid)

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(race, insts))
        codes = [r.status_code for r in answers]
        # one reader; the others lost the claim (410), or their poll brought
        # the winner's removal before their read looked (404)
        assert codes.count(200) == 1 and set(codes) <= {200, 404, 410}, (
            pid, [(r.status_code, r.text[:200]) for r in answers])
        served = next(r for r in answers if r.status_code == 200)
        assert served.text == f"secret {k}"
        lost.extend(r for r in answers if r.status_code == 410)
    assert lost and all("already read" in r.text for r in lost)
    # read again anywhere: gone
    for inst in insts:
        assert all(read(inst, p).status_code in (404, 410) for p in pids)
    wait_until("the burns on the remote", lambda: not set(pids) & set(remote_ids(bare)), 30)


def test_a_burn_read_is_refused_while_the_remote_is_down(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare = bare_remote(git_daemon.base / "d.git", first_commit=True)
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("d.git"), "--sync-interval", "1")
    pasteurs.append(a)
    pid = burn_paste(a, "kept for one reader")
    wait_until("the paste on the remote", lambda: pid in remote_ids(bare), 30)
    git_daemon.stop()
    r = read(a, pid)
    assert r.status_code == 503 and "unreachable" in r.text, r.text
    assert "kept for one reader" not in r.text
    assert peek(a, pid) == 409  # not burned: still there for its one reader
    git_daemon.start()
    r = read(a, pid)
    assert r.status_code == 200 and r.text == "kept for one reader", r.text
    assert read(a, pid).status_code in (404, 410)
    wait_until("the burn on the remote", lambda: pid not in remote_ids(bare), 30)


def test_an_instance_killed_after_its_claim_keeps_the_paste_burned(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    """kill -9 right after a winning read: the other instance never serves it,
    and the restarted instance does not either."""
    bare = bare_remote(git_daemon.base / "k.git", first_commit=True)
    url = git_daemon.url("k.git")
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "1")
    b = start_pasteur(tmp_path / "b", "-r", url, "--sync-interval", "1")
    pasteurs += [a, b]
    pid = burn_paste(a, "once")
    wait_until("the paste on B", lambda: peek(b, pid) == 409, 30)
    assert read(a, pid).text == "once"
    a.proc.kill()
    a.proc.wait()
    assert read(b, pid).status_code in (404, 410)  # 404: its poll brought the removal
    a2 = start_pasteur(a.data, "-r", url, "--sync-interval", "1")
    pasteurs.append(a2)
    assert read(a2, pid).status_code in (404, 410)
    assert pid not in remote_ids(bare)
