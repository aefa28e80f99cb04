"""The original Pasteur's command line (issue 15 items 4, 5): its flags, ``URL#branch``,
the branch taken from the remote's HEAD, and the seeds' README walkthrough (a remote
whose only branch is ``master``) run with its own commands against a real git daemon."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pasteur.cli import build_parser, config_from
from pasteur.sync.branch import choose
from pasteur.sync.flags import check_sync_arguments

pytest.register_assert_rewrite("tests.fixtures_git")

from tests.fixtures_git import (  # noqa: E402 - after the rewrite registration
    GIT_ENV,
    PASTEUR,
    GitDaemon,
    Instance,
    Sshd,
    bare_remote,
    git,
    start_pasteur,
    stop,
)
from tests.ports import free_port, wait_port  # noqa: E402

pytest_plugins = ["tests.fixtures_git"]
pytestmark = pytest.mark.timeout(90)


def parse(*args: str):
    args_ns = build_parser().parse_args(["serve", *args])
    return args_ns, config_from(args_ns)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pasteur", "serve", *args],
                          capture_output=True, text=True, timeout=30)


# -- flags -------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--https", "--production"])
@pytest.mark.parametrize(("form", "value"), [([], True), (["=true"], True),
                                             (["=false"], False), (["=TRUE"], True)])
def test_switches_take_the_original_forms(flag, form, value):
    arg = flag + "".join(form)
    ns, _ = parse(arg, "--https" if flag == "--production" else "--hostname=x")
    assert getattr(ns, flag[2:]) is value


def test_the_readme_forms_reach_the_tls_settings():
    _, config = parse("--hostname", "zero.bin", "--https=true", "--production=false",
                      "--email", "a@b.c", "--certificate-seed", "cs", "--account-seed", "as",
                      "--certificate-key-type", "p256", "--account-key-type", "RSA",
                      "--account-bits", "2048", "--certificate-bits", "256")
    tls = config.tls
    assert tls is not None and tls.https and not tls.production
    assert (tls.hostname, tls.email, tls.cert_seed, tls.account_seed) == \
        ("zero.bin", "a@b.c", "cs", "as")
    assert (tls.cert_key_type, tls.cert_bits, tls.account_key_type, tls.account_bits) == \
        ("p256", 256, "rsa", 2048)
    _, config = parse("--hostname", "h", "--https", "--certificate-key-type", "p3",
                      "--account-key-type", "r")  # Cmdliner's enum takes a unique prefix
    assert config.tls is not None
    assert (config.tls.cert_key_type, config.tls.account_key_type) == ("p384", "rsa")
    _, config = parse("--https=false", "--hostname", "zero.bin")
    assert config.tls is None


def test_remote_url_branch_and_ssh_flags():
    key = base64.b64encode(bytes(range(32))).decode()
    pin = "SHA256:" + base64.b64encode(bytes(32)).decode().rstrip("=")
    ns, config = parse("-r", "git@github.com:me/pastes.git#master", "--ssh-key",
                       f"ed25519:{key}", "--ssh-authenticator", pin, "--ssh-password", "pw")
    sync = config.sync
    assert sync is not None
    assert (sync.url, sync.branch, sync.branch_from_head) == \
        ("git@github.com:me/pastes.git", "master", False)
    assert sync.ssh_key == f"ed25519:{key}" and sync.ssh_auth == pin
    assert sync.ssh_password == "pw"
    assert config.commit_url == "https://github.com/me/pastes/commit/{commit}"
    assert check_sync_arguments(ns) is None
    # the seeds' README spellings
    _, config = parse("--ssh-seed", "XXX", f"--ssh-auth={pin}", "--remote", "git@h:r.git")
    assert config.sync is not None and config.sync.seed == "XXX"
    assert config.sync.ssh_auth == pin and config.sync.branch_from_head


def test_the_originals_authenticator_forms_become_sha256_pins():
    digest = bytes(range(32))
    b64 = base64.b64encode(digest).decode().rstrip("=")
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(32)
    for given in (f"SHA256:{b64}", f"rsa:{b64}", f"ed25519:{b64}"):
        _, config = parse("-r", "git@h:r", "--ssh-authenticator", given)
        assert config.sync is not None and config.sync.ssh_auth == f"SHA256:{b64}"
    _, config = parse("-r", "git@h:r", "--ssh-authenticator", base64.b64encode(blob).decode())
    expected = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert config.sync is not None and config.sync.ssh_auth == f"SHA256:{expected}"


def test_no_branch_means_the_remotes_head():
    _, config = parse("-r", "git://localhost/git-pasteur")
    assert config.sync is not None and config.sync.branch_from_head
    _, config = parse("-r", "git://h/r", "--remote-branch", "pastes")
    assert config.sync is not None and config.sync.branch == "pastes"
    assert not config.sync.branch_from_head


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--https=maybe"], "expected true or false"),
        (["--production=2"], "expected true or false"),
        (["-r", "git://h/r#a..b"], "not a branch name"),
        (["-r", "git://h/r#"], "not a branch name"),
        (["-r", "#main"], "no URL"),
        (["-r", "git://h/r#x", "--remote-branch", "y"], "give one"),
        (["--ssh-key", "rsa:a:b"], "one ':' only"),
        (["--ssh-key", "ed25519:AAAA"], "32 bytes"),
        (["--ssh-key", "ed25519:!!"], "base64"),
        (["--ssh-key", "dsa:x"], "ed25519:<base64> or rsa:<seed>"),
        (["--ssh-authenticator", "MD5:xx"], "SHA256:"),
        (["--ssh-authenticator", "notbase64!"], "SHA256:"),
        (["--ssh-key", "ed25519:" + base64.b64encode(bytes(32)).decode(), "--ssh-seed", "s",
          "-r", "git@h:r"], "give one"),
        (["--certificate-key-type", "ed25519"], "Let's Encrypt takes Ed25519"),
        (["--account-key-type", "ed25519"], "nothing registered"),
        (["--account-key-type", "dsa"], "expected one of rsa, ed25519, p256, p384, p521"),
        (["--account-key-type", "p"], "expected one of rsa, ed25519, p256, p384, p521"),
        (["--certificate-bits", "-1"], "positive number of bits"),
        (["--account-bits", "many"], "expected a number of bits"),
        (["--account-bits", "\u0661\u0660\u0662\u0664"], "expected a number of bits"),
    ],
)
def test_bad_values_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_keygen_prints_the_public_key_of_an_ssh_key() -> None:
    """``pasteur keygen --ssh-key KEY`` prints the authorized_keys line and fingerprint,
    to compare with the deploy key the remote has; rsa:<seed> is the original's key."""
    from pasteur import seedkeys

    out = subprocess.run([sys.executable, "-m", "pasteur", "keygen", "--ssh-key",
                          "rsa:XXX", "--comment", "c"], capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    expected = seedkeys.generate(b"XXX", "rsa", 4096).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert out[0] == f"{expected} c"
    blob = base64.b64decode(expected.split()[1])
    sha = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert out[1] == f"fingerprint SHA256:{sha}"


def test_bad_rsa_bits_for_a_seeded_key_say_how_to_get_a_new_one(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pasteur", "serve", "--data", str(tmp_path / "d"), "--https",
         "--hostname", "zero.bin", "--account-seed", "s2", "--account-bits", "512",
         "--port", "0", "--https-port", str(free_port()), "--http-port", "0"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "--account-bits: 512-bit RSA keys are not made here" in r.stderr
    assert "nothing registered" in r.stderr and "Traceback" not in r.stderr


# -- the branch ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "remembered", "branch", "warns"),
    [
        ({"ok": True, "head": "master", "branches": ["main", "master"]}, [], "master", False),
        ({"ok": True, "head": None, "branches": ["master"]}, [], "master", False),
        ({"ok": True, "head": None, "branches": []}, [], "main", False),
        ({"ok": True, "head": None, "branches": ["a", "b"]}, [], "main", True),
        ({"ok": True, "head": None, "branches": ["a", "main"]}, [], "main", False),
        ({"ok": False, "kind": "network", "error": "down"}, ["master"], "master", False),
        ({"ok": False, "kind": "network", "error": "down"}, [], "main", True),
        (None, ["master", "x"], "main", True),
    ],
)
def test_branch_choice(reply, remembered, branch, warns):
    choice = choose(reply, remembered)
    assert choice.branch == branch
    assert (choice.warning is not None) is warns


def heads(bare: Path) -> list[str]:
    return git("-C", bare, "for-each-ref", "--format=%(refname)", "refs/heads").split()


def wait_pushed(inst: Instance, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = inst.health()
        sync = health["sync"]
        if sync["pending"] == 0 and sync["remote_head"] and health["uncommitted"] == 0:
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"not pushed: {sync}\n{inst.output()[-3000:]}")
        time.sleep(0.05)


def pasted_on(bare: Path, branch: str, pid: str) -> bool:
    names = git("-C", bare, "ls-tree", "-r", "--name-only", branch).split()
    return any(name.rsplit("/", 1)[-1] == pid for name in names)


@pytest.mark.parametrize("url_branch", ["", "#master"])
def test_remote_head_names_the_branch(git_daemon: GitDaemon, pasteurs: list[Instance],
                                      tmp_path: Path, url_branch: str) -> None:
    """A remote with main and master whose HEAD is master: pastes go to master."""
    bare = bare_remote(git_daemon.base / "h.git", first_commit=True)
    git("-C", bare, "update-ref", "refs/heads/master", "refs/heads/main")
    git("-C", bare, "symbolic-ref", "HEAD", "refs/heads/master")
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("h.git") + url_branch,
                      "--sync-interval", "0")
    pasteurs.append(a)
    pid = a.paste("to master")
    health = wait_pushed(a)
    assert health["sync"]["branch"] == "master"
    assert health["sync"]["branch_from"] == ("URL#branch" if url_branch else "remote HEAD")
    assert pasted_on(bare, "master", pid) and not pasted_on(bare, "main", pid)
    assert "branch master" in a.output()


