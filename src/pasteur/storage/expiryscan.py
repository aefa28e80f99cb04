"""Finds the pastes that have an expiry, in a process of its own.

``python -m pasteur.storage.expiryscan REPO HEAD [SINCE]`` prints ``<expires> <id>``
for every paste of HEAD's tree with an ``expires`` field, or only for those
added or changed since the commit SINCE (a tree diff descends only into the
subtrees that differ). pygit2 holds the GIL, so reading every paste of a large
repository in the server's process would stall it (measured: ~100 s of CPU at
1,000,000 pastes, creates 40× slower meanwhile); here it runs on another core.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import pygit2

from ..procs import bound_libgit2

EXPIRES = re.compile(rb'"expires":"([0-9TZ:-]+)"')
HEAD_BYTES = 512  # "expires" comes right after "v", "created" and "size"
Out = Callable[[str], object]  # where found lines go


def _emit(repo: pygit2.Repository, paste_id: str, oid: pygit2.Oid, out: Out) -> None:
    obj = repo.get(oid)
    if isinstance(obj, pygit2.Blob):
        m = EXPIRES.search(obj.data[:HEAD_BYTES])
        if m:
            out(f"{m.group(1).decode()} {paste_id}\n")


def full(repo: pygit2.Repository, tree: pygit2.Tree, out: Out) -> None:
    """Every expiring paste of ``tree``, written to ``out`` as found (never
    all held at once: a million expiring pastes would be ~60 MB)."""
    for a in tree:
        if not isinstance(a, pygit2.Tree):
            continue
        for b in a:
            if not isinstance(b, pygit2.Tree):
                continue
            for leaf in b:
                if leaf.name is not None:  # always set on a tree's entry
                    _emit(repo, leaf.name, leaf.id, out)


def since(repo: pygit2.Repository, old: pygit2.Tree, new: pygit2.Tree, out: Out) -> None:
    for delta in old.diff_to_tree(new).deltas:
        if delta.status in (pygit2.enums.DeltaStatus.ADDED, pygit2.enums.DeltaStatus.MODIFIED):
            path = delta.new_file.path
            if path.count("/") == 2:
                _emit(repo, path.rsplit("/", 1)[1], delta.new_file.id, out)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m pasteur.storage.expiryscan REPO HEAD [SINCE]", file=sys.stderr)
        return 2
    bound_libgit2()
    repo = pygit2.Repository(argv[0])
    tree = repo[argv[1]].peel(pygit2.Tree)
    old = None
    if len(argv) == 3:
        try:
            old = repo[argv[2]].peel(pygit2.Tree)
        except (KeyError, ValueError):  # rewritten or erased since: scan everything
            old = None
    if old is not None:
        since(repo, old, tree, sys.stdout.write)
    else:
        full(repo, tree, sys.stdout.write)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
