"""Expiry, burn after reading, delete tokens, erasure from Git, password metadata."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from pasteur.crypto import encrypt
from pasteur.storage.objects import shard_path


def create(c: httpx.Client, text: str = "hello", **fields: str) -> dict:
    files = {"paste": (None, text), **{k: (None, v) for k, v in fields.items()}}
    r = c.post("/", files=files, headers={"accept": "application/json"})
    assert r.status_code == 201, r.text
    return r.json()


def in_tree(server, pid: str) -> bool:
    return shard_path(pid) in server.git("ls-tree", "-r", "--name-only", "HEAD").split()


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_expiry(server_factory):
    srv = server_factory("--rate-limit", "off")
    with httpx.Client(base_url=srv.url) as c:
        created = time.monotonic()
        # 5 s: its document is read from HEAD below, before it expires (2 s
        # were sometimes gone by then on a loaded machine)
        paste = create(c, "short-lived", expiry="5s")
        assert c.get(f"/{paste['code']}?raw=true").text == "short-lived"
        keep = create(c, "forever")
        assert paste["expires"].endswith("Z")
        doc = json.loads(srv.git("cat-file", "-p", f"HEAD:{shard_path(paste['code'])}"))
        assert doc["expires"] == paste["expires"]
        time.sleep(max(0.0, created + 6.1 - time.monotonic()))  # expires: whole seconds
        r = c.get(f"/{paste['code']}?raw=true")
        assert r.status_code in (404, 410)
        wait_for(lambda: not in_tree(srv, paste["code"]))
        assert "Expire paste" in srv.git("log", "-1", "--format=%s")
        assert c.get(f"/{keep['code']}?raw=true").text == "forever"
        for bad in ("soon", "-1m", "5 parsecs"):
            assert c.post("/", files={"paste": (None, "x"), "expiry": (None, bad)}).status_code \
                == 400


def test_expiry_limits(server_factory):
    srv = server_factory("--max-expiry", "1d", "--default-expiry", "1h")
    with httpx.Client(base_url=srv.url) as c:
        default = create(c)
        assert default["expires"] is not None
        assert c.post("/", files={"paste": (None, "x"), "expiry": (None, "never")}).status_code \
            == 400
        assert c.post("/", files={"paste": (None, "x"), "expiry": (None, "1w")}).status_code \
            == 400
        form = c.get("/").text
        assert 'value="1d"' in form and 'value="1w"' not in form and 'value="never"' not in form


def test_bad_expiry_flags():
    r = subprocess.run([sys.executable, "-m", "pasteur", "serve", "--max-expiry", "1d"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--default-expiry" in r.stderr


@pytest.mark.parametrize("flag", ["--max-expiry", "--default-expiry"])
def test_an_expiry_flag_past_any_representable_date_is_refused(flag):
    r = subprocess.run([sys.executable, "-m", "pasteur", "serve", flag, "300000000y"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "too long" in r.stderr, r.stderr


def test_burn_after_reading(server_factory):
    srv = server_factory()
    with httpx.Client(base_url=srv.url) as creator:
        paste = create(creator, "read me once", burn="true")
        pid = paste["code"]
        # the creator's own view does not burn it (cookie scoped to the paste)
        assert creator.get(f"/{pid}?raw=true").text == "read me once"
        assert creator.get(f"/{pid}").status_code == 200
    with httpx.Client(base_url=srv.url) as reader:
        page = reader.get(f"/{pid}", headers={"accept": "text/html"})
        assert page.status_code == 200 and "deleted once read" in page.text
        assert "read me once" not in page.text  # a link preview does not burn it
        assert in_tree(srv, pid)
        r = reader.post(f"/{pid}/read", headers={"accept": "text/html"})
        assert r.status_code == 200 and "read me once" in r.text
        assert r.headers["cache-control"] == "no-store"
        assert reader.get(f"/{pid}?raw=true").status_code == 404
        assert not in_tree(srv, pid)
        assert "Burn paste" in srv.git("log", "-1", "--format=%s")
        # the API reads with a POST (a GET is told so, and burns nothing)
        other = create(httpx.Client(base_url=srv.url), "api burn", burn="true")["code"]
        r = reader.get(f"/{other}?raw=true")
        assert r.status_code == 409 and f"POST /{other}/read?raw=true" in r.text
        r = reader.post(f"/{other}/read?raw=true")
        assert r.text == "api burn" and r.headers["content-type"].startswith("text/plain")
        assert reader.post(f"/{other}/read?raw=true").status_code == 404


def test_delete_token(server_factory):
    srv = server_factory()
    with httpx.Client(base_url=srv.url) as c:
        paste = create(c, "to delete")
        pid, token = paste["code"], paste["delete_token"]
        doc = json.loads(srv.git("cat-file", "-p", f"HEAD:{shard_path(pid)}"))
        assert token not in json.dumps(doc) and len(doc["del"]) == 64
        anon = httpx.Client(base_url=srv.url)
        assert anon.delete(f"/{pid}").status_code == 403
        assert anon.delete(f"/{pid}", headers={"x-delete-token": "wrong"}).status_code == 403
        assert anon.get(f"/{pid}?raw=true").status_code == 200  # kept
        confirm = anon.get(paste["delete_url"].replace(srv.url, ""))
        assert confirm.status_code == 200 and token in confirm.text and in_tree(srv, pid)
        r = anon.delete(f"/{pid}", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert anon.get(f"/{pid}?raw=true").status_code == 404
        # the form on the confirmation page (and the curl header on create)
        r = anon.post("/", content=b"second")
        pid2, token2 = r.text.strip().rsplit("/", 1)[1], r.headers["x-delete-token"]
        r = anon.post(f"/{pid2}/delete", data={"token": token2})
        assert r.status_code == 200 and "deleted" in r.text
        assert not in_tree(srv, pid2)
        # the creator's cookie alone is enough from the creator's browser
        pid3 = create(c, "mine")["code"]
        assert c.post(f"/{pid3}/delete").status_code == 200


def test_erasure_rewrites_history_and_prunes(server_factory):
    srv = server_factory("--erase-interval", "1s", "--rate-limit", "off")
    with httpx.Client(base_url=srv.url) as c:
        before = create(c, "before", user="Ann <ann@example.org>", comment="first")
        secret = create(c, "secret to erase", user="Bob", comment="the secret")
        after = create(c, "after", comment="third")
        blob = srv.git("rev-parse", f"HEAD:{shard_path(secret['code'])}").strip()
        r = c.delete(f"/{secret['code']}", headers={"x-delete-token": secret["delete_token"]})
        assert r.status_code == 200

        def erased() -> bool:
            return subprocess.run(["git", "-C", str(srv.repo), "cat-file", "-e", blob],
                                  capture_output=True).returncode != 0

        wait_for(erased, timeout=15)
    subprocess.run(["git", "-C", str(srv.repo), "fsck", "--strict", "--unreachable"],
                   check=True, capture_output=True)
    assert subprocess.run(["grep", "-r", "secret to erase", str(srv.repo)],
                          capture_output=True).returncode == 1
    log = srv.git("log", "--format=%an|%s")
    assert "Ann|first" in log and "third" in log and "the secret" not in log
    assert srv.git("rev-list", "--merges", "HEAD").strip() == ""
    with httpx.Client(base_url=srv.url) as c:
        assert c.get(f"/{before['code']}?raw=true").text == "before"
        assert c.get(f"/{after['code']}?raw=true").text == "after"
        assert c.get("/healthz").json()["erased"] == 1


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"salt": "AAAAAAAAAAAAAAAAAAAAAA", "iter": "600000"}, 201),
        ({"salt": "AAAA", "iter": "600000"}, 400),
        ({"salt": "AAAAAAAAAAAAAAAAAAAAAA", "iter": "1000"}, 400),
        ({"salt": "AAAAAAAAAAAAAAAAAAAAAA", "iter": "lots"}, 400),
    ],
)
def test_password_parameters(shared_server, fields, status):
    key, iv, ct = encrypt({"v": 1, "text": "pw", "lang": "", "ln": False})
    files = {"paste": (None, ct), "iv": (None, iv), "encrypted": (None, "true"),
             **{k: (None, v) for k, v in fields.items()}}
    r = httpx.post(shared_server.url + "/", files=files, headers={"accept": "application/json"})
    assert r.status_code == status, r.text
    if status == 201:
        doc = httpx.get(f"{shared_server.url}/{r.json()['code']}?raw=true").json()
        assert doc["kdf"] == {"alg": "pbkdf2-sha256", "salt": fields["salt"], "iter": 600000}


def test_password_needs_encryption(shared_server):
    r = httpx.post(shared_server.url + "/", files={
        "paste": (None, "x"), "salt": (None, "AAAAAAAAAAAAAAAAAAAAAA"), "iter": (None, "600000")})
    assert r.status_code == 400 and "encrypted" in r.text


def test_history_link_to_commit(server_factory):
    srv = server_factory("--commit-url", "https://git.example.org/pastes/commit/{commit}")
    with httpx.Client(base_url=srv.url) as c:
        first = create(c, "one", user="Ann", comment="first")
        create(c, "two")
        commit = srv.git("log", "--format=%H", "-1", "--", shard_path(first["code"])).strip()
        page = c.get(f"/{first['code']}").text
        assert f'href="https://git.example.org/pastes/commit/{commit}"' in page
        assert "<time" in page


def test_expiring_pastes_found_after_restart(server_factory):
    srv = server_factory("--rate-limit", "off")
    with httpx.Client(base_url=srv.url) as c:
        doomed = create(c, "expires soon", expiry="3s")["code"]
        kept = create(c, "kept")["code"]
    srv.restart()  # the new process learns of the expiry from the repository
    wait_for(lambda: not in_tree(srv, doomed), timeout=20)
    assert in_tree(srv, kept)


def test_expiry_scan_of_a_diff(tmp_path):
    import asyncio
    import sys

    from pasteur.paste import Paste
    from pasteur.storage.store import Store

    async def fill() -> tuple[str, str, str, str]:
        store = Store(tmp_path / "repo.git", journal=False)  # a commit per create
        store.start()
        a = await store.add(Paste.plain("a").with_options(expires="2030-01-01T00:00:00Z").to_json())
        first = str(store.head)
        b = await store.add(Paste.plain("b").with_options(expires="2031-01-01T00:00:00Z").to_json())
        await store.add(Paste.plain("c").to_json())
        head = str(store.head)
        await store.stop()
        return a, b, first, head

    a, b, first, head = asyncio.run(fill())
    scan = [sys.executable, "-m", "pasteur.storage.expiryscan", str(tmp_path / "repo.git"), head]
    out = subprocess.run(scan, capture_output=True, text=True, check=True).stdout.split("\n")
    assert sorted(filter(None, out)) == [f"2030-01-01T00:00:00Z {a}", f"2031-01-01T00:00:00Z {b}"]
    out = subprocess.run([*scan, first], capture_output=True, text=True, check=True).stdout
    assert out == f"2031-01-01T00:00:00Z {b}\n"
