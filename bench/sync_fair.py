"""Fair progress of several instances on one git daemon remote (issue 14 items 2, 6).

N Pasteur instances share a bare remote served by ``git daemon``; each takes
``--rate`` creates a second for ``--seconds``. The remote's branch is polled
every 50 ms: a paste's push lag is the time from its acknowledgement (201) to
the first poll that sees it on the remote. A reader asks instance 1 for every
tenth paste of instance 0 until it answers 200: its miss lag is the time from
the paste landing on the remote to that 200 (instance 1 gets it by a miss).

    PYTHONPATH=src .venv/bin/python -m bench.sync_fair --instances 4 --rate 15 --seconds 20

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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.procs import free_port

PASTEUR = Path(sys.executable).with_name("pasteur")
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "b",
           "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen
    acked: dict[str, float] = field(default_factory=dict)  # id -> monotonic time of the 201
    errors: int = 0
    max_pending: int = 0
    max_oldest: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_up(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def git_daemon(work: Path) -> tuple[Path, int, subprocess.Popen]:
    """A bare remote ``r.git`` under ``work``, served by ``git daemon`` (push enabled)
    on a free loopback port: (its path, the port, the daemon)."""
    bare = work / "daemon" / "r.git"
    bare.parent.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True,
                   env=GIT_ENV)
    gport = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", f"--base-path={bare.parent}", "--export-all", "--enable=receive-pack",
         "--reuseaddr", "--listen=127.0.0.1", f"--port={gport}", str(bare.parent)],
        env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return bare, gport, daemon


def remote_ids(bare: Path) -> set[str]:
    out = subprocess.run(["git", "-C", str(bare), "ls-tree", "-r", "--name-only", "main"],
                         capture_output=True, text=True, env=GIT_ENV).stdout
    return {line.rsplit("/", 1)[-1] for line in out.splitlines() if line}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--rate", type=float, default=15.0, help="creates/s per instance")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--sync-interval", default="60")
    p.add_argument("--json", default=None, help="write the figures there too")
    p.add_argument("--no-reader", action="store_true", help="no miss reads on instance 1")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pasteur-fair-", dir="/var/tmp"))
    bare, gport, daemon = git_daemon(work)
    nodes: list[Node] = []
    try:
        time.sleep(0.5)
        for i in range(args.instances):
            port = free_port()
            log = open(work / f"p{i}.log", "wb")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(
                [str(PASTEUR), "serve", "--data", str(work / f"p{i}"), "--port", str(port),
                 "--rate-limit", "off", "-r", f"git://127.0.0.1:{gport}/r.git",
                 "--sync-interval", args.sync_interval],
                stdout=subprocess.DEVNULL, stderr=log)
            log.close()
            nodes.append(Node(f"p{i}", port, proc))
        for node in nodes:
            wait_up(node.url)
        figures = run(args, bare, nodes)
    finally:
        for node in nodes:
            node.proc.terminate()
        for node in nodes:
            try:
                node.proc.wait(15)
            except subprocess.TimeoutExpired:
                node.proc.kill()
        daemon.terminate()
        daemon.wait()
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, bare: Path, nodes: list[Node]) -> dict:
    seen: dict[str, float] = {}
    stop = threading.Event()
    load_over = threading.Event()
    served: dict[str, float] = {}

    def poll_remote() -> None:
        while not stop.is_set():
            now = time.monotonic()
            for pid in remote_ids(bare) - seen.keys():
                seen[pid] = now
            time.sleep(0.05)

    def load(node: Node) -> None:
        with httpx.Client(base_url=node.url, timeout=30) as client:
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < args.seconds:
                due = t0 + n / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                n += 1
                try:
                    r = client.post("/", content=f"{node.name} {n} {time.time()}".encode())
                except httpx.HTTPError:
                    node.errors += 1
                    continue
                if r.status_code != 201:
                    node.errors += 1
                    continue
                node.acked[r.text.strip().rsplit("/", 1)[1]] = time.monotonic()

    def watch(node: Node) -> None:
        with httpx.Client(base_url=node.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    sync = client.get("/healthz").json().get("sync", {})
                except (httpx.HTTPError, ValueError):
                    continue
                node.max_pending = max(node.max_pending, sync.get("pending", 0))
                node.max_oldest = max(node.max_oldest, sync.get("oldest_unpushed_s") or 0.0)
                time.sleep(0.25)

    def read_misses() -> None:
        if len(nodes) < 2 or args.no_reader:
            return
        done: set[str] = set()
        with httpx.Client(base_url=nodes[1].url, timeout=30) as client:
            while not stop.is_set():
                todo = [pid for n, pid in enumerate(list(nodes[0].acked))
                        if n % 10 == 0 and pid not in done]
                if not todo and load_over.is_set():
                    return
                for pid in todo[:1]:
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline and not stop.is_set():
                        if client.get(f"/{pid}", params={"raw": "true"}).status_code == 200:
                            served[pid] = time.monotonic()
                            break
                        time.sleep(0.02)
                    done.add(pid)
                time.sleep(0.01)

    threads = [threading.Thread(target=poll_remote), threading.Thread(target=read_misses)]
    threads += [threading.Thread(target=watch, args=(n,)) for n in nodes]
    loaders = [threading.Thread(target=load, args=(n,)) for n in nodes]
    for t in threads + loaders:
        t.start()
    for t in loaders:
        t.join()
    load_over.set()
    deadline = time.monotonic() + 120
    every = {pid for n in nodes for pid in n.acked}
    while time.monotonic() < deadline and not every <= seen.keys():
        time.sleep(0.2)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    out: dict = {"instances": len(nodes), "rate": args.rate, "seconds": args.seconds,
                 "per_instance": {}}
    all_lags: list[float] = []
    for node in nodes:
        lags = [seen[pid] - t for pid, t in node.acked.items() if pid in seen]
        all_lags += lags
        health = httpx.get(node.url + "/healthz", timeout=10).json().get("sync", {})
        out["per_instance"][node.name] = {
            "acked": len(node.acked), "errors": node.errors,
            "missing_on_remote": len(node.acked.keys() - seen.keys()),
            "lag_p50_s": round(pct(lags, 0.5), 3), "lag_p90_s": round(pct(lags, 0.9), 3),
            "lag_max_s": round(max(lags, default=float("nan")), 3),
            "pushes": health.get("pushes"), "fetches": health.get("fetches"),
            "max_pending_commits": node.max_pending,
            "max_oldest_unpushed_s": round(node.max_oldest, 3),
        }
    out["lag_p50_s"] = round(pct(all_lags, 0.5), 3)
    out["lag_p99_s"] = round(pct(all_lags, 0.99), 3)
    out["lag_max_s"] = round(max(all_lags, default=float("nan")), 3)
    miss = [served[pid] - seen[pid] for pid in served if pid in seen]
    out["miss_lag"] = {"samples": len(miss), "p50_s": round(pct(miss, 0.5), 3),
                       "p90_s": round(pct(miss, 0.9), 3),
                       "max_s": round(max(miss, default=float("nan")), 3),
                       "mean_s": round(statistics.fmean(miss), 3) if miss else None}
    return out


if __name__ == "__main__":
    sys.exit(main())
