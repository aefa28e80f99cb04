"""Streaming upload: a huge body is refused early and memory stays flat."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time

import httpx
import pygit2


def rss_peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def stream_body(port: int, total: int, chunked: bool, close: bytes = b"",
                block: bytes = b"a" * (1 << 20)) -> bytes:
    """Send a multipart body of ``total`` bytes; return what the server answered."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(120)
    head = (
        "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        "Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
        + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n")
        + "\r\n"
    ).encode()
    answer = bytearray()

    def reader() -> None:
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
        except OSError:
            pass

    t = threading.Thread(target=reader)
    t.start()
    try:
        sock.sendall(head)
        part = b'--BOUNDARY\r\nContent-Disposition: form-data; name="paste"\r\n\r\n'
        sent = 0
        while sent < total:
            data = part + block if sent == 0 else block
            frame = b"%x\r\n%s\r\n" % (len(data), data) if chunked else data
            sock.sendall(frame)
            sent += len(data)
        if close:
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(close), close) if chunked else close)
        elif chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection after refusing: expected
    t.join(120)
    sock.close()
    return bytes(answer)


def test_200mib_chunked_upload_refused_with_flat_memory(server):
    before = rss_peak_kib(server.proc.pid)
    start = time.monotonic()
    answer = stream_body(server.port, 200 << 20, chunked=True)
    elapsed = time.monotonic() - start
    growth_mib = (rss_peak_kib(server.proc.pid) - before) / 1024
    assert answer.startswith(b"HTTP/1.1 413") or '"POST /" 413' in server.log()
    assert growth_mib < 32, f"peak RSS grew by {growth_mib:.1f} MiB"
    assert elapsed < 20
    # still serving, nothing stored
    assert httpx.get(server.url + "/healthz").json()["commits"] == 0


def test_declared_oversize_refused_before_reading(server):
    answer = stream_body(server.port, 200 << 20, chunked=False)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"1 MiB" in answer


def test_large_upload_accepted_with_flat_memory(server_factory):
    server = server_factory("--max", "512MiB")
    before = rss_peak_kib(server.proc.pid)
    answer = stream_body(server.port, 256 << 20, chunked=True, close=b"\r\n--BOUNDARY--\r\n")
    growth_mib = (rss_peak_kib(server.proc.pid) - before) / 1024
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.1f} MiB"
    pid = answer.split(b"\r\n\r\n", 1)[1].decode().strip().rsplit("/", 1)[1]
    from pasteur.storage.objects import shard_path

    size = int(server.git("cat-file", "-s", f"HEAD:{shard_path(pid)}"))
    assert size > 256 << 20
    head = server.git("cat-file", "-p", f"HEAD:{shard_path(pid)}")[:200]
    assert head.startswith('{"v":1,') and '"text":"aaaa' in head
    assert list((server.data / "tmp").iterdir()) == []  # no temporary file left


def test_large_upload_with_bad_utf8_refused(server_factory):
    server = server_factory("--max", "64MiB")
    answer = stream_body(server.port, 16 << 20, chunked=True, close=b"\r\n--BOUNDARY--\r\n",
                         block=b"a" * ((1 << 20) - 1) + b"\xff")
    assert answer.startswith(b"HTTP/1.1 400") and b"UTF-8" in answer
    assert list((server.data / "tmp").iterdir()) == []
    assert httpx.get(server.url + "/healthz").json()["commits"] == 0


