"""Fuzzing the form parser and the routes with hypothesis: never a 500, never a crash."""

from __future__ import annotations

import socket
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pasteur.web.form import FormError, read_upload

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    from tests.conftest import make_server

    srv = make_server(tmp_path_factory.mktemp("fuzz"), "--rate-limit", "off", "-m", "4KiB")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(fuzz_server):
    with httpx.Client(base_url=fuzz_server.url, timeout=10) as c:
        yield c


names = st.sampled_from(["paste", "hl", "ln", "raw", "encrypted", "iv", "user", "comment",
                         "other", "", "pa\"ste"])
header_lines = st.lists(
    st.one_of(
        names.map(lambda n: f'Content-Disposition: form-data; name="{n}"'),
        st.just("Content-Type: text/plain"),
        st.text(min_size=0, max_size=40).map(lambda t: t.replace("\r", "").replace("\n", "")),
        st.just("X-Big: " + "a" * 5000),
    ),
    max_size=10,
)
parts = st.lists(st.tuples(header_lines, st.binary(max_size=300)), max_size=40)


def build(parts_list, boundary: bytes, close: bool, junk: bytes) -> bytes:
    out = bytearray(junk)
    for headers, body in parts_list:
        out += b"--" + boundary + b"\r\n"
        for h in headers:
            out += h.encode("utf-8", "replace") + b"\r\n"
        out += b"\r\n" + body + b"\r\n"
    if close:
        out += b"--" + boundary + b"--\r\n"
    return bytes(out)


@FUZZ
@given(parts=parts, close=st.booleans(), junk=st.binary(max_size=20),
       boundary=st.sampled_from([b"b", b"----WebKitFormBoundaryX", b"a b", b"\xff"]))
def test_multipart_never_500(client, parts, close, junk, boundary):
    body = build(parts, boundary, close, junk)
    ctype = b"multipart/form-data; boundary=" + boundary
    r = client.post("/", content=body, headers={"content-type": ctype})
    assert r.status_code in (201, 400, 413), r.text
    assert r.text.strip()


@FUZZ
@given(path=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80),
       query=st.text(max_size=40))
def test_routes_never_500(client, path, query):
    url = "/" + quote(path, safe="/%.").lstrip("/")
    r = client.get(url, params={"hl": query, "ln": query, "raw": query})
    assert r.status_code in (200, 307, 400, 404), (url, r.status_code)


@pytest.mark.parametrize("path", ["/..", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                                  "/static/..%2f..%2fcli.py", "/static/%2e%2e/cli.py",
                                  "/abcd%2f..", "/static//etc/passwd", "/" + "a" * 5000])
def test_traversal_paths(fuzz_server, path):
    # sent byte for byte (an HTTP client would normalise the dots away)
    with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer[:200]
    assert b"import" not in answer and b"root:" not in answer


def test_thousands_of_parts_refused_fast(client):
    body = b"".join(b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n'
                    for _ in range(10_000)) + b"--b--\r\n"
    r = client.post("/", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code in (400, 413)


def test_huge_headers(client):
    r = client.post("/", content=b"x", headers={"x-huge": "a" * 100_000})
    assert r.status_code == 431  # limits.MAX_FIELD: one header line over 8 KiB
    assert client.get("/healthz").status_code == 200


@FUZZ
@given(data=st.binary(max_size=2000), split=st.integers(min_value=1, max_value=64))
async def test_parser_directly(data, split):
    async def chunks():
        for i in range(0, len(data), split):
            yield data[i : i + split]

    try:
        upload = await read_upload(chunks(), "multipart/form-data; boundary=b", None, 1024)
    except FormError as exc:
        assert exc.status in (400, 413)
    else:
        assert len(upload.paste) <= 4 * 1024
