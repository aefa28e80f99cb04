"""storage/loose.py: a large blob written as a stored loose object while it
arrives, read by git, libgit2 and zlib alike, and repacked compressed."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import zlib
from pathlib import Path

import pygit2
import pytest

from pasteur.storage.loose import (
    ROOM,
    LooseError,
    LooseReader,
    LooseWriter,
    install,
    padding,
    read_prefix,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo.git"
    pygit2.init_repository(str(path), bare=True)
    return path


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True,
                          capture_output=True).stdout


def written(repo: Path, head: bytes, parts: list[bytes], tail: bytes = b'"}') -> pygit2.Oid:
    w = LooseWriter(repo.parent / "tmp")
    for part in parts:
        w.write(part)
    blob = w.finish(head, tail)
    data = head + b"".join(parts) + tail
    assert str(blob.oid) == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob.size == len(data)
    return install(blob, repo / "objects")


@pytest.mark.parametrize("head_len", [0, 1, 2, 3, 4, 5, 6, 7, 100, 1000, ROOM - 64])
def test_every_head_length_pads_to_a_valid_object(repo: Path, head_len: int) -> None:
    head = b"h" * head_len
    content = [b"x" * 70_000, b"", b"y" * 3]
    oid = written(repo, head, content)
    data = head + b"".join(content) + b'"}'
    assert git(repo, "cat-file", "blob", str(oid)) == data
    assert git(repo, "cat-file", "-s", str(oid)).strip() == str(len(data)).encode()
    r = pygit2.Repository(str(repo))
    assert r.odb.read_header(oid)[1] == len(data)
    blob = r[oid]
    assert isinstance(blob, pygit2.Blob) and blob.data == data
    path = repo / "objects" / str(oid)[:2] / str(oid)[2:]
    assert zlib.decompress(path.read_bytes()) == b"blob %d\0" % len(data) + data
    git(repo, "fsck", "--strict", "--no-dangling")


def test_padding_sizes() -> None:
    for n in range(24, 400):
        pad = padding(n)
        assert len(pad) == n
        inflate = zlib.decompressobj(-15)
        assert inflate.decompress(pad + b"\x01\x00\x00\xff\xff") == b"" and inflate.eof


def test_a_head_too_long_is_refused(repo: Path) -> None:
    w = LooseWriter(repo.parent / "tmp")
    w.write(b"content")
    with pytest.raises(LooseError):
        w.finish(b"h" * ROOM, b"")
    w.discard()
    assert not w.path.exists()


def test_large_random_content_in_uneven_writes(repo: Path) -> None:
    rng = random.Random(7)
    parts = [rng.randbytes(rng.choice([1, 100, 65_535, 65_536, 300_000, 20 << 20]))
             for _ in range(12)]
    oid = written(repo, b'{"v":1,"text":"', parts)
    data = b'{"v":1,"text":"' + b"".join(parts) + b'"}'
    assert hashlib.sha256(git(repo, "cat-file", "blob", str(oid))).digest() == \
        hashlib.sha256(data).digest()
    reader = LooseReader.open(repo / "objects", oid)
    assert reader is not None
    got = []
    while chunk := reader.read(1 << 20):
        assert len(chunk) <= 1 << 20
        got.append(chunk)
    reader.close()
    assert b"".join(got) == data
    assert read_prefix(repo / "objects", oid, 15) == data[:15]


def test_the_repack_compresses_it(repo: Path) -> None:
    """Stored (not compressed) as it arrives; git repack deflates it."""
    text = b"".join(b"line %d of a log file, nothing random\\n" % i for i in range(200_000))
    oid = written(repo, b'{"text":"', [text])
    loose = repo / "objects" / str(oid)[:2] / str(oid)[2:]
    assert loose.stat().st_size > len(text)
    blob = pygit2.Repository(str(repo)).create_blob(b"keep")
    git(repo, "update-ref", "refs/keep", str(blob))
    git(repo, "tag", "big", str(oid))
    git(repo, "-c", "pack.window=0", "repack", "-d", "--geometric=2", "-q")
    assert not loose.exists()
    pack = next((repo / "objects" / "pack").glob("*.pack"))
    assert pack.stat().st_size < len(text) // 5
    assert git(repo, "cat-file", "blob", str(oid)) == b'{"text":"' + text + b'"}'
    assert LooseReader.open(repo / "objects", oid) is None  # packed: git cat-file's
    assert read_prefix(repo / "objects", oid, 8) is None


def test_the_same_blob_twice(repo: Path) -> None:
    first = written(repo, b"a", [b"b"])
    w = LooseWriter(repo.parent / "tmp")
    w.write(b"b")
    again = w.finish(b"a", b'"}')
    assert install(again, repo / "objects") == first
    assert not again.path.exists() and os.listdir(repo.parent / "tmp") == []
