"""Pasteur's benchmark: ``bench/run`` (or ``python -m bench``); see bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from . import fill, peers, procs
from .procs import Server, WrkResult
from .upload import stream_upload
from .weight import page_weight

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
SCENARIOS = ("create", "read", "scale", "upload", "weight")
# The scale test's cold reads pick among this many of the stored pastes.
COLD_PATHS = 100_000
# Peak RSS of a server's process tree while it creates: 2x PrivateBin's
# (152-156 MiB measured, issue 17 item 4).
RSS_BUDGET = 300 * MIB


@dataclass
class Row:
    scenario: str
    value: str  # the measured figure (req/s, MiB, KiB, ...)
    p50: str = ""
    p99: str = ""
    peer: str = ""  # pinnwand's figure
    ratio: str = ""  # how many times better than pinnwand (>1: Pasteur is better)
    cpu: str = ""  # server CPU time per request
    target: str = ""
    ok: bool | None = None
    note: str = ""


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def fmt_rate(rps: float) -> str:
    return f"{rps:,.0f}/s"


def ratio(ours: float, theirs: float | None, higher_is_better: bool = True) -> str:
    if not theirs or not ours:
        return ""
    return f"{(ours / theirs if higher_is_better else theirs / ours):.1f}x"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="pasteur-bench-", dir=args.tmp))
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []
        self.raw: dict[str, object] = {}
        self._pinnwand_python: Path | None = None
        self.conns = sorted({int(c) for c in args.connections.split(",")})

    # -- helpers --------------------------------------------------------------

    @property
    def pinnwand_python(self) -> Path | None:
        if self.args.no_pinnwand:
            return None
        if self._pinnwand_python is None:
            self._pinnwand_python = procs.pinnwand_python(self.work)
        return self._pinnwand_python

    def pasteur(self, name: str, *extra: str, data: Path | None = None) -> Server:
        return procs.pasteur(self.work, name, data or self.work / name, *extra)

    def pinnwand(self, name: str) -> Server | None:
        python = self.pinnwand_python
        if python is None:
            return None
        return procs.pinnwand(self.work, name, self.work / f"{name}.db", python)

    def load(self, server: procs.Target, script: str, args: list[str], connections: int,
             duration: float | None = None, key: str = "") -> WrkResult:
        duration = duration or self.args.duration
        if self.args.warmup:
            procs.wrk(server.url + "/", script, args, connections, self.args.warmup)
            server.drain()
        cpu = sum(procs.cpu_seconds(pid) for pid in server.pids)
        result = procs.wrk(server.url + "/", script, args, connections, duration)
        result.server_cpu_s = sum(procs.cpu_seconds(pid) for pid in server.pids) - cpu
        if key:
            self.raw[key] = asdict(result) | {"rps": result.rps,
                                              "cpu_us_per_request": result.cpu_us_per_request}
        log(f"{server.name} {script} {' '.join(args[:1])} c={connections}: "
            f"{result.rps:,.0f}/s p50 {result.ms('p50'):.2f} ms p99 {result.ms('p99'):.2f} ms, "
            f"server CPU {result.cpu_us_per_request:,.0f} us/request"
            + (f" ERRORS {result.errors}" if result.error_count else ""))
        return result

    # -- creates and reads ----------------------------------------------------

    def creates_and_reads(self, scenarios: set[str]) -> None:
        size = 1024
        ours: dict[str, WrkResult] = {}
        peer: dict[str, WrkResult] = {}
        with self.pasteur("pasteur") as srv:
            if "create" in scenarios:
                for c in self.conns:
                    for kind in ("plain", "enc", "file"):
                        ours[f"create-{kind}-c{c}"] = self.load(
                            srv, "create.lua", [kind, str(size)], c, key=f"pasteur-{kind}-c{c}")
            if "read" in scenarios:
                paths = self.make_pastes(srv, self.args.read_pastes, pasteur=True)
                for view, file in (("raw", "raw"), ("html", "html")):
                    ours[f"read-{view}"] = self.load(srv, "read.lua", [str(paths[file])],
                                                     max(self.conns), key=f"pasteur-read-{view}")
            self.raw["pasteur-rss"] = srv.status()
        pw = self.pinnwand("pinnwand")
        if pw is not None:
            with pw:
                if "create" in scenarios:
                    for c in self.conns:
                        peer[f"c{c}"] = self.load(pw, "create.lua", ["pinnwand", str(size)], c,
                                                  key=f"pinnwand-create-c{c}")
                if "read" in scenarios:
                    paths = self.make_pastes(pw, self.args.read_pastes_pinnwand, pasteur=False)
                    for view in ("raw", "html"):
                        peer[f"read-{view}"] = self.load(
                            pw, "read.lua", [str(paths[view])], max(self.conns),
                            key=f"pinnwand-read-{view}")
                self.raw["pinnwand-rss"] = pw.status()

        def p(key: str) -> WrkResult | None:
            return peer.get(key)

        for c in sorted(self.conns, reverse=True):
            for kind, label in (("plain", "unencrypted"), ("enc", "encrypted"),
                                ("file", "unencrypted file part")):
                r = ours.get(f"create-{kind}-c{c}")
                if r is None:
                    continue
                q = p(f"c{c}")
                if c > 1:
                    target = ">= 2,000/s, p99 <= 50 ms"
                    ok = r.rps >= 2000 and r.ms("p99") <= 50
                    rat = ratio(r.rps, q.rps if q else None)
                    peer_fig = fmt_rate(q.rps) if q else ""
                else:
                    target = "p50 <= 3 ms"
                    ok = r.ms("p50") <= 3
                    rat = ratio(r.latency_us["p50"], q.latency_us["p50"] if q else None, False)
                    peer_fig = f"p50 {fmt_ms(q.latency_us['p50'])}" if q else ""
                self.row(f"create 1 KiB {label}, {c} conn", r, peer_fig, rat, target, ok,
                         "pinnwand: unencrypted (it has no encryption)" if kind == "enc" and q
                         else "pinnwand: a field" if kind == "file" and q else "")
        for view, label in (("raw", "raw"), ("html", "HTML page")):
            r = ours.get(f"read-{view}")
            if r is None:
                continue
            q = p(f"read-{view}")
            self.row(f"read {label}, {max(self.conns)} conn", r, fmt_rate(q.rps) if q else "",
                     ratio(r.rps, q.rps if q else None), ">= 5,000/s, p99 <= 20 ms",
                     r.rps >= 5000 and r.ms("p99") <= 20)

    def row(self, name: str, r: WrkResult, peer: str, rat: str, target: str, ok: bool,
            note: str = "") -> None:
        if r.error_count:
            ok = False
            note = (note + "; " if note else "") + f"errors {r.errors}"
        self.rows.append(Row(name, fmt_rate(r.rps), fmt_ms(r.latency_us["p50"]),
                             fmt_ms(r.latency_us["p99"]), peer, rat,
                             f"{r.cpu_us_per_request:,.0f} us", target, ok, note))

    def make_pastes(self, srv: Server, count: int, pasteur: bool) -> dict[str, Path]:
        """Create ``count`` 1 KiB pastes; write the raw and HTML paths to two files."""
        text = ("x" * 63 + "\n") * 16

        def one(n: int) -> tuple[str, str]:
            body = f"{n:08d}" + text[8:]
            with httpx.Client(timeout=30) as client:
                if pasteur:
                    r = client.post(srv.url + "/", files={"paste": (None, body)},
                                    headers={"accept": "application/json"})
                    r.raise_for_status()
                    code = r.json()["code"]
                    return f"/{code}?raw=true", f"/{code}"
                r = client.post(srv.url + "/curl",
                                data={"raw": body, "lexer": "python", "expiry": "1day"})
                r.raise_for_status()
                found = dict(
                    line.split(":", 1) for line in r.text.splitlines() if ":" in line
                )
                paste = httpx.URL(found["Paste URL"].strip()).path
                raw = httpx.URL(found["Raw URL"].strip()).path
                return raw, paste

        with ThreadPoolExecutor(32 if pasteur else 8) as pool:
            pairs = list(pool.map(one, range(count)))
        out = {}
        for i, view in enumerate(("raw", "html")):
            path = self.work / f"{srv.name}-{view}.paths"
            path.write_text("".join(p[i] + "\n" for p in pairs))
            out[view] = path
        # every path answers 200 before load starts
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for raw, html in pairs[:5]:
                client.get(raw).raise_for_status()
                client.get(html).raise_for_status()
        return out

    # -- scale ------------------------------------------------------------------

    def scale(self) -> None:
        """Creates at 1 connection and random reads on a 1,000-paste and a
        large repository; the peak RSS of each server's process tree while
        it creates.

        Both servers run at once (pinned to the same core, one loaded at a time)
        and the runs alternate, ``--scale-rounds`` each: a burst of load from
        elsewhere on the machine then hits both sides alike. Each side's figure
        is the median over its runs.
        """
        small, large = 1000, self.args.scale
        rounds = max(1, self.args.scale_rounds)
        servers: dict[int, Server] = {}
        fills: dict[int, float] = {}
        paths: dict[tuple[int, str], Path] = {}
        for count in (small, large):
            data = self.work / f"scale-{count}"
            repo = data / "repo.git"
            t0 = time.perf_counter()
            ids = fill.fill(repo, count) if not repo.exists() else fill.random_ids(count)
            fills[count] = time.perf_counter() - t0
            log(f"filled {count:,} pastes in {fills[count]:.1f} s")
            self.raw[f"fill-{count}-s"] = fills[count]
            # Reads pick among 1,000 of the stored pastes on both sides (the same
            # working set: the repository's size is what differs), and among
            # COLD_PATHS on the large side (far more than the page cache holds).
            rng = random.Random(count)
            for kind, n in (("hot", small), ("cold", COLD_PATHS)):
                paths[count, kind] = self.work / f"scale-{count}-{kind}.paths"
                chosen = rng.sample(ids, min(len(ids), n))
                paths[count, kind].write_text("".join(f"/{i}?raw=true\n" for i in chosen))
            servers[count] = self.pasteur(f"pasteur-{count}", data=data)
        # The fill's writeback (~100 MiB) would otherwise slow the first runs'
        # fdatasyncs (measured: p50 4.0 then 0.8 ms at 1,000 pastes).
        t0 = time.perf_counter()
        os.sync()
        log(f"synced the fills in {time.perf_counter() - t0:.1f} s")
        runs: dict[int, list[WrkResult]] = {small: [], large: []}
        reads: dict[int, list[WrkResult]] = {small: [], large: []}
        peaks: dict[int, procs.RssSampler] = {}
        after_reads: dict[int, int] = {}
        conns = max(self.conns)
        cold: WrkResult | None = None
        try:
            for server in servers.values():
                server.start()
            for count, server in servers.items():  # their start-up expiry scans
                waited = server.wait_children()
                log(f"pasteur-{count}: background work at start done in {waited:.1f} s")
            peaks = {count: procs.RssSampler(server.pid) for count, server in servers.items()}
            for sampler in peaks.values():
                sampler.__enter__()
            for n in range(rounds):
                for count, server in servers.items():
                    runs[count].append(self.load(
                        server, "create.lua", ["plain", "1024"], 1,
                        duration=max(1.0, self.args.duration / rounds * 2),
                        key=f"pasteur-scale-{count}-{n}"))
            # Creates are acknowledged once journaled: the Git commits behind
            # them are what the repository's size could slow down.
            commit = {count: server.health() for count, server in servers.items()}
            self.raw["scale-health"] = commit
            # Memory: creates at full load, where the caches and the commits
            # behind grow most (the read runs come after: their page cache
            # is not a create's).
            for count, server in servers.items():
                self.load(server, "create.lua", ["plain", "1024"], conns,
                          key=f"pasteur-scale-{count}-memory")
                server.health()
            for sampler in peaks.values():
                sampler.__exit__()
            for n in range(rounds):
                for count, server in servers.items():
                    reads[count].append(self.load(
                        server, "read.lua", [str(paths[count, "hot"])], conns,
                        duration=max(1.0, self.args.duration / rounds * 2),
                        key=f"pasteur-scale-read-{count}-{n}"))
            cold = self.load(servers[large], "read.lua", [str(paths[large, "cold"])], conns,
                             key=f"pasteur-scale-read-{large}-cold")
            for count, server in servers.items():
                after_reads[count] = sum(rss for rss, _ in procs.tree_rss(server.pid).values())
        finally:
            for sampler in peaks.values():
                sampler.__exit__()
            for server in servers.values():
                server.stop()
            if not self.args.keep:
                for count in servers:
                    shutil.rmtree(self.work / f"scale-{count}", ignore_errors=True)

        def med(count: int, what: str, of: dict[int, list[WrkResult]] = runs) -> float:
            return statistics.median(
                r.latency_us[what] if what in r.latency_us else getattr(r, what)
                for r in of[count])

        rel = med(large, "p50") / med(small, "p50")
        fill_note = (f"fills: {small:,} pastes in {fills[small]:.1f} s, {large:,} in "
                     f"{fills[large]:.1f} s")
        self.rows.append(Row(
            f"create at {large:,} pastes vs {small:,}, 1 conn",
            f"{rel:.2f}x", p50=fmt_ms(med(large, "p50")), p99=fmt_ms(med(large, "p99")),
            cpu=f"{med(large, 'cpu_us_per_request'):,.0f} us", target="p50 <= 1.2x of 1,000",
            ok=rel <= 1.2,
            note=f"at {small:,}: p50 {fmt_ms(med(small, 'p50'))}, p99 "
            f"{fmt_ms(med(small, 'p99'))}, {med(small, 'cpu_us_per_request'):,.0f} us CPU; "
            f"medians of {rounds} alternating runs each; the Git commits behind: "
            f"{commit[large].get('commit_ms', 0):.1f} ms per commit of "
            f"{commit[large].get('pastes', 0) / max(1, commit[large].get('batches', 0)):.0f} "
            f"pastes at {large:,} vs {commit[small].get('commit_ms', 0):.1f} ms of "
            f"{commit[small].get('pastes', 0) / max(1, commit[small].get('batches', 0)):.0f} "
            f"at {small:,}; {fill_note}",
        ))
        rrel = med(small, "rps", reads) / med(large, "rps", reads)
        self.rows.append(Row(
            f"read raw at {large:,} pastes vs {small:,}, {conns} conn",
            f"{rrel:.2f}x", p50=fmt_ms(med(large, "p50", reads)),
            p99=fmt_ms(med(large, "p99", reads)),
            cpu=f"{med(large, 'cpu_us_per_request', reads):,.0f} us",
            target="reads/s >= 1/1.2 of 1,000's", ok=rrel <= 1.2,
            note=f"{fmt_rate(med(large, 'rps', reads))} at {large:,} vs "
            f"{fmt_rate(med(small, 'rps', reads))} at {small:,} (p50 "
            f"{fmt_ms(med(small, 'p50', reads))}, {med(small, 'cpu_us_per_request', reads):,.0f}"
            f" us CPU), 1,000 random pastes on each side; medians of {rounds} alternating runs "
            f"each; among {min(large, COLD_PATHS):,} random pastes at {large:,} (most not in "
            f"the page cache): "
            + (f"{fmt_rate(cold.rps)}, p50 {fmt_ms(cold.latency_us['p50'])}, "
               f"{cold.cpu_us_per_request:,.0f} us CPU" if cold else "not measured"),
        ))
        self.raw["scale-rss"] = {count: {"peak": p.peak, "parts": p.describe(),
                                         "after_reads": after_reads.get(count)}
                                 for count, p in peaks.items()}
        budget = RSS_BUDGET
        self.rows.append(Row(
            f"peak RSS, server + children, creates at {large:,} pastes",
            f"{peaks[large].peak / MIB:.0f} MiB", cpu="",
            target=f"<= {budget / MIB:.0f} MiB at both sizes", ok=max(
                p.peak for p in peaks.values()) <= budget,
            note=f"at the peak: {peaks[large].describe()}; at {small:,}: "
            f"{peaks[small].peak / MIB:.0f} MiB ({peaks[small].describe()}); over the 1 "
            f"and {conns} connection create runs, sampled every 0.1 s; after the reads: "
            + ", ".join(f"{v / MIB:.0f} MiB at {k:,}" for k, v in after_reads.items()),
        ))

    # -- memory -----------------------------------------------------------------

    def upload_growth(self, srv: Server, size: int, **kw: object) -> tuple[int, int, float]:
        time.sleep(0.5)
        procs.reset_peak_rss(srv.pid)
        before = srv.status()["VmRSS"]
        result = stream_upload(srv.url, size, **kw)  # type: ignore[arg-type]
        time.sleep(0.2)
        peak = srv.status()["VmHWM"]
        return peak - before, result.status, result.seconds

    def upload(self) -> None:
        size = self.args.upload_size
        label = f"{size / GIB:.3g} GiB" if size >= GIB else f"{size / MIB:.3g} MiB"
        peer_refused = None
        pw = self.pinnwand("pinnwand-upload")
        if pw is not None:
            with pw:
                peer_refused = self.upload_growth(pw, size, field="raw", path="/curl",
                                                  extra={"lexer": "text", "expiry": "1day"})
                self.raw["pinnwand-upload-refused"] = peer_refused
        cases = (("accepted", ("--max", "2GiB"), 201), ("refused", (), 413))
        for case, extra, expect in cases:
            with self.pasteur(f"pasteur-upload-{case}", *extra) as srv:
                growth, status, seconds = self.upload_growth(srv, size)
            self.raw[f"pasteur-upload-{case}"] = (growth, status, seconds)
            log(f"upload {case}: HTTP {status}, peak RSS growth {growth / MIB:.1f} MiB, "
                f"{seconds:.1f} s")
            peer = rat = ""
            if case == "refused" and peer_refused is not None:
                peer = f"{peer_refused[0] / MIB:.1f} MiB (HTTP {peer_refused[1]})"
                rat = ratio(growth, peer_refused[0], False) if growth > 0 else ""
            elif case == "accepted" and pw is not None:
                peer = "cannot accept it"
            self.rows.append(Row(
                f"upload {label}, {case} ({' '.join(extra) or 'default --max'})",
                f"{growth / MIB:.1f} MiB", peer=peer, ratio=rat,
                target=f"RSS growth < 64 MiB, HTTP {expect}",
                ok=growth < 64 * MIB and status == expect,
                note=f"peak RSS growth; HTTP {status} in {seconds:.1f} s",
            ))

    def weight(self) -> None:
        peer = None
        pw = self.pinnwand("pinnwand-weight")
        if pw is not None:
            with pw:
                peer = page_weight(pw.url + "/", "br, gzip")
        with self.pasteur("pasteur-weight") as srv:
            ours = page_weight(srv.url + "/", "br")
        self.raw["weight"] = {"pasteur": ours.items, "pinnwand": peer.items if peer else None}
        for url, size, enc in ours.items:
            log(f"weight {url}: {size} B {enc or 'identity'}")
        self.rows.append(Row(
            "form page weight, br", f"{ours.total / KIB:.1f} KiB",
            peer=f"{peer.total / KIB:.1f} KiB" if peer else "",
            ratio=ratio(ours.total, peer.total if peer else None, False), target="< 30 KiB",
            ok=ours.total < 30 * KIB,
            note=f"{len(ours.items)} files: "
            + ", ".join(f"{urlsplit(u).path} {n:,} B {e or 'identity'}" for u, n, e in ours.items),
        ))

    # -- output -----------------------------------------------------------------

    def table(self) -> str:
        head = ["scenario", "Pasteur", "p50", "p99", "pinnwand", "ratio", "CPU/req", "target",
                "result", "note"]
        rows = [[r.scenario, r.value, r.p50, r.p99, r.peer, r.ratio, r.cpu, r.target,
                 "n/a" if r.ok is None else ("PASS" if r.ok else "FAIL"), r.note]
                for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        for row in rows:
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                         + " |")
        return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="shorter runs and a 100,000-paste repository for the scale test")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help=f"comma-separated scenarios among {', '.join(SCENARIOS)} (default all)")
    p.add_argument("--duration", type=float, help="seconds per measured run (default 10, quick 5)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up before each run (default 2)")
    p.add_argument("--scale", type=int, help="pastes in the large repository (default 1,000,000; "
                   "quick 100,000)")
    p.add_argument("--connections", default="1,64",
                   help="connection counts for the create runs; reads use the largest "
                        "(default 1,64)")
    p.add_argument("--scale-rounds", type=int, default=3,
                   help="alternating runs on each repository in the scale test (default 3)")
    p.add_argument("--upload-size", type=int, default=GIB, help="bytes to stream (default 1 GiB)")
    p.add_argument("--read-pastes", type=int, default=1000,
                   help="pastes created in Pasteur for the read runs (default 1000)")
    p.add_argument("--read-pastes-pinnwand", type=int, default=250,
                   help="pastes created in pinnwand for the read runs (default 250)")
    p.add_argument("--no-pinnwand", action="store_true", help="measure Pasteur alone")
    p.add_argument("--peers", nargs="?", const=",".join(peers.PEERS),
                   help="instead of the scenarios: creates and reads beside the peers, one "
                        f"table (default all: {', '.join(peers.PEERS)}; PrivateBin from "
                        "$PASTEUR_PEERS_DIR, default ../shared/peers)")
    p.add_argument("--work", help="working directory (default: a new one under --tmp)")
    p.add_argument("--tmp", default="/var/tmp",
                   help="where to make the working directory: a real disk, not tmpfs "
                        "(default /var/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the working directory")
    p.add_argument("--json", help="also write the figures and raw wrk results to this file")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 5 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.scale is None:
        args.scale = 100_000 if args.quick else 1_000_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    names = [n.strip() for n in (args.peers or "").split(",") if n.strip()]
    unknown |= {f"peer {n}" for n in names if n not in peers.PEERS}
    if unknown:
        print(f"bench: unknown scenario(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    bench = Bench(args)
    log(f"working in {bench.work}")
    busy_before = procs.cpu_busy()
    bench.raw["cpu-busy-before"] = busy_before
    if max(busy_before.values(), default=0) > 0.1:
        log("WARNING: the machine is not idle before the run: "
            + ", ".join(f"{k} {v:.0%} busy" for k, v in busy_before.items()))
    disk = procs.disk_costs(bench.work)
    bench.raw["disk"] = disk
    log(f"disk under {bench.work.parent}: a file created in {disk['create_cpu_us']:,.0f} us of "
        f"CPU, a 1 KiB write + fdatasync in {disk['fdatasync_us']:,.0f} us")
    started = time.monotonic()
    comparison = peers.Peers(bench, names) if args.peers is not None else None
    steps = [("create/read", bench.creates_and_reads, only & {"create", "read"})]
    steps += [(name, getattr(bench, name), name in only) for name in ("scale", "upload", "weight")]
    if comparison is not None:
        steps = [("peers", comparison.run, True)]
    failed_steps = []
    try:
        for name, step, wanted in steps:
            if not wanted:
                continue
            try:
                step(only) if name == "create/read" else step()
            except Exception as exc:  # noqa: BLE001 - report it, measure the rest
                log(f"scenario {name} could not be measured: {exc!r}")
                failed_steps.append(name)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(bench.work, ignore_errors=True)
    print(f"\nPasteur benchmark ({'quick' if args.quick else 'full'}; server on CPU "
          f"{procs.SERVER_CPU}, wrk on CPU {procs.CLIENT_CPU}; {args.duration:g} s per run; "
          f"ratio = times better than {'pinnwand' if comparison is None else 'the peer'})\n")
    if comparison is None:
        print(bench.table())
    else:
        print(comparison.table())
        print(comparison.targets())
        bench.raw["peers"] = [s.asdict() for s in comparison.sides]
    load = os.getloadavg()
    print("\nbackground load before the run: "
          + ", ".join(f"{k} {v:.0%} busy" for k, v in busy_before.items())
          + f"; load average at the end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")
    print(f"disk: a file created in {disk['create_cpu_us']:,.0f} us of CPU, a 1 KiB write + "
          f"fdatasync in {disk['fdatasync_us']:,.0f} us")
    if max(busy_before.values(), default=0) > 0.1:
        print("WARNING: other processes were using the CPUs: figures are lower than on an "
              "idle machine")
    if failed_steps:
        print(f"NOT MEASURED (error, see above): {', '.join(failed_steps)}")
    passed = sum(r.ok is True for r in bench.rows)
    failed = sum(r.ok is False for r in bench.rows)
    print(f"\n{passed} pass, {failed} fail; {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": [asdict(r) for r in bench.rows], "raw": bench.raw}, indent=1, default=str))
    return 1 if failed_steps else 0


if __name__ == "__main__":
    sys.exit(main())
