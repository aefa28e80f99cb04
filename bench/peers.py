"""``bench/run --peers``: Pasteur beside PrivateBin 2.0.5 and pinnwand, one table.

Each server in turn, alone on the server CPU: creates at every ``--connections``
count (Pasteur: encrypted, the same ~1 KiB of ciphertext as PrivateBin's, and
unencrypted, what pinnwand takes), reads at the largest (raw text or the JSON
document, and the HTML page), the server's CPU per create (its whole process tree,
from /proc) and the memory of the whole tree (PSS: php-fpm's workers share most of
their pages) at idle, after start, and its peak during the creates. A peer that
cannot run here is a row saying why.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import procs
from .privatebin import PrivateBin, Unavailable

PEERS = ("privatebin", "pinnwand")
MIB = 1 << 20


@dataclass
class Side:
    """One server's figures (or why it was not measured)."""

    label: str
    creates: dict[int, procs.WrkResult] = field(default_factory=dict)
    reads: dict[str, procs.WrkResult] = field(default_factory=dict)
    idle: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    skipped: str = ""
    note: str = ""

    def asdict(self) -> dict:
        return {"label": self.label, "skipped": self.skipped, "note": self.note,
                "idle": self.idle, "peak": self.peak,
                "creates": {c: _raw(r) for c, r in self.creates.items()},
                "reads": {k: _raw(r) for k, r in self.reads.items()}}


def _raw(r: procs.WrkResult) -> dict:
    return {"rps": r.rps, "latency_us": r.latency_us, "errors": r.errors,
            "requests": r.requests, "cpu_us_per_request": r.cpu_us_per_request}


