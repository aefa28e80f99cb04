"""storage/expiryscan.py: a large paste's expiry is read from the start of
its blob, loose or packed, never from the whole blob."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pygit2

from pasteur.storage.loose import LooseWriter, install

SIZE = 96 << 20


def commit_paste(repo_path: Path, paste_id: str, oid: pygit2.Oid) -> str:
    repo = pygit2.Repository(str(repo_path))
    leaf = repo.TreeBuilder()
    leaf.insert(paste_id, oid, pygit2.enums.FileMode.BLOB)
    mid = repo.TreeBuilder()
    mid.insert(paste_id[1], leaf.write(), pygit2.enums.FileMode.TREE)
    root = repo.TreeBuilder()
    root.insert(paste_id[0], mid.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("t", "t@localhost")
    return str(repo.create_commit(None, sig, sig, "paste", root.write(), []))


def scan(repo_path: Path, head: str) -> tuple[str, int]:
    """The scan's output and the peak RSS (KiB) of the largest child so far."""
    out = subprocess.run([sys.executable, "-m", "pasteur.storage.expiryscan", str(repo_path),
                          head], capture_output=True, text=True, check=True).stdout
    return out, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def test_a_large_paste_expiry_without_reading_it(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo.git"
    repo = pygit2.init_repository(str(repo_path), bare=True)
    small = repo.create_blob(b'{"v":1,"created":"2026-01-01T00:00:00Z","size":1,"text":"a"}')
    _, base_kib = scan(repo_path, commit_paste(repo_path, "Sma1", small))  # the scan itself
    w = LooseWriter(tmp_path / "tmp")
    block = b"A" * (1 << 20)
    for _ in range(SIZE >> 20):
        w.write(block)
    head = b'{"v":1,"created":"2026-01-01T00:00:00Z","size":1,"expires":"2030-01-02T03:04:05Z",'
    oid = install(w.finish(head + b'"ct":"', b'"}'), repo_path / "objects")
    commit = commit_paste(repo_path, "Big1", oid)
    subprocess.run(["git", "-C", str(repo_path), "update-ref", "refs/heads/main", commit],
                   check=True)
    out, peak_kib = scan(repo_path, commit)
    assert out == "2030-01-02T03:04:05Z Big1\n"
    assert peak_kib < base_kib + (SIZE >> 12), f"the scan took {peak_kib} KiB ({base_kib})"
    # Packed (a repack): git cat-file streams its start.
    subprocess.run(["git", "-C", str(repo_path), "repack", "-a", "-d", "-q"], check=True)
    assert not (repo_path / "objects" / str(oid)[:2] / str(oid)[2:]).exists()
    out, _ = scan(repo_path, commit)
    assert out == "2030-01-02T03:04:05Z Big1\n"
