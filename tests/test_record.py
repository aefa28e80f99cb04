"""Issue 12 items 1, 2 and 6: every field checked before it is stored, one
bad record never stops the store, media types matched case-insensitively.
Against real ``pasteur serve`` processes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from pasteur import crypto
from pasteur.paste import Paste, b64url_encode
from pasteur.storage.journal import Journal
from pasteur.storage.objects import shard_path

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
    GitDaemon,
    bare_remote,
    git,
    remote_ids,
    start_pasteur,
)

pytest_plugins = ["tests.fixtures_git"]

ANGLE_USERS = ["a<b <c>", "<a> <b>", "a<<b>", "a <b\0c>"]


def post(srv, fields: dict[str, str], accept: str = "application/json") -> httpx.Response:
    files = {"paste": (None, fields.pop("paste", "hello\n").encode())}
    files.update({k: (None, v.encode("utf-8", "surrogatepass")) for k, v in fields.items()})
    return httpx.post(srv.url + "/", files=files, headers={"accept": accept}, timeout=30)


def fsck_strict(repo: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                   check=True, capture_output=True)


def committed_ids(srv) -> set[str]:
    out = srv.git("ls-tree", "-r", "--name-only", "HEAD")
    return {line.rsplit("/", 1)[-1] for line in out.splitlines()}


def test_angle_bracket_users_get_a_clear_400_and_the_store_goes_on(server):
    for user in ANGLE_USERS:
        r = post(server, {"user": user})
        assert r.status_code == 400, (user, r.text)
        assert "nothing was stored" in r.json()["error"]
        assert ("angle brackets" in r.json()["error"]) or ("NUL" in r.json()["error"])
    assert httpx.get(server.url + "/healthz").json()["uncommitted"] == 0
    r = post(server, {"user": "  Ann<ann@example.org> ", "comment": "first\r\nsecond"})
    assert r.status_code == 201, r.text
    pid = r.json()["code"]
    server.settle()
    assert server.git("log", "-1", "--format=%an|%ae|%B").strip() == \
        "Ann|ann@example.org|first\nsecond"
    server.restart()
    r = post(server, {"user": "Bob"})
    assert r.status_code == 201, r.text
    server.settle()
    assert {pid, r.json()["code"]} <= committed_ids(server)
    fsck_strict(server.repo)


@pytest.mark.parametrize("comment,status", [
    ("a\0b", 400), ("colour \x1b[31mred", 400), ("tab\tand\nlines\r\n", 201)])
def test_comment_nul_and_controls(server, comment, status):
    assert post(server, {}).status_code == 201
    before = server.git("rev-parse", "-q", "--verify", "HEAD").strip()
    r = post(server, {"comment": comment, "user": "Ann"})
    assert r.status_code == status, r.text
    server.settle()
    after = server.git("rev-parse", "-q", "--verify", "HEAD").strip()
    if status == 400:
        assert after == before
    else:
        assert server.git("log", "-1", "--format=%B").strip() == "tab\tand\nlines"
    fsck_strict(server.repo)


def test_iter_in_superscript_digits_is_a_400(server):
    ct = b64url_encode(bytes(32))
    iv = b64url_encode(bytes(12))
    salt = b64url_encode(bytes(16))
    for it in ("²", "٦٠٠٠٠٠", "600000²", "99999999999999999999", "-600000"):
        r = post(server, {"paste": ct, "iv": iv, "encrypted": "true", "salt": salt, "iter": it})
        assert r.status_code == 400, (it, r.text)
        assert "iter" in r.json()["error"]
    r = post(server, {"paste": ct, "iv": iv, "encrypted": "true", "salt": salt,
                      "iter": "600000"})
    assert r.status_code == 201, r.text


def test_huge_expiries_are_refused_before_anything_is_stored(server_factory):
    srv = server_factory("--max-expiry", "30d", "--default-expiry", "1d")
    for expiry in ("300000000y", "9999999999999d", "31d", "never", "٣m", "1e9s"):
        r = post(srv, {"expiry": expiry})
        assert r.status_code == 400, (expiry, r.text)
    assert httpx.get(srv.url + "/healthz").json()["uncommitted"] == 0
    r = post(srv, {"expiry": "30d"})
    assert r.status_code == 201 and r.json()["expires"]
    unbounded = server_factory()
    for expiry in ("300000000y", "9999999999999d"):
        r = post(unbounded, {"expiry": expiry})
        assert r.status_code == 400, (expiry, r.text)
        assert "too long" in r.json()["error"]
    r = post(unbounded, {"expiry": "1000y"})  # the longest, a date that reads back
    assert r.status_code == 201, r.text
    pid = r.json()["code"]
    assert httpx.get(f"{unbounded.url}/{pid}?raw=true").status_code == 200
    unbounded.restart()  # the expiry scan reads it at start
    assert httpx.get(f"{unbounded.url}/{pid}?raw=true").status_code == 200
    assert httpx.delete(f"{unbounded.url}/{pid}",
                        headers={"x-delete-token": r.json()["delete_token"]}).status_code == 200


def test_flags_take_known_values_only(server):
    assert post(server, {"burn": "maybe"}).status_code == 400
    r = post(server, {"burn": "ON", "ln": "0"})
    assert r.status_code == 201 and r.json()["burn"] is True


def _plant(journal_path: Path, items: list[tuple[str, str | None, str | None, bytes]]) -> None:
    journal = Journal(journal_path)
    try:
        journal.read()
        journal.append(items)
    finally:
        journal.close()


def test_a_bad_journal_record_is_quarantined_at_start(server):
    r = post(server, {})
    assert r.status_code == 201
    server.settle()
    server.stop()
    good = Paste.plain("planted and fine\n").to_json()
    _plant(server.repo / "pasteur-journal", [
        ("Bad1", "a<b <c>", None, good),
        ("Good", None, "planted", good),
        ("Bad2", None, "nul\0inside", good),
        ("Bad3", None, None, b'{"v":1,"created":"+10000-01-01T00:00:00Z","size":1,"text":"x"}'),
    ])
    server.start()
    server.settle()
    assert httpx.get(f"{server.url}/Good?raw=true").text == "planted and fine\n"
    for bad in ("Bad1", "Bad2", "Bad3"):
        assert httpx.get(f"{server.url}/{bad}?raw=true").status_code == 404
    r = post(server, {"user": "Ann"})
    assert r.status_code == 201
    server.settle()
    assert {"Good", r.json()["code"]} <= committed_ids(server)
    lines = [json.loads(x) for x in (server.data / "quarantine.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["Bad1", "Bad2", "Bad3"]
    assert all(x["reason"] for x in lines)
    assert "set aside" in server.log()
    fsck_strict(server.repo)
    server.restart()  # passed by the checkpoint: not replayed again
    server.settle()
    assert len((server.data / "quarantine.jsonl").read_text().splitlines()) == 3
    assert post(server, {}).status_code == 201


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart body with its Content-Type in mixed case, boundary quoted."""
    req = httpx.Request("POST", "http://x/", files={k: (None, v.encode()) for k, v in
                                                   fields.items()})
    body = req.read()
    boundary = req.headers["content-type"].split("boundary=", 1)[1]
    return body, f'Multipart/Form-Data ;  BOUNDARY="{boundary}"'


