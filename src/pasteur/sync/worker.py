"""The network half of Git synchronisation, in its own process.

pygit2 holds the GIL during network work (measured: a fetch beside a busy
Python thread took 337 s instead of 4 s), so fetch and push run here, in a
child of the server, which speaks JSON lines on stdin/stdout:

- first line, from the parent (`hello`): the repository's path and the
  `config.SyncSettings` (remote URL, branch, time-outs, and the secrets: token,
  SSH seed; they never leave this process);
- then requests ``{"op": "fetch" | "push" | "check" | "head" | "advertised" |
  "namespace", ...}``, one at a time (a fetch or push names the server's handle
  renewals, ``reopens``: the worker renews its own to match), each
  answered by ``{"ok": true, ...}`` or ``{"ok": false, "kind": KIND, "error": TEXT}``
  where KIND is ``rejected`` (push not a fast-forward: fetch and integrate),
  ``auth`` / ``hostkey`` / ``config`` (the remote refuses us: a user error) or
  ``network`` (unreachable, time-out: retry later).

The worker opens the server's bare repository itself: a fetch writes a pack
and ``refs/remotes/origin/<branch>``; a push reads the commits the server wrote.
Nothing here writes the server's branch.

Pushes to a local remote (a plain path or ``file://``) go through ``git push``
(``pasteur.sync.local``): libgit2's local transport writes the ref without a
compare-and-swap. Every other remote is pushed with libgit2.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cffi
import pygit2
from pygit2.enums import CredentialType
from pygit2.ffi import C

from pasteur.config import SyncSettings
from pasteur.ids import ALPHABET
from pasteur.procs import bound_libgit2
from pasteur.sync import local as synclocal
from pasteur.sync.sshkeys import (
    SshKey,
    fingerprint_of_hash,
    key_from_awa_seed,
    key_from_spec,
    parse_fingerprints,
)

# The remote head this instance has integrated or pushed (written by the server
# after integrating, by the worker after a push), and the fetched head not yet
# integrated: a crash between fetch and integration must not make the next
# start believe it has seen a remote history it never integrated.
TRACKING = "refs/remotes/origin/{branch}"
FETCHED = "refs/pasteur/fetched/{branch}"
# On the remote, one ref per instance's id namespace (``pasteur.sync.namespace``).
NAMESPACES = "refs/pasteur/ids/"
MAX_AUTH_ATTEMPTS = 2
# Waiting marks on the remote: refs/pasteur/wait/<instance>-<unix time>
# (``progress.PushWatch``).
MARKS = "refs/pasteur/wait/"

# libgit2 1.9's git_cert_hostkey in full (pygit2 declares only its first
# fields and hands Python ``None`` for an SSH host key): we read the SHA-256 of
# the key ourselves to compare it with the pinned fingerprint.
_ffi = cffi.FFI()
_ffi.cdef("""
typedef struct {
    int cert_type;
    int type;
    unsigned char hash_md5[16];
    unsigned char hash_sha1[20];
    unsigned char hash_sha256[32];
    int raw_type;
    const char *hostkey;
    size_t hostkey_len;
} pasteur_cert_hostkey;
""")
GIT_CERT_HOSTKEY_LIBSSH2 = 2
GIT_CERT_SSH_SHA256 = 1 << 2
GIT_ECERTIFICATE = -17


class SyncFailure(Exception):
    """A failed fetch or push; ``kind`` classifies it for the syncer (a
    ``network`` failure is retried, a ``rejected`` push is fetched and
    replayed, the kinds in ``sync.FATAL_KINDS`` stop the server at start)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def hello(repo: Path, settings: SyncSettings) -> bytes:
    """The worker's first line: the repository to open and the settings, as JSON."""
    return json.dumps({"repo": str(repo), "settings": asdict(settings)}).encode() + b"\n"


def read_hello(line: str | bytes) -> tuple[str, SyncSettings]:
    first = json.loads(line)
    return first["repo"], SyncSettings(**first["settings"])


def is_ssh(url: str) -> bool:
    if url.startswith("ssh://"):
        return True
    return "://" not in url and ":" in url.split("/", 1)[0]


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(URL without password, user, password) for http(s); other URLs unchanged."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.password is None:
        return url, parts.username if parts.scheme in ("http", "https") else None, None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc)), parts.username, parts.password


