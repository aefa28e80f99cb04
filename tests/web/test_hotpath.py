"""Hot reads (web/hotpath.py): one application served on two real loopback
listeners in one process, the plain listener's protocol with hot reads (as
server.py builds it) and the same protocol without. The same raw request on
both must get the same bytes (Date aside), whatever it asks; a paste that is
deleted, burned or has an expiry is never answered from the hot path; the
cache stays bounded in bytes with the heads kept for it; the access log and
the /metrics counts are the front door's."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
import uvloop
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pasteur import record
from pasteur.config import Config
from pasteur.protocol import GuardedProtocol
from pasteur.proxy import parse_networks
from pasteur.server import uvicorn_config
from pasteur.storage.repository import lock_repository
from pasteur.storage.store import Store
from pasteur.web.app import Frontdoor, create_app
from pasteur.web.caches import PageCache
from pasteur.web.frontdoor import AccessLog, ResponseCounts
from pasteur.web.hotpath import TARGET_BYTES, TARGETS, HotReads

pytestmark = pytest.mark.timeout(300)

DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")
LONG = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(60))


@dataclass
class Twin:
    """One app on two listeners: ``hot`` answers hot reads, ``plain`` never."""

    app: Frontdoor
    hot: int  # ports
    plain: int
    store: Store
    counts: ResponseCounts
    loop: asyncio.AbstractEventLoop  # the listeners'
    pastes: dict[str, dict]  # name -> the create's JSON answer

    @property
    def reads(self) -> HotReads:
        assert isinstance(self.app.hot, HotReads)
        return self.app.hot

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    logging.getLogger("pasteur.access").setLevel(logging.INFO)
    config = Config(data=tmp_path_factory.mktemp("hot"), rate_limit=None)
    store = Store(config.repo_path, config.length, lock_fd=lock_repository(config.repo_path),
                  check_document=record.document_problem)
    counts = ResponseCounts()
    app = create_app(config, store, counts=counts)
    hot_config = uvicorn_config(app, config)
    plain_config = uvicorn_config(app, config)
    plain_config.http = type("Plain", (GuardedProtocol,), {"hot": None})
    plain_config.lifespan = "off"  # the store is started once, by the hot listener's
    servers = [uvicorn.Server(hot_config), uvicorn.Server(plain_config)]
    socks = [listening(), listening()]
    loop = uvloop.new_event_loop()

    async def serve() -> None:
        await asyncio.gather(servers[0].serve(sockets=[socks[0]]),
                             servers[1].serve(sockets=[socks[1]]))

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ports = [s.getsockname()[1] for s in socks]
    for port in ports:
        wait_ready(f"http://127.0.0.1:{port}/healthz")
    t = Twin(app, ports[0], ports[1], store, counts, loop, {})
    with httpx.Client(base_url=t.url(t.plain), timeout=30) as client:
        for name, fields in {
            "short": {"paste": "hello world\n"},
            "long": {"paste": LONG, "hl": "python"},
            "lined": {"paste": LONG, "ln": "true"},
            "enc": {"paste": "A" * 64, "iv": "B" * 16, "encrypted": "true"},
            "expiring": {"paste": LONG, "expiry": "1h"},
            "burn": {"paste": LONG, "burn": "true"},
        }.items():
            r = client.post("/", files={k: (None, v) for k, v in fields.items()},
                            headers={"accept": "application/json"})
            assert r.status_code == 201, r.text
            t.pastes[name] = r.json()
    try:
        yield t
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(30)
        for sock in socks:
            sock.close()


def wait_ready(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        threading.Event().wait(0.05)
    raise AssertionError(f"{url} did not answer")


class Answers:
    """Responses read one after the other from a connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def more(self) -> bool:
        chunk = self.sock.recv(65536)
        self.data += chunk
        return bool(chunk)

    def next(self, head_only: bool) -> bytes:
        """The next response: its head, then its body by Content-Length (none for
        HEAD, 1xx, 204, 304), chunks, or to the end of the connection."""
        while b"\r\n\r\n" not in self.data:
            if not self.more():
                data, self.data = self.data, b""
                return data
        end = self.data.index(b"\r\n\r\n") + 4
        head = self.data[:end]
        status = int(head.split(b" ", 2)[1])
        fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:]
                      if b": " in line)
        if head_only or status < 200 or status in (204, 304):
            size = 0
        elif b"content-length" in fields:
            size = int(fields[b"content-length"])
        elif fields.get(b"transfer-encoding") == b"chunked":
            while b"0\r\n\r\n" not in self.data[end:]:
                assert self.more(), "closed before the last chunk"
            size = self.data.index(b"0\r\n\r\n", end) + 5 - end
        else:
            while self.more():
                pass
            size = len(self.data) - end
        while len(self.data) < end + size:
            assert self.more(), "closed before the body's end"
        answer, self.data = self.data[:end + size], self.data[end + size:]
        return answer


