"""Fill a bare Pasteur repository with N pastes quickly, through ``git fast-import``.

The pastes are valid v1 documents (unencrypted, ~1 KiB of text each) in the
sharded ``a/b/<id>`` tree that ``pasteur.storage.store`` writes, committed on
``refs/heads/main`` in a few commits (one per ``per_commit`` pastes), with the
repository configured as ``Store`` configures a new one. Ids are random and
distinct, of the server's default length (4), as the server would draw them.
"""

from __future__ import annotations

import json
import random
import string
import subprocess
import time
from pathlib import Path

ALPHABET = string.ascii_letters + string.digits
BRANCH = "refs/heads/main"


def random_ids(count: int, length: int = 4, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    space = len(ALPHABET) ** length
    if count > space // 4:
        raise ValueError(f"{count} ids of length {length} would crowd the id space")
    ids = []
    for n in rng.sample(range(space), count):
        chars = []
        for _ in range(length):
            n, r = divmod(n, len(ALPHABET))
            chars.append(ALPHABET[r])
        ids.append("".join(chars))
    return ids


def paste_document(paste_id: str, filler: str) -> bytes:
    text = f"paste {paste_id}\n{filler}"
    doc = {
        "v": 1,
        "created": "2026-01-01T00:00:00Z",
        "size": len(text.encode()),
        "lang": "",
        "ln": False,
        "text": text,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def init_repo(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    for key, value in (
        ("core.fsync", "objects,reference"),
        ("gc.auto", "0"),
        ("receive.denyCurrentBranch", "ignore"),
    ):
        subprocess.run(["git", "-C", str(path), "config", key, value], check=True)


def fill(path: Path, count: int, per_commit: int = 250_000, seed: int = 1) -> list[str]:
    """Create ``path`` (a bare repository) holding ``count`` pastes; returns their ids."""
    init_repo(path)
    ids = random_ids(count, seed=seed)
    rng = random.Random(seed + 1)
    filler = "".join(rng.choice(ALPHABET + " \n") for _ in range(1000))
    proc = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE,
        bufsize=1 << 20,
    )
    assert proc.stdin is not None
    out = proc.stdin
    when = int(time.time())
    for start in range(0, count, per_commit):
        chunk = ids[start : start + per_commit]
        message = f"Add {len(chunk)} pastes (bench fill)\n".encode()
        head = [
            f"commit {BRANCH}\n".encode(),
            f"committer Pasteur <pasteur@localhost> {when} +0000\n".encode(),
            b"data %d\n" % len(message),
            message,
        ]
        # later commits continue the branch (and its tree) where the last one left it
        out.write(b"".join(head))
        parts = []
        for paste_id in chunk:
            blob = paste_document(paste_id, filler)
            parts.append(
                b"M 100644 inline %s/%s/%s\ndata %d\n%s\n"
                % (paste_id[0].encode(), paste_id[1].encode(), paste_id.encode(), len(blob), blob)
            )
            if len(parts) >= 4096:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))
        out.write(b"\n")
    out.write(b"done\n")
    out.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed ({proc.returncode})")
    return ids


if __name__ == "__main__":  # python -m bench.fill DIR COUNT
    import sys

    t0 = time.perf_counter()
    fill(Path(sys.argv[1]), int(sys.argv[2]))
    print(f"filled {sys.argv[2]} pastes in {time.perf_counter() - t0:.1f} s")