class HostKeyPin:
    """The SSH host key check, installed as libgit2's certificate callback."""

    def __init__(self, pin: str | None, insecure: bool) -> None:
        self.digests = parse_fingerprints(pin) if pin else []
        self.insecure = insecure
        self.failure: str | None = None

    def check(self, cert: Any, valid: int, host: str) -> bool:
        hostkey: Any = _ffi.cast("pasteur_cert_hostkey *", int(pygit2.ffi.cast("uintptr_t", cert)))
        if hostkey.cert_type != GIT_CERT_HOSTKEY_LIBSSH2:
            return bool(valid)  # TLS: the system's CA check decides
        if not self.digests:
            return self.insecure
        if not hostkey.type & GIT_CERT_SSH_SHA256:
            self.failure = f"the SSH server {host} sent no SHA-256 host key hash"
            return False
        got = bytes(_ffi.buffer(hostkey.hash_sha256, 32))
        if got not in self.digests:
            pins = ", ".join(fingerprint_of_hash(d) for d in self.digests)
            self.failure = (
                f"SSH host key mismatch for {host}: the server's key is "
                f"{fingerprint_of_hash(got)}, --ssh-auth pins {pins}"
            )
            return False
        return True


_PIN: HostKeyPin | None = None


def _install_certificate_check() -> None:
    @pygit2.ffi.def_extern(name="_certificate_check_cb")
    def _cb(cert: Any, valid: int, host: Any, payload: Any) -> int:  # noqa: ARG001
        try:
            ok = _PIN is not None and _PIN.check(cert, valid, pygit2.ffi.string(host).decode())
        except Exception as exc:  # noqa: BLE001 - never let an exception cross into C
            if _PIN is not None:
                _PIN.failure = f"host key check failed: {exc}"
            ok = False
        return 0 if ok else GIT_ECERTIFICATE


class Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, settings: SyncSettings, user: str | None, token: str | None) -> None:
        super().__init__()
        self.settings = settings
        self.user = user
        self.token = token
        self.attempts = 0
        self.refused: list[str] = []
        self.lease: str | None = None

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> Any:
        self.attempts += 1
        if self.attempts > MAX_AUTH_ATTEMPTS:
            raise SyncFailure("auth", f"the remote refused our credentials ({self._which()})")
        user = username_from_url or self.user or "git"
        key = ssh_key(self.settings)
        if key is not None and (allowed_types & CredentialType.SSH_MEMORY
                                or allowed_types & CredentialType.SSH_KEY):
            return pygit2.KeypairFromMemory(user, key.public, key.private_pem, "")
        if self.settings.ssh_password and allowed_types & CredentialType.USERPASS_PLAINTEXT \
                and is_ssh(self.settings.url):
            return pygit2.UserPass(user, self.settings.ssh_password)
        if allowed_types & CredentialType.SSH_MEMORY or allowed_types & CredentialType.SSH_KEY:
            raise SyncFailure("config", "the SSH remote needs --ssh-key, --ssh-seed or "
                                        "--ssh-password")
        if allowed_types & CredentialType.USERPASS_PLAINTEXT:
            if not self.token:
                raise SyncFailure("auth", "the remote asks for a password: give --remote-token")
            return pygit2.UserPass(user, self.token)
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(user)
        raise SyncFailure("auth", f"the remote asks for credentials we lack ({allowed_types!r})")

    def _which(self) -> str:
        if not is_ssh(self.settings.url):
            return "the token"
        key = ssh_key(self.settings)
        if key is None:
            return "the password from --ssh-password"
        if self.settings.ssh_key:
            return f"the SSH key from --ssh-key: {key.public}"
        return (f"the SSH key from --ssh-seed, the original's RSA-2048 key of that seed "
                f"(awa <= 0.0.4): {key.public}; an original built with awa 0.0.5 or later "
                "made the key of --ssh-key rsa:SEED from the same seed, and a seed from an "
                "earlier 'pasteur keygen' is converted by 'pasteur keygen --pasteur-seed "
                "SEED'")

    def push_negotiation(self, updates: list[pygit2.remotes.PushUpdate]) -> None:
        # Force-with-lease: the remote's current value comes from this very
        # connection's advertisement, and receive-pack updates the ref only if
        # it still has that value, so nothing pushed by others in between is lost.
        if self.lease is None:
            return
        for update in updates:
            if str(update.src) != self.lease:
                raise SyncFailure(
                    "rejected",
                    f"the remote moved to {update.src} (expected {self.lease}): fetch first",
                )

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.refused.append(f"{refname}: {message}")


