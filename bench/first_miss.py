"""The first miss after a start (issue 14): how long a read on a freshly started
instance takes for a paste another instance pushed just after that start.

``git daemon`` serves a bare remote; instance A runs throughout. Each round
starts a fresh instance B (``--sync-interval 0``: it fetches at start, then
only on a miss), waits until it answers, has A create a paste, waits until
the paste is on the remote (polled every 20 ms) and times B's first read of
it (a miss: probe, fetch, serve). Then B is stopped.

    PYTHONPATH=src .venv/bin/python -m bench.first_miss --rounds 5

Run it with another tree on ``PYTHONPATH`` for the figures before a change.
A measurement, not a test: it prints figures and exits 0 when it could measure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.procs import free_port
from bench.sync_fair import PASTEUR, git_daemon, remote_ids, wait_up


def start(data: Path, gport: int, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(data.with_suffix(".log"), "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(PASTEUR), "serve", "--data", str(data), "--port", str(port), "--rate-limit", "off",
         "-r", f"git://127.0.0.1:{gport}/r.git", *args],
        stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    wait_up(url)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pasteur-miss-", dir="/var/tmp"))
    bare, gport, daemon = git_daemon(work)
    lags: list[float] = []
    since_start: list[float] = []
    a = None
    try:
        time.sleep(0.5)
        a, a_url = start(work / "a", gport)
        for n in range(args.rounds):
            t_start = time.monotonic()
            b, b_url = start(work / f"b{n}", gport, "--sync-interval", "0")
            try:
                r = httpx.post(a_url + "/", content=f"round {n}".encode(), timeout=30)
                pid = r.text.strip().rsplit("/", 1)[1]
                deadline = time.monotonic() + 60
                while pid not in remote_ids(bare) and time.monotonic() < deadline:
                    time.sleep(0.02)
                t0 = time.monotonic()
                code = httpx.get(f"{b_url}/{pid}", params={"raw": "true"}, timeout=30).status_code
                if code == 200:
                    lags.append(time.monotonic() - t0)
                    since_start.append(t0 - t_start)
            finally:
                stop(b)
    finally:
        if a is not None:
            stop(a)
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(work, ignore_errors=True)
    out = {"tree": os.environ.get("PYTHONPATH", ""), "rounds": args.rounds,
           "served": len(lags), "first_miss_s": [round(x, 3) for x in lags],
           "median_s": round(statistics.median(lags), 3) if lags else None,
           "miss_after_start_s": [round(x, 2) for x in since_start],
           "loadavg": os.getloadavg()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
