"""Streaming upload: a huge body is refused early and memory stays flat."""

from __future__ import annotations

import socket
import threading
import time

import httpx


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
    from pasteur.store import shard_path

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
