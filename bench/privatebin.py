"""PrivateBin 2.0.5 as its container image runs it: nginx in front of php-fpm 8.2.

Unpacked from ``privatebin-2.0.5.tar.gz`` (``PASTEUR_PEERS_DIR``, default
``../shared/peers`` beside the repository) into the bench's working directory,
never into the repository. Both servers read configuration files of their own
there, keep their pid, logs, socket and temporary files there, listen on
loopback only and run pinned to the server CPU; as root, php-fpm is allowed to
(``-R``) and nginx's workers run as root too (they must reach the socket in the
working directory, which only its owner can enter).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import httpx

from . import procs

TARBALL = "privatebin-2.0.5.tar.gz"
WORKERS = 8  # php-fpm workers (pm = static): a CPU-bound PHP on one core needs few
JSON_API = {"X-Requested-With": "JSONHttpRequest"}


class Unavailable(Exception):
    """A peer that cannot run here; the message says why (shown in the table)."""


def peers_dir() -> Path:
    env = os.environ.get("PASTEUR_PEERS_DIR")
    return Path(env) if env else procs.ROOT.parent / "shared" / "peers"


def binary(*names: str) -> str | None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/sbin"
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def paste_document(size: int = 1024) -> dict:
    """A v2 paste as PrivateBin's browser client sends it (js/privatebin.js):
    ``size`` bytes of text + the 16-byte GCM tag as ciphertext (random here:
    the server checks the format, never the ciphertext)."""
    b64 = base64.b64encode
    return {
        "v": 2,
        "adata": [[b64(os.urandom(16)).decode(), b64(os.urandom(8)).decode(), 100000, 256, 128,
                   "aes", "gcm", "zlib"], "plaintext", 0, 0],
        "meta": {"expire": "1week"},
        "ct": b64(os.urandom(size + 16)).decode(),
    }


class PrivateBin:
    def __init__(self, work: Path, tarball: Path | None = None, workers: int = WORKERS) -> None:
        self.name = "privatebin"
        self.work = work / "privatebin"
        self.tarball = tarball or peers_dir() / TARBALL
        self.workers = workers
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.running: list[subprocess.Popen] = []

    # -- set-up ---------------------------------------------------------------

    def setup(self) -> None:
        """Unpack and configure; Unavailable when something is missing."""
        if not self.tarball.is_file():
            raise Unavailable(f"no {TARBALL} at {self.tarball.parent} (set PASTEUR_PEERS_DIR)")
        fpm = binary("php-fpm8.2", "php-fpm")
        nginx = binary("nginx")
        missing = [p for p, b in (("php-fpm php-gd", fpm), ("nginx", nginx)) if b is None]
        if missing or fpm is None or nginx is None:
            raise Unavailable(f"Debian packages {' '.join(missing)} are not installed "
                              "(scripts/setup --test installs them)")
        self.fpm, self.nginx = fpm, nginx
        app = self.work / "privatebin"
        if not (app / "index.php").exists():
            self.work.mkdir(parents=True, exist_ok=True)
            with tarfile.open(self.tarball) as tar:
                tar.extractall(self.work, filter="data")
            if not (app / "index.php").exists():
                raise Unavailable(f"{self.tarball} has no privatebin/index.php")
        self.app = app
        data = self.work / "data"
        data.mkdir(exist_ok=True)
        (self.work / "tmp").mkdir(exist_ok=True)
        self._write_conf(app, data)
        self._write_fpm()
        self._write_nginx()

    def _write_conf(self, app: Path, data: Path) -> None:
        conf = (app / "cfg" / "conf.sample.php").read_text()
        # the traffic limiter off (all the load comes from 127.0.0.1), the data
        # in the working directory; every other setting as shipped
        for old, new in (("\nlimit = 10\n", "\nlimit = 0\n"),  # [traffic]'s, the first
                         ('dir = PATH "data"', f'dir = "{data}"')):
            if old not in conf:
                raise Unavailable(f"cfg/conf.sample.php has no {old.strip()!r}")
            conf = conf.replace(old, new, 1)
        (app / "cfg" / "conf.php").write_text(conf)

    def _write_fpm(self) -> None:
        w = self.work
        (w / "php-fpm.conf").write_text(
            f"[global]\npid = {w}/php-fpm.pid\nerror_log = {w}/php-fpm.log\ndaemonize = no\n"
            f"[www]\nlisten = {w}/php-fpm.sock\nlisten.mode = 0666\n"
            f"pm = static\npm.max_children = {self.workers}\n"
            "catch_workers_output = yes\n")

    def _write_nginx(self) -> None:
        w = self.work
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temps = "".join(f"  {kind}_temp_path {w}/tmp/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (w / "nginx.conf").write_text(
            f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {w}/nginx.pid;\n"
            f"error_log {w}/nginx-error.log;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  include /etc/nginx/mime.types;\n"
            f"  access_log {w}/nginx-access.log;\n"
            "  keepalive_requests 1000000;\n"
            f"{temps}"
            "  server {\n"
            f"    listen 127.0.0.1:{self.port};\n"
            f"    root {self.app};\n"
            "    index index.php;\n"
            "    location / { try_files $uri $uri/ /index.php$is_args$args; }\n"
            "    location ~ \\.php$ {\n"
            "      include /etc/nginx/fastcgi_params;\n"
            "      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
            f"      fastcgi_pass unix:{w}/php-fpm.sock;\n"
            "    }\n"
            "  }\n"
            "}\n")

    # -- running ---------------------------------------------------------------

    def start(self, timeout: float = 60) -> PrivateBin:
        self.setup()
        w = self.work
        root = ["-R"] if os.geteuid() == 0 else []
        argvs = [[self.fpm, "-F", "-y", str(w / "php-fpm.conf"), *root],
                 [self.nginx, "-p", str(w), "-c", str(w / "nginx.conf"),
                  "-e", str(w / "nginx-error.log")]]
        with (w / "start.log").open("ab") as log:
            for argv in argvs:
                self.running.append(subprocess.Popen(
                    procs.pinned(procs.SERVER_CPU, argv), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for proc in self.running:
                if proc.poll() is not None:
                    self.stop()
                    raise Unavailable(f"{Path(proc.args[-1]).name} exited {proc.returncode}: "
                                      + self.logs())
            try:
                r = httpx.get(self.url + "/", timeout=2)
                if r.status_code == 200:
                    self.check()
                    return self
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        self.stop()
        raise Unavailable(f"did not answer in {timeout:g} s ({last}): {self.logs()}")

    def check(self) -> None:
        """One create and its read, or Unavailable with PrivateBin's answer."""
        try:
            paste = self.create()
            r = httpx.get(self.url + paste, headers=JSON_API, timeout=10)
            if r.status_code != 200 or r.json().get("status") != 0:
                raise Unavailable(f"cannot read {paste}: HTTP {r.status_code} {r.text[:200]}")
        except Unavailable:
            self.stop()
            raise

    def create(self, client: httpx.Client | None = None) -> str:
        """One 1 KiB paste; its path (``/?<id>``)."""
        r = (client or httpx).post(self.url + "/", json=paste_document(), headers=JSON_API,
                                   timeout=30)
        try:
            doc = r.json()
        except ValueError:
            doc = {}
        if r.status_code != 200 or doc.get("status") != 0:
            raise Unavailable(f"create refused: HTTP {r.status_code} {r.text[:300]} {self.logs()}")
        return f"/?{doc['id']}"

    def logs(self) -> str:
        out = []
        for name in ("start.log", "php-fpm.log", "nginx-error.log"):
            try:
                text = (self.work / name).read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                out.append(f"[{name}] {text[-600:]}")
        return " ".join(out)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.running]

    def drain(self, timeout: float = 120) -> None:
        httpx.get(self.url + "/", timeout=timeout).raise_for_status()

    def stop(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # both: fast shutdown
        for proc in self.running:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running = []

    def __enter__(self) -> PrivateBin:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
