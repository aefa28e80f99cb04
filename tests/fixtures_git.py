"""Real Git servers on loopback for the synchronisation tests.

``git daemon`` (git://), OpenSSH ``sshd`` (ssh://) and lighttpd running
``git http-backend`` (http:// with basic auth on push), each in a temporary
directory on a free port, plus helpers to create bare remotes and to start
Pasteur servers as subprocesses.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
PASTEUR = Path(sys.executable).with_name("pasteur")
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def git(*args: str | Path, cwd: Path | None = None) -> str:
    out = subprocess.run(
        ["git", *map(str, args)], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return out.stdout


def bare_remote(path: Path, first_commit: bool = False) -> Path:
    """A bare repository to push to; optionally with the original's empty first commit."""
    git("init", "-q", "--bare", "-b", "main", path)
    git("-C", path, "config", "receive.denyCurrentBranch", "ignore")
    if first_commit:
        tree = git("-C", path, "hash-object", "-t", "tree", "-w", "--stdin").strip()
        commit = git("-C", path, "commit-tree", tree, "-m", ".").strip()
        git("-C", path, "update-ref", "refs/heads/main", commit)
    return path


def remote_ids(bare: Path) -> list[str]:
    """Every paste id on the remote's main (with repetitions, if any)."""
    try:
        out = git("-C", bare, "ls-tree", "-r", "--name-only", "main")
    except subprocess.CalledProcessError:
        return []
    return [line.rsplit("/", 1)[-1] for line in out.splitlines() if line]


def popen_logged(args: list, log: Path, **kwargs: object) -> subprocess.Popen:
    """Start a process with its stderr in a file (the parent's copy is closed at once)."""
    with open(log, "wb") as err:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, **kwargs)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- git daemon ------------------------------------------------------------------


@dataclass
class GitDaemon:
    base: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["git", "daemon", f"--base-path={self.base}", "--export-all",
             "--enable=receive-pack", "--reuseaddr", "--informative-errors",
             "--listen=127.0.0.1", f"--port={self.port}", str(self.base)],
            env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    base = tmp_path / "daemon"
    base.mkdir()
    daemon = GitDaemon(base)
    daemon.start()
    yield daemon
    daemon.stop()


# -- sshd ------------------------------------------------------------------------


@dataclass
class Sshd:
    dir: Path
    port: int
    fingerprints: dict[str, str]  # key type -> SHA256:...
    user: str
    proc: subprocess.Popen

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


SSH_SEED = "pasteur-test-seed-0123456789"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    from pasteur.sync.sshkeys import key_from_awa_seed

    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists():
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    fingerprints = {}
    for kind in ("ed25519", "ecdsa"):
        key = d / f"host_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", key], check=True)
        out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", key],
                             check=True, capture_output=True, text=True).stdout
        fingerprints[kind] = out.split()[1]
    # the original's --ssh-seed key (RSA-2048 from the seed, awa <= 0.0.4)
    (d / "authorized_keys").write_text(key_from_awa_seed(SSH_SEED).public + "\n")
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\n"
        f"HostKey {d / 'host_ed25519'}\nHostKey {d / 'host_ecdsa'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\n"
        f"PidFile {d / 'sshd.pid'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "LogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = popen_logged([binary, "-D", "-e", "-f", config], d / "log")
    wait_port(port, proc=proc)
    yield Sshd(d, port, fingerprints, getpass.getuser(), proc)
    stop(proc)


# -- lighttpd + git http-backend ------------------------------------------------------


@dataclass
class HttpGit:
    root: Path
    port: int
    user: str
    token: str
    proc: subprocess.Popen
    scheme: str = "http"
    cafile: Path | None = None  # the self-signed certificate of an https server

    def url(self, name: str) -> str:
        return f"{self.scheme}://{self.user}@127.0.0.1:{self.port}/git/{name}"


def _http_backend() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                               check=True).stdout.strip()
    return f"{exec_path}/git-http-backend"