def exchange(port: int, requests: list[bytes]) -> list[bytes]:
    """Send ``requests`` at once on one connection (pipelined); their answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"".join(requests))
        answers = Answers(sock)
        return [answers.next(r.startswith(b"HEAD ")) for r in requests]


def same(answer: bytes) -> bytes:
    return DATE.sub(b"\r\ndate: -\r\n", answer)


def request(method: str, target: str, headers: list[tuple[str, str]],
            version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- both paths answer alike --------------------------------------------------------

NAMES = ["short", "long", "lined", "enc", "expiring", "burn", None]
QUERIES = st.one_of(
    st.sampled_from(["", "?raw=true", "?raw", "?raw=1", "?raw=", "?", "?ln=1", "?hl=python",
                     "?raw=true&hl=c", "?raw=true#x", "?raw%3Dtrue", "?raw=true&raw=no"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=12).map(
        lambda q: "?" + q))
HEADERS = st.lists(st.one_of(
    st.tuples(st.just("Accept"), st.sampled_from([
        "text/html", "application/json", "*/*", "text/plain", "application/json;q=0",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"])),
    st.tuples(st.just("Accept-Encoding"), st.sampled_from([
        "gzip", "br", "zstd", "gzip, deflate, br, zstd", "br;q=0, gzip", "*", "identity",
        "gzip;q=0.5, br;q=0.4", "", "x-unknown"])),
    st.tuples(st.just("Cookie"), st.sampled_from([
        "a=b", "pasteur_creator=nope", "xpasteur_creator=1", "theme=dark; lang=en"])),
    st.tuples(st.just("Host"), st.sampled_from([
        "127.0.0.1", "example.org:8080", "[::1]:80", "a?b", "", "h#st", "ex ample"])),
    st.tuples(st.just("Connection"), st.sampled_from(["close", "keep-alive"])),
    st.tuples(st.sampled_from(["If-None-Match", "Range", "X-Whatever", "Referer",
                               "User-Agent", "Cache-Control", "Authorization"]),
              st.sampled_from(["*", "bytes=0-3", "no-cache", "x"])),
), max_size=5)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "HEAD"]), name=st.sampled_from(NAMES), query=QUERIES,
       headers=HEADERS, version=st.sampled_from(["1.1", "1.1", "1.0"]),
       escaped=st.booleans())
def test_the_same_answer_on_both_paths(twin: Twin, method: str, name: str | None, query: str,
                                       headers: list[tuple[str, str]], version: str,
                                       escaped: bool) -> None:
    paste_id = twin.pastes[name]["code"] if name else "Zz9"
    if escaped:
        paste_id = f"%{ord(paste_id[0]):02X}{paste_id[1:]}"
    if ("Cookie", "pasteur_creator=nope") in headers and name:
        headers = [*headers, ("Cookie", f"pasteur_creator={twin.pastes[name]['delete_token']}")]
    req = request(method, f"/{paste_id}{query}", headers, version)
    exchange(twin.plain, [req])  # the first read of a page caches it
    plain = exchange(twin.plain, [req])
    served = twin.reads.served
    hot = exchange(twin.hot, [req])
    event("answered hot" if twin.reads.served > served else "answered by the app")
    assert same(hot[0]) == same(plain[0]), req


def test_pipelined_answers_keep_their_order(twin: Twin) -> None:
    short = twin.pastes["short"]["code"]
    # Two hot reads, then one the app answers, then hot reads queued behind it.
    reqs = [request("GET", f"/{short}?raw=true", []), request("HEAD", f"/{short}", []),
            request("GET", "/", []), request("GET", f"/{short}?raw=true", []),
            request("GET", "/Zz9", []), request("HEAD", f"/{short}", [])]
    exchange(twin.plain, reqs)
    plain = exchange(twin.plain, reqs)
    served = twin.reads.served
    hot = exchange(twin.hot, reqs)
    assert [same(a) for a in hot] == [same(a) for a in plain]
    assert twin.reads.served >= served + 2


# -- the hot path is taken, logged and counted ----------------------------------------

def test_a_cached_read_is_answered_hot_logged_and_counted(
        twin: Twin, capsys: pytest.CaptureFixture[str]) -> None:
    long = twin.pastes["long"]["code"]
    with httpx.Client(base_url=twin.url(twin.hot), timeout=30) as client:
        first = client.get(f"/{long}?raw=true", headers={"accept-encoding": "br"})
        assert first.status_code == 200 and first.headers["content-encoding"] == "br"
        # The br body is kept once the app has answered with it (the page cache
        # compresses beside the answer): read until the hot path has it.
        reads = twin.counts.counts.get(("read", 200), 0)
        before, tries = twin.reads.served, 0
        while twin.reads.served == before and tries < 50:
            r = client.get(f"/{long}?raw=true", headers={"accept-encoding": "br"})
            assert r.status_code == 200 and r.text == LONG
            tries += 1
        assert twin.reads.served == before + 1, "never answered hot"
        served = twin.reads.served
        for encoding in ("br", "identity", "gzip"):
            r = client.get(f"/{long}?raw=true", headers={"accept-encoding": encoding})
            assert r.status_code == 200 and r.text == LONG
        r = client.head(f"/{long}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert twin.reads.served >= served + 2  # br, identity; gzip's body may be new
    assert twin.counts.counts[("read", 200)] == reads + tries + 4
    wait_for_log(capsys, f'"HEAD /{long}" 200 ')


def test_the_hot_log_line_is_the_front_doors(twin: Twin,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    short = twin.pastes["short"]["code"]
    req = request("GET", f"/{short}?raw=true", [("Accept-Encoding", "gzip")])
    exchange(twin.plain, [req])
    served = twin.reads.served
    exchange(twin.plain, [req])
    plain = wait_for_log(capsys, f'"GET /{short}" 200 ')
    exchange(twin.hot, [req])
    hot = wait_for_log(capsys, f'"GET /{short}" 200 ')
    assert twin.reads.served == served + 1
    # The same line but for its time stamp and duration.
    ms = re.compile(r"^\S+ \S+ | [0-9.]+ms$")
    line = f'INFO pasteur.access: 127.0.0.1 "GET /{short}" 200 12B'
    assert ms.sub("", hot) == ms.sub("", plain) == line


def wait_for_log(capsys: pytest.CaptureFixture[str], text: str) -> str:
    """The last access-log line holding ``text`` (written once per loop turn)."""
    for _ in range(200):
        lines = [line for line in capsys.readouterr().err.splitlines() if text in line]
        if lines:
            return lines[-1]
        threading.Event().wait(0.05)
    raise AssertionError(f"no log line with {text!r}")


# -- what is never answered hot ----------------------------------------------------------

def test_a_deleted_paste_is_not_answered_from_the_hot_path(twin: Twin) -> None:
    with httpx.Client(base_url=twin.url(twin.plain), timeout=30) as client:
        made = client.post("/", files={"paste": (None, LONG)},
                           headers={"accept": "application/json"}).json()
    pid = made["code"]
    with httpx.Client(base_url=twin.url(twin.hot), timeout=30) as client:
        for _ in range(3):
            assert client.get(f"/{pid}?raw=true").text == LONG
        served = twin.reads.served
        assert client.get(f"/{pid}?raw=true").status_code == 200
        assert twin.reads.served == served + 1
        r = client.delete(f"/{pid}", headers={"x-delete-token": made["delete_token"]})
        assert r.status_code == 200, r.text
        for target in (f"/{pid}?raw=true", f"/{pid}"):
            assert client.get(target).status_code == 404
            assert client.head(target).status_code == 404
    assert twin.reads.served == served + 1


def test_expiring_and_burn_pastes_are_never_answered_hot(twin: Twin) -> None:
    expiring, burn = twin.pastes["expiring"]["code"], twin.pastes["burn"]["code"]
    served = twin.reads.served
    with httpx.Client(base_url=twin.url(twin.hot), timeout=30) as client:
        for _ in range(3):
            assert client.get(f"/{expiring}?raw=true").text == LONG
            assert client.get(f"/{expiring}").status_code == 200
            assert client.get(f"/{burn}?raw=true").status_code == 409  # a GET never burns
            assert client.get(f"/{burn}").status_code == 200  # "read it?" page
    assert twin.reads.served == served


def test_a_removal_by_the_store_empties_what_is_answered_hot(twin: Twin) -> None:
    with httpx.Client(base_url=twin.url(twin.plain), timeout=30) as client:
        made = client.post("/", files={"paste": (None, LONG)},
                           headers={"accept": "application/json"}).json()
    pid = made["code"]
    with httpx.Client(base_url=twin.url(twin.hot), timeout=30) as client:
        for _ in range(2):
            assert client.get(f"/{pid}?raw=true").status_code == 200
        generation = twin.store.generation
        # Removed behind the page cache's back (as sync or an erasure may): the
        # store's generation moves, and no page cached before is served.
        future = asyncio.run_coroutine_threadsafe(twin.store.remove([pid], "Delete"), twin.loop)
        future.result(30)
        assert twin.store.generation != generation
        served = twin.reads.served
        assert client.get(f"/{pid}?raw=true").status_code == 404
    assert twin.reads.served == served


# -- bounded -------------------------------------------------------------------------------

def test_the_heads_are_counted_in_the_cache_bound(twin: Twin) -> None:
    cache = PageCache(twin.store, max_bytes=64 << 10)
    hot = HotReads(cache, AccessLog())
    for i in range(200):
        key = (f"p{i:03d}", "raw=true")
        cache.put(key, LONG.encode(), "text/plain; charset=utf-8")
        for encoding in (b"", b"gzip"):
            if encoding:  # the handler makes the compressed body first
                asyncio.run(cache.encoded(key, cache.items[key], "gzip"))
            answer = hot.answer(b"GET", f"/p{i:03d}?raw=true".encode(),
                                [(b"accept-encoding", encoding)], True, None, [])
            assert answer is not None and answer.endswith(
                LONG.encode() if not encoding else cache.items[key].variants["gzip"])
        assert cache.size == sum(page.size for page in cache.items.values()) <= 64 << 10
    assert 0 < len(cache.items) < 200
    assert all(len(page.heads) == 2 for page in cache.items.values())
    for i in range(2 * TARGETS):  # the targets remembered are bounded too
        assert hot.answer(b"GET", f"/q{i}?{'x' * (i % 300)}".encode(), [], True, None, []) is None
        assert len(hot.targets) <= TARGETS
    assert all(len(target) <= TARGET_BYTES for target in hot.targets)


def test_no_hot_reads_with_basic_auth_or_a_trusted_proxy(twin: Twin, tmp_path: Path) -> None:
    for config in (Config(data=tmp_path, auth=("u", "p")),
                   Config(data=tmp_path, trusted_proxies=parse_networks("127.0.0.1"))):
        assert create_app(config, twin.store).hot is None
    assert create_app(Config(data=tmp_path), twin.store).hot is not None
