"""What a huge request head costs the plain-HTTP server: a paste page asked for with a
32 MiB ``Cookie`` (issue 12), while ``/healthz`` is polled from another connection.

Prints the answer's status, how long it took, the server's CPU seconds for it and the
longest ``/healthz`` wait during it (its idle wait for comparison). Run it on any tree:

    python -m bench.big_head                          # this worktree's code
    python -m bench.big_head --quoted --size 8000     # http.cookies' quadratic unquote
    PYTHONPATH=/work/main/src python -m bench.big_head   # another tree's code
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from .procs import cpu_seconds, free_port


def start(port: int, data: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASTEUR_")}
    proc = subprocess.Popen([sys.executable, "-m", "pasteur", "serve", "--port", str(port),
                             "--data", str(data), "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start")


class Poller(threading.Thread):
    """GET /healthz in a loop; keeps the longest wait."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.longest, self.stop = url, 0.0, threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                began = time.monotonic()
                client.get(self.url)
                self.longest = max(self.longest, time.monotonic() - began)
                time.sleep(0.01)


def big_request(port: int, path: str, size: int, quoted: bool) -> tuple[str, float]:
    """Send the head with a `size`-byte Cookie value; the answer's status line (or what
    happened instead) and the seconds until it came."""
    value = b'"' + b"\\" * (size - 2) + b'"' if quoted else b"x" * size
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: k=".encode()
            + value + b"\r\n\r\n")
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(head)
            answer = sock.recv(200)
        except OSError as e:
            return f"({type(e).__name__})", time.monotonic() - began
    status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "(closed, no answer)"
    return status, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32 << 20, help="Cookie bytes (32 MiB)")
    parser.add_argument("--count", type=int, default=1, help="such requests at once (1)")
    parser.add_argument("--quoted", action="store_true",
                        help='a value of backslashes in quotes, "\\\\...": try --size 8000')
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pasteur-big-head-") as tmp:
        proc = start(port, Path(tmp) / "data")
        try:
            base = f"http://127.0.0.1:{port}"
            made = httpx.post(base + "/", files={"paste": (None, "hello\n")})
            path = "/" + made.headers["location"].rsplit("/", 1)[1]
            idle = Poller(base + "/healthz")
            idle.start()
            time.sleep(1)
            idle.stop.set()
            idle.join()
            poller = Poller(base + "/healthz")
            poller.start()
            time.sleep(0.2)
            cpu = cpu_seconds(proc.pid)
            results: list[tuple[str, float]] = []
            threads = [threading.Thread(target=lambda: results.append(
                big_request(port, path, args.size, args.quoted))) for _ in range(args.count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(0.3)
            cpu = cpu_seconds(proc.pid) - cpu
            poller.stop.set()
            poller.join()
        finally:
            proc.terminate()
            proc.wait(10)
    size = f"{args.size / (1 << 20):g} MiB" if args.size >= 1 << 20 else f"{args.size} B"
    kind = "quoted backslashes" if args.quoted else "Cookie"
    print(f"{args.count} x GET {path} with a {size} {kind}")
    for status, seconds in results:
        print(f"  answer: {status} in {seconds:.2f} s")
    print(f"  server CPU: {cpu:.2f} s")
    print(f"  longest /healthz wait: {poller.longest:.3f} s (idle: {idle.longest:.3f} s)")


if __name__ == "__main__":
    main()
