"""The terminal client against a real server: same format as the browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pasteur import crypto
from pasteur.storage.objects import shard_path
from tests.fixtures_hostile import plant


def pasteur(*args: str, stdin: bytes = b"", env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "pasteur", *args], input=stdin,
                          capture_output=True, timeout=60, env={**os.environ, **(env or {})})


def test_paste_and_get_round_trip(shared_server, tmp_path):
    src = tmp_path / "hello.py"
    src.write_text("print('secret from the terminal')\n")
    r = pasteur("paste", "-s", shared_server.url, "--ln", str(src))
    assert r.returncode == 0, r.stderr
    url = r.stdout.decode().strip()
    assert "#" in url and b"delete:" in r.stderr
    pid, key = url.rsplit("/", 1)[1].split("#")
    blob = shared_server.git("cat-file", "-p", f"HEAD:{shard_path(pid)}")
    assert "secret from the terminal" not in blob and key not in blob
    assert "python" not in blob  # the language travels inside the ciphertext
    got = pasteur("get", url)
    assert got.returncode == 0 and got.stdout == src.read_bytes()


def test_stdin_plain_and_options(shared_server):
    r = pasteur("paste", "-s", shared_server.url, "--plain", "-l", "rust", "-e", "1h",
                "--user", "Term <t@example.org>", "--comment", "from a pipe",
                stdin=b"fn main(){}\n")
    assert r.returncode == 0, r.stderr
    url = r.stdout.decode().strip()
    assert "#" not in url
    assert httpx.get(url + "?raw=true").text == "fn main(){}\n"
    doc = json.loads(shared_server.git("cat-file", "-p",
                                       f"HEAD:{shard_path(url.rsplit('/', 1)[1])}"))
    assert doc["lang"] == "rust" and doc["expires"]
    assert "Term|from a pipe" in shared_server.git("log", "-1", "--format=%an|%s")
    assert pasteur("get", url).stdout == b"fn main(){}\n"


def test_password(shared_server):
    env = {"PASTEUR_PASSWORD": "correct horse"}
    r = pasteur("paste", "-s", shared_server.url, "-p", stdin=b"pw text", env=env)
    assert r.returncode == 0, r.stderr
    url = r.stdout.decode().strip()
    doc = httpx.get(url.split("#")[0] + "?raw=true").json()
    assert doc["kdf"]["iter"] >= 600_000
    assert pasteur("get", url, env=env).stdout == b"pw text"
    bad = pasteur("get", url, env={"PASTEUR_PASSWORD": "wrong"})
    assert bad.returncode == 1 and b"cannot decrypt" in bad.stderr


def test_burn_from_terminal(shared_server):
    url = pasteur("paste", "-s", shared_server.url, "-b", stdin=b"once").stdout.decode().strip()
    assert pasteur("get", url).stdout == b"once"
    again = pasteur("get", url)
    assert again.returncode == 1 and b"410" in again.stderr and b"read and deleted" in again.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["paste", "-s", "http://127.0.0.1:1"], b"x", b"cannot reach"),
        (["paste", "/nonexistent/file"], b"", b"cannot read"),
        (["paste", "-l", "klingon"], b"x", b"unknown language"),
        (["paste"], b"", b"empty"),
        (["paste"], b"\xff\xfe", b"not UTF-8"),
        (["get", "not a url"], b"", b"not a paste URL"),
        (["paste", "--plain", "-p"], b"x", b"needs encryption"),
    ],
)
def test_client_errors(shared_server, args, stdin, needle):
    if "-s" not in args and args[0] == "paste":
        args = [*args, "-s", shared_server.url]
    r = pasteur(*args, stdin=stdin, env={"PASTEUR_PASSWORD": "x"})
    assert r.returncode == 1
    assert needle in r.stderr and len(r.stderr.splitlines()) == 1


def test_get_errors(shared_server):
    url = pasteur("paste", "-s", shared_server.url, stdin=b"k").stdout.decode().strip()
    base, key = url.split("#")
    assert b"no #key" in pasteur("get", base).stderr
    wrong = pasteur("get", base + "#" + "A" * 43)
    assert wrong.returncode == 1 and b"cannot decrypt" in wrong.stderr
    missing = pasteur("get", shared_server.url + "/zzzzzz")
    assert missing.returncode == 1 and b"404" in missing.stderr


def test_the_server_stores_no_more_than_the_maximum_iterations(shared_server):
    key, iv, ct = crypto.encrypt(crypto.make_payload("pw"))
    for count, status in ((crypto.MAX_KDF_ITERATIONS, 201), (crypto.MAX_KDF_ITERATIONS + 1, 400)):
        r = httpx.post(shared_server.url + "/", headers={"accept": "application/json"}, files={
            "paste": (None, ct), "iv": (None, iv), "encrypted": (None, "true"),
            "salt": (None, "A" * 22), "iter": (None, str(count))})
        assert r.status_code == status, r.text
    assert f"{crypto.MAX_KDF_ITERATIONS}" in r.text


def test_a_hostile_iteration_count_is_refused_at_once(server):
    env = {"PASTEUR_PASSWORD": "pw"}
    url = pasteur("paste", "-s", server.url, "-p", stdin=b"x", env=env).stdout.decode().strip()
    pid = url.rsplit("/", 1)[1].split("#")[0]
    doc = json.loads(server.git("cat-file", "-p", f"HEAD:{shard_path(pid)}"))
    doc["kdf"]["iter"] = 10**12  # days of PBKDF2
    plant(server, pid, doc)
    assert httpx.get(f"{server.url}/{pid}?raw=true").json()["kdf"]["iter"] == 10**12
    # no password in the environment nor a terminal: refused before it is asked for
    got = pasteur("get", url, env={"PASTEUR_PASSWORD": ""})
    assert got.returncode == 1 and got.stdout == b""
    assert got.stderr.decode() == (
        "pasteur: cannot decrypt: the paste asks for 1,000,000,000,000 PBKDF2 iterations, "
        "more than the 10,000,000 allowed: refused (a hostile or damaged paste)\n")
    assert pasteur("get", url, env=env).returncode == 1


def test_paste_writes_format_v2_and_uncompressed_v1(shared_server):
    text = b"def f(x):\n    return x * 2\n" * 500
    urls = {}
    for flag in ("", "--uncompressed"):
        r = pasteur("paste", "-s", shared_server.url, *([flag] if flag else []), stdin=text)
        assert r.returncode == 0, r.stderr
        urls[flag] = r.stdout.decode().strip()
        assert pasteur("get", urls[flag]).stdout == text
    v2 = httpx.get(urls[""].split("#")[0] + "?raw=true").json()
    v1 = httpx.get(urls["--uncompressed"].split("#")[0] + "?raw=true").json()
    assert v2["fmt"] == 2 and "fmt" not in v1
    assert len(v2["ct"]) * 20 < len(v1["ct"])  # compressed before it was encrypted


def test_get_refuses_a_decompression_bomb(shared_server):
    key, iv = bytes(range(32)), bytes(12)
    zeros = crypto.deflate(b'{"v":1,"text":"' + b"0" * crypto.MAX_INFLATED + b'"}')
    ct = crypto.b64url_encode(AESGCM(key).encrypt(iv, zeros, None))
    r = httpx.post(shared_server.url + "/", headers={"accept": "application/json"}, files={
        "paste": (None, ct), "iv": (None, crypto.b64url_encode(iv)),
        "encrypted": (None, "true"), "fmt": (None, "2")})
    assert r.status_code == 201, r.text
    got = pasteur("get", f"{r.json()['url']}#{crypto.b64url_encode(key)}")
    assert got.returncode == 1 and got.stdout == b""
    assert got.stderr.decode().startswith(
        "pasteur: cannot decrypt: the paste inflates to more than 67,108,864 bytes: refused")
