"""Every route and every bad input, against a real ``pasteur serve``."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from pasteur.crypto import encrypt
from pasteur.storage.objects import shard_path


@pytest.fixture(scope="module")
def client(shared_server) -> httpx.Client:
    with httpx.Client(base_url=shared_server.url, timeout=10) as c:
        yield c


def head(server) -> str:
    try:
        return server.git("rev-parse", "--verify", "-q", "HEAD").strip()
    except subprocess.CalledProcessError:
        return ""


def paste_id(url: str) -> str:
    return url.strip().rsplit("/", 1)[1]


def test_form_page(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    html = r.text
    for needle in ('name="paste"', 'name="hl"', 'value="python"', 'name="ln"', 'name="raw"',
                   'name="encrypted"', 'name="user"', 'name="comment"', "No highlighting"):
        assert needle in html
    # Checked by form.js: without JavaScript the paste is sent in clear.
    assert 'name="encrypted" value="true" aria-describedby' in html
    assert 'name="password"' in html and "noscript.css" in html
    assert "<script>" not in html and " style=" not in html and "onclick" not in html


def test_security_headers_everywhere(client):
    for path in ("/", "/nope", "/static/style.css", "/healthz"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_curl_multipart_file(client, shared_server):
    r = client.post("/", files={"paste": ("hello.py", b"print('hi')\n")})
    assert r.status_code == 201
    assert r.text.endswith("\n") and r.text.startswith(shared_server.url + "/")
    pid = paste_id(r.text)
    doc = json.loads(shared_server.git("cat-file", "-p", f"HEAD:{shard_path(pid)}"))
    assert doc["v"] == 1 and doc["text"] == "print('hi')\n"
    assert doc["lang"] == "python"  # guessed from the file name
    raw = client.get(f"/{pid}?raw=true")
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.content == b"print('hi')\n"


def test_curl_data_binary(client):
    body = b"line one\nline two\n"
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = client.post("/", content=body, headers=form)
    assert r.status_code == 201
    assert client.get(f"/{paste_id(r.text)}?raw=true").content == body


def test_raw_body_options_in_query(client):
    r = client.post("/?hl=python&ln=true", content=b"x = 1\n")
    assert r.status_code == 201
    page = client.get(f"/{paste_id(r.text)}").text
    assert '<pre class="gutter" aria-hidden="true">1</pre>' in page


def test_json_api(client, shared_server):
    r = client.post("/", files={"paste": (None, "hello")}, headers={"accept": "application/json"})
    assert r.status_code == 201
    body = r.json()
    assert body["url"] == f"{shared_server.url}/{body['code']}"


def test_html_form_redirects(client):
    r = client.post("/", files={"paste": (None, "hi"), "raw": (None, "true")},
                    headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].endswith("?raw=true")
    r = client.post("/", files={"paste": (None, "hi")}, headers={"accept": "text/html"})
    assert r.status_code == 303 and "?" not in r.headers["location"]


def test_show_highlighted_and_escaped(client):
    text = "<script>alert(1)</script>\nprint('x')\n"
    r = client.post("/", files={"paste": (None, text), "hl": (None, "python"),
                                "ln": (None, "true")})
    pid = paste_id(r.text)
    page = client.get(f"/{pid}")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "&lt;" in page.text
    assert '<pre class="gutter" aria-hidden="true">1\n2</pre>' in page.text
    assert '<span class="hljs-built_in">print</span>' in page.text  # highlight.js's class
    plain = client.get(f"/{pid}?hl=&ln=false")
    assert 'class="gutter"' not in plain.text and "hljs-built_in" not in plain.text
    other = client.get(f"/{pid}?hl=rust")
    assert other.status_code == 200
    assert client.get(f"/{pid}?hl=klingon").status_code == 400


def test_encrypted_paste_stored_as_ciphertext(client, shared_server):
    secret = "the plaintext that must never reach the server"
    key, iv, ct = encrypt({"v": 1, "text": secret, "lang": "python", "ln": True})
    r = client.post("/", files={"paste": (None, ct), "iv": (None, iv),
                                "encrypted": (None, "true")},
                    headers={"accept": "application/json"})
    assert r.status_code == 201, r.text
    pid = r.json()["code"]
    blob = shared_server.git("cat-file", "-p", f"HEAD:{shard_path(pid)}")
    doc = json.loads(blob)
    assert doc["ct"] == ct and doc["iv"] == iv and doc["enc"] == "aes-256-gcm"
    assert secret not in blob and key not in blob and "python" not in blob
    page = client.get(f"/{pid}")
    assert page.status_code == 200 and f'data-ct="{ct}"' in page.text
    assert client.get(f"/{pid}?raw=true").json()["ct"] == ct
    assert key not in shared_server.log()


@pytest.mark.parametrize(
    ("files", "status", "needle"),
    [
        ({"hl": (None, "python")}, 400, "no 'paste' field"),
        ({"paste": (None, "")}, 400, "empty"),
        ({"paste": (None, "x"), "hl": (None, "klingon")}, 400, "unknown language"),
        ({"paste": (None, b"\xff\xfe bad")}, 400, "not UTF-8"),
        ({"paste": (None, "x"), "encrypted": (None, "true")}, 400, "unencrypted"),
        ({"paste": (None, "AAAA"), "iv": (None, "AAAAAAAAAAAAAAAA"),
          "encrypted": (None, "true"), "raw": (None, "true")}, 400, "raw"),
        ({"paste": (None, "not base64!"), "iv": (None, "AAAAAAAAAAAAAAAA"),
          "encrypted": (None, "true")}, 400, "base64"),
        ({"paste": (None, "A" * 40), "iv": (None, "AAAA"),
          "encrypted": (None, "true")}, 400, "IV"),
        ({"paste": (None, "x"), "user": (None, "u" * 300)}, 400, "too long"),
    ],
)
def test_bad_forms(client, shared_server, files, status, needle):
    before = head(shared_server)
    r = client.post("/", files=files)
    assert r.status_code == status
    assert needle in r.text
    assert head(shared_server) == before  # nothing stored


def test_malformed_multipart(client, shared_server):
    before = head(shared_server)
    cases = [
        # truncated: no closing boundary
        (b'--b\r\nContent-Disposition: form-data; name="paste"\r\n\r\nhello', "b"),
        # garbage
        (b"this is not multipart at all", "b"),
        # no boundary parameter
        (b"--b\r\n", None),
    ]
    for body, boundary in cases:
        ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
        r = client.post("/", content=body, headers={"content-type": ctype})
        assert r.status_code == 400, (body, r.text)
        assert r.text.strip()
    parts = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i for i in range(100)
    )
    r = client.post("/", content=parts + b"--b--\r\n",
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400
    assert head(shared_server) == before


def test_oversize_refused(client, shared_server):
    big = b"a" * ((1 << 20) + 1)
    r = client.post("/", files={"paste": (None, big)})
    assert r.status_code == 413 and "1 MiB" in r.text
    r = client.post("/", content=big)
    assert r.status_code == 413
    # exactly the limit is fine
    r = client.post("/", content=b"a" * (1 << 20))
    assert r.status_code == 201


def test_unknown_ids_and_paths(client):
    for path in ("/zzzz", "/ab", "/a..b", "/..%2f..%2fetc", "/static/nope.js",
                 "/static/../cli.py", "/%00"):
        r = client.get(path)
        assert r.status_code == 404, path
    assert client.delete("/").status_code == 405
    assert client.get("/zzzz", headers={"accept": "application/json"}).json()["error"]


def test_static_precompressed(client):
    url = next(
        line.split('href="')[1].split('"')[0]
        for line in client.get("/").text.splitlines()
        if "stylesheet" in line
    )
    assert "?v=" in url
    for enc in ("br", "zstd", "gzip"):
        r = client.get(url, headers={"accept-encoding": enc})
        assert r.headers["content-encoding"] == enc
        assert r.headers["vary"] == "Accept-Encoding"
        assert "immutable" in r.headers["cache-control"]
        etag = r.headers["etag"]
        again = client.get(url,
                           headers={"accept-encoding": enc, "if-none-match": etag})
        assert again.status_code == 304
    identity = client.get(url, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in identity.headers
    assert b"prefers-color-scheme" in identity.content
    # Without its hash (or with another) a URL is not cached as immutable.
    unhashed = client.get(url.split("?", 1)[0])
    assert unhashed.status_code == 200 and unhashed.headers["cache-control"] == "no-cache"


def test_access_log_has_no_content(client, shared_server):
    marker = "marker-7f3a9c-should-not-be-logged"
    client.post("/", files={"paste": (None, marker), "comment": (None, "c")})
    log = shared_server.log()
    assert '"POST /" 201' in log
    assert marker not in log


def test_basic_auth(server_factory):
    srv = server_factory("--auth", "alice:s3cret")
    r = httpx.get(srv.url + "/")
    assert r.status_code == 401 and "basic" in r.headers["www-authenticate"].lower()
    assert httpx.get(srv.url + "/", auth=("alice", "wrong")).status_code == 401
    assert httpx.get(srv.url + "/", auth=("alice", "s3cret")).status_code == 200
    r = httpx.post(srv.url + "/", content=b"hi", auth=("alice", "s3cret"))
    assert r.status_code == 201


def test_title_and_length_flags(server_factory):
    srv = server_factory("--title", "My <Bin>", "--length", "9", "-m", "64KiB")
    page = httpx.get(srv.url + "/").text
    assert "My &lt;Bin&gt;" in page and "64 KiB" in page
    r = httpx.post(srv.url + "/", content=b"x")
    assert len(paste_id(r.text)) == 9
    assert httpx.post(srv.url + "/", content=b"x" * (64 * 1024 + 1)).status_code == 413


def test_git_clone_shows_readable_files(server, tmp_path):
    r = httpx.post(server.url + "/", files={"paste": (None, "hello clone")})
    pid = paste_id(r.text)
    clone = tmp_path / "clone"
    server.settle()
    subprocess.run(["git", "clone", "-q", str(server.repo), str(clone)], check=True)
    doc = json.loads((clone / shard_path(pid)).read_text())
    assert doc["text"] == "hello clone" and doc["v"] == 1


def test_form_textarea_crlf_normalised_but_files_kept(client):
    r = client.post("/", files={"paste": (None, "a\r\nb\r\n"), "form": (None, "html")})
    assert client.get(f"/{paste_id(r.text)}?raw=true").content == b"a\nb\n"
    r = client.post("/", files={"paste": ("dos.txt", b"a\r\nb\r\n")})
    assert client.get(f"/{paste_id(r.text)}?raw=true").content == b"a\r\nb\r\n"


def test_get_and_head_never_burn_and_head_is_get_without_a_body(client, shared_server):
    clear = client.post("/", files={"paste": (None, "once\n"), "burn": (None, "true")},
                        headers={"accept": "application/json"}).json()["code"]
    ct, iv = "A" * 24, "B" * 16
    sealed = client.post("/", files={"paste": (None, ct), "iv": (None, iv), "burn": (None, "true"),
                                     "encrypted": (None, "true")},
                         headers={"accept": "application/json"}).json()["code"]
    plain = paste_id(client.post("/", content=b"kept").text)
    before = head(shared_server)
    anon = httpx.Client(base_url=shared_server.url, timeout=10)  # no creator cookie
    for pid in (clear, sealed):
        for query, accept in (("?raw=true", "*/*"), ("", "application/json"),
                              ("?raw=true", "application/json"), ("", "text/html"), ("", "*/*")):
            for method in ("HEAD", "GET", "HEAD"):
                r = anon.request(method, f"/{pid}{query}", headers={"accept": accept})
                assert r.status_code in (200, 409), (method, pid, query, accept, r.status_code)
                if r.status_code == 409:
                    assert method == "HEAD" or f"POST /{pid}/read" in r.text
    # the rest of the GET routes: HEAD answers as GET does, without a body
    for path in ("/", "/healthz", "/static/style.css", f"/{plain}", f"/{plain}?raw=true",
                 f"/{plain}/delete?token=x", "/nope", f"/{clear}"):
        got, headed = anon.get(path), anon.head(path)
        assert headed.status_code == got.status_code, path
        assert headed.content == b"", path
        for name in ("content-type", "content-length", "etag", "cache-control"):
            assert headed.headers.get(name) == got.headers.get(name), (path, name)
    assert head(shared_server) == before  # nothing committed: nothing burned
    assert anon.post(f"/{clear}/read?raw=true").text == "once\n"
    doc = anon.post(f"/{sealed}/read", headers={"accept": "application/json"}).json()
    assert doc["ct"] == ct and doc["iv"] == iv
    assert anon.head(f"/{clear}?raw=true").status_code == 404


def test_a_clear_paste_with_a_password_is_refused(client, shared_server):
    before = head(shared_server)
    for accept in ("text/html", "application/json", "*/*"):
        r = client.post("/", files={"paste": (None, "secret-ish"), "password": (None, "pw"),
                                    "form": (None, "html")}, headers={"accept": accept})
        assert r.status_code == 400 and "clear the password" in r.text, r.text
    assert head(shared_server) == before  # nothing stored
    r = client.post("/", files={"paste": (None, "clear"), "password": (None, ""),
                                "form": (None, "html")})
    assert r.status_code == 201  # an empty password field is no password


def test_language_badge_shows_its_display_name(client):
    r = client.post("/", files={"paste": (None, "int main() {}\n"), "hl": (None, "cpp")},
                    headers={"accept": "application/json"})
    assert r.status_code == 201, r.text
    page = client.get(f"/{r.json()['code']}").text
    assert '<span class="lang">C++</span>' in page and ">cpp<" not in page
