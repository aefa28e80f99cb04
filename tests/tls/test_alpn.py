"""The TLS listener's connections (tls/alpn.py): HTTP/1.1 served by the plain listener's
protocol (its head deadline and limits over TLS too), h2 by hypercorn's protocol, the
handshake deadline, a certificate swap under open connections of both kinds, a stop
with connections open. Each test runs on asyncio's loop and on uvloop (`pasteur serve`'s)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from pasteur import limits
from pasteur.tls.listener import fingerprint
from tests.fixtures_acme import free_port, running, self_signed

pytestmark = pytest.mark.timeout(60)

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    def runner(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
            r.run(coro)

    return runner


def tls_argv(cert: Path, key: Path, port: int, *extra: str) -> list[str]:
    return ["--tls-cert", str(cert), "--tls-key", str(key), "--port", str(port), *extra]


def context(cafile: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


async def open_h11(port: int, cafile: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context(cafile, ["http/1.1"]), server_hostname="localhost")
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
    return reader, writer


async def get_h11(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """GET / on a kept-alive HTTP/1.1 connection: the answer's head and body."""
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    if b"\r\ncontent-length: " in head.lower():
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head + await reader.readexactly(length)
    return head + await reader.readuntil(b"\r\n0\r\n\r\n")  # chunked


def peer_fingerprint(writer: asyncio.StreamWriter) -> str:
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest()


def served_fingerprint(response: httpx.Response) -> str:
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return hashlib.sha256(ssl_object.getpeercert(binary_form=True)).hexdigest()


def test_both_protocols_serve_the_app_as_https(tmp_path: Path, run: Run) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()

    async def check() -> None:
        async with running(*tls_argv(cert, key, port)):
            url = f"https://127.0.0.1:{port}/"
            for http2, version in ((True, "HTTP/2"), (False, "HTTP/1.1")):
                async with httpx.AsyncClient(http2=http2, verify=context(cert)) as c:
                    answers = await asyncio.gather(*(c.get(url) for _ in range(20)))
                for r in answers:
                    assert (r.http_version, r.status_code) == (version, 200)
                    assert r.text == f"hello over {version}\n"
                    assert r.headers["x-scheme"] == "https"
            # HTTP/1.1: the plain listener's protocol, its Date header and one send
            reader, writer = await open_h11(port, cert)
            answer = await get_h11(reader, writer)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\ndate: " in answer
            writer.close()

    run(check())


def test_http11_over_tls_has_the_head_deadline(tmp_path: Path, run: Run) -> None:
    """A head that never ends is closed after --header-timeout, as on the plain listener
    (hypercorn, before, kept it for its 15 s keep-alive timeout)."""
    cert, key = self_signed(tmp_path)
    port = free_port()

    async def check() -> None:
        async with running(*tls_argv(cert, key, port, "--header-timeout", "1")):
            reader, writer = await open_h11(port, cert)
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # and nothing more
            t0 = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, no answer
            assert 0.9 <= time.monotonic() - t0 < 8
            writer.close()

    run(check())


def test_http11_over_tls_refuses_a_head_while_it_arrives(tmp_path: Path, run: Run) -> None:
    """A header line over the limit is answered 431 before the head has ended."""
    cert, key = self_signed(tmp_path)
    port = free_port()

    async def check() -> None:
        async with running(*tls_argv(cert, key, port)):
            reader, writer = await open_h11(port, cert)
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: "
                         + b"b" * limits.MAX_FIELD + b"\r\nX-Next: ")  # the head goes on
            answer = await asyncio.wait_for(reader.read(), 10)
            assert answer.startswith(b"HTTP/1.1 431 ")
            assert b"connection: close" in answer
            assert limits.FIELD_TOO_LARGE.reason.encode() in answer
            writer.close()

    run(check())


