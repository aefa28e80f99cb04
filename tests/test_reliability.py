"""Crashes, slow clients, floods and a failing disk: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pasteur.storage.objects import shard_path


def fsck(repo: Path) -> None:
    r = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kill_9_during_burst_loses_nothing_acknowledged(server_factory):
    server = server_factory("--rate-limit", "off")
    acknowledged: dict[str, str] = {}

    async def writer(client: httpx.AsyncClient, n: int) -> None:
        for i in range(10_000):
            text = f"writer {n} paste {i}"
            try:
                r = await client.post("/", files={"paste": (None, text)})
            except httpx.HTTPError:
                return
            if r.status_code == 201:
                acknowledged[r.text.strip().rsplit("/", 1)[1]] = text

    async def burst() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            tasks = [asyncio.create_task(writer(client, n)) for n in range(32)]
            await asyncio.sleep(1.5)
            server.proc.send_signal(signal.SIGKILL)
            await asyncio.gather(*tasks)

    asyncio.run(burst())
    server.proc.wait()
    assert len(acknowledged) > 50
    server.start()  # no manual repair
    server.settle()  # the journal's acknowledged pastes are committed
    fsck(server.repo)
    in_git = set(server.git("ls-tree", "-r", "--name-only", "HEAD").split())
    assert {shard_path(pid) for pid in acknowledged} <= in_git
    with httpx.Client(base_url=server.url) as c:
        for pid, text in acknowledged.items():
            r = c.get(f"/{pid}?raw=true")
            assert r.status_code == 200 and r.text == text, pid
        assert c.post("/", content=b"after the crash").status_code == 201


def test_silent_connections_are_closed(server_factory):
    server = server_factory("--header-timeout", "1")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    # others are served meanwhile
    assert httpx.get(server.url + "/healthz").status_code == 200
    time.sleep(1.6)
    for s in [*idle, slow]:
        s.settimeout(2)
        assert s.recv(1024) == b""  # closed by the server
        s.close()


def test_stalled_upload_gets_408(server_factory):
    server = server_factory("--body-timeout", "1")
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
    s.settimeout(5)
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408")
    assert httpx.get(server.url + "/healthz").json()["commits"] == 0


def test_rate_limit_answers_429(server_factory):
    server = server_factory("--rate-limit", "3/min")
    codes = [httpx.post(server.url + "/", content=b"x").status_code for _ in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    r = httpx.post(server.url + "/", content=b"x")
    assert int(r.headers["retry-after"]) >= 1 and "too many" in r.text
    assert httpx.get(server.url + "/").status_code == 200  # reads are not limited


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_gives_503_and_keeps_acknowledged(server_factory, small_disk):
    from tests.conftest import Server
    from tests.ports import free_port

    port = free_port()
    server = Server(url=f"http://127.0.0.1:{port}", port=port, data=small_disk / "data",
                    log_path=small_disk.parent / "full.log", args=["--rate-limit", "off"])
    server.start()
    try:
        first = httpx.post(server.url + "/", content=b"kept").text.strip().rsplit("/", 1)[1]
        filler = small_disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        codes = set()
        for i in range(20):
            r = httpx.post(server.url + "/", content=f"{i}".encode() * 20000)
            codes.add(r.status_code)
            if r.status_code == 503:
                assert "nothing was saved" in r.text
        assert 503 in codes
        assert httpx.get(f"{server.url}/{first}?raw=true").text == "kept"
        filler.unlink()
        r = httpx.post(server.url + "/", content=b"after")
        assert r.status_code == 201
        pid = r.text.strip().rsplit("/", 1)[1]
        assert httpx.get(f"{server.url}/{pid}?raw=true").text == "after"
        server.settle()
        fsck(server.repo)
    finally:
        server.stop()


def test_read_only_data_gives_503(server_factory, small_disk):
    from tests.conftest import Server
    from tests.ports import free_port

    port = free_port()
    server = Server(url=f"http://127.0.0.1:{port}", port=port, data=small_disk / "data",
                    log_path=small_disk.parent / "ro.log", args=[])
    server.start()
    try:
        first = httpx.post(server.url + "/", content=b"kept").text.strip().rsplit("/", 1)[1]
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        r = httpx.post(server.url + "/", content=b"refused")
        assert r.status_code == 503 and "nothing was saved" in r.text
        assert httpx.get(f"{server.url}/{first}?raw=true").text == "kept"
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        assert httpx.post(server.url + "/", content=b"again").status_code == 201
        assert shard_path(first) in server.git("ls-tree", "-r", "--name-only", "HEAD")
    finally:
        server.stop()


def test_a_second_server_on_the_same_data_is_refused(server_factory):
    server = server_factory()
    pid = httpx.post(server.url + "/", content=b"first").text.strip().rsplit("/", 1)[1]
    from tests.ports import free_port

    second = subprocess.run(
        [sys.executable, "-m", "pasteur", "serve", "--port", str(free_port()),
         "--data", str(server.data)],
        capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"another pasteur (pid {server.proc.pid})" in second.stderr
    assert httpx.get(f"{server.url}/{pid}?raw=true").text == "first"  # untouched


def test_a_response_head_leaves_with_its_body_and_100_continue_is_not_held(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.settimeout(5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")  # before the body is sent
        s.sendall(b"hello")
        # The final head is held after the interim 100 too: head and body leave
        # in one write, so the first read has both (a loop reading until the
        # body is complete would pass with two writes as well).
        answer = s.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
        assert head.startswith(b"HTTP/1.1 201") and length is not None
        assert len(body) == int(length.group(1)) and body.startswith(b"http://")
        # and a second request on the same connection
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        again = s.recv(4096)
        assert again.startswith(b"HTTP/1.1 200") and b'"status"' in again


def _exchange(port: int, request: bytes, wait: float = 1.5) -> bytes:
    """Everything the server sends back within ``wait`` seconds."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(wait)
        s.sendall(request)
        out = b""
        with contextlib.suppress(TimeoutError):
            while chunk := s.recv(4096):
                out += chunk
        return out


def test_head_requests_are_answered_on_a_kept_alive_connection(server):
    got = _exchange(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\n")
    both = _exchange(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert both.count(b"HTTP/1.1 200") == 2 and both.endswith(b"}")


def test_a_304_is_answered_on_a_kept_alive_connection(server):
    page = httpx.get(server.url + "/").text
    path = re.search(r'/static/[^"]+', page).group(0)
    etag = httpx.get(server.url + path, headers={"accept-encoding": "identity"}).headers["etag"]
    got = _exchange(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                 f"If-None-Match: {etag}\r\n\r\n".encode())
    assert got.startswith(b"HTTP/1.1 304")