class Peers:
    """The comparison; ``bench`` is the __main__.Bench (its load and servers)."""

    def __init__(self, bench, names: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.bench = bench
        self.names = names
        self.sides: list[Side] = []

    @property
    def conns(self) -> list[int]:
        return list(self.bench.conns)

    def run(self) -> None:
        self.pasteur()
        for name in self.names:
            side = Side("PrivateBin 2.0.5" if name == "privatebin" else
                        f"pinnwand {procs.PINNWAND_VERSION}")
            self.sides.append(side)
            try:
                (self.privatebin if name == "privatebin" else self.pinnwand)(side)
            except (Unavailable, RuntimeError, OSError, httpx.HTTPError) as exc:
                side.skipped = str(exc).strip().replace("\n", " ")[:300] or repr(exc)
                print(f"[{time.strftime('%H:%M:%S')}] {side.label}: SKIPPED: {side.skipped}",
                      file=sys.stderr, flush=True)

    def measure(self, side: Side, srv: procs.Target, scripts: tuple[str, str],
                create: list[str], paths: Callable[[], dict[str, Path]],
                read: Callable[[str, Path], list[str]]) -> None:
        """Memory at idle, creates (``scripts[0]``, ``create`` its arguments)
        with the memory's peak, then reads (``scripts[1]``) of ``paths()``."""
        time.sleep(0.5)
        side.idle = procs.tree_memory(srv.pids)
        with procs.MemorySampler(srv.pids) as mem:
            for c in sorted(self.conns, reverse=True):
                side.creates[c] = self.bench.load(srv, scripts[0], create, c,
                                                  key=f"peers-{srv.name}-create-c{c}")
        side.peak = mem.peak
        for view, file in paths().items():
            side.reads[view] = self.bench.load(srv, scripts[1], read(view, file),
                                               max(self.conns), key=f"peers-{srv.name}-{view}")

    def pasteur(self) -> None:
        enc, plain = Side("Pasteur, encrypted"), Side("Pasteur, unencrypted")
        self.sides += [enc, plain]
        with self.bench.pasteur("pasteur-peers") as srv:
            self.measure(enc, srv, ("create.lua", "read.lua"), ["enc", "1024"],
                         lambda: self.bench.make_pastes(srv, self.bench.args.read_pastes, True),
                         lambda view, file: [str(file)])
            with procs.MemorySampler(srv.pids) as mem:
                for c in sorted(self.conns, reverse=True):
                    plain.creates[c] = self.bench.load(srv, "create.lua", ["plain", "1024"], c,
                                                       key=f"peers-pasteur-plain-c{c}")
            enc.peak = {k: max(v, mem.peak[k]) for k, v in enc.peak.items()}
        enc.note = "reads: unencrypted pastes, ?raw=true; memory: both kinds of creates"
        plain.note = "reads and memory: the row above"

    def privatebin(self, side: Side) -> None:
        pb = PrivateBin(self.bench.work)
        with pb:
            side.note = (f"nginx + php-fpm ({pb.workers} workers, opcache); reads: JSON "
                         "document (X-Requested-With), page: the HTML the browser loads first")
            self.measure(side, pb, ("privatebin.lua",) * 2, ["create", "1024"],
                         lambda: self.privatebin_pastes(pb),
                         lambda view, file: ["json" if view == "raw" else "page", str(file)])

    def privatebin_pastes(self, pb: PrivateBin) -> dict[str, Path]:
        def one(_: int) -> str:
            with httpx.Client(timeout=30) as client:
                return pb.create(client)

        with ThreadPoolExecutor(8) as pool:
            paths = list(pool.map(one, range(self.bench.args.read_pastes)))
        file = self.bench.work / "privatebin.paths"
        file.write_text("".join(p + "\n" for p in paths))
        return {"raw": file, "html": file}

    def pinnwand(self, side: Side) -> None:
        if self.bench.args.no_pinnwand:
            raise Unavailable("--no-pinnwand")
        pw = self.bench.pinnwand("pinnwand-peers")
        with pw:
            side.note = "SQLite; creates: POST /curl (no encryption); reads: /raw/<file>"
            self.measure(side, pw, ("create.lua", "read.lua"), ["pinnwand", "1024"],
                         lambda: self.bench.make_pastes(pw, self.bench.args.read_pastes_pinnwand,
                                                        False),
                         lambda view, file: [str(file)])

    # -- the table ---------------------------------------------------------------

    def base(self, side: Side) -> tuple[Side, Side]:
        """The Pasteur rows a peer compares with: (creates, reads and memory)."""
        enc, plain = self.sides[0], self.sides[1]
        return (plain if side.label.startswith("pinnwand") else enc), enc

    def table(self) -> str:
        hi, lo = max(self.conns), min(self.conns)
        head = ["server", f"create {hi} conn", "p99", f"create {lo} conn p50",
                f"CPU/create ({hi} conn)", f"read raw/JSON {hi} conn", f"read page {hi} conn",
                "PSS idle", "PSS peak (creates)", "note"]
        rows = []
        for i, side in enumerate(self.sides):
            if side.skipped:
                rows.append([side.label, *["-"] * (len(head) - 2), f"SKIPPED: {side.skipped}"])
                continue
            ours, ours_r = self.base(side) if i > 1 else (None, None)

            def cell(get: Callable[[Side], float | None], fmt: Callable[[float], str],
                     better_high: bool, base: Side | None, s: Side = side) -> str:
                v = get(s)
                if v is None:
                    return ""
                b = get(base) if base is not None else None
                if not b or not v:
                    return fmt(v)
                r = b / v if better_high else v / b
                return f"{fmt(v)} ({r:.2f}x)"

            def create(c: int, what: str) -> Callable[[Side], float | None]:
                def get(s: Side) -> float | None:
                    r = s.creates.get(c)
                    if r is None:
                        return None
                    return r.rps if what == "rps" else (
                        r.cpu_us_per_request if what == "cpu" else r.latency_us[what])
                return get

            def read(view: str) -> Callable[[Side], float | None]:
                return lambda s: s.reads[view].rps if view in s.reads else None

            def mem(which: str) -> Callable[[Side], float | None]:
                return lambda s: getattr(s, which).get("pss") or None

            rate, ms = (lambda v: f"{v:,.0f}/s"), (lambda v: f"{v / 1000:.2f} ms")
            mib = lambda v: f"{v / MIB:.0f} MiB"  # noqa: E731
            rows.append([
                side.label,
                cell(create(hi, "rps"), rate, True, ours),
                cell(create(hi, "p99"), ms, False, ours),
                cell(create(lo, "p50"), ms, False, ours),
                cell(create(hi, "cpu"), lambda v: f"{v:,.0f} us", False, ours),
                cell(read("raw"), rate, True, ours_r),
                cell(read("html"), rate, True, ours_r),
                cell(mem("idle"), mib, False, ours_r),
                cell(mem("peak"), mib, False, ours_r),
                side.note + _errors(side),
            ])
        widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
                  for row in rows]
        return "\n".join(lines)

    def targets(self) -> str:
        """Issue 17 item 2: creates >= 2x PrivateBin at the most connections,
        p50 below PrivateBin's at the fewest, in this run."""
        pb = next((s for s in self.sides if s.label.startswith("PrivateBin")), None)
        ours = self.sides[0]
        if pb is None or pb.skipped or not pb.creates or not ours.creates:
            return "issue 17 item 2: not measured (no PrivateBin figures)"
        hi, lo = max(self.conns), min(self.conns)
        x = ours.creates[hi].rps / pb.creates[hi].rps
        p50, theirs = ours.creates[lo].latency_us["p50"], pb.creates[lo].latency_us["p50"]
        return (f"issue 17 item 2 (encrypted creates against PrivateBin's): {hi} conn "
                f"{x:.2f}x (>= 2x: {'PASS' if x >= 2 else 'FAIL'}); {lo} conn p50 "
                f"{p50 / 1000:.2f} ms vs {theirs / 1000:.2f} ms "
                f"({'PASS' if p50 < theirs else 'FAIL'})")


def _errors(side: Side) -> str:
    bad = {f"create {c}": r.error_count for c, r in side.creates.items() if r.error_count}
    bad |= {f"read {k}": r.error_count for k, r in side.reads.items() if r.error_count}
    return f"; ERRORS {bad}" if bad else ""
