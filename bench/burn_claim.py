"""The cost of one reader per burn paste (issue 14, item 4): median latency
of ``POST /<id>/read`` with no remote, and with a git daemon remote (the read
claims the paste there first: one fetch and one push).

    PYTHONPATH=src .venv/bin/python -m bench.burn_claim [--reads 40]

A measurement, not a test: prints one line per setup.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _serve(data: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "pasteur", "serve", "--data", str(data),
                             "--port", str(port), "--rate-limit", "off", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port)
    return proc, f"http://127.0.0.1:{port}"


def _reads(base: str, n: int) -> list[float]:
    """Create ``n`` burn pastes, then read each once (as a stranger); seconds per read."""
    with httpx.Client(base_url=base, timeout=60) as creator:
        ids = [creator.post("/", files={"paste": (None, f"burn {i}".encode()),
                                        "burn": (None, "true")},
                            headers={"accept": "application/json"}).json()["code"]
               for i in range(n)]
    time.sleep(2)  # let the pushes of the creates go out
    took = []
    with httpx.Client(base_url=base, timeout=60) as reader:
        for pid in ids:
            t0 = time.perf_counter()
            r = reader.post(f"/{pid}/read", params={"raw": "true"})
            took.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pasteur-burn-", dir="/var/tmp") as tmp:
        base = Path(tmp)
        remote = base / "daemon" / "r.git"
        remote.parent.mkdir()
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        dport = _port()
        daemon = subprocess.Popen(
            ["git", "daemon", f"--base-path={remote.parent}", "--export-all",
             "--enable=receive-pack", "--reuseaddr", "--listen=127.0.0.1", f"--port={dport}",
             str(remote.parent)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})
        _wait(dport)
        try:
            for name, extra in (("no remote", []),
                                ("git daemon remote", ["-r", f"git://127.0.0.1:{dport}/r.git",
                                                       "--sync-interval", "0"])):
                proc, url = _serve(base / name.replace(" ", "-"), *extra)
                try:
                    took = _reads(url, args.reads)
                finally:
                    proc.terminate()
                    proc.wait(10)
                ms = sorted(t * 1000 for t in took)
                print(f"burn read, {name:18}: median {statistics.median(ms):6.1f} ms, "
                      f"p90 {ms[int(len(ms) * 0.9)]:6.1f} ms, max {ms[-1]:6.1f} ms "
                      f"({len(ms)} reads)")
        finally:
            daemon.terminate()
            daemon.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