def test_mixed_case_multipart_keeps_every_field_and_a_password_paste_round_trips(server):
    payload = crypto.make_payload("secret text\n", "python")
    key, iv, ct, salt, iterations = crypto.encrypt_with_password(payload, "pw")
    body, ctype = _multipart({"paste": ct, "iv": iv, "encrypted": "true", "salt": salt,
                              "iter": str(iterations), "burn": "true", "expiry": "1h",
                              "user": "Ann <ann@example.org>"})
    r = httpx.post(server.url + "/", content=body,
                   headers={"content-type": ctype, "accept": "Application/JSON"})
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["burn"] is True and answer["expires"]
    doc = json.loads(server.git("cat-file", "-p", f"HEAD:{shard_path(answer['code'])}"))
    assert doc["iv"] == iv and doc["ct"] == ct and doc["kdf"]["salt"] == salt
    assert server.git("log", "-1", "--format=%an <%ae>").strip() == "Ann <ann@example.org>"
    # a burn paste: read (and burned) by POST only
    got = httpx.post(f"{server.url}/{answer['code']}/read",
                     headers={"accept": "application/json"}).json()
    kdf = got["kdf"]
    assert crypto.decrypt(key, got["iv"], got["ct"], "pw", kdf["salt"], kdf["iter"]) == payload


def test_accept_is_matched_case_insensitively(server):
    r = post(server, {}, accept="Application/Json")
    assert r.status_code == 201 and "code" in r.json()
    r = post(server, {"burn": "nope"}, accept="TEXT/HTML")
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    r = post(server, {}, accept="application/json;q=0, text/plain")
    assert r.status_code == 201 and r.text.startswith(server.url)


