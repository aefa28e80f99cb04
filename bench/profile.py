"""Profile Pasteur under one load:
``python -m bench.profile {create,create-enc,create-file,read,html}``.

Starts a server pinned to CPU 0, runs wrk on CPU 1 while py-spy samples the
server, and prints where each busy thread spends its time (self and inclusive
shares of the samples, by function and line). py-spy comes from the ``bench``
extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from . import procs
from .__main__ import Bench, parse_args

LOADS = {
    "create": ("create.lua", ["plain", "1024"]),
    "create-enc": ("create.lua", ["enc", "1024"]),
    "create-file": ("create.lua", ["file", "1024"]),
    "read": ("read.lua", ["raw"]),
    "html": ("read.lua", ["html"]),
}


def summarize(raw: Path, top: int) -> str:
    threads: dict[str, tuple[Counter, Counter, list[int]]] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        name = frames[0].split(":")[-1].strip().rsplit("_", 1)[0] if frames else "?"
        self_c, total_c, n = threads.setdefault(name, (Counter(), Counter(), [0]))
        n[0] += int(count)
        self_c[frames[-1]] += int(count)
        for frame in set(frames[1:]):
            total_c[frame] += int(count)
    out = []
    for name, (self_c, total_c, n) in sorted(threads.items(), key=lambda t: -t[1][2][0]):
        out.append(f"\n== thread {name}: {n[0]} samples")
        out += [f"  self {c / n[0]:6.1%}  {f}" for f, c in self_c.most_common(top)]
        out.append("  --")
        out += [f"  incl {c / n[0]:6.1%}  {f}" for f, c in total_c.most_common(top * 2)
                if "pasteur" in f or "starlette" in f or "logging" in f or "multipart" in f]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("load", choices=sorted(LOADS))
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--output", help="keep py-spy's raw (collapsed) stacks here")
    p.add_argument("--gil", action="store_true",
                   help="sample only the thread holding the GIL (where Python CPU goes, "
                        "without the time threads spend waiting for the GIL)")
    args = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    work = Path(tempfile.mkdtemp(prefix="pasteur-profile-", dir="/var/tmp"))
    bench = Bench(parse_args(["--no-pinnwand", "--work", str(work)]))
    raw = Path(args.output) if args.output else work / "stacks.txt"
    script, load_args = LOADS[args.load]
    try:
        with bench.pasteur("pasteur") as srv:
            if script == "read.lua":
                paths = bench.make_pastes(srv, 1000, pasteur=True)
                load_args = [str(paths[load_args[0]])]
            spy = subprocess.Popen(
                [pyspy, "record", "-p", str(srv.pid), "-d", str(int(args.duration) + 1),
                 "-r", str(args.rate), "-f", "raw", "-o", str(raw), "--threads", "--nonblocking",
                 *(["--gil"] if args.gil else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            result = procs.wrk(srv.url + "/", script, load_args, args.connections, args.duration)
            spy.wait(60)
        print(f"{args.load} at {args.connections} connections: {result.rps:,.0f}/s, "
              f"p50 {result.ms('p50'):.2f} ms, p99 {result.ms('p99'):.2f} ms")
        print(summarize(raw, args.top))
    finally:
        if not args.output:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
