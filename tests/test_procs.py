"""What the server's children inherit (pasteur.procs): a server started with
PASTEUR_* secrets in its environment, and every child it starts read from
/proc/<pid>/environ (the long-lived ones: committer, sync worker) or recorded
by a stand-in for ``git`` and ``chrt`` first on its PATH (the short-lived ones:
expiry scan, repack, erasure), which writes its environment and then execs
the real program."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import psutil
import pytest

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
    HttpGit,
    Instance,
    bare_remote,
    start_pasteur,
)
from tests.ports import wait_port  # noqa: E402

pytest_plugins = ["tests.fixtures_git"]
pytestmark = pytest.mark.timeout(120)

KEPT = "TEST_KEPT_BY_CHILDREN"  # not PASTEUR_*: children keep it


def stand_ins(directory: Path, log: Path, *names: str) -> None:
    """Scripts that record their argv and environment (NUL-separated) and exec
    the real program of the same name."""
    directory.mkdir()
    log.mkdir()
    for name in names:
        real = shutil.which(name)
        assert real is not None, name
        script = directory / name
        script.write_text(
            "#!/bin/sh\n"
            f"f={log}/{name}.$$\n"
            "printf '%s\\0' \"$*\" > \"$f.part\"\n"
            "env -0 >> \"$f.part\"\n"
            "mv \"$f.part\" \"$f\"\n"  # whole, or not there yet
            f'exec {real} "$@"\n'
        )
        script.chmod(0o755)


def recorded(log: Path) -> dict[str, dict[str, str]]:
    """'<program> <argv>' -> the environment it was started with."""
    out = {}
    for f in sorted(log.glob("*[0-9]")):
        argv, *env = f.read_bytes().decode().split("\0")
        out[f"{f.name.split('.')[0]} {argv}"] = dict(e.split("=", 1) for e in env if "=" in e)
    return out


def live_children(inst: Instance, seen: dict[str, dict[str, str]]) -> None:
    for child in psutil.Process(inst.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # ended meanwhile
            seen[" ".join(child.cmdline()[1:3])] = child.environ()


def test_children_get_no_pasteur_secrets(
    http_git: HttpGit, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare_remote(http_git.root / "env.git", first_commit=True)
    bin_dir, log = tmp_path / "bin", tmp_path / "recorded"
    stand_ins(bin_dir, log, "git", "chrt")
    secrets = {
        "PASTEUR_REMOTE_TOKEN": http_git.token,  # used, by the sync worker, from its stdin
        "PASTEUR_SSH_SEED": "3q2+7w-unused-seed",
        "PASTEUR_TITLE": "Title 9d7e",  # any flag: none is for a child
        "PASTEUR_SOMETHING_ELSE": "not a flag 51b0",
    }
    env = {**secrets, KEPT: "kept", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    a = start_pasteur(tmp_path / "a", "-r", http_git.url("env.git"), "--erase-interval", "1s",
                      "-m", "8MiB", env=env, wait=False)
    pasteurs.append(a)
    wait_port(a.port, timeout=60, proc=a.proc)  # a busy machine: more than start_pasteur's 20 s
    assert all(psutil.Process(a.proc.pid).environ()[k] == v for k, v in secrets.items())
    seen: dict[str, dict[str, str]] = {}
    client = a.client()
    # One pack per commit: past 50 a repack (maintenance) runs.
    for i in range(52):
        a.paste_json(f"paste {i}")
        live_children(a, seen)
    big = a.paste_json("x" * (5 << 20))  # a loose blob: read by the server itself
    assert len(client.get(f"/{big['code']}?raw=true").content) == 5 << 20
    doomed = a.paste_json("to erase")
    r = client.delete(f"/{doomed['code']}", headers={"x-delete-token": doomed["delete_token"]})
    assert r.is_success
    expected = ("pasteur.storage.committer", "pasteur.sync.worker", "pasteur.storage.expiryscan",
                "git -C",
                " repack -d --geometric=2", " repack -a -d", " prune ", " cat-file blob ")

    def missing() -> list[str]:
        names = " | ".join([*seen, *recorded(log)])
        return [program for program in expected if program not in names]

    deadline = time.monotonic() + 60
    while [m for m in missing() if m != " cat-file blob "]:
        assert time.monotonic() < deadline, (missing(), list(seen), list(recorded(log)))
        live_children(a, seen)
        time.sleep(0.1)
    # Packed by the erasure's repack: a large read streams from `git cat-file`.
    assert len(client.get(f"/{big['code']}?raw=true").content) == 5 << 20
    while missing():
        assert time.monotonic() < deadline, (missing(), list(seen), list(recorded(log)))
        live_children(a, seen)
        time.sleep(0.1)
    seen.update(recorded(log))
    for name, child_env in seen.items():
        assert KEPT in child_env and "PATH" in child_env, name
        assert [k for k in child_env if k.startswith("PASTEUR_")] == [], name
    out = a.output()
    assert "is plain http: the token (--remote-token) is sent in clear" in out
    assert http_git.token not in out
