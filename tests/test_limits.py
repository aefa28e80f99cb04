"""Request limits (limits.py) against running servers, on both listeners: the plain one
(uvicorn, server.py) and the TLS one (hypercorn, tls/listener.py). Issue 12, items 4 and 14a."""

from __future__ import annotations

import os
import select
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pasteur import limits

from .fixtures_acme import self_signed
from .ports import free_port, wait_port
from .processes import stop

pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20


@dataclass
class Listener:
    """A running `pasteur serve`, plain or TLS, spoken to by raw sockets or httpx."""

    name: str
    port: int
    proc: subprocess.Popen
    tls: ssl.SSLContext | None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def client(self, http2: bool = False) -> httpx.Client:
        return httpx.Client(base_url=self.base, verify=self.tls or True, http2=http2,
                            timeout=30)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        if self.tls is None:
            return sock
        return self.tls.wrap_socket(sock, server_hostname="localhost")  # HTTP/1.1

    def stop(self) -> None:
        stop(self.proc, 10)


def start(tmp_path: Path, name: str, *args: str) -> Listener:
    port = free_port()
    argv = [sys.executable, "-m", "pasteur", "serve", "--port", str(port),
            "--data", str(tmp_path / f"data-{port}"), "--log-level", "warning", *args]
    tls = None
    if name == "tls":
        cert, key = self_signed(tmp_path)
        argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
        tls = ssl.create_default_context(cafile=str(cert))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASTEUR_")}
    log = (tmp_path / f"server-{port}.log").open("ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    listener = Listener(name, port, proc, tls)
    try:
        wait_port(port, proc, timeout=40)
        with listener.client() as c:
            assert c.get("/healthz").status_code == 200
    except BaseException:
        listener.stop()
        raise
    return listener


@pytest.fixture(params=["plain", "tls"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    srv = start(tmp_path, request.param, "--max", "16MiB")
    yield srv
    srv.stop()


def request(path: str = "/healthz", fields: list[tuple[str, str]] | None = None) -> bytes:
    """A GET head with a Host and `fields`."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in fields or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Conn:
    """One HTTP/1.1 connection: raw heads out, answers in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.closed = False

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        self.closed = self.closed or not chunk
        self.buffer += chunk
        return chunk

    def answered(self) -> bool:
        """Whether answer bytes (or the end) came, without waiting."""
        if not self.buffer and not self.closed and select.select([self.sock], [], [], 0)[0]:
            self.sock.setblocking(False)
            try:
                self._recv()
            except (ssl.SSLWantReadError, BlockingIOError):
                pass  # a TLS record that is not data (a session ticket)
            finally:
                self.sock.settimeout(30)
        return bool(self.buffer) or self.closed

    def send_until_answered(self, data: bytes, chunk: int = 64 * 1024) -> int:
        """Send `data` until the server answers (as a browser does); the bytes sent."""
        sent = 0
        while sent < len(data) and not self.answered():
            try:
                sent += self.sock.send(data[sent:sent + chunk])
            except OSError:
                break
        return sent

    def read_answer(self) -> tuple[int, dict[str, str]]:
        """The status and fields of the next answer; its body is read and dropped."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._recv():
                raise ConnectionError(f"closed after {self.buffer[:200]!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(fields.get("content-length", "0"))
        while len(self.buffer) < length and self._recv():
            pass
        self.buffer = self.buffer[length:]
        return int(lines[0].split()[1]), fields


def ask(listener: Listener, head: bytes) -> tuple[int, dict[str, str]]:
    with Conn(listener.connect()) as conn:
        conn.sock.sendall(head)
        return conn.read_answer()


def test_an_over_long_url_is_414(listener: Listener) -> None:
    status, fields = ask(listener, request("/healthz?q=" + "a" * limits.MAX_URL))
    assert status == 414
    assert fields["connection"] == "close"
    near = "/healthz?q=" + "a" * (limits.MAX_URL - 100)
    assert ask(listener, request(near))[0] == 200


def test_a_huge_header_line_is_431(listener: Listener) -> None:
    status, fields = ask(listener, request(fields=[("X-Big", "b" * limits.MAX_FIELD)]))
    assert (status, fields["connection"]) == (431, "close")
    assert ask(listener, request(fields=[("X-Big", "b" * (limits.MAX_FIELD - 100))]))[0] == 200


def test_a_head_over_32_kib_in_lines_under_8_kib_is_431(listener: Listener) -> None:
    line = "c" * (limits.MAX_FIELD - 100)
    five = [(f"X-{i}", line) for i in range(5)]  # ~40 KiB
    assert ask(listener, request(fields=five))[0] == 431
    assert ask(listener, request(fields=five[:3]))[0] == 200  # ~24 KiB


def test_too_many_header_fields_is_431(listener: Listener) -> None:
    many = [(f"X-{i}", "v") for i in range(limits.MAX_FIELDS)]  # and Host: one too many
    assert ask(listener, request(fields=many))[0] == 431
    assert ask(listener, request(fields=many[:-1]))[0] == 200


def test_a_32_mib_cookie_is_refused_early_and_healthz_stays_responsive(
        listener: Listener) -> None:
    with listener.client() as c:
        made = c.post("/", files={"paste": (None, "a page to ask for\n")})
        assert made.status_code == 201
        page = made.headers["location"].removeprefix(listener.base)
        big = request(page, [("Cookie", "k=" + "x" * (32 * MIB))])
        with Conn(listener.connect()) as conn:
            sent = conn.send_until_answered(big)
            # answered long before the head was sent (the kernel's buffers hold a few MiB)
            assert sent < len(big) // 4
            assert c.get("/healthz").status_code == 200  # meanwhile, from another client
            status, fields = conn.read_answer()
        assert (status, fields["connection"]) == (431, "close")
        assert c.get(page).status_code == 200


def test_a_hostile_cookie_next_to_the_creators(listener: Listener) -> None:
    """Backslashes in quotes, in a Cookie line as long as may be: Starlette's cookie
    parsing (http.cookies before Python 3.11.10) spent 0.2 s of CPU on 8 KiB of them
    (see cookies.py); the creator's cookie next to it is still found, at either end."""
    with listener.client() as c:
        made = c.post("/", files={"paste": (None, "mine\n")})
        page = made.headers["location"].removeprefix(listener.base)
        junk = 'junk="' + "\\" * (limits.MAX_FIELD - 200) + '"'
        mine = f"pasteur_creator={made.headers['x-delete-token']}"
        for cookies in ([junk, mine], [mine, junk]):
            shown = c.get(page, headers={"cookie": "; ".join(cookies)})
            assert shown.status_code == 200 and "creator-panel" in shown.text
        shown = c.get(page, headers={"cookie": junk})
        assert shown.status_code == 200 and "creator-panel" not in shown.text


def test_a_refused_head_sent_whole_still_reads_its_answer(tmp_path: Path) -> None:
    """The plain listener lingers: it reads and drops the rest of a refused head, so a
    client that sends it all before reading gets the 431, not a reset."""
    srv = start(tmp_path, "plain")
    try:
        with Conn(srv.connect()) as conn:
            conn.sock.sendall(request(fields=[("Cookie", "k=" + "x" * (8 * MIB))]))
            assert conn.read_answer()[0] == 431
    finally:
        srv.stop()


def test_heads_are_counted_per_request_on_a_kept_alive_connection(listener: Listener) -> None:
    fields = [(f"X-{i}", "d" * 6000) for i in range(4)]  # ~24 KiB each, 96 KiB in all
    with Conn(listener.connect()) as conn:
        conn.sock.sendall(request(fields=fields) * 4)  # pipelined
        for _ in range(4):
            status, answer = conn.read_answer()
            assert status == 200 and answer.get("connection") != "close"


def test_a_large_upload_is_not_limited(listener: Listener) -> None:
    """Only the head is limited: a multipart body of 12 MiB is taken whole."""
    text = ("0123456789abcdef" * 4096 + "\n") * (12 * 16)
    with listener.client() as c:
        made = c.post("/", files={"paste": (None, text)}, headers={"accept": "application/json"})
        assert made.status_code == 201, made.text
        raw = c.get(made.json()["url"].removeprefix(listener.base), params={"raw": "true"})
        assert raw.status_code == 200 and len(raw.content) == len(text.encode())


def test_http2_limits(tmp_path: Path) -> None:
    srv = start(tmp_path, "tls")
    try:
        with srv.client(http2=True) as c:
            r = c.get("/healthz", params={"q": "a" * limits.MAX_URL})
            assert (r.http_version, r.status_code) == ("HTTP/2", 414)
            r = c.get("/healthz", headers={"x-big": "b" * limits.MAX_FIELD})
            assert r.status_code == 431
            r = c.get("/healthz", headers={f"x-{i}": "v" for i in range(limits.MAX_FIELDS)})
            assert r.status_code == 431
            assert c.get("/healthz").status_code == 200
        # a header list of 48 KiB: over the 32 KiB advertised; hypercorn's default was 64 KiB
        huge = {f"x-{i}": "h" * 6000 for i in range(8)}
        for _ in range(2):  # the first request may come before the client's SETTINGS ACK
            with srv.client(http2=True) as c:
                try:
                    status: int | None = c.get("/healthz", headers=huge).status_code
                except httpx.RemoteProtocolError:
                    status = None  # the connection refused it (hpack's limit)
                assert status in (None, 431)
            with srv.client(http2=True) as c:
                assert c.get("/healthz").status_code == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("name", ["plain", "tls"])
def test_connection_cap_answers_503(tmp_path: Path, name: str) -> None:
    srv = start(tmp_path, name, "--max-connections", "2")
    held = []
    try:
        # two uploads in progress, their bodies held back
        head = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                b"Content-Length: 1000\r\n\r\n--xyz\r\n")
        for _ in range(2):
            sock = srv.connect()
            sock.sendall(head)
            held.append(sock)
        busy = wait_for_status(srv, 503)
        assert busy == 503
        for sock in held:
            sock.close()
        held.clear()
        assert wait_for_status(srv, 200) == 200
    finally:
        for sock in held:
            sock.close()
        srv.stop()


def wait_for_status(srv: Listener, wanted: int, tries: int = 100) -> int:
    """GET /healthz on a new connection until it is answered `wanted` (the held
    requests reach the application shortly after their heads are sent)."""
    status = 0
    for _ in range(tries):
        status = ask(srv, request())[0]
        if status == wanted:
            break
        threading.Event().wait(0.05)
    return status
