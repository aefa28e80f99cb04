"""A measured proposal: commit a batch as one pack instead of loose objects.

``python -m bench.proto_pack DIR BATCH ROUNDS [FILL]`` fills two repositories
(``DIR-loose``, ``DIR-pack``) with FILL pastes, then commits ROUNDS batches of
BATCH pastes in each: through ``Writer.commit_batch`` (loose objects, as the
server does), and as one pack + index v2 written here in Python (3 fsyncs), and
prints wall and CPU time per batch. Not used by the server or the benchmark: a
prototype for the writer thread, kept with its figures (docs/performance.md).
Since the store writes a pack per batch itself (``pasteur.storage.packs.PackBuilder``),
the "loose" round measures the store's pack path, no longer loose objects.
"""
import hashlib
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pygit2

from pasteur.storage.batch import Pending
from pasteur.storage.objects import idx_v2, object_id, pack_entry_header
from pasteur.storage.store import Store

from .fill import fill, random_ids

TYPES = {"commit": 1, "tree": 2, "blob": 3}


def obj_hash(kind, data):
    return object_id(kind.encode(), data)


def tree_bytes(entries):
    # entries: dict name -> (mode:int, raw_oid:bytes); git sorts dirs as name + "/"
    def key(item):
        name, (mode, _) = item
        return name + "/" if mode == 0o040000 else name
    return b"".join(b"%o %s\0%s" % (mode, name.encode(), oid)
                    for name, (mode, oid) in sorted(entries.items(), key=key))


def entries_of(tree):
    return {e.name: (e.filemode, e.id.raw) for e in tree} if tree is not None else {}


def write_pack(repo_path, objects):
    """objects: list of (kind, raw_oid, data). Writes pack + idx v2, fsyncs, returns name."""
    pack_dir = Path(repo_path) / "objects" / "pack"
    body = [b"PACK" + struct.pack(">II", 2, len(objects))]
    offset = 12
    index = []
    for kind, oid, data in objects:
        entry = pack_entry_header(TYPES[kind], len(data)) + zlib.compress(data, 1)
        index.append((oid, zlib.crc32(entry), offset))
        body.append(entry)
        offset += len(entry)
    pack = b"".join(body)
    pack_sha = hashlib.sha1(pack).digest()
    pack += pack_sha
    idx = idx_v2(index, pack_sha)
    name = pack_sha.hex()
    fds = []
    for ext, data in ((".pack", pack), (".idx", idx)):
        tmp = pack_dir / f"tmp-{name}{ext}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fds.append((tmp, pack_dir / f"pack-{name}{ext}"))
    for tmp, final in fds:  # idx last: a reader never sees an idx without its pack
        os.rename(tmp, final)
    dfd = os.open(pack_dir, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    return name


def commit_as_pack(repo, head, tree, batch):
    objects = []
    root = entries_of(tree)
    by_a = {}
    for pid, data in batch:
        oid = obj_hash("blob", data)
        objects.append(("blob", oid, data))
        by_a.setdefault(pid[0], {}).setdefault(pid[1], []).append((pid, oid))
    for a, by_b in by_a.items():
        mid_t = repo[root[a][1].hex()] if a in root else None
        mid = entries_of(mid_t)
        for b, leaves in by_b.items():
            leaf_t = repo[mid[b][1].hex()] if b in mid else None
            leaf = entries_of(leaf_t)
            for pid, oid in leaves:
                leaf[pid] = (0o100644, oid)
            data = tree_bytes(leaf)
            toid = obj_hash("tree", data)
            objects.append(("tree", toid, data))
            mid[b] = (0o040000, toid)
        data = tree_bytes(mid)
        toid = obj_hash("tree", data)
        objects.append(("tree", toid, data))
        root[a] = (0o040000, toid)
    data = tree_bytes(root)
    root_oid = obj_hash("tree", data)
    objects.append(("tree", root_oid, data))
    now = int(time.time())
    who = f"Pasteur <pasteur@localhost> {now} +0000"
    commit = (f"tree {root_oid.hex()}\nparent {head}\nauthor {who}\ncommitter {who}\n\n"
              f"Add {len(batch)} pastes\n").encode()
    coid = obj_hash("commit", commit)
    objects.append(("commit", coid, commit))
    write_pack(repo.path, objects)
    return coid.hex(), len(objects)


def main():
    base, batch_n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fill_n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    ids = random_ids(fill_n + batch_n * rounds * 2, seed=7)[fill_n:]
    filler = "x" * 1000
    # A: Store (loose objects + fsync), driven directly
    for mode in ("loose", "pack"):
        path = Path(f"{base}-{mode}")
        fill(path, fill_n)
        store = Store(path)
        t_wall = t_cpu = 0.0
        nobj = 0
        for r in range(rounds):
            chunk = ids[(r * 2 + (mode == "pack")) * batch_n:][:batch_n]
            docs = [(pid, (f'{{"v":1,"created":"2026-01-01T00:00:00Z","size":1000,"lang":"",'
                           f'"ln":false,"text":"{pid} {filler}"}}').encode()) for pid in chunk]
            w0, c0 = time.perf_counter(), time.process_time()
            if mode == "loose":
                store.writer.commit_batch([Pending(pid, d, None, None, None) for pid, d in docs])
            else:
                head = str(store.head)
                tree = store.repo[store.repository.tree.id]
                coid, nobj = commit_as_pack(store.repo, head, tree, docs)
                store.repository.set_ref(pygit2.Oid(hex=coid))
                store.repository.take_head(pygit2.Oid(hex=coid))
            t_wall += time.perf_counter() - w0
            t_cpu += time.process_time() - c0
        # verify readable by git
        ok = subprocess.run(["git", "-C", str(path), "fsck", "--no-dangling"],
                            capture_output=True).returncode == 0
        n = len(list(store.ids()))
        per = t_wall / rounds
        print(f"{mode}: batch {batch_n} over {fill_n}: {per * 1e3:.1f} ms wall, "
              f"{t_cpu / rounds * 1e3:.1f} ms CPU per batch ({per / batch_n * 1e6:.0f} us/paste)"
              f"; fsck {'ok' if ok else 'FAILED'}; {n} pastes"
              + (f"; {nobj} objects/batch" if nobj else ""))
        store.close()


if __name__ == "__main__":
    main()