@pytest.fixture(scope="module")
def http_git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpGit]:
    yield from _lighttpd(tmp_path_factory, tls=False)


@pytest.fixture(scope="module")
def https_git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpGit]:
    """The same behind TLS (lighttpd's mod_openssl) with a self-signed certificate."""
    yield from _lighttpd(tmp_path_factory, tls=True)


def _lighttpd(tmp_path_factory: pytest.TempPathFactory, tls: bool) -> Iterator[HttpGit]:
    binary = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
    if not Path(binary).exists():
        pytest.skip("lighttpd is not installed (apt-get install lighttpd)")
    d = tmp_path_factory.mktemp("https" if tls else "http")
    root = d / "repos"
    root.mkdir(parents=True)
    user, token = "pasteur", "s3cret-token-xyz"
    (d / "users").write_text(f"{user}:{token}\n")
    port = free_port()
    config = d / "lighttpd.conf"
    cafile = None
    tls_conf = ""
    if tls:
        from .fixtures_acme import self_signed

        cafile, key = self_signed(d, "127.0.0.1")
        (d / "server.pem").write_bytes(cafile.read_bytes() + key.read_bytes())
        tls_conf = f'server.modules += ("mod_openssl")\nssl.engine = "enable"\n' \
                   f'ssl.pemfile = "{d}/server.pem"\n'
    config.write_text(f"""
server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_setenv", "mod_cgi")
{tls_conf}server.port = {port}
server.bind = "127.0.0.1"
server.document-root = "{d}"
server.errorlog = "{d}/error.log"
server.pid-file = "{d}/pid"
alias.url = ("/git" => "{_http_backend()}")
auth.backend = "plain"
auth.backend.plain.userfile = "{d}/users"
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
$HTTP["querystring"] =~ "service=git-receive-pack" {{
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
$HTTP["url"] =~ "/git-receive-pack$" {{
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
""")
    proc = popen_logged([binary, "-D", "-f", config], d / "log")
    wait_port(port, proc=proc)
    yield HttpGit(root, port, user, token, proc, "https" if tls else "http", cafile)
    stop(proc)


# -- Pasteur servers ------------------------------------------------------------


@dataclass
class Instance:
    data: Path
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    _client: httpx.Client | None = None

    def client(self) -> httpx.Client:
        """One shared client (creating one costs tens of ms: it builds an SSL context)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base, timeout=30)
        return self._client

    def paste(self, text: str) -> str:
        return self.paste_json(text)["code"]

    def paste_json(self, text: str) -> dict:
        """Create a paste and wait for its commit (a create is acknowledged
        once journaled; sync starts from the commit)."""
        r = self.client().post("/", files={"paste": (None, text.encode())},
                               headers={"accept": "application/json"})
        r.raise_for_status()
        deadline = time.monotonic() + 15
        while self.health()["uncommitted"] and time.monotonic() < deadline:
            time.sleep(0.01)
        return r.json()

    def get(self, paste_id: str) -> int:
        return self.client().get(f"/{paste_id}", params={"raw": "true"}).status_code

    def health(self) -> dict:
        return self.client().get("/healthz").json()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_pasteur(data: Path, *args: str, env: dict[str, str] | None = None,
                  wait: bool = True) -> Instance:
    port = free_port()
    log = data.with_suffix(".log")
    data.parent.mkdir(parents=True, exist_ok=True)
    proc = popen_logged(
        [str(PASTEUR), "serve", "--data", str(data), "--port", str(port), *args],
        log, env={**os.environ, **(env or {})},
    )
    inst = Instance(data, port, proc, log)
    if wait:
        try:
            wait_port(port, timeout=20, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            stop(proc)
            raise RuntimeError(f"pasteur did not start: {exc}\n{inst.output()}") from exc
    return inst


@pytest.fixture
def pasteurs() -> Iterator[list[Instance]]:
    """Pasteur instances a test started; stopped (SIGTERM, then kill) at the end."""
    started: list[Instance] = []
    yield started
    for inst in started:
        inst.close()
        stop(inst.proc)
