"""Measure HTTPS throughput of the candidate TLS servers (hypercorn, granian).

Usage: python bench/tls_servers.py [seconds]. Needs wrk and openssl; runs the server on
CPU 0 and wrk (64 connections, HTTPS/1.1) on CPU 1 against a 2 KiB GET, then h2load
(64 connections, h2) if installed (Debian package nghttp2-client).
The app is a Starlette app, as in Pasteur. granian is not a dependency of Pasteur:
`pip install granian` to include it (skipped otherwise). Results go to stdout.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = b"x" * 2048


async def _page(request):  # noqa: ANN001 - bench only
    return Response(BODY, media_type="text/plain")


app = Starlette(routes=[Route("/", _page)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def _wrk(port: int, seconds: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", f"https://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def _h2load(port: int, seconds: int) -> float | None:
    if shutil.which("h2load") is None:  # Debian package nghttp2-client
        return None
    out = subprocess.run(
        ["taskset", "-c", "1", "h2load", f"-D{seconds}", "-c64", "-m1",
         f"https://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp())
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert, "-days", "2"],
        check=True, capture_output=True,
    )
    py = sys.executable
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=str(here))
    candidates = {
        "hypercorn asyncio": ["-m", "hypercorn", "--worker-class", "asyncio"],
        "hypercorn uvloop": ["-m", "hypercorn", "--worker-class", "uvloop"],
        "granian": ["-m", "granian", "--interface", "asgi", "--workers", "1"],
    }
    if importlib.util.find_spec("granian") is None:
        del candidates["granian"]
    for name, args in candidates.items():
        port = _free_port()
        if name == "granian":
            args = [*args, "--host", "127.0.0.1", "--port", str(port),
                    "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), "tls_servers:app"]
        else:
            args = [*args, "--bind", f"127.0.0.1:{port}", "--certfile", str(cert),
                    "--keyfile", str(key), "tls_servers:app"]
        proc = subprocess.Popen(["taskset", "-c", "0", py, *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(port)
            rate = _wrk(port, seconds)
            print(f"{name:20s} HTTPS/1.1 {rate:8.0f} req/s", flush=True)
            h2 = _h2load(port, seconds)
            if h2 is not None:
                print(f"{name:20s} h2        {h2:8.0f} req/s", flush=True)
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