def test_a_silent_handshake_is_closed(tmp_path: Path, run: Run) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()

    async def check() -> None:
        async with running(*tls_argv(cert, key, port), handshake_timeout=0.5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # no TLS
            t0 = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            assert 0.4 <= time.monotonic() - t0 < 8
            writer.close()

    run(check())


def test_a_swap_keeps_open_connections_of_both_protocols(tmp_path: Path, run: Run) -> None:
    cert, key = self_signed(tmp_path, "live.test", prefix="live")
    new_cert, new_key = self_signed(tmp_path, "next.test", prefix="next")
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + new_cert.read_bytes())
    old, new = fingerprint(cert.read_bytes()), fingerprint(new_cert.read_bytes())
    port = free_port()

    async def check() -> None:
        async with running(*tls_argv(cert, key, port)) as server:
            url = f"https://127.0.0.1:{port}/"
            reader, writer = await open_h11(port, both)
            async with httpx.AsyncClient(http2=True, verify=context(both)) as h2:
                first = await h2.get(url)
                assert first.http_version == "HTTP/2" and served_fingerprint(first) == old
                assert (await get_h11(reader, writer)).startswith(b"HTTP/1.1 200 ")
                shutil.copy(new_cert, cert)
                shutil.copy(new_key, key)
                server.tls.load_files(cert, key)
                assert server.tls.fingerprint == new
                # the open connections go on, with the certificate they started with
                again = await h2.get(url)
                assert again.extensions["network_stream"] is first.extensions["network_stream"]
                assert again.status_code == 200 and served_fingerprint(again) == old
                assert (await get_h11(reader, writer)).startswith(b"HTTP/1.1 200 ")
                assert peer_fingerprint(writer) == old
            writer.close()
            # new connections get the new one, over both protocols
            async with httpx.AsyncClient(http2=True, verify=context(both)) as h2:
                r = await h2.get(url)
                assert r.http_version == "HTTP/2" and served_fingerprint(r) == new
            reader, writer = await open_h11(port, both)
            assert (await get_h11(reader, writer)).startswith(b"HTTP/1.1 200 ")
            assert peer_fingerprint(writer) == new
            writer.close()

    run(check())


def test_a_stop_closes_open_connections(tmp_path: Path, run: Run) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()

    async def check() -> None:
        async with running(*tls_argv(cert, key, port)) as server:
            reader, writer = await open_h11(port, cert)
            await get_h11(reader, writer)
            h2 = httpx.AsyncClient(http2=True, verify=context(cert))
            assert (await h2.get(f"https://127.0.0.1:{port}/")).http_version == "HTTP/2"
            server.stop()
            t0 = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 15) == b""  # closed, idle
            assert time.monotonic() - t0 < 10
        # run() has returned: the HTTP/2 connection was closed too
        with pytest.raises(httpx.HTTPError):
            await h2.get(f"https://127.0.0.1:{port}/")
        await h2.aclose()
        writer.close()

    run(check())


class HotHello:
    """Answers GET /hot itself, as the front door's cached reads (`HotAnswers`) do."""

    def answer(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
               keep_alive: bool, client: tuple[str, int] | None,
               default_headers: list[tuple[bytes, bytes]]) -> bytes | None:
        if (method, url) != (b"GET", b"/hot"):
            return None
        return b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nhot\n"


def test_http11_over_tls_answers_hot_reads(tmp_path: Path, run: Run) -> None:
    """The protocol's own answers (cached reads, web/hotpath.py) over TLS as on plain HTTP;
    h2 goes to the application."""
    cert, key = self_signed(tmp_path)
    port = free_port()

    async def check() -> None:
        async with running(*tls_argv(cert, key, port), hot=HotHello()):
            reader, writer = await open_h11(port, cert)
            writer.write(b"GET /hot HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert await reader.readexactly(len(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n"
                                                b"\r\nhot\n")) == (
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nhot\n")
            assert (await get_h11(reader, writer)).endswith(b"hello over HTTP/1.1\n\r\n0\r\n\r\n")
            writer.close()
            async with httpx.AsyncClient(http2=True, verify=context(cert)) as h2:
                r = await h2.get(f"https://127.0.0.1:{port}/hot")
                assert (r.http_version, r.text) == ("HTTP/2", "hello over HTTP/2\n")

    run(check())
