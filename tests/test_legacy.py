"""The original OCaml Pasteur's pastes, links and page against this server
(issue 15 items 1-3): a repository as the original leaves it
(``fixtures_legacy.py``, its encrypted paste made in Chromium's WebCrypto),
served from a local repository and through a git daemon remote with
pull-on-miss; its links opened in Chromium and by ``pasteur get``; its
page's POST replayed from Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pasteur import crypto, languages
from pasteur.ids import ALPHABET
from pasteur.paste import InvalidPaste, Paste

from .conftest import Server, make_server
from .fixtures_git import GitDaemon, start_pasteur, stop
from .fixtures_legacy import (
    AUTHOR,
    MESSAGE,
    ORIGINAL_ENCRYPT,
    ORIGINAL_POST,
    commit_original,
    make_path,
    ocaml_json,
    original_repository,
)

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

PLAIN = 'def f(x):\n    return "<b>" + x  # café \\ \t tab\n'
SECRET = "the original's secret: 秘密 ünïcode\nsecond line\n"
SHORT = "hi"
# Every id of two characters is taken by a root blob (for the id picker).
CROWD = ["".join(p) for p in product(ALPHABET, repeat=2)]


@pytest.fixture(scope="module")
def sealed(browser) -> dict:
    """The secret encrypted by the original page's code in Chromium: {hex, key}."""
    page = browser.new_page()
    try:
        # A blank page of a secure origin (loopback), served by Playwright:
        # WebCrypto exists only there.
        page.route("http://localhost/", lambda route: route.fulfill(
            body="<!doctype html><title>original</title>", content_type="text/html"))
        page.goto("http://localhost/")
        return page.evaluate(ORIGINAL_ENCRYPT, SECRET)
    finally:
        page.close()


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, sealed: dict) -> Path:
    """The original's repository: a plain paste, a short one, an encrypted
    one (Chromium's), a document in neither format, and (in one commit) a
    blob for every two-character id."""
    path = tmp_path_factory.mktemp("original") / "pasteur.git"
    original_repository(path, [
        ("abc", ocaml_json(PLAIN)),
        ("Sh0", ocaml_json(SHORT)),
        ("XyZ", ocaml_json(sealed["hex"], encrypted=True)),
        ("bad", b'{ "text": "not the original\'s format" }'),
        ("Bin", b'{ "contents": { "invalid_utf8_string": [ 111, 107, 255, 10 ] } }'),
    ])
    commit_original(path, {i: ocaml_json(f"crowd {i}") for i in CROWD}, 1_700_010_000)
    return path


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, original: Path):
    """A server on a copy of the original's repository (ids of 2 characters)."""
    srv = make_server(tmp_path_factory.mktemp("local"), "--length", "2")
    srv.data.mkdir(parents=True)
    shutil.copytree(original, srv.repo)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: m.type == "error" and "Failed to load" not in m.text
          and errors.append(m.text))
    yield pg
    context.close()
    assert errors == []


def test_fixture_is_the_originals_layout(original: Path) -> None:
    log = subprocess.run(["git", "-C", str(original), "log", "--format=%an <%ae>%x00%cn <%ce>"
                          "%x00%ai%x00%B%x01", "main"],
                         capture_output=True, text=True, check=True).stdout
    commits = [c.strip("\n").split("\0") for c in log.split("\x01") if c.strip()]
    assert len(commits) == 6  # one per paste, the crowd in one
    for author, committer, date, message in commits:
        assert author == committer == AUTHOR and date.endswith("+0000")
        assert message == MESSAGE
    tree = subprocess.run(["git", "-C", str(original), "ls-tree", "main"], capture_output=True,
                          text=True, check=True).stdout
    assert "100644 blob" in tree and "\tabc\n" in tree and "\tXyZ\n" in tree
    raw = subprocess.run(["git", "-C", str(original), "cat-file", "-p", "main"],
                         capture_output=True, check=True).stdout
    assert raw.endswith(MESSAGE.encode())  # no trailing newline, as ocaml-git writes it
    blob = subprocess.run(["git", "-C", str(original), "cat-file", "-p", "main:XyZ"],
                          capture_output=True, check=True).stdout
    assert blob.startswith(b'{ "contents":\n    "') and blob.endswith(b'"encrypted": true }')


