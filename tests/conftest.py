"""Shared fixtures: a real ``pasteur serve`` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .ports import free_port

# The module-scoped `browser` fixture (headless Chromium) of the browser tests.
pytest_plugins = ["tests.fixtures_browser"]


@dataclass
class Server:
    """A running ``pasteur serve``; ``repo`` is its bare Git repository."""

    url: str
    port: int
    data: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def repo(self) -> Path:
        return self.data / "repo.git"

    def start(self, timeout: float = 40) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pasteur", "serve", "--port", str(self.port),
             "--data", str(self.data), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def settle(self, timeout: float = 15) -> None:
        """Wait until every acknowledged paste is in a commit (creates are
        acknowledged once journaled; the commit follows within milliseconds)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = httpx.get(self.url + "/healthz", timeout=5).json()
                if health.get("uncommitted", 0) == 0:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"pastes still uncommitted after {timeout} s")
            time.sleep(0.02)

    def git(self, *args: str) -> str:
        self.settle()
        return subprocess.run(
            ["git", "-C", str(self.repo), *args], check=True, capture_output=True, text=True
        ).stdout


def make_server(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    data = tmp_path / f"data-{port}"
    return Server(
        url=f"http://127.0.0.1:{port}", port=port, data=data,
        log_path=tmp_path / f"server-{port}.log", args=list(args), env=env or {},
    )


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def factory(*args: str, env: dict[str, str] | None = None, start: bool = True) -> Server:
        srv = make_server(tmp_path, *args, env=env)
        if start:
            srv.start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture
def server(server_factory) -> Server:
    return server_factory()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a whole module of read-mostly tests."""
    srv = make_server(tmp_path_factory.mktemp("shared"))
    srv.start()
    yield srv
    srv.stop()
