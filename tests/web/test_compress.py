"""Compressed dynamic responses (``web/compress.py``), against a real ``pasteur serve``."""

from __future__ import annotations

import gzip
import inspect
import json

import brotli
import httpx
import pytest
import zstandard

from pasteur.web.compress import compressible, negotiate

DECODE = {
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
    "gzip": gzip.decompress,
}


def python_source(size: int) -> str:
    """About ``size`` bytes of real Python (the stdlib's), for a big highlighted page."""
    import argparse
    import asyncio.base_events
    import typing

    text = ""
    while len(text) < size:
        for module in (typing, argparse, asyncio.base_events):
            text += inspect.getsource(module)
    return text[:size]


def fetch(client: httpx.Client, method: str, url: str, encoding: str) -> tuple[httpx.Response,
                                                                                  bytes]:
    """A response and its body as sent (httpx would decode it)."""
    with client.stream(method, url, headers={"accept-encoding": encoding}) as r:
        return r, b"".join(r.iter_raw())


@pytest.fixture(scope="module")
def client(shared_server) -> httpx.Client:
    with httpx.Client(base_url=shared_server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def big(client) -> str:
    """A 136 KB Python paste, highlighted with line numbers: a page of over 600 KB."""
    r = client.post("/?hl=python&ln=true", content=python_source(136_000).encode())
    assert r.status_code == 201
    return r.text.strip().rsplit("/", 1)[1]


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip"])
@pytest.mark.parametrize("query", ["", "?raw=true"])
def test_a_big_page_and_its_raw_text_come_compressed(client, big, encoding, query):
    url = f"/{big}{query}"
    plain, identity = fetch(client, "GET", url, "identity")
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(identity) > 130_000
    assert "accept-encoding" in plain.headers["vary"].lower()
    for _ in range(2):  # rendered (or cached by another encoding's read), then cached
        r, body = fetch(client, "GET", url, f"{encoding}, identity;q=0.5")
        assert r.headers["content-encoding"] == encoding
        assert "accept-encoding" in r.headers["vary"].lower()
        assert int(r.headers["content-length"]) == len(body) < len(identity) // 3
        assert DECODE[encoding](body) == identity
        assert r.headers["content-type"] == plain.headers["content-type"]
        assert r.headers["content-security-policy"]  # the front door's headers still there
    headed, nothing = fetch(client, "HEAD", url, encoding)
    assert nothing == b""
    for name in ("content-type", "content-length", "content-encoding", "vary"):
        assert headed.headers.get(name) == r.headers.get(name), name


def test_a_big_page_unasked_is_sent_as_it_is(client, big):
    r, body = fetch(client, "GET", f"/{big}", "")
    assert "content-encoding" not in r.headers
    assert b"</html>" in body and "accept-encoding" in r.headers["vary"].lower()


def test_a_json_document_is_compressed(client):
    sealed = client.post("/", files={"paste": (None, "Q" * 4000), "iv": (None, "B" * 16),
                                     "encrypted": (None, "true")},
                         headers={"accept": "application/json"}).json()["code"]
    r, body = fetch(client, "GET", f"/{sealed}?raw=true", "gzip")
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["ct"] == "Q" * 4000


def test_small_answers_and_binary_files_are_not_compressed(client):
    small = client.post("/", content=b"x = 1\n").text.strip().rsplit("/", 1)[1]
    for url in (f"/{small}?raw=true", "/healthz", "/nope"):
        r, body = fetch(client, "GET", url, "br, zstd, gzip")
        assert len(body) < 1024, url
        assert "content-encoding" not in r.headers, url
        assert "vary" not in r.headers, url
    # a file that is not text, over the size: as it is
    r, body = fetch(client, "GET", "/static/hljs/LICENSE", "br, zstd, gzip")
    assert r.headers["content-type"] == "application/octet-stream"
    assert len(body) > 1024 and "content-encoding" not in r.headers


@pytest.mark.parametrize(("accept", "expected"), [
    ("gzip;q=0, br;q=0, zstd;q=0", ""),
    ("*;q=0", ""),
    ("br;q=0, *", "zstd"),
    ("br;q=0.0, zstd;q=0.000, gzip", "gzip"),
    ("gzip, identity;q=0", "gzip"),
    ("gzip;q=1, br;q=0.5", "gzip"),
    ("deflate", ""),
    ("GZIP", "gzip"),
])
def test_q_values_are_honoured(client, big, accept, expected):
    assert negotiate(accept) == expected
    for query in ("", "?raw=true"):
        r, body = fetch(client, "GET", f"/{big}{query}", accept)
        assert r.headers.get("content-encoding", "") == expected, (accept, query)
        assert "accept-encoding" in r.headers["vary"].lower()


def test_compressible_types():
    for ctype in ("text/html; charset=utf-8", "text/plain", "application/json",
                  "application/javascript", "image/svg+xml", "application/problem+json"):
        assert compressible(ctype), ctype
    for ctype in ("image/png", "application/octet-stream", "application/zip", "video/mp4", ""):
        assert not compressible(ctype), ctype


def test_a_streamed_paste_stays_streamed_and_as_it_is(server_factory):
    server = server_factory("--max", "8MiB")
    text = python_source(5 << 20)  # over 4 MiB: its raw text streams from Git
    with httpx.Client(base_url=server.url, timeout=60) as c:
        code = c.post("/", content=text.encode()).text.strip().rsplit("/", 1)[1]
        r, body = fetch(c, "GET", f"/{code}?raw=true", "br, zstd, gzip")
        assert "content-encoding" not in r.headers
        assert "content-length" not in r.headers  # streamed (chunked)
        assert body == text.encode()
