"""Storage: durability across restarts, authorship, and a clean repository under load."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx

from pasteur.storage.objects import shard_path


def test_restart_keeps_pastes(server):
    ids = []
    for i in range(5):
        r = httpx.post(server.url + "/", content=f"paste {i}".encode())
        ids.append(r.text.strip().rsplit("/", 1)[1])
    server.restart()
    for i, pid in enumerate(ids):
        r = httpx.get(f"{server.url}/{pid}?raw=true")
        assert r.status_code == 200 and r.text == f"paste {i}"


def test_user_and_comment_become_author_and_message(server):
    r = httpx.post(server.url + "/", files={
        "paste": (None, "authored"), "user": (None, "Ada Lovelace <ada@example.org>"),
        "comment": (None, "First program\n\nFor the analytical engine."),
    })
    pid = r.text.strip().rsplit("/", 1)[1]
    r = httpx.post(server.url + "/", files={"paste": (None, "by name"), "user": (None, "bob")})
    log = server.git("log", "--format=%an|%ae|%s|%b", "-2")
    first, second = log.strip().split("\n", 1)
    assert first.startswith("bob|")
    assert "Ada Lovelace|ada@example.org|First program|For the analytical engine." in second
    files = server.git("show", "--name-only", "--format=", "HEAD~1").split()
    assert files == [shard_path(pid)]
    # anonymous pastes have a neutral author and a message naming them
    r = httpx.post(server.url + "/", content=b"anon")
    assert server.git("log", "-1", "--format=%an %s").startswith("Pasteur Add paste")


def test_concurrent_burst_then_fsck(server_factory):
    server = server_factory("--rate-limit", "off")

    async def burst() -> list[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                     limits=httpx.Limits(max_connections=64)) as c:
            rs = await asyncio.gather(*[
                c.post("/", files={"paste": (None, f"burst {i}")}) for i in range(200)
            ])
        assert all(r.status_code == 201 for r in rs)
        return [r.text.strip().rsplit("/", 1)[1] for r in rs]

    ids = asyncio.run(burst())
    assert len(set(ids)) == 200
    server.settle()
    subprocess.run(["git", "-C", str(server.repo), "fsck", "--strict", "--no-dangling"],
                   check=True, capture_output=True)
    listed = server.git("ls-tree", "-r", "--name-only", "HEAD").split()
    assert {shard_path(i) for i in ids} <= set(listed)
    # group commit: fewer commits than pastes, history linear
    commits = int(server.git("rev-list", "--count", "HEAD"))
    merges = server.git("rev-list", "--merges", "HEAD").strip()
    assert commits < 200 and merges == ""
    for i, pid in enumerate(ids[:20]):
        doc = json.loads(server.git("cat-file", "-p", f"HEAD:{shard_path(pid)}"))
        assert doc["text"] == f"burst {i}"
