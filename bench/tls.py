"""HTTPS against plain HTTP on the same build (issue 17 item 1).

The real ``pasteur serve``: plain, with ``--tls-cert/--tls-key`` (a self-signed EC P-256
certificate made by openssl), and plain behind nginx doing TLS (``nginx``, as
docs/https.md configures it, with kept-alive upstream connections). Server side on CPU 0
(Pasteur, and nginx beside it), load on CPU 1: ``wrk`` (HTTPS/1.1 or plain, 64
connections) for raw reads of 1 KiB pastes and for 1 KiB creates, then ``h2load`` (HTTP/2,
64 connections, one stream each; Debian's nghttp2-client) for raw reads over TLS. Prints
req/s, p99 and the server side's CPU µs per request (from /proc: the figure to trust on a
loaded machine), the ratio to plain in the same run, and the load average.

    python -m bench.tls                                  # this worktree's code
    python -m bench.tls --only plain,tls --duration 10
    PYTHONPATH=/work/main/src python -m bench.tls        # another tree's code
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import procs
from .procs import Server, WrkResult

SETUPS = ("plain", "tls", "nginx")


@dataclass
class Figure:
    setup: str
    load: str
    rps: float
    p99_ms: float
    cpu_us: float
    errors: int


def self_signed(work: Path) -> tuple[Path, Path]:
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-days", "2"], check=True, capture_output=True)
    return cert, key


def pasteur(work: Path, name: str, *extra: str, scheme: str = "http") -> Server:
    port = procs.free_port()
    argv = [sys.executable, "-m", "pasteur", "serve", "--port", str(port),
            "--data", str(work / name), "--log-level", "warning", *extra]
    return Server(name, argv, f"{scheme}://127.0.0.1:{port}", work / f"{name}.log",
                  ready_path="/healthz", env={"PASTEUR_RATE_LIMIT": "off"},
                  verify=scheme == "http")


NGINX = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    upstream pasteur {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;  # nginx 1.22 (Debian 12)
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 2m;
        location / {{
            proxy_pass http://pasteur;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_request_buffering off;
        }}
    }}
}}
"""


def nginx(work: Path, upstream: Server, cert: Path, key: Path) -> Server:
    port = procs.free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX.format(work=work, upstream=upstream.url.rsplit(":", 1)[1],
                                 port=port, cert=cert, key=key))
    return Server("nginx", ["nginx", "-c", str(conf), "-p", str(work)],
                  f"https://127.0.0.1:{port}", work / "nginx.log", ready_path="/healthz",
                  verify=False)


def make_pastes(url: str, count: int, work: Path, name: str) -> Path:
    """``count`` pastes of 1 KiB; their raw paths, one a line, in a file."""
    text = ("x" * 63 + "\n") * 16

    def one(n: int) -> str:
        with httpx.Client(timeout=30, verify=False) as client:
            r = client.post(url + "/", files={"paste": (None, f"{n:08d}" + text[8:])},
                            headers={"accept": "application/json"})
            r.raise_for_status()
            return f"/{r.json()['code']}?raw=true"

    with ThreadPoolExecutor(16) as pool:
        paths = list(pool.map(one, range(count)))
    out = work / f"{name}.paths"
    out.write_text("".join(p + "\n" for p in paths))
    return out


def measure(pids: list[int], run: Callable[[], WrkResult]) -> tuple[WrkResult, float]:
    """A load's result and the CPU seconds the processes `pids` (and children) used in it."""
    cpu = sum(procs.cpu_seconds(p) for p in pids)
    result = run()
    return result, sum(procs.cpu_seconds(p) for p in pids) - cpu


