"""Servers under test (Pasteur, pinnwand) and the wrk load generator, each pinned to a core."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "lua"
PINNWAND_VERSION = "1.5.0"
SERVER_CPU = "0"
CLIENT_CPU = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: str | None, argv: list[str]) -> list[str]:
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", cpu, *argv]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Vm") and line.rstrip().endswith("kB"):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process, its threads and its
    children: those running (Pasteur's committer) and those it waited for
    (``git repack``)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile
        return 0.0
    own = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    """Children of any of the process's threads (each thread lists its own)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def tree(pids: list[int]) -> list[int]:
    """The processes and all their descendants (nginx's and php-fpm's workers,
    Pasteur's committer)."""
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += _children(pid)
    return out


def tree_memory(pids: list[int]) -> dict[str, int]:
    """RSS and PSS (shared pages split between the processes sharing them: the
    fair sum over php-fpm's workers) of the processes and their descendants, in
    bytes."""
    out = {"rss": 0, "pss": 0}
    for pid in tree(pids):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("Rss", "Pss"):
                    out[key.lower()] += int(line.split()[1]) * 1024
    return out


class MemorySampler:
    """The largest tree_memory() seen, every ``interval`` s, while in the ``with``."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        self.pids, self.interval = pids, interval
        self.peak = {"rss": 0, "pss": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            now = tree_memory(self.pids)
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


GIT_COMMANDS = ("repack", "pack-objects", "prune", "reflog", "cat-file", "push", "fetch")


def tree_rss(pid: int) -> dict[int, tuple[int, str]]:
    """RSS (bytes) and name of a process and of all its descendants, by pid
    (Pasteur's committer, expiry scan, sync worker, ``git repack`` and the
    ``git pack-objects`` it runs)."""
    out: dict[int, tuple[int, str]] = {}
    for p in tree([pid]):
        try:
            with open(f"/proc/{p}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        rss = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        words = [a.decode(errors="replace") for a in argv if a]
        name = (words[words.index("-m") + 1] if "-m" in words[:-1] else
                next((w for w in words if w in GIT_COMMANDS), fields.get("Name", "?").strip()))
        out[p] = (rss, name)
    return out


class RssSampler:
    """The peak of the summed RSS of a process tree, sampled every ``every``
    seconds in a thread while in the ``with``; ``peak_parts``: the processes at
    the peak (``MemorySampler`` keeps the peaks of RSS and PSS, not the parts)."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid = pid
        self.every = every
        self.peak = 0
        self.peak_parts: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            parts = tree_rss(self.pid)
            total = sum(rss for rss, _ in parts.values())
            if total > self.peak:
                self.peak, self.peak_parts = total, parts
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def describe(self) -> str:
        """The processes at the peak, largest first: "server 120, ... MiB"."""
        parts = sorted(self.peak_parts.items(), key=lambda kv: -kv[1][0])
        return ", ".join(f"{'server' if pid == self.pid else name} {rss / (1 << 20):.0f}"
                         for pid, (rss, name) in parts) + " MiB"


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def disk_costs(directory: Path, n: int = 50) -> dict[str, float]:
    """CPU µs to create a file and wall µs to fdatasync 1 KiB appended to a
    preallocated one, in ``directory``: what a commit and a journaled create
    cost on this disk. (Seen on the benchmark machine: creating a file took
    0.02–1 ms of CPU depending on the disk's state; a Git commit creates three.)"""
    work = Path(tempfile.mkdtemp(prefix="disk-", dir=directory))
    try:
        cpu = time.thread_time()
        for i in range(n):
            os.close(os.open(work / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        create = (time.thread_time() - cpu) / n * 1e6
        fd = os.open(work / "j", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, n * 1024)
            os.fsync(fd)
            t0 = time.perf_counter()
            for i in range(n):
                os.pwrite(fd, b"x" * 1024, i * 1024)
                os.fdatasync(fd)
            sync = (time.perf_counter() - t0) / n * 1e6
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"create_cpu_us": create, "fdatasync_us": sync}


def cpu_busy(seconds: float = 1.0) -> dict[str, float]:
    """Share of each CPU busy over ``seconds`` (before a run: other load on the machine)."""

    def sample() -> dict[str, tuple[int, int]]:
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *values = line.split()
                    ticks = [int(v) for v in values]
                    idle = ticks[3] + ticks[4]  # idle + iowait
                    out[name] = (sum(ticks), idle)
        return out

    a = sample()
    time.sleep(seconds)
    b = sample()
    return {
        name: 1 - (b[name][1] - a[name][1]) / max(1, b[name][0] - a[name][0])
        for name in a if name in b
    }


class Target(Protocol):
    """What the load runs need of a server: Server, or peers.PrivateBin (two trees)."""

    name: str
    url: str

    @property
    def pids(self) -> list[int]: ...

    def drain(self, timeout: float = 120) -> None: ...


@dataclass
class Server:
    name: str
    argv: list[str]
    url: str
    log_path: Path
    ready_path: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Server:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            pinned(SERVER_CPU, self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {self.log()}")

    def drain(self, timeout: float = 120) -> None:
        """Wait until the requests left over by a previous run are answered.

        A closed wrk connection does not cancel a request the server is still
        working on; a slow server (pinnwand) may have a backlog of seconds.
        """
        httpx.get(self.url + self.ready_path, timeout=timeout).raise_for_status()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """The roots of the server's process tree."""
        return [self.pid]

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def wait_children(self, timeout: float = 300) -> float:
        """Wait until the server has no child process (its start-up expiry
        scan of a large repository, a repack); the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            kids = ""
            for task in Path(f"/proc/{self.pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    kids += task.read_text()
            if not kids.strip():
                break
            time.sleep(0.2)
        return time.monotonic() - t0

    def health(self) -> dict:
        """Pasteur's /healthz (commit counters), after the commits caught up."""
        deadline = time.monotonic() + 30
        while True:
            health = httpx.get(self.url + "/healthz", timeout=10).json()
            if not health.get("uncommitted") or time.monotonic() > deadline:
                return health
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> Server:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pasteur(work: Path, name: str, data: Path, *extra: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "pasteur", "serve", "--port", str(port), "--data", str(data),
            *extra]
    # No per-address rate limit: every request of the load comes from 127.0.0.1.
    # (An environment variable: a server without the flag ignores it.)
    return Server(name, argv, f"http://127.0.0.1:{port}", work / f"{name}.log",
                  ready_path="/healthz", env={"PASTEUR_RATE_LIMIT": "off"})


def pinnwand_python(work: Path, venv: Path | None = None) -> Path:
    """pinnwand in its own virtual environment (created on first use)."""
    venv = venv or ROOT / "bench" / ".venv-pinnwand"
    python = venv / "bin" / "python"
    stamp = venv / f".pinnwand-{PINNWAND_VERSION}"
    if not stamp.exists():
        print(f"bench: installing pinnwand {PINNWAND_VERSION} in {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        out = subprocess.run([str(python), "-m", "pip", "install", "-q",
                              f"pinnwand=={PINNWAND_VERSION}"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"cannot install pinnwand: {out.stderr}{out.stdout}")
        stamp.touch()
    return python


def pinnwand(work: Path, name: str, db: Path, python: Path) -> Server:
    """pinnwand with an SQLite file database and its rate limits lifted."""
    port = free_port()
    config = work / f"{name}.toml"
    big = {"capacity": 10**9, "consume": 1, "refill": 10**9}
    config.write_text(
        f'database_uri = "sqlite:///{db}"\n'
        + "".join(
            f"[ratelimit.{area}]\n" + "".join(f"{k} = {v}\n" for k, v in big.items())
            for area in ("read", "create", "delete")
        )
    )
    argv = [str(python), "-m", "pinnwand", "--configuration-path", str(config), "http",
            "--port", str(port)]
    return Server(name, argv, f"http://127.0.0.1:{port}", work / f"{name}.log")


# -- wrk --------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    server_cpu_s: float = 0.0  # CPU time the server used during the run

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s * 1e6 / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def ms(self, key: str) -> float:
        return self.latency_us[key] / 1000


def parse_wrk(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith("BENCHJSON "):
            doc = json.loads(line[len("BENCHJSON "):])
            return WrkResult(doc["requests"], doc["duration_us"] / 1e6, doc["errors"],
                             doc["latency_us"])
    raise RuntimeError(f"no BENCHJSON line in wrk output:\n{output}")


def wrk(url: str, script: str, args: list[str], connections: int, duration: float,
        threads: int = 1, timeout: float = 10) -> WrkResult:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk, or scripts/setup --test)")
    argv = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}",
            f"-d{max(1, round(duration))}s", f"--timeout={timeout:g}s", "-s", str(LUA / script),
            url, "--", *args]
    out = subprocess.run(pinned(CLIENT_CPU, argv), capture_output=True, text=True,
                         timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}{out.stdout}")
    return parse_wrk(out.stdout)