def ssh_key(settings: SyncSettings) -> SshKey | None:
    """The SSH key of --ssh-key (rsa:<seed> or ed25519:<base64>) or --ssh-seed, if either
    is given."""
    if settings.ssh_key:
        return key_from_spec(settings.ssh_key)
    if settings.seed:
        return key_from_awa_seed(settings.seed)
    return None


class Worker:
    def __init__(self, repo: str, settings: SyncSettings) -> None:
        global _PIN
        self.settings = settings
        if is_ssh(settings.url) and not settings.ssh_auth and not settings.ssh_insecure:
            raise SyncFailure(
                "config",
                "refusing SSH without a pinned host key: give --ssh-auth SHA256:... "
                "(ssh-keyscan HOST | ssh-keygen -l -E sha256 -f -) or --ssh-insecure",
            )
        self.local = synclocal.is_local(settings.url)
        if self.local and not synclocal.git_available():
            raise SyncFailure("config", "a local remote (a path or file://) is pushed with "
                                        "git push, and git is not on PATH")
        _PIN = HostKeyPin(settings.ssh_auth, settings.ssh_insecure)
        url, user, password = split_credentials(settings.url)
        self.url, self.user = url, user
        self.token = settings.token or password
        pygit2.settings.enable_fsync_gitdir(True)
        pygit2.settings.server_connect_timeout = settings.connect_timeout_ms
        pygit2.settings.server_timeout = settings.timeout_ms
        bound_libgit2()
        self.path = repo
        self.repo = pygit2.Repository(repo)
        self.reopens = 0  # the server's handle renewals this handle follows
        self.tracking = TRACKING.format(branch=settings.branch)
        self.fetched = FETCHED.format(branch=settings.branch)

    def follow(self, reopens: int | None) -> None:
        """A new handle when the server renewed its own (``reopens``, sent
        with each request): a repack or an erasure's prune deleted packs, and
        this handle could still list them."""
        if reopens is not None and reopens != self.reopens:
            self.repo = pygit2.Repository(self.path)
            self.reopens = reopens

    def callbacks(self) -> Callbacks:
        assert _PIN is not None
        _PIN.failure = None
        return Callbacks(self.settings, self.user, self.token)

    def remote(self) -> pygit2.Remote:
        return self.repo.remotes.create_anonymous(self.url)

    def fetch(self) -> dict[str, Any]:
        branch = self.settings.branch
        remote = self.remote()
        cb = self.callbacks()
        self._guard(lambda: remote.fetch(
            [f"+refs/heads/{branch}:{self.fetched}"], callbacks=cb, message="pasteur: fetch"
        ))
        heads = {h.name: h for h in remote.list_heads(connect=False)}
        head = heads.get(f"refs/heads/{branch}")
        if head is None:
            self._delete(self.fetched)
            return {"ok": True, "head": None}
        return {"ok": True, "head": str(head.oid)}

    def head(self) -> dict[str, Any]:
        """The remote branch's head and the waiting marks, from the remote's
        advertisement alone (an ``ls-remote``: nothing fetched or written here)."""
        remote = self.remote()
        cb = self.callbacks()
        heads: list[pygit2.remotes.RemoteHead] = []
        self._guard(lambda: heads.extend(remote.list_heads(callbacks=cb, connect=True)))
        name = f"refs/heads/{self.settings.branch}"
        found = [h for h in heads if h.name == name]
        marks = [h.name for h in heads if h.name and h.name.startswith(MARKS)]
        return {"ok": True, "head": str(found[0].oid) if found else None, "marks": marks}

    def advertised(self) -> dict[str, Any]:
        """The branch the remote's HEAD names (None if it advertises no HEAD) and
        the remote's branches, without fetching anything."""
        remote = self.remote()
        cb = self.callbacks()
        heads: list[Any] = []
        self._guard(lambda: heads.extend(remote.list_heads(callbacks=cb)))
        target = next((h.symref_target for h in heads
                       if h.name == "HEAD" and h.symref_target), None)
        prefix = "refs/heads/"
        branches = sorted(h.name[len(prefix):] for h in heads if h.name.startswith(prefix))
        head = target[len(prefix):] if target and target.startswith(prefix) else None
        return {"ok": True, "head": head, "branches": branches}

    def _delete(self, name: str) -> None:
        ref = self.repo.references.get(name)
        if ref is not None:
            ref.delete()

    def push(self, oid: str, lease: str | None = None, mark: str | None = None,
             unmark: str | None = None, done: str | None = None,
             sweep: list[str] | None = None) -> dict[str, Any]:
        """Push a commit to the branch: a fast-forward, or with ``lease`` a forced
        push that succeeds only if the remote branch is still at ``lease``.

        Waiting marks (``progress.py``, network remotes): ``mark`` is set in the
        same push (an instance whose pushes keep being rejected asks the others
        to wait), ``unmark`` deleted with it; once the branch is pushed, ``mark``
        and ``done`` are deleted, and so are ``sweep``, other instances' stale
        marks. The answer names the marks the remote advertised (``marks``)
        and the stale ones deleted (``swept``)."""
        marks: list[str] = []
        if self.local:
            self._push_with_git(oid, lease)
        else:
            marks = self._push_with_libgit2(oid, lease, mark, unmark)
        self.repo.references.create(self.tracking, pygit2.Oid(hex=oid), force=True)
        gone = [m for m in (mark, done) if m]
        if gone:
            with contextlib.suppress(SyncFailure):  # a mark left behind goes stale
                remote, cb = self.remote(), self.callbacks()
                self._guard(lambda: remote.push([f":{m}" for m in gone], callbacks=cb))
        swept = self._sweep([m for m in sweep or () if m.startswith(MARKS)])
        left = (mark, unmark, done, *swept)
        return {"ok": True, "marks": [m for m in marks if m not in left], "swept": swept}

    def _sweep(self, stale: list[str]) -> list[str]:
        """Delete other instances' stale marks (in a push of their own: one
        already deleted by another instance must not keep ours); those gone."""
        if not stale:
            return []
        remote, cb = self.remote(), self.callbacks()
        try:
            self._guard(lambda: remote.push([f":{m}" for m in stale], callbacks=cb))
        except SyncFailure:
            return []
        refused = {r.split(":", 1)[0] for r in cb.refused}
        return [m for m in stale if m not in refused]

    def _push_with_git(self, oid: str, lease: str | None) -> None:
        ref = f"refs/heads/{self.settings.branch}"
        result = synclocal.push(Path(self.repo.path), self.url, oid, ref, lease)
        if result.error is not None:
            raise classify(Exception(result.error), None)
        if result.refused:
            kind = "rejected" if result.retryable else "config"
            raise SyncFailure(kind, "; ".join(result.refused))

    def _push_with_libgit2(self, oid: str, lease: str | None, mark: str | None,
                           unmark: str | None) -> list[str]:
        """The push; the waiting marks the remote advertised to it."""
        remote = self.remote()
        cb = self.callbacks()
        cb.lease = lease
        branch = f"refs/heads/{self.settings.branch}"
        marking = [f"+{self._mark_commit()}:{mark}"] if mark else []
        marking += [f":{unmark}"] if unmark else []
        if marking:  # first, on its own: libgit2 refuses a whole push that is not
            # a fast-forward before sending anything
            with contextlib.suppress(SyncFailure):
                self._guard(lambda: self.remote().push(marking, callbacks=self.callbacks()))
        spec = f"{'+' if lease else ''}{oid}:{branch}"
        self._guard(lambda: remote.push([spec], callbacks=cb))
        refused = [r for r in cb.refused if r.startswith(branch + ":")]
        if refused:
            raise SyncFailure("rejected", "; ".join(refused))
        with contextlib.suppress(pygit2.GitError):
            return [h.name for h in remote.list_heads(connect=False)
                    if h.name and h.name.startswith(MARKS)]
        return []

    def _mark_commit(self) -> str:
        """A commit with nothing in it, for a waiting mark (no paste's content)."""
        sig = pygit2.Signature("pasteur", "pasteur@localhost", 0, 0)
        tree = self.repo.TreeBuilder().write()
        return str(self.repo.create_commit(None, sig, sig, "pasteur: waiting to push\n",
                                           tree, []))

    def namespace(self, instance: str) -> dict[str, Any]:
        """Claim a one-character id namespace on the remote for ``instance``:
        create ``refs/pasteur/ids/<c>`` at a commit naming the instance (the
        same commit for the same instance, so a claim made before a crash is
        found again). The push is never forced: receive-pack refuses to move
        a ref another instance created, so each namespace has one owner."""
        with tempfile.TemporaryDirectory(prefix="pasteur-ns-") as tmp:
            repo = pygit2.init_repository(tmp, bare=True)
            sig = pygit2.Signature("Pasteur", "pasteur@localhost", 0, 0)
            mine = repo.create_commit(None, sig, sig, f"Id namespace of instance {instance}\n",
                                      repo.TreeBuilder().write(), [])
            cb = self.callbacks()
            remote = repo.remotes.create_anonymous(self.url)
            heads: list[Any] = []
            self._guard(lambda: heads.extend(remote.list_heads(callbacks=cb)))
            claimed = {h.name[len(NAMESPACES):]: h.oid for h in heads
                       if h.name.startswith(NAMESPACES)}
            for char, oid in claimed.items():
                if oid == mine:
                    return {"ok": True, "namespace": char}
            free = [c for c in ALPHABET if c not in claimed]
            random.shuffle(free)
            for char in free[:8]:
                try:
                    self._create_ref(repo, str(mine), NAMESPACES + char)
                except SyncFailure as exc:
                    if exc.kind != "rejected":
                        raise
                    continue  # another instance took it meanwhile
                return {"ok": True, "namespace": char}
        if not free:
            raise SyncFailure("config", "all 62 id namespaces on the remote are taken")
        raise SyncFailure("rejected", "no id namespace could be claimed: try again")

    def _create_ref(self, repo: pygit2.Repository, oid: str, ref: str) -> None:
        if self.local:
            result = synclocal.push(Path(repo.path), self.url, oid, ref, None)
            if result.error is not None:
                raise classify(Exception(result.error), None)
            if result.refused:
                raise SyncFailure("rejected", "; ".join(result.refused))
            return
        remote = repo.remotes.create_anonymous(self.url)
        cb = self.callbacks()
        self._guard(lambda: remote.push([f"{oid}:{ref}"], callbacks=cb))
        if cb.refused:
            raise SyncFailure("rejected", "; ".join(cb.refused))

    def check(self) -> dict[str, Any]:
        """Connect for a push (checks write credentials) without pushing anything."""
        remote = self.remote()
        cb = self.callbacks()
        self._guard(lambda: remote.connect(callbacks=cb, direction=C.GIT_DIRECTION_PUSH))
        return {"ok": True}

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except SyncFailure:
            raise
        except (pygit2.GitError, OSError, ValueError, KeyError) as exc:
            raise classify(exc, _PIN.failure if _PIN else None) from None