def test_raw_is_the_exact_contents(local: Server) -> None:
    for query in ("raw=true", "raw"):
        r = httpx.get(f"{local.url}/abc?{query}")
        assert r.status_code == 200, query
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.content == PLAIN.encode()
    assert httpx.get(f"{local.url}/Sh0?raw").text == SHORT
    # raw= and raw=false are the page, as in the original
    for query in ("raw=", "raw=false"):
        assert httpx.get(f"{local.url}/abc?{query}").headers["content-type"].startswith(
            "text/html")


def test_page_highlighted_by_the_server(local: Server) -> None:
    r = httpx.get(f"{local.url}/abc?hl=python")
    assert r.status_code == 200
    assert '<span class="hljs-keyword">def</span>' in r.text and "&lt;b&gt;" in r.text
    plain = httpx.get(f"{local.url}/abc").text
    assert "hljs-keyword" not in plain and "&lt;b&gt;" in plain


def test_every_original_hl_is_accepted(local: Server) -> None:
    assert len(languages.ORIGINAL_HL) == 85
    with httpx.Client(base_url=local.url) as client:
        for hl in [*languages.ORIGINAL_HL, "__no_highlighting__", "no-such-language", ""]:
            r = client.get("/abc", params={"hl": hl})
            assert r.status_code == 200, hl
            mapped = languages.resolve(hl) or ""
            if mapped:  # highlighted, its language named
                assert '<span class="lang">' in r.text, hl
            if mapped in ("coq", "erlang", "nix", "latex", "fsharp", "sml"):
                assert '<span class="hljs-' in r.text.split('id="paste-text"')[1], hl
        # an old link with ln and an unknown language: shown, numbered
        r = client.get("/abc?ln=true&hl=klingon")
        assert r.status_code == 200 and 'class="gutter"' in r.text


def test_encrypted_raw_and_document(local: Server, sealed: dict) -> None:
    r = httpx.get(f"{local.url}/XyZ?raw=true")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == sealed["hex"]
    doc = httpx.get(f"{local.url}/XyZ?raw=true", headers={"accept": "application/json"}).json()
    assert doc == {"contents": sealed["hex"], "encrypted": True}


def test_neither_format_is_a_clear_error(local: Server) -> None:
    for _ in range(3):  # every time the same answer, no server error
        r = httpx.get(f"{local.url}/bad", headers={"accept": "text/html"})
        assert r.status_code == 422
        assert "format this server cannot read" in r.text
    assert httpx.get(f"{local.url}/bad?raw=true").status_code == 422


def test_a_string_that_was_not_utf8(local: Server) -> None:
    """The original wrote a paste that was not UTF-8 as data-encoding's
    {"invalid_utf8_string": [bytes]}: served as text, U+FFFD for the bad byte."""
    r = httpx.get(f"{local.url}/Bin?raw=true")
    assert r.status_code == 200 and r.content == "ok\ufffd\n".encode()
    r = httpx.get(f"{local.url}/Bin", headers={"accept": "text/html"})
    assert r.status_code == 200 and "ok\ufffd" in r.text


def test_new_ids_never_take_an_original_id(local: Server) -> None:
    with httpx.Client(base_url=local.url) as client:
        ids = [client.post("/", content=f"new {n}".encode()).text.strip().rsplit("/", 1)[1]
               for n in range(6)]
    taken = set(CROWD) | {"abc", "Sh0", "XyZ", "bad", "Bin"}
    assert not set(ids) & taken, ids
    local.settle()
    assert httpx.get(f"{local.url}/aa?raw").text == "crowd aa"  # untouched
    for n, paste_id in enumerate(ids):
        assert httpx.get(f"{local.url}/{paste_id}?raw=true").text == f"new {n}"


def test_legacy_link_decrypts_in_chromium(local: Server, sealed: dict, page) -> None:
    page.goto(f"{local.url}/{make_path('XyZ', None, 'python', None, sealed['key'])}")
    code = page.locator("#paste-code")
    code.wait_for(state="visible")
    assert code.inner_text() == SECRET.rstrip("\n") or code.inner_text() == SECRET


def test_legacy_link_with_a_wrong_key_says_so(local: Server, page) -> None:
    v1_key = crypto.b64url_encode(bytes(32))
    page.goto(f"{local.url}/XyZ#{v1_key}")
    status = page.locator("#paste-status")
    status.wait_for(state="visible")
    page.wait_for_function("!document.getElementById('paste-status').textContent"
                           ".includes('Decrypting')")
    assert "key" in status.inner_text()
    assert page.locator("#paste-code").inner_text() == ""


def _get(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pasteur", "get", url], capture_output=True,
                          text=True, timeout=60)


