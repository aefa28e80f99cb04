"""410 Gone, in plain words, for a burned or expired paste: also after its
content is erased from Git and after a restart (the store remembers why an id
is gone: storage/tombstones.py). A deleted paste stays 404, as if never made."""

from __future__ import annotations

import time

import httpx

from pasteur.storage.objects import shard_path


def create(c: httpx.Client, text: str, **fields: str) -> dict:
    files = {"paste": (None, text), **{k: (None, v) for k, v in fields.items()}}
    r = c.post("/", files=files, headers={"accept": "application/json"})
    assert r.status_code == 201, r.text
    return r.json()


def wait_for(what: str, predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def in_history(srv, pid: str) -> bool:
    return bool(srv.git("log", "--all", "--format=%H", "--", shard_path(pid)).strip())


def test_burned_paste_is_410_read_and_deleted(server_factory):
    srv = server_factory("--rate-limit", "off", "--erase-interval", "1s")
    with httpx.Client(base_url=srv.url) as anon:
        pid = create(httpx.Client(base_url=srv.url), "read me once", burn="true")["code"]
        assert anon.post(f"/{pid}/read?raw=true").text == "read me once"
        for accept in ("text/html", "application/json", "text/plain"):
            r = anon.get(f"/{pid}", headers={"accept": accept})
            assert r.status_code == 410, (accept, r.status_code, r.text)
            assert "read and deleted" in r.text
        page = anon.get(f"/{pid}", headers={"accept": "text/html"})
        assert "<h1>410</h1>" in page.text and "no paste" not in page.text
        assert anon.get(f"/{pid}?raw=true").status_code == 410
        assert anon.head(f"/{pid}").status_code == 410
        again = anon.post(f"/{pid}/read?raw=true")
        assert again.status_code == 410 and "read and deleted" in again.text
        # erased from history, and still 410 after a restart
        wait_for("the erasure", lambda: not in_history(srv, pid))
        srv.restart()
        r = anon.get(f"/{pid}", headers={"accept": "text/html"})
        assert r.status_code == 410 and "read and deleted" in r.text
        assert anon.get("/Zzzzzz").status_code == 404  # never made: still 404


def test_expired_paste_is_410_after_removal(server_factory):
    srv = server_factory("--rate-limit", "off", "--erase-interval", "1s")
    with httpx.Client(base_url=srv.url) as c:
        pid = create(c, "short-lived", expiry="1s")["code"]
        # removed by the sweeper, then erased: the store no longer has it at all
        wait_for("the removal and erasure", lambda: not in_history(srv, pid))
        r = c.get(f"/{pid}", headers={"accept": "text/html"})
        assert r.status_code == 410 and "has expired and was deleted" in r.text
        srv.restart()
        r = c.get(f"/{pid}?raw=true")
        assert r.status_code == 410 and "has expired" in r.text


def test_deleted_paste_stays_404(server_factory):
    srv = server_factory("--rate-limit", "off")
    with httpx.Client(base_url=srv.url) as c:
        paste = create(c, "to delete")
        r = c.delete(f"/{paste['code']}", headers={"x-delete-token": paste["delete_token"]})
        assert r.status_code == 200
        assert c.get(f"/{paste['code']}?raw=true").status_code == 404
