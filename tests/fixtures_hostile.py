"""A hostile paste in a real server's store: the document a create would never
be allowed to make (the server refuses it), committed by hand while the server
is stopped, as a hostile remote's history would bring it in by sync."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from pasteur.storage.objects import shard_path

from .conftest import Server


def plant(server: Server, paste_id: str, doc: dict[str, Any]) -> None:
    """Replace the stored document of ``paste_id`` by ``doc``; the server is restarted."""
    server.settle()
    server.stop()
    index = server.data / "planted.index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index), "GIT_AUTHOR_NAME": "h",
           "GIT_AUTHOR_EMAIL": "h@h", "GIT_COMMITTER_NAME": "h", "GIT_COMMITTER_EMAIL": "h@h"}

    def git(*args: str, stdin: bytes | None = None) -> str:
        return subprocess.run(["git", "-C", str(server.repo), *args], input=stdin, env=env,
                              check=True, capture_output=True).stdout.decode().strip()

    blob = git("hash-object", "-w", "--stdin", stdin=json.dumps(doc).encode())
    git("read-tree", "HEAD")
    git("update-index", "--cacheinfo", f"100644,{blob},{shard_path(paste_id)}")
    commit = git("commit-tree", git("write-tree"), "-p", "HEAD", "-m", f"planted {paste_id}")
    git("update-ref", "HEAD", commit)
    index.unlink()
    server.start()
