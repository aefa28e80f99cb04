"""Git synchronisation against real servers on loopback (git daemon, sshd, lighttpd)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pygit2
import pytest

from pasteur.config import SyncSettings
from pasteur.storage.repository import Change
from pasteur.storage.store import Store
from pasteur.sync.merge import absorb, erase_message, integrate, is_rewrite, paste_id_of
from pasteur.sync.sshkeys import fingerprint, key_from_awa_seed, parse_fingerprint
from pasteur.sync.syncer import WorkerClient, cleartext_secret, redact

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
    SSH_SEED,
    GitDaemon,
    HttpGit,
    Instance,
    Sshd,
    bare_remote,
    git,
    remote_ids,
    start_pasteur,
    stop,
)

pytest_plugins = ["tests.fixtures_git"]
pytestmark = pytest.mark.timeout(60)


def wait_synced(inst: Instance, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = inst.health()
        sync = health["sync"]
        # (creates are acknowledged once journaled: committed, then pushed)
        if sync["pending"] == 0 and sync["remote_head"] and health["uncommitted"] == 0:
            return sync
        if time.monotonic() > deadline:
            raise AssertionError(f"not synchronised: {sync}\n{inst.output()[-3000:]}")
        time.sleep(0.05)


def wait_exit(inst: Instance, timeout: float = 20.0) -> tuple[int, str]:
    try:
        code = inst.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(inst.proc)
        raise AssertionError(f"pasteur kept running:\n{inst.output()}") from None
    return code, inst.output()


def assert_clean_linear(bare: Path) -> None:
    git("-C", bare, "fsck", "--strict", "--no-dangling")
    assert git("-C", bare, "rev-list", "--merges", "main") == ""
    assert len(git("-C", bare, "rev-list", "--max-parents=0", "main").split()) == 1


def get(inst: Instance, paste_id: str) -> int:
    return inst.get(paste_id)


# -- keys and pure functions -----------------------------------------------------


def test_keygen_is_deterministic(tmp_path: Path) -> None:
    """``pasteur keygen --ssh-seed SEED`` prints the same key each time (the original's,
    RSA-2048), and ssh-keygen computes the fingerprint printed with it."""
    run = [str(Path(subprocess.sys.executable).with_name("pasteur")), "keygen", "--ssh-seed",
           "xyz"]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert first == second
    key_line, fp_line = first.splitlines()
    assert key_line.startswith("ssh-rsa AAAA")
    # ssh-keygen reads our public key and prints the fingerprint we compute
    pub = tmp_path / "k.pub"
    pub.write_text(key_line + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", pub],
                         capture_output=True, text=True, check=True).stdout
    import base64
    blob = base64.b64decode(key_line.split()[1])
    assert out.split()[:2] == ["2048", fingerprint(blob)]
    assert fp_line == f"fingerprint {fingerprint(blob)}"
    assert parse_fingerprint(fingerprint(blob)) != b""
    assert key_from_awa_seed("xyz").private_pem.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_redact_strips_tokens() -> None:
    assert redact("https://u:tok@example.org/r.git") == "https://u@example.org/r.git"
    assert redact("https://example.org:8443/r.git") == "https://example.org:8443/r.git"
    assert redact("git@github.com:me/r.git") == "git@github.com:me/r.git"



def test_a_secret_sent_in_clear_is_named_for_the_warning() -> None:
    def secret(url: str, token: str | None = None) -> str | None:
        return cleartext_secret(SyncSettings(url=url, token=token))

    assert secret("http://h/r.git", "t") == "the token (--remote-token)"
    assert secret("http://u:pw@h/r.git") == "the password in the URL"
    assert secret("http://u@h/r.git") is None
    assert secret("https://h/r.git", "t") is None and secret("https://u:pw@h/r.git") is None
    assert secret("git://h/r.git", "t") is None

def _commit(store: Store, pastes: dict[str, bytes], msg: str = "m") -> None:
    adds = [(pid, store.repo.create_blob(data)) for pid, data in pastes.items()]
    store.apply([Change(adds, [], None, msg)])


def test_integrate_replays_linearly_and_resolves_collisions(tmp_path: Path) -> None:
    base = Store(tmp_path / "a.git")
    _commit(base, {"root": b"r"})
    root = base.head
    # "remote" line: two pastes, one of them with an id the local side also uses
    _commit(base, {"abcd": b"theirs", "zzzz": b"z"})
    remote = base.head
    base.reset_to(root)
    _commit(base, {"abcd": b"mine"}, "Add paste abcd")
    _commit(base, {"mmmm": b"m"}, "Add paste mmmm")
    result = integrate(base.repository, remote)
    assert result.action == "replay" and result.replayed == 1  # "Add paste abcd" left empty
    # a collision (only a writer outside the id namespaces can make one):
    # the remote's paste keeps the id, nothing is renamed behind the client
    assert result.collisions == ["abcd"]
    assert base.get("abcd") == b"theirs"
    assert not [i for i in base.ids() if i.startswith("abcd") and i != "abcd"]
    assert base.get("mmmm") == b"m" and base.get("zzzz") == b"z"
    commits = list(base.repo.walk(base.head))
    assert all(len(c.parents) <= 1 for c in commits)
    assert commits[0].message == "Add paste mmmm\n" and commits[1].id == remote
    # fast-forward and "ahead" cases
    assert integrate(base.repository, remote).action == "ahead"
    head = base.head
    base.reset_to(remote)
    assert integrate(base.repository, head).action == "fast-forward" and base.head == head
    for store in (base,):
        store.close()


def test_absorb_and_restore_after_rewrites(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.git")
    _commit(store, {"root": b"r"})
    _commit(store, {"gone": b"erased", "kept": b"k"})
    known = store.head  # what the remote had
    _commit(store, {"peer": b"p"})  # a peer pushes on top of it
    remote = store.head
    # locally, "gone" is erased: history rewritten from the root
    store.reset_to(store.repo[known].parents[0].id)
    _commit(store, {"kept": b"k"})
    assert is_rewrite(store.repo, store.head, known)
    result = absorb(store.repository, known, remote)
    assert result.replayed == 1 and store.get("peer") == b"p" and store.get("gone") is None
    # a peer that kept "mine" locally sees a rewritten remote without it:
    # restored unless listed as erased
    for erased, expect in ((set(), b"m"), ({"mine"}, None)):
        store.reset_to(known)
        _commit(store, {"mine": b"m"})
        peer_known = store.head
        store.reset_to(remote)
        if erased:
            store.apply([Change([], [], None, erase_message(erased))])
        rewritten = store.head
        store.reset_to(peer_known)
        result = integrate(store.repository, rewritten, peer_known)
        assert result.remote_rewritten and store.get("mine") == expect
        head = store.head
        assert head == rewritten or store.repo.descendant_of(head, rewritten)
    store.close()


# -- transports ------------------------------------------------------------------


def test_git_daemon_push_and_restart_from_remote(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare = bare_remote(git_daemon.base / "p.git", first_commit=True)
    first = git("-C", bare, "rev-parse", "main").strip()
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("p.git"), "--sync-interval", "0")
    pasteurs.append(a)
    ids = [a.paste(f"paste {i}") for i in range(3)]
    sync = wait_synced(a)
    assert sync["remote"] == git_daemon.url("p.git") and sync["last_push"]
    assert sorted(remote_ids(bare)) == sorted(ids)
    assert git("-C", bare, "rev-list", "--max-parents=0", "main").strip() == first
    assert_clean_linear(bare)
    # a fresh instance starts from the remote's history
    b = start_pasteur(tmp_path / "b", "-r", git_daemon.url("p.git"), "--sync-interval", "0")
    pasteurs.append(b)
    assert all(get(b, i) == 200 for i in ids)


def test_ssh_with_pinned_host_key(sshd: Sshd, pasteurs: list[Instance], tmp_path: Path) -> None:
    bare = bare_remote(tmp_path / "ssh.git")
    url = sshd.url(bare)
    pins = ",".join(sshd.fingerprints.values())  # every key type the host has
    a = start_pasteur(tmp_path / "a", "-r", url, "--ssh-auth", pins,
                      env={"PASTEUR_SSH_SEED": SSH_SEED})
    pasteurs.append(a)
    pid = a.paste("over ssh")
    wait_synced(a)
    assert remote_ids(bare) == [pid]
    assert SSH_SEED not in a.output()


def test_ssh_wrong_fingerprint_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    bare = bare_remote(tmp_path / "ssh.git")
    wrong = "SHA256:" + "A" * 43
    inst = start_pasteur(tmp_path / "a", "-r", sshd.url(bare), "--ssh-auth", wrong,
                         "--ssh-seed", SSH_SEED, wait=False)
    code, out = wait_exit(inst)
    assert code != 0
    assert "host key mismatch" in out and wrong in out
    assert any(f"the server's key is {fp}" in out for fp in sshd.fingerprints.values())


def test_ssh_without_pin_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    bare = bare_remote(tmp_path / "ssh.git")
    inst = start_pasteur(tmp_path / "a", "-r", sshd.url(bare), "--ssh-seed", SSH_SEED,
                         wait=False)
    code, out = wait_exit(inst)
    assert code != 0 and "--ssh-auth" in out and "--ssh-insecure" in out


def test_ssh_insecure_accepts_any_host_key(
    sshd: Sshd, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare = bare_remote(tmp_path / "ssh.git")
    a = start_pasteur(tmp_path / "a", "-r", sshd.url(bare), "--ssh-insecure",
                      "--ssh-seed", SSH_SEED)
    pasteurs.append(a)
    pid = a.paste("unpinned")
    wait_synced(a)
    assert remote_ids(bare) == [pid]


def test_ssh_wrong_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    bare = bare_remote(tmp_path / "ssh.git")
    inst = start_pasteur(tmp_path / "a", "-r", sshd.url(bare), "--ssh-seed", "another seed",
                         "--ssh-auth", ",".join(sshd.fingerprints.values()), wait=False)
    code, out = wait_exit(inst)
    assert code != 0 and "refused our credentials" in out


def test_http_with_token(http_git: HttpGit, pasteurs: list[Instance], tmp_path: Path) -> None:
    bare = bare_remote(http_git.root / "token.git", first_commit=True)
    a = start_pasteur(tmp_path / "a", "-r", http_git.url("token.git"),
                      env={"PASTEUR_REMOTE_TOKEN": http_git.token})
    pasteurs.append(a)
    pid = a.paste("over http")
    sync = wait_synced(a)
    assert remote_ids(bare) == [pid]
    assert http_git.token not in a.output() and http_git.token not in str(sync)


def test_https_with_token(https_git: HttpGit, pasteurs: list[Instance], tmp_path: Path) -> None:
    """An https remote, its certificate checked against the CA file Python's ssl
    module is told about (SSL_CERT_FILE, as for any system CA bundle)."""
    bare = bare_remote(https_git.root / "tls.git", first_commit=True)
    env = {"PASTEUR_REMOTE_TOKEN": https_git.token, "SSL_CERT_FILE": str(https_git.cafile)}
    a = start_pasteur(tmp_path / "a", "-r", https_git.url("tls.git"), env=env)
    pasteurs.append(a)
    pid = a.paste("over https")
    wait_synced(a)
    assert remote_ids(bare) == [pid]
    assert https_git.token not in a.output() and "sent in clear" not in a.output()
    # without the CA the server's certificate is refused, with a clear one-line error
    bare_remote(https_git.root / "untrusted.git")
    inst = start_pasteur(tmp_path / "b", "-r", https_git.url("untrusted.git"),
                         env={"PASTEUR_REMOTE_TOKEN": https_git.token,
                              "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}, wait=False)
    code, out = wait_exit(inst)
    assert code != 0 and "certificate" in out.lower()


def test_http_wrong_token_is_refused(http_git: HttpGit, tmp_path: Path) -> None:
    bare_remote(http_git.root / "wrong.git")
    inst = start_pasteur(tmp_path / "a", "-r", http_git.url("wrong.git"), "--remote-token", "nope",
                         wait=False)
    code, out = wait_exit(inst)
    assert code != 0 and "refused our credentials" in out and "nope" not in out


# -- several instances, outages ------------------------------------------------------


def test_two_instances_share_a_remote(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare = bare_remote(git_daemon.base / "shared.git")
    url = git_daemon.url("shared.git")
    # two-character ids: each instance picks them in its own namespace
    # (one random character, then its namespace's), so none collide
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "0", "--length", "2")
    b = start_pasteur(tmp_path / "b", "-r", url, "--sync-interval", "0", "--length", "2")
    pasteurs += [a, b]
    # a paste made on A is served by B (miss path: B fetches)
    pid = a.paste("from A")
    wait_synced(a)
    assert get(b, pid) == 200
    assert get(b, "Nope") == 404
    # both write in a burst
    with ThreadPoolExecutor(16) as pool:
        texts = [f"{n} {i}" for i in range(50) for n in "ab"]
        ids = list(pool.map(lambda t: (a if t[0] == "a" else b).paste(t), texts))
    wait_synced(a, 40)
    wait_synced(b, 40)
    assert_clean_linear(bare)
    on_remote = remote_ids(bare)
    contents = remote_contents(bare, on_remote)
    texts_on_remote = sorted(json.loads(c)["text"] for c in contents.values())
    assert texts_on_remote == sorted(texts + ["from A"])  # every paste exactly once
    for paste_id, text in zip(ids, texts, strict=True):  # each URL serves its own paste
        assert json.loads(contents[paste_id])["text"] == text
    # every paste is readable on both instances (the one behind fetches on a
    # miss, at most once every 2 s)
    for inst in (a, b):
        wait_for(f"every paste on {inst.base}",
                 lambda inst=inst: all(get(inst, i) == 200 for i in on_remote), 15)


def remote_contents(bare: Path, ids: list[str]) -> dict[str, str]:
    names = "".join(f"main:{i[0]}/{i[1]}/{i}\n" for i in ids)
    out = subprocess.run(["git", "-C", bare, "cat-file", "--batch"], input=names,
                         capture_output=True, text=True, check=True).stdout
    return dict(zip(ids, _batch_bodies(out), strict=True))


def _batch_bodies(out: str) -> list[str]:
    bodies, rest = [], out
    while rest:
        header, rest = rest.split("\n", 1)
        size = int(header.split()[2])
        bodies.append(rest[:size])
        rest = rest[size + 1:]
    return bodies


def test_remote_down_then_back(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare = bare_remote(git_daemon.base / "d.git", first_commit=True)
    # a first start claims the instance's id namespace on the remote
    first = start_pasteur(tmp_path / "a", "-r", git_daemon.url("d.git"))
    first.close()
    stop(first.proc)
    git_daemon.stop()
    # unreachable at start: serve locally and retry
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("d.git"), "--sync-interval", "0")
    pasteurs.append(a)
    ids = [a.paste(f"while down {i}") for i in range(5)]
    sync = a.health()["sync"]
    assert sync["pending"] >= 1 and "Connection refused" in (sync["last_error"] or "")
    assert all(get(a, i) == 200 for i in ids)
    time.sleep(1.0)
    git_daemon.start()
    wait_synced(a, 40)
    assert sorted(remote_ids(bare)) == sorted(ids)
    # down again while running
    git_daemon.stop()
    more = [a.paste(f"second outage {i}") for i in range(3)]
    time.sleep(1.0)
    assert a.health()["sync"]["pending"] >= 1
    git_daemon.start()
    wait_synced(a, 40)
    assert sorted(remote_ids(bare)) == sorted(ids + more)
    assert_clean_linear(bare)


def test_no_remote_means_no_sync(pasteurs: list[Instance], tmp_path: Path) -> None:
    a = start_pasteur(tmp_path / "a")
    pasteurs.append(a)
    assert "sync" not in a.health()
    assert a.paste("local") and pygit2.Repository(str(tmp_path / "a" / "repo.git")).head_is_unborn \
        is False



def has_object(repo: Path, oid: str) -> bool:
    return subprocess.run(["git", "-C", repo, "cat-file", "-e", oid]).returncode == 0


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("b_polls", [True, False], ids=["B-polls", "B-idle"])
def test_erasure_reaches_the_remote_and_other_instances(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path, b_polls: bool
) -> None:
    """A deletes and erases a paste B has read. B-polls: B fetches every second and
    pushes while A erases (A's forced push may lose its lease and absorb B's
    paste). B-idle: B never sees the deletion commit, only the rewritten
    history; the erase marker keeps it from restoring the paste."""
    bare = bare_remote(git_daemon.base / "e.git", first_commit=True)
    url = git_daemon.url("e.git")
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "0", "--erase-interval", "1s")
    b = start_pasteur(tmp_path / "b", "-r", url, "--sync-interval", "1" if b_polls else "0")
    pasteurs += [a, b]
    secret = a.paste_json("secret text")
    sid = secret["code"]
    keep_a = a.paste("kept on A")
    wait_synced(a)
    keep_b = b.paste("kept on B")
    wait_synced(b)
    assert get(b, sid) == 200 and get(a, keep_b) == 200
    blob = git("-C", bare, "rev-parse", f"main:{sid[0]}/{sid[1]}/{sid}").strip()
    assert has_object(b.data / "repo.git", blob)
    deleted = a.client().delete(f"/{sid}", headers={"x-delete-token": secret["delete_token"]})
    assert deleted.is_success
    kept = [keep_a, keep_b]
    if b_polls:
        kept.append(b.paste("written on B meanwhile"))

    def erased_from_remote() -> bool:
        objects = git("-C", bare, "rev-list", "--objects", "main")
        return blob not in objects and set(kept) <= set(remote_ids(bare))

    wait_for("the erasure on the remote", erased_from_remote)
    if not b_polls:
        assert get(b, "Zzzz") == 404  # a miss: B fetches the rewritten history
    wait_synced(a)
    wait_synced(b)
    wait_for("the erasure on B", lambda: not has_object(b.data / "repo.git", blob))
    assert not has_object(a.data / "repo.git", blob)
    assert b.health()["sync"]["restored"] == []
    assert sorted(remote_ids(bare)) == sorted(kept)
    assert get(b, sid) == 404
    # A polls nothing (--sync-interval 0): B's paste written meanwhile comes to
    # it by a miss, and misses fetch at most once per 2 s
    wait_for("A serving every kept paste", lambda: all(get(a, i) == 200 for i in kept))
    assert "Erased: " + sid in git("-C", bare, "log", "--format=%B", "main")
    assert_clean_linear(bare)


def test_only_sharded_paths_are_pastes() -> None:
    assert paste_id_of("A/b/Ab3x") == "Ab3x"
    assert paste_id_of("README.md") is None
    assert paste_id_of("a/b/xyz") is None  # not under its own shard
    assert paste_id_of("A/b/Ab-x") is None


async def test_worker_is_restarted_after_a_crash(git_daemon: GitDaemon, tmp_path: Path) -> None:
    bare = bare_remote(git_daemon.base / "w.git", first_commit=True)
    store = Store(tmp_path / "local.git")
    worker = WorkerClient(store.path, SyncSettings(url=git_daemon.url("w.git")))
    try:
        first = await worker.call("fetch")
        assert first == {"ok": True, "head": git("-C", bare, "rev-parse", "main").strip()}
        await worker.kill()  # as a crash would
        assert await worker.call("fetch") == first
        bad = WorkerClient(store.path, SyncSettings(url=git_daemon.url("none.git")))
        reply = await bad.call("fetch")
        assert reply["ok"] is False and reply["kind"] == "config"
        await bad.close()
    finally:
        await worker.close()
        await store.stop()


def test_a_rewrite_by_hand_loses_no_paste(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    bare = bare_remote(git_daemon.base / "r.git", first_commit=True)
    first = git("-C", bare, "rev-parse", "main").strip()
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("r.git"), "--sync-interval", "0")
    pasteurs.append(a)
    pid = a.paste("acknowledged")
    wait_synced(a)
    # someone force-pushes a history without the paste
    tree = git("-C", bare, "rev-parse", f"{first}^{{tree}}").strip()
    other = git("-C", bare, "commit-tree", tree, "-p", first, "-m", "by hand").strip()
    git("-C", bare, "update-ref", "refs/heads/main", other)
    assert get(a, "Zzzz") == 404  # a miss: A fetches and sees the rewrite
    sync = wait_synced(a)
    assert sync["restored"] == [pid]
    assert remote_ids(bare) == [pid] and get(a, pid) == 200
    assert other in git("-C", bare, "rev-list", "main")
    assert_clean_linear(bare)