def test_push_to_a_remote_that_checks_what_it_receives(git_daemon: GitDaemon, pasteurs,
                                                       tmp_path: Path):
    bare = bare_remote(git_daemon.base / "strict.git")
    git("-C", bare, "config", "receive.fsckObjects", "true")
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("strict.git"), "--sync-interval", "0")
    pasteurs.append(a)
    client = a.client()
    for user in ANGLE_USERS:
        r = client.post("/", files={"paste": (None, b"x"), "user": (None, user.encode())})
        assert r.status_code == 400
    r = client.post("/", files={"paste": (None, b"x"), "comment": (None, b"nul\0")})
    assert r.status_code == 400
    r = client.post("/", files={"paste": (None, b"y"),
                                "user": (None, "Zoë <z@example.org>".encode()),
                                "comment": (None, "héllo\r\nworld".encode())},
                    headers={"accept": "application/json"})
    assert r.status_code == 201, r.text
    pid = r.json()["code"]
    ids = [pid, a.paste("plain")]
    deadline = time.monotonic() + 30
    while sorted(remote_ids(bare)) != sorted(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "rejected" not in a.output() and "nulInCommit" not in a.output()
    assert sorted(remote_ids(bare)) == sorted(ids)
    git("-C", bare, "fsck", "--strict", "--no-dangling")


def test_a_committed_paste_with_an_unreadable_expiry_still_reads_and_deletes(server):
    """A repository written before expiries were checked can hold a year past
    9999: the paste reads as never expiring and deletes, no 500."""
    r = post(server, {"paste": "old\n", "expiry": "1d"})
    assert r.status_code == 201
    pid, token = r.json()["code"], r.json()["delete_token"]
    server.settle()
    server.stop()
    path = shard_path(pid)
    doc = json.loads(git("-C", server.repo, "cat-file", "blob", f"HEAD:{path}"))
    doc["expires"] = "+10000-01-01T00:00:00Z"
    blob = subprocess.run(["git", "-C", str(server.repo), "hash-object", "-w", "--stdin"],
                          input=json.dumps(doc).encode(), check=True,
                          capture_output=True).stdout.decode().strip()
    env_index = {"GIT_INDEX_FILE": str(server.data / "planted.index")}
    run = lambda *a: subprocess.run(  # noqa: E731
        ["git", "-C", str(server.repo), *a], check=True, capture_output=True, text=True,
        env={**os.environ, **env_index}).stdout.strip()
    run("read-tree", "HEAD")
    run("update-index", "--cacheinfo", f"100644,{blob},{path}")
    tree = run("write-tree")
    commit = run("commit-tree", tree, "-p", "HEAD", "-m", "planted: a year past 9999")
    run("update-ref", "HEAD", commit)
    server.start()
    assert httpx.get(f"{server.url}/{pid}?raw=true").text == "old\n"
    assert httpx.get(f"{server.url}/{pid}").status_code == 200
    r = httpx.delete(f"{server.url}/{pid}", headers={"x-delete-token": token})
    assert r.status_code < 400, r.text
    assert httpx.get(f"{server.url}/{pid}?raw=true").status_code in (404, 410)


def test_the_encryption_format_is_checked_and_stored(server):
    """fmt (2: compressed, then encrypted) is stored for readers to see; anything but 1 or 2
    in ASCII digits, or fmt without encryption, is a 400 and nothing is stored."""
    payload = crypto.make_payload("print('v2')\n" * 200, "python", True)
    sealed = crypto.new_paste(payload)
    r = post(server, sealed.fields())
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    doc = json.loads(server.git("cat-file", "-p", f"HEAD:{shard_path(code)}"))
    assert doc["fmt"] == 2 and doc["ct"] == sealed.ct
    assert list(doc)[-3:] == ["fmt", "iv", "ct"]  # ct stays the last key (write_document)
    got = httpx.get(f"{server.url}/{code}?raw=true").json()
    assert crypto.decrypt(sealed.key, got["iv"], got["ct"], fmt=got["fmt"]) == payload
    page = httpx.get(f"{server.url}/{code}").text
    assert 'data-fmt="2"' in page
    v1 = crypto.encrypt(payload)
    r = post(server, {"paste": v1[2], "iv": v1[1], "encrypted": "true", "fmt": "1"})
    doc = json.loads(server.git("cat-file", "-p", f"HEAD:{shard_path(r.json()['code'])}"))
    assert "fmt" not in doc  # v1: as before
    before = committed_ids(server)
    for fmt in ("0", "3", "²", "2.0", "-2", "v2"):
        r = post(server, {**sealed.fields(), "fmt": fmt})
        assert r.status_code == 400 and "fmt must be a number from 1 to 2" in r.json()["error"]
    r = post(server, {"paste": "clear text", "fmt": "2"})
    assert r.status_code == 400 and "fmt is the format of an encrypted paste" in r.text
    assert committed_ids(server) == before


def test_a_stored_document_of_an_unknown_format_is_refused():
    sealed = crypto.new_paste(crypto.make_payload("x"))
    doc = {"v": 1, "created": "2026-12-02T00:00:00Z", "size": 30, "enc": "aes-256-gcm",
           "fmt": 2, "iv": sealed.iv, "ct": sealed.ct}
    assert Paste.from_json(json.dumps(doc).encode()).fmt == 2
    for fmt in (3, "2", True, None):
        with pytest.raises(ValueError, match="unknown encryption format"):
            Paste.from_json(json.dumps({**doc, "fmt": fmt}).encode())