def reset_peak(pid: int) -> int:
    """Reset the process's peak RSS to its current RSS (KiB), which it returns."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def upload(url: str, fields: dict[str, str], block: bytes, count: int) -> str:
    """A multipart paste of ``block`` ``count`` times, sent as a stream."""

    def body():
        for name, value in fields.items():
            yield (f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                   ).encode()
        yield b'--B\r\nContent-Disposition: form-data; name="paste"\r\n\r\n'
        for _ in range(count):
            yield block
        yield b"\r\n--B--\r\n"

    r = httpx.post(url + "/", content=body(), timeout=120,
                   headers={"content-type": "multipart/form-data; boundary=B",
                            "accept": "application/json"})
    assert r.status_code == 201, r.text
    return r.json()["code"]


def test_large_paste_read_streams_with_flat_memory(server_factory):
    """Raw view and download of a 96 MiB paste (escapes and multi-byte text all
    along) stream from Git; its page links to them; memory stays flat."""
    server = server_factory("--max", "512MiB")
    line = (b"x" * 1000 + b'"quoted" back\\slash \t\x01\x1f '
            b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\r\n")
    block = line * ((1 << 20) // len(line))
    count = 96
    code = upload(server.url, {}, block, count)
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)
    pid = server.proc.pid
    for path in (f"/{code}?raw=true", f"/{code}?raw=true&download=1"):
        base = reset_peak(pid)
        got, size = hashlib.sha256(), 0
        with httpx.stream("GET", server.url + path, timeout=120) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            for chunk in r.iter_bytes():
                got.update(chunk)
                size += len(chunk)
        growth_mib = (rss_peak_kib(pid) - base) / 1024
        assert size == len(block) * count and got.hexdigest() == expected.hexdigest()
        assert growth_mib < 24, f"peak RSS grew by {growth_mib:.1f} MiB reading {path}"
    base = reset_peak(pid)
    page = httpx.get(f"{server.url}/{code}", timeout=120)
    head = httpx.head(f"{server.url}/{code}?raw=true", timeout=120)
    growth_mib = (rss_peak_kib(pid) - base) / 1024
    assert page.status_code == 200 and "too large to show here" in page.text
    assert f'href="/{code}?raw=true" download' in page.text and len(page.content) < 20_000
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/plain")
    assert growth_mib < 24, f"peak RSS grew by {growth_mib:.1f} MiB (page and HEAD)"


def test_large_encrypted_paste_streams_its_document(server_factory):
    server = server_factory("--max", "64MiB")
    block = b"A" * (1 << 20)
    code = upload(server.url, {"encrypted": "true", "iv": "B" * 16}, block, 24)
    pid = server.proc.pid
    base = reset_peak(pid)
    got = hashlib.sha256()
    with httpx.stream("GET", f"{server.url}/{code}?raw=true", timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        length = int(r.headers["content-length"])
        for chunk in r.iter_bytes():
            got.update(chunk)
    growth_mib = (rss_peak_kib(pid) - base) / 1024
    from pasteur.storage.objects import shard_path

    blob = subprocess.run(["git", "-C", str(server.repo), "cat-file", "blob",
                           f"HEAD:{shard_path(code)}"], capture_output=True, check=True).stdout
    assert length == len(blob) and got.hexdigest() == hashlib.sha256(blob).hexdigest()
    assert growth_mib < 16, f"peak RSS grew by {growth_mib:.1f} MiB"
    page = httpx.get(f"{server.url}/{code}").text  # the ciphertext is fetched by show.js
    assert f'data-src="/{code}?raw=true"' in page and 'data-ct=""' in page
    assert len(page) < 20_000


def _live_trees(repo: pygit2.Repository, root: pygit2.Oid) -> tuple[int, int]:
    """What caching every tree of the served tree would take: raw (leaves,
    middles, root) and parsed (root and middles), in ``TreeCache``'s bytes."""
    from pasteur.storage.objects import parse_tree
    from pasteur.storage.treecache import RAW_OVERHEAD, entries_cost

    raw_total = parsed_total = 0
    todo, depth = [root], 0
    while todo:
        nxt = []
        for oid in todo:
            raw = repo.odb.read(oid)[1]
            raw_total += len(raw) + RAW_OVERHEAD
            if depth < 2:
                parsed_total += entries_cost(parse_tree(raw))
                nxt += [e.id for e in repo[oid] if e.type_str == "tree"]
        todo, depth = nxt, depth + 1
    return raw_total, parsed_total


def test_tree_caches_do_not_grow_with_the_pastes_created(tmp_path):
    """Thousands of creates in tens of batches: the server's and the committer's
    tree caches hold about the served tree's own trees, not every version each
    batch replaced (they held those up to 64 MiB of raw trees and 100,000
    parsed entries each); libgit2's object cache is bounded."""
    import asyncio

    from pasteur.procs import LIBGIT2_CACHE
    from pasteur.storage.store import Store

    repo = tmp_path / "repo.git"

    async def main() -> list[tuple[int, int, int, int]]:
        store = Store(repo)
        store.start()
        held = []
        try:
            for rnd in range(30):
                await asyncio.gather(*(store.add(f"paste {rnd} {i}".encode())
                                       for i in range(100)))
                await store.flush()
                if rnd % 10 == 9:
                    assert store.head is not None
                    raw, parsed = _live_trees(store.repository.reader,
                                              store.repository.reader[store.head].tree.id)
                    held.append((store.tree_cache.bytes_held,
                                 store.writer.figures.committer_cached, raw, parsed))
            assert pygit2.settings.cached_memory[1] == LIBGIT2_CACHE
            assert pygit2.settings.cached_memory[0] <= LIBGIT2_CACHE
        finally:
            await store.stop()
        return held

    for server, committer, raw, parsed in asyncio.run(main()):
        # a little slack: a lookup on the old head between a batch's drop
        # and the swap of heads may cache a tree that is replaced already
        bound = raw + parsed + (64 << 10)
        assert server <= bound, (server, raw, parsed)
        assert 0 < committer <= bound, (committer, raw, parsed)
