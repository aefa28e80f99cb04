"""Pushes to a local remote (a plain path or ``file://``), through ``git push``.

libgit2's local transport writes the remote's objects and then its ref itself,
without checking that the ref still holds the value it read: two instances
pushing at once overwrote each other, and the loser's acknowledged pastes
vanished from the remote head until it noticed (issue 14: 20-43 pastes, up to
60 s, 4 of 8 trials). Every other transport ends in ``git receive-pack`` on the
server, which updates the ref under its lock only if it still holds the old
value the client was shown (a compare-and-swap). ``git push`` to a local path
runs that same receive-pack, so local remotes get the same guarantee:

- a plain push is a fast-forward of the value receive-pack advertised, swapped
  in under the ref's lock: if another push landed in between, ours is rejected
  (fetch, replay, push again) instead of overwriting it;
- a forced push (an erasure's rewritten history) carries
  ``--force-with-lease=<ref>:<expected>``: it replaces the ref only if it is
  still at the value this instance last integrated.

The remote's receive-pack runs with ``core.fsync=committed`` (objects and refs
synced), as libgit2 did with ``enable_fsync_gitdir``. One push path per
transport: the worker pushes local remotes here and all others with libgit2.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pasteur.procs import child_env

# below sync.WORKER_TIMEOUT (120 s), so the worker answers before its parent kills it
PUSH_TIMEOUT = 100.0
RECEIVE_PACK = "git -c core.fsync=committed -c core.fsyncMethod=fsync receive-pack"
# receive-pack's reasons for refusing an update that a fetch and a new push fix:
# the ref moved (not a fast-forward, stale lease) or another push held its lock
RETRYABLE = ("fetch first", "non-fast-forward", "stale info", "failed to update ref",
             "cannot lock ref", "failed to lock", "incorrect old value")


def is_local(url: str) -> bool:
    """A remote git reaches without a server: ``file://`` or a plain path (an
    ``host:path`` with a colon before the first slash is SSH, as git reads it)."""
    if url.startswith("file://"):
        return True
    return "://" not in url and ":" not in url.split("/", 1)[0]


def git_available() -> bool:
    return shutil.which("git") is not None


@dataclass
class PushResult:
    """What ``git push`` said: nothing (pushed), the refused updates, or an error."""

    refused: list[str] = field(default_factory=list)  # receive-pack's reasons
    retryable: bool = True  # every refusal is one a fetch and a new push fix
    error: str | None = None  # no update was attempted (bad path, not a repository...)


def push(repo: Path, url: str, oid: str, ref: str, lease: str | None) -> PushResult:
    """Push commit ``oid`` of ``repo`` to ``ref`` of the local remote ``url``: a
    fast-forward, or with ``lease`` a forced push that lands only if ``ref`` is
    still at ``lease``."""
    command = ["git", "--git-dir", str(repo), "push", "--porcelain", "--no-verify",
               f"--receive-pack={RECEIVE_PACK}"]
    if lease is not None:
        command.append(f"--force-with-lease={ref}:{lease}")
    command += [url, f"{oid}:{ref}"]
    env = {**child_env(), "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=PUSH_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return PushResult(error=f"git push to {url} timed out after {PUSH_TIMEOUT:.0f} s")
    if done.returncode == 0:
        return PushResult()
    return parse(done.stdout, done.stderr)


def parse(stdout: str, stderr: str) -> PushResult:
    """A failed ``git push --porcelain``: lines ``!<TAB>src:dst<TAB>[rejected] (reason)``
    for refused updates; none when it failed before (then stderr says why)."""
    refused = [line.split("\t", 2)[-1] for line in stdout.splitlines() if line.startswith("!\t")]
    if not refused:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        return PushResult(error="; ".join(lines) or "git push failed")
    retryable = all(any(r in line for r in RETRYABLE) for line in refused)
    return PushResult(refused=refused, retryable=retryable)