def test_pasteur_get_opens_legacy_links(local: Server, sealed: dict) -> None:
    out = _get(f"{local.url}/{make_path('XyZ', None, 'ocaml', None, sealed['key'])}")
    assert out.returncode == 0, out.stderr
    assert out.stdout == SECRET
    plain = _get(f"{local.url}/abc?hl=python")
    assert plain.returncode == 0 and plain.stdout == PLAIN
    wrong = base64.b64encode(json.dumps({"kty": "oct", "k": crypto.b64url_encode(bytes(16)),
                                         "alg": "A128CBC"}).encode()).decode()
    bad = _get(f"{local.url}/XyZ#{wrong}")
    assert bad.returncode == 1 and "cannot decrypt" in bad.stderr


def test_original_page_post_from_chromium(local: Server, page) -> None:
    page.goto(local.url + "/")
    text = "from the old page\nline two\n"
    plain = page.evaluate(ORIGINAL_POST, {"text": text, "hl": "coq", "ln": True, "raw": False,
                                          "encrypted": False})
    assert plain["status"] == 200, plain
    assert plain["type"] == "application/json" and plain["origin"] == "*"
    body = json.loads(plain["body"])
    assert list(body) == ["ln", "raw", "hl", "code"]
    assert plain["body"] == json.dumps(body, separators=(",", ":"))
    assert body["ln"] is True and body["raw"] is False and body["hl"] == "coq"
    local.settle()
    assert httpx.get(f"{local.url}/{body['code']}?raw=true").text == text  # CRLF undone
    page.goto(f"{local.url}/{make_path(body['code'], True, 'coq', None, None)}")
    assert "from the old page" in page.locator("#paste").inner_text()

    sealed = page.evaluate(ORIGINAL_POST, {"text": SECRET, "hl": "__no_highlighting__",
                                           "ln": False, "raw": False, "encrypted": True})
    assert sealed["status"] == 200, sealed
    body = json.loads(sealed["body"])
    assert body == {"ln": False, "raw": False, "code": body["code"]}  # no hl: none kept
    local.settle()
    link = f"{local.url}/{make_path(body['code'], None, None, None, sealed['key'])}"
    page.goto(link)
    code = page.locator("#paste-code")
    code.wait_for(state="visible")
    assert code.inner_text().rstrip("\n") == SECRET.rstrip("\n")
    out = _get(link)
    assert out.returncode == 0 and out.stdout == SECRET
    stored = httpx.get(f"{local.url}/{body['code']}?raw=true",
                       headers={"accept": "application/json"}).json()
    assert stored["enc"] == "aes-128-cbc" and "iv" not in stored  # kept as the original made it


def test_original_page_post_errors_are_400_text(local: Server, page) -> None:
    page.goto(local.url + "/")
    bad = page.evaluate("""async () => {
      const data = new FormData();
      data.set("paste", "not hex"); data.set("encrypted", "on");
      const r = await fetch("/", { method: "POST", body: data });
      return { status: r.status, body: await r.text() };
    }""")
    assert bad["status"] == 400 and "hex" in bad["body"]


def test_own_api_unchanged(local: Server) -> None:
    """The same multipart from curl (no Sec-Fetch-Mode) or a navigating form
    gets the project's answers, not the original's JSON."""
    files = {"paste": (None, "x"), "hl": (None, "python")}
    curl = httpx.post(local.url + "/", files=files)
    assert curl.status_code == 201 and curl.text.startswith(local.url)
    form = httpx.post(local.url + "/", files=files, headers={
        "sec-fetch-mode": "navigate", "accept": "text/html"})
    assert form.status_code == 303
    ours = httpx.post(local.url + "/", files=files, headers={
        "sec-fetch-mode": "cors", "accept": "application/json"})
    assert ours.status_code == 201 and "delete_url" in ours.json()
    # and the project's own create still refuses an unknown language
    assert httpx.post(local.url + "/", files={"paste": (None, "x"),
                                              "hl": (None, "klingon")}).status_code == 400


