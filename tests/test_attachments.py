"""Attachments: files encrypted with the text (payload key "files"), from the terminal client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pasteur import crypto
from pasteur.client import terminal as client
from pasteur.storage.objects import shard_path


def pasteur(*args: str, stdin: bytes | None = b"", env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "pasteur", *args], input=stdin,
                          capture_output=True, timeout=60, env={**os.environ, **(env or {})})


def test_payload_files_round_trip():
    files = [("a.bin", "application/octet-stream", bytes(range(256))), ("e", "", b"")]
    payload = crypto.make_payload("text", "python", False, files)
    assert [f["name"] for f in payload["files"]] == ["a.bin", "e"]
    key, iv, ct = crypto.encrypt(payload)
    assert crypto.payload_files(crypto.decrypt(key, iv, ct)) == files
    assert "files" not in crypto.make_payload("no files")  # unchanged v1 without attachments
    assert crypto.payload_files(crypto.make_payload("no files")) == []


@pytest.mark.parametrize("files", [
    {}, [{"name": "x"}], [{"name": 1, "type": "", "data": ""}],
    [{"name": "x", "type": "", "data": "not base64!"}],
])
def test_malformed_files_are_refused(files):
    payload = {"v": 1, "text": "", "lang": "", "ln": False, "files": files}
    key, iv = bytes(32), bytes(12)
    ct = AESGCM(key).encrypt(iv, json.dumps(payload).encode(), None)
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(crypto.b64url_encode(key), crypto.b64url_encode(iv),
                       crypto.b64url_encode(ct))


@pytest.mark.parametrize(("name", "safe"), [
    ("report.pdf", "report.pdf"), ("../../etc/passwd", "passwd"), ("..", "attachment-1"),
    ("a\\b\\..\\c.txt", "c.txt"), (".bashrc", "bashrc"), ("", "attachment-1"),
    ("/", "attachment-1"), ("x\x00y\n.txt", "xy.txt"), ("dir/", "attachment-1"),
])
def test_safe_name(name, safe):
    assert client.safe_name(name, 0) == safe


def test_attach_and_save_files(shared_server, tmp_path):
    one = tmp_path / "one.bin"
    one.write_bytes(bytes(range(256)) * 10)
    two = tmp_path / "notes.md"
    two.write_text("# notes ✓\n")
    r = pasteur("paste", "-s", shared_server.url, "--attach", str(one), "-a", str(two),
                stdin=b"the text\n")
    assert r.returncode == 0, r.stderr
    url = r.stdout.decode().strip()
    pid = url.rsplit("/", 1)[1].split("#")[0]
    blob = shared_server.git("cat-file", "-p", f"HEAD:{shard_path(pid)}")
    assert "one.bin" not in blob and "notes" not in blob  # names are encrypted too

    plain = pasteur("get", url)
    assert plain.returncode == 0 and plain.stdout == b"the text\n"
    assert b"2 attached file(s)" in plain.stderr and b"--save-files" in plain.stderr

    out = tmp_path / "out"
    out.mkdir()
    got = pasteur("get", url, "--save-files", str(out))
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"the text\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.md", "one.bin"]
    assert (out / "one.bin").read_bytes() == one.read_bytes()
    assert (out / "notes.md").read_bytes() == two.read_bytes()

    # Never overwrites: a second run refuses and leaves the files as they were.
    (out / "notes.md").write_text("mine")
    again = pasteur("get", url, "--save-files", str(out))
    assert again.returncode == 1 and b"not overwriting" in again.stderr
    assert (out / "notes.md").read_text() == "mine"
    made = pasteur("get", url, "--save-files", str(tmp_path / "new" / "dir"))
    assert made.returncode == 0 and (tmp_path / "new" / "dir" / "notes.md").exists()
    (tmp_path / "a-file").write_text("x")
    refused = pasteur("get", url, "--save-files", str(tmp_path / "a-file"))
    assert refused.returncode == 1 and b"not a directory" in refused.stderr


def test_only_attachments_and_hostile_names(shared_server, tmp_path):
    # A paste made elsewhere may carry any names: they are sanitised on saving.
    files = [("../../escape.txt", "text/plain", b"one"), ("escape.txt", "", b"two"),
             ("..", "", b"three")]
    key, iv, ct = crypto.encrypt(crypto.make_payload("", files=files))
    r = httpx.post(shared_server.url + "/", headers={"accept": "application/json"},
                   files={"paste": (None, ct), "iv": (None, iv), "encrypted": (None, "true")})
    url = f"{r.json()['url']}#{key}"
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    got = pasteur("get", url, "--save-files", str(out))
    assert got.returncode == 0, got.stderr
    assert got.stdout == b""
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        "escape.txt": b"one", "escape-2.txt": b"two", "attachment-3": b"three"}
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "deep" / "escape.txt").exists()

    # The client with attachments only: no text needed (stdin is not a terminal here,
    # and empty), and --plain is refused.
    f = tmp_path / "only.txt"
    f.write_bytes(b"attached only")
    made = pasteur("paste", "-s", shared_server.url, "-a", str(f))
    assert made.returncode == 0, made.stderr
    dest = tmp_path / "dest"
    dest.mkdir()
    back = pasteur("get", made.stdout.decode().strip(), "--save-files", str(dest))
    assert back.returncode == 0 and (dest / "only.txt").read_bytes() == b"attached only"
    plain = pasteur("paste", "-s", shared_server.url, "--plain", "-a", str(f))
    assert plain.returncode == 1 and b"drop --plain" in plain.stderr
    empty = pasteur("paste", "-s", shared_server.url)
    assert empty.returncode == 1 and b"empty" in empty.stderr