def classify(exc: Exception, hostkey_failure: str | None) -> SyncFailure:
    """The kind of a libgit2 failure: what the server should do about it."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if hostkey_failure:
        return SyncFailure("hostkey", hostkey_failure)
    if "certificate" in low or "hostkey" in low or "host key" in low:
        return SyncFailure("hostkey", text)
    if "fastforward" in low or "fast-forward" in low or "not present locally" in low:
        return SyncFailure("rejected", text)
    if any(w in low for w in ("authentic", "401", "403", "credentials", "publickey",
                              "permission denied")):
        return SyncFailure("auth", text)
    if any(w in low for w in ("unsupported url", "invalid url", "malformed", "unsupported",
                              "not found", "does not appear", "404", "no such",
                              "not exported", "repository not found",
                              "dubious ownership")):
        return SyncFailure("config", text)
    return SyncFailure("network", text)


def serve(stdin: Any, stdout: Any) -> int:
    first = stdin.readline()
    if not first:
        return 0
    try:
        worker: Worker | None = Worker(*read_hello(first))
        setup_error: SyncFailure | None = None
    except SyncFailure as exc:
        worker, setup_error = None, exc
    for line in stdin:
        request = json.loads(line)
        stdout.write(json.dumps(handle(worker, setup_error, request)) + "\n")
        stdout.flush()
    return 0


def handle(worker: Worker | None, setup_error: SyncFailure | None, request: dict) -> dict:
    try:
        if worker is None:
            assert setup_error is not None
            raise setup_error
        op = request.get("op")
        worker.follow(request.get("reopens"))
        if op == "fetch":
            return worker.fetch()
        if op == "push":
            return worker.push(request["oid"], request.get("lease"), request.get("mark"),
                               request.get("unmark"), request.get("done"),
                               request.get("sweep"))
        if op == "check":
            return worker.check()
        if op == "head":
            return worker.head()
        if op == "advertised":
            return worker.advertised()
        if op == "ready":  # started ahead of its first request (the miss probe's)
            return {"ok": True}
        if op == "namespace":
            return worker.namespace(request["instance"])
        raise SyncFailure("config", f"unknown operation {op!r}")
    except SyncFailure as exc:
        return {"ok": False, "kind": exc.kind, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the server decides what to do
        return {"ok": False, "kind": "network", "error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us by closing stdin
    _install_certificate_check()
    return serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