def test_url_branch_creates_the_named_branch(git_daemon: GitDaemon, pasteurs: list[Instance],
                                             tmp_path: Path) -> None:
    bare = bare_remote(git_daemon.base / "n.git", first_commit=True)
    a = start_pasteur(tmp_path / "a", "-r", git_daemon.url("n.git") + "#pastes",
                      "--sync-interval", "0")
    pasteurs.append(a)
    pid = a.paste("on its own branch")
    assert wait_pushed(a)["sync"]["branch"] == "pastes"
    assert heads(bare) == ["refs/heads/main", "refs/heads/pastes"]
    assert pasted_on(bare, "pastes", pid)


WALKTHROUGH = """
mkdir git-pasteur
cd git-pasteur
git init --bare --shared
git config receive.denyCurrentBranch ignore
git read-tree --empty
FIRST_COMMIT=`git commit-tree $(git write-tree) -m .`
git update-ref "refs/heads/master" $FIRST_COMMIT
cd ..
"""
DAEMON = ("git daemon --base-path=. --export-all --reuseaddr --informative-errors --verbose "
          "--enable=receive-pack")


def _port_free(port: int, timeout: float = 20.0) -> bool:
    """Whether git daemon (which binds with SO_REUSEADDR, as here) can listen on `port`;
    waits for a daemon of a test just before to let go of it."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.2)


@pytest.mark.parametrize("default_branch", [None, "main"])
def test_seeds_walkthrough_master_only_remote(pasteurs: list[Instance], tmp_path: Path,
                                              default_branch: str | None) -> None:
    """The seeds' README, its commands as written: a remote whose only branch is master,
    served by git daemon on its default port, then ``pasteur serve -r
    git://localhost/git-pasteur``. The pastes land on master and no other branch is made.
    With ``init.defaultBranch=main`` the remote's HEAD is unborn (not advertised): its
    only branch is used all the same."""
    if not _port_free(9418):
        pytest.fail("port 9418 (git daemon's default, used by the walkthrough) is taken")
    env = {**GIT_ENV, "GIT_CONFIG_COUNT": "0"}
    if default_branch:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="init.defaultBranch",
                   GIT_CONFIG_VALUE_0=default_branch)
    subprocess.run(["sh", "-ec", WALKTHROUGH], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    bare = tmp_path / "git-pasteur"
    assert heads(bare) == ["refs/heads/master"]
    with open(tmp_path / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(["sh", "-c", f"exec {DAEMON}"], cwd=tmp_path, env=env,
                                  stdout=log, stderr=log)
    try:
        wait_port(9418, proc=daemon)
        port = free_port()
        with open(tmp_path / "pasteur.log", "wb") as log:
            proc = subprocess.Popen(
                [str(PASTEUR), "serve", "-r", "git://localhost/git-pasteur", "--port", str(port),
                 "--sync-interval", "0"],
                cwd=tmp_path, stdout=log, stderr=log, env={**os.environ})
        inst = Instance(tmp_path / "pasteur-data", port, proc, tmp_path / "pasteur.log")
        pasteurs.append(inst)
        try:
            wait_port(port, timeout=30, proc=proc)
            pids = [inst.paste(f"walkthrough {i}") for i in range(3)]
            health = wait_pushed(inst)
            assert health["sync"]["branch"] == "master"
            assert health["sync"]["branch_from"] == \
                ("only branch" if default_branch else "remote HEAD")
            assert heads(bare) == ["refs/heads/master"]
            for pid in pids:
                assert pasted_on(bare, "master", pid)
                assert httpx.get(f"{inst.base}/{pid}?raw=true").text.startswith("walkthrough")
            assert "branch master" in inst.output()
            log_master = git("-C", bare, "log", "--format=%s", "master").splitlines()
            assert log_master[-1] == "." and len(log_master) >= 2
        finally:
            stop(proc)
    finally:
        stop(daemon)


# -- SSH with the original's key flags ---------------------------------------------------


def test_ssh_key_rsa_seed_is_the_originals_key(sshd: Sshd, pasteurs: list[Instance],
                                               tmp_path: Path) -> None:
    """``--ssh-key rsa:<seed>`` authenticates with the RSA key the original made from the
    seed (`pasteur.seedkeys`, checked against the OCaml libraries in
    tests/test_seedkeys.py), to an OpenSSH server that takes only rsa-sha2 signatures."""
    from pasteur import seedkeys

    public = seedkeys.generate(b"hello", "rsa", 4096).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    authorized = sshd.dir / "authorized_keys"
    authorized.write_text(authorized.read_text() + public + " original-rsa\n")
    bare = bare_remote(tmp_path / "ssh.git", first_commit=True)
    a = start_pasteur(tmp_path / "a", "-r", sshd.url(bare) + "#main", "--ssh-key", "rsa:hello",
                      "--ssh-authenticator", ",".join(sshd.fingerprints.values()))
    pasteurs.append(a)
    pid = a.paste("with the original's RSA key")
    wait_pushed(a, timeout=120)  # the key takes a few seconds to derive
    assert pasted_on(bare, "main", pid)


def test_ssh_key_ed25519_is_the_originals_key(sshd: Sshd, pasteurs: list[Instance],
                                              tmp_path: Path) -> None:
    """``--ssh-key ed25519:<base64 of the 32-byte private key>`` authenticates with that
    very key (its public half, made here by `cryptography`, is the one authorised)."""
    raw = bytes(range(100, 132))
    public = Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    authorized = sshd.dir / "authorized_keys"
    authorized.write_text(authorized.read_text() + public + " original\n")
    bare = bare_remote(tmp_path / "ssh.git", first_commit=True)
    a = start_pasteur(tmp_path / "a", "-r", sshd.url(bare) + "#main",
                      "--ssh-key", "ed25519:" + base64.b64encode(raw).decode(),
                      "--ssh-authenticator", ",".join(sshd.fingerprints.values()))
    pasteurs.append(a)
    pid = a.paste("with the original's key")
    wait_pushed(a)
    assert pasted_on(bare, "main", pid)
    assert base64.b64encode(raw).decode() not in a.output()


def test_ssh_seed_is_the_originals_rsa_2048_key(sshd: Sshd, pasteurs: list[Instance],
                                                tmp_path: Path) -> None:
    """``--ssh-seed SEED`` (the seeds' README, with ``--ssh-auth``) authenticates with the
    RSA-2048 key awa's ``Keys.of_seed `Rsa`` made from the seed until awa 0.0.4 (checked
    against that OCaml code in tests/test_seedkeys.py), the key awa_gen_key printed."""
    from pasteur import seedkeys

    public = seedkeys.generate(b"XXX", "rsa", 2048).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    authorized = sshd.dir / "authorized_keys"
    authorized.write_text(authorized.read_text() + public + " awa@awa.local\n")
    bare = bare_remote(tmp_path / "ssh.git", first_commit=True)
    a = start_pasteur(tmp_path / "a", "--ssh-seed", "XXX",
                      "--ssh-auth=" + ",".join(sshd.fingerprints.values()),
                      "--remote", sshd.url(bare) + "#main")
    pasteurs.append(a)
    pid = a.paste("with the original's --ssh-seed key")
    wait_pushed(a, timeout=120)
    assert pasted_on(bare, "main", pid)


def test_a_refused_ssh_seed_key_names_the_other_keys_of_the_seed(
    sshd: Sshd, tmp_path: Path
) -> None:
    """A deploy key made by an original built with awa >= 0.0.5 (RSA-4096), or by an
    earlier ``pasteur keygen`` (Ed25519), is not the --ssh-seed key: the refusal says
    which key was offered and what to give instead, nothing is derived silently."""
    bare = bare_remote(tmp_path / "ssh.git", first_commit=True)
    inst = start_pasteur(tmp_path / "a", "-r", sshd.url(bare) + "#main",
                         "--ssh-seed", "not registered",
                         "--ssh-auth", ",".join(sshd.fingerprints.values()), wait=False)
    deadline = time.monotonic() + 120
    while inst.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if inst.proc.poll() is None:
        stop(inst.proc)
    out = inst.output()
    assert "refused our credentials" in out, out
    assert "RSA-2048" in out and "--ssh-key rsa:SEED" in out and "--pasteur-seed" in out


def test_keygen_makes_an_ed25519_ssh_key_and_converts_old_seeds(tmp_path: Path) -> None:
    """``pasteur keygen`` prints a new key as the original's ``--ssh-key ed25519:<base64
    of the 32-byte private key>``, its public key (ssh-keygen agrees on the fingerprint);
    ``--pasteur-seed`` turns a seed an earlier keygen printed into the same key."""
    def keygen(*args: str) -> list[str]:
        return subprocess.run([sys.executable, "-m", "pasteur", "keygen", *args],
                              capture_output=True, text=True, check=True,
                              timeout=120).stdout.splitlines()

    flag, public, fp = keygen("--comment", "c")
    assert flag.startswith("--ssh-key ed25519:")
    raw = base64.b64decode(flag.split(":", 1)[1], validate=True)
    expected = Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert public == f"{expected} c"
    (tmp_path / "k.pub").write_text(public + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", tmp_path / "k.pub"],
                         capture_output=True, text=True, check=True).stdout
    assert fp == f"fingerprint {out.split()[1]}"
    assert keygen()[0] != flag
    # the printed flag gives the same key back
    assert keygen("--ssh-key", flag.split()[1], "--comment", "c") == [public, fp]
    # an earlier keygen's seed: its key was SHA-256(label || seed) as the private key
    old = hashlib.sha256(b"pasteur ssh ed25519 v1\0xyz").digest()
    converted = keygen("--pasteur-seed", "xyz")
    assert converted[0] == "--ssh-key ed25519:" + base64.b64encode(old).decode()
    r = subprocess.run([sys.executable, "-m", "pasteur", "keygen", "--seed", "xyz"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--pasteur-seed" in r.stderr


def test_keygen_ssh_seed_prints_the_originals_key_and_the_awa_005_caveat() -> None:
    from pasteur import seedkeys

    r = subprocess.run([sys.executable, "-m", "pasteur", "keygen", "--ssh-seed", "XXX",
                        "--comment", "c"], capture_output=True, text=True, check=True,
                       timeout=120)
    expected = seedkeys.generate(b"XXX", "rsa", 2048).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    public, fp = r.stdout.splitlines()
    assert public == f"{expected} c" and fp.startswith("fingerprint SHA256:")
    assert "awa 0.0.5" in r.stderr and "--ssh-key rsa:SEED" in r.stderr


def test_unreachable_remote_keeps_the_branch_of_the_previous_run(
    git_daemon: GitDaemon, pasteurs: list[Instance], tmp_path: Path
) -> None:
    """The remote's HEAD cannot be read while it is down: a data directory that synced
    with master before keeps master; a fresh one says it falls back to main."""
    bare = bare_remote(git_daemon.base / "m.git", first_commit=True)
    git("-C", bare, "branch", "-m", "main", "master")
    git("-C", bare, "symbolic-ref", "HEAD", "refs/heads/master")
    url = git_daemon.url("m.git")
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "0")
    a.paste("first run")
    assert wait_pushed(a)["sync"]["branch"] == "master"
    stop(a.proc)
    a.close()
    git_daemon.stop()
    a = start_pasteur(tmp_path / "a", "-r", url, "--sync-interval", "0")
    fresh = start_pasteur(tmp_path / "fresh", "-r", url, "--sync-interval", "0")
    pasteurs.extend([a, fresh])
    assert a.health()["sync"]["branch"] == "master"
    assert a.health()["sync"]["branch_from"] == "previous run"
    assert fresh.health()["sync"]["branch"] == "main"
    assert "could not read the remote's HEAD; using branch main" in fresh.output()
    stop(fresh.proc)  # (it would create main beside master, as its warning says)
    pid = a.paste("second run, remote down")
    git_daemon.start()
    a.get("Zzzz")  # a miss: fetch, then push
    wait_pushed(a)
    assert pasted_on(bare, "master", pid)
    assert heads(bare) == ["refs/heads/master"]
