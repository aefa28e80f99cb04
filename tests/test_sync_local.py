"""Local remotes (a plain path or file://) under concurrent pushes (issue 14, item 3).

libgit2's local transport writes the remote's ref itself, with no compare-and-swap:
two instances pushing at once overwrote each other, and acknowledged pastes
vanished from the remote head until the loser noticed (4 of 8 trials). Pasteur
pushes to such remotes with ``git push``, whose receive-pack updates the ref under
its lock only if it still holds the old value: once a paste is on the remote head,
it stays there.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
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