def h2load(url: str, paths: list[str], seconds: int) -> WrkResult:
    argv = ["h2load", f"-D{seconds}", "-c64", "-m1", "-t1", *(url + p for p in paths)]
    out = subprocess.run(procs.pinned(procs.CLIENT_CPU, argv), capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    took = re.search(r"finished in ([\d.]+)s", out)
    if done is None or took is None:
        raise RuntimeError(f"h2load: {out}")
    requests, ok = int(done.group(1)), int(done.group(2))
    return WrkResult(requests, float(took.group(1)), {"status": requests - ok}, {"p99": 0.0})


def run_setup(args: argparse.Namespace, work: Path, setup: str, cert: Path, key: Path,
              out: list[Figure]) -> None:
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    app = pasteur(work, setup, *(tls if setup == "tls" else []),
                  scheme="https" if setup == "tls" else "http")
    front: Server | None = None
    with app:
        pids = [app.pid]
        if setup == "nginx":
            front = nginx(work, app, cert, key).start()
            pids.append(front.pid)
        entry = front or app
        try:
            paths = make_pastes(entry.url, args.pastes, work, setup)
            loads = {
                "read": ("read.lua", [str(paths)]),
                "create": ("create.lua", ["plain", "1024"]),
            }
            for load, (script, script_args) in loads.items():
                if args.warmup:
                    procs.wrk(entry.url + "/", script, script_args, 64, args.warmup)
                    entry.drain()
                result, cpu = measure(pids, functools.partial(
                    procs.wrk, entry.url + "/", script, script_args, 64, args.duration))
                out.append(Figure(setup, load, result.rps, result.ms("p99"),
                                  cpu * 1e6 / max(1, result.requests), result.error_count))
                print(f"  {setup:6s} {load:7s} {out[-1].rps:9,.0f}/s  p99 {out[-1].p99_ms:6.1f} ms"
                      f"  {out[-1].cpu_us:6,.0f} us CPU/request"
                      + (f"  ERRORS {result.errors}" if result.error_count else ""),
                      file=sys.stderr, flush=True)
            if setup != "plain" and shutil.which("h2load"):
                some = paths.read_text().split()[:100]
                result, cpu = measure(pids, functools.partial(
                    h2load, entry.url, some, round(args.duration)))
                out.append(Figure(setup, "read h2", result.rps, 0.0,
                                  cpu * 1e6 / max(1, result.requests), result.error_count))
                print(f"  {setup:6s} read h2 {out[-1].rps:9,.0f}/s"
                      f"  {out[-1].cpu_us:6,.0f} us CPU/request", file=sys.stderr, flush=True)
        finally:
            if front is not None:
                front.stop()


def table(figures: list[Figure]) -> str:
    plain = {f.load: f for f in figures if f.setup == "plain"}
    lines = ["| setup | load | req/s | p99 | server CPU/request | req/s vs plain | "
             "CPU vs plain |", "|---|---|---|---|---|---|---|"]
    for f in figures:
        base = plain.get(f.load)
        ratio = f"{f.rps / base.rps:.2f}x" if base and base is not f else ""
        cpu = f"{base.cpu_us / f.cpu_us:.2f}x" if base and base is not f and f.cpu_us else ""
        p99 = f"{f.p99_ms:.1f} ms" if f.p99_ms else ""
        errors = f" ({f.errors} errors)" if f.errors else ""
        lines.append(f"| {f.setup} | {f.load} | {f.rps:,.0f}{errors} | {p99} | "
                     f"{f.cpu_us:,.0f} µs | {ratio} | {cpu} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10, help="seconds per load (10)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up (2)")
    p.add_argument("--pastes", type=int, default=1000, help="pastes to read (1000)")
    p.add_argument("--only", default=",".join(SETUPS), help="setups: plain,tls,nginx")
    args = p.parse_args(argv)
    setups = [s for s in args.only.split(",") if s]
    if bad := set(setups) - set(SETUPS):
        p.error(f"unknown setup {', '.join(sorted(bad))}: choose among {', '.join(SETUPS)}")
    work = Path(tempfile.mkdtemp(prefix="pasteur-tls-bench-", dir="/var/tmp"))
    figures: list[Figure] = []
    try:
        cert, key = self_signed(work)
        busy = procs.cpu_busy()
        for setup in setups:
            run_setup(args, work, setup, cert, key, figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(figures))
    print(f"\nbusy before: {', '.join(f'{k} {v:.0%}' for k, v in sorted(busy.items()))}; "
          f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