def test_pull_on_miss_from_a_git_daemon(tmp_path: Path, original: Path, sealed: dict) -> None:
    base = tmp_path / "daemon"
    base.mkdir()
    shutil.copytree(original, base / "orig.git")
    daemon = GitDaemon(base)
    daemon.start()
    inst = None
    try:
        inst = start_pasteur(tmp_path / "p", "-r", daemon.url("orig.git"),
                             "--sync-interval", "0")
        client = inst.client()
        deadline = time.monotonic() + 40
        while client.get("/abc?raw").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/abc?raw").content == PLAIN.encode()
        # the original, still running elsewhere, writes a paste to the remote
        commit_original(base / "orig.git", {"nEw": ocaml_json("pushed by the original")},
                        1_700_020_000)
        deadline = time.monotonic() + 40
        r = client.get("/nEw?raw=true")
        while r.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.5)  # a miss fetches, at most one every MISS_INTERVAL
            r = client.get("/nEw?raw=true")
        assert r.status_code == 200 and r.text == "pushed by the original"
        out = _get(f"{inst.base}/{make_path('XyZ', None, 'python', None, sealed['key'])}")
        assert out.returncode == 0 and out.stdout == SECRET
    finally:
        if inst is not None:
            inst.close()
            stop(inst.proc)
        daemon.stop()


def test_decrypt_legacy_vector() -> None:
    key = bytes(range(16))
    text = "vector ✓\n"
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(crypto.LEGACY_IV)).encryptor()
    ct = (enc.update(padded) + enc.finalize()).hex()
    jwk = {"alg": "A128CBC", "ext": True, "k": crypto.b64url_encode(key),
           "key_ops": ["encrypt", "decrypt"], "kty": "oct"}
    fragment = base64.b64encode(json.dumps(jwk, separators=(",", ":")).encode()).decode()
    assert crypto.decrypt_legacy(fragment, ct) == text
    assert crypto.decrypt_legacy(fragment, ct.upper()) == text
    assert crypto.legacy_key(crypto.b64url_encode(bytes(32))) is None  # a v1 key's shape
    for bad_ct in (ct[:-1], ct[:-32] + "zz" * 16, ct + " "):
        with pytest.raises(crypto.DecryptError):
            crypto.decrypt_legacy(fragment, bad_ct)
    other = base64.b64encode(json.dumps({**jwk, "k": crypto.b64url_encode(bytes(16))})
                             .encode()).decode()
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt_legacy(other, ct)


def test_documents_of_the_original() -> None:
    plain = Paste.from_json(ocaml_json("a\nb"))
    assert plain.text == "a\nb" and not plain.encrypted and plain.created == ""
    sealed_doc = Paste.from_json(ocaml_json("00" * 16, encrypted=True))
    assert sealed_doc.legacy and sealed_doc.ct == "00" * 16 and sealed_doc.iv is None
    for bad in (b'{"contents": "x", "hl": "python"}',  # no other field, as its reader
                b'{"contents": {"invalid_utf8_string": [256]}}',
                b'{"contents": {"invalid_utf8_string": [97], "x": 1}}',
                b'{"contents": {"invalid_utf8_string": [255]}, "encrypted": true}',
                b'{"contents": "x", "encrypted": "yes"}', b'{"contents": "\\ud800"}',
                b'"just a string"', b"not json"):
        with pytest.raises(InvalidPaste):
            Paste.from_json(bad)
    # a string that was not UTF-8, as the original's data-encoding wrote it
    odd = Paste.from_json(b'{ "contents": { "invalid_utf8_string": [ 97, 255, 98 ] } }')
    assert odd.text == "a\ufffdb" and odd.size == len("a\ufffdb".encode())
    # what a POST from the original's page stores: v1, its hex ciphertext, no iv
    stored = Paste(created="2026-12-02T00:00:00Z", size=16, ct="ab" * 16, enc=crypto.LEGACY_ENC)
    doc = json.loads(stored.to_json())
    assert doc["enc"] == "aes-128-cbc" and "iv" not in doc and list(doc)[-1] == "ct"
    assert Paste.from_json(stored.to_json()) == stored
    with pytest.raises(InvalidPaste):
        Paste.from_json(json.dumps({**doc, "enc": "rot13"}).encode())


def test_original_hl_resolves() -> None:
    assert languages.resolve("coq") == "coq" and languages.resolve("python") == "python"
    assert languages.resolve("plaintext") == "" and languages.resolve("armasm") == ""
    assert "coq" not in languages.NAMES  # read in links, not offered by the form
    assert languages.resolve("nginx") == "nginx"  # ours, which the original lacked
    assert languages.resolve("__no_highlighting__") == "" and languages.resolve("") == ""
    assert languages.resolve("klingon") is None and languages.resolve(None) is None
    known = languages.NAMES | languages.LINK_NAMES
    assert all(v == "" or v in known for v in languages.ORIGINAL_HL.values())
    assert all(languages.lexer(v) is not None for v in languages.ORIGINAL_HL.values() if v)
