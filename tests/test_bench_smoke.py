"""The benchmark code does not rot: one short, light run of the create and read scenarios.

Not a timed test: it checks that wrk ran with the Lua scripts, that their JSON
report was parsed, and that the requests succeeded (a positive rate, no errors).
"""

from __future__ import annotations

import json
import shutil

import pytest

from bench.__main__ import main
from bench.procs import parse_wrk

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def test_parse_wrk_report() -> None:
    out = ('Running 1s test\nBENCHJSON {"requests":10,"duration_us":2000000,"bytes":1,'
           '"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},'
           '"latency_us":{"min":1,"mean":2.0,"p50":2,"p90":3,"p99":4,"p999":5,"max":6}}\n')
    r = parse_wrk(out)
    assert r.rps == 5 and r.ms("p99") == 0.004 and r.error_count == 0


def test_bench_smoke(tmp_path, capsys) -> None:
    report = tmp_path / "bench.json"
    code = main(["--only", "create,read", "--no-pinnwand", "--connections", "2",
                 "--duration", "1", "--warmup", "0", "--read-pastes", "5",
                 "--work", str(tmp_path / "work"), "--json", str(report)])
    assert code == 0
    doc = json.loads(report.read_text())
    runs = {k: v for k, v in doc["raw"].items() if k.startswith("pasteur-") and "rps" in v}
    assert set(runs) == {"pasteur-plain-c2", "pasteur-enc-c2", "pasteur-file-c2",
                         "pasteur-read-raw", "pasteur-read-html"}
    for name, run in runs.items():
        assert run["rps"] > 0, name
        assert run["latency_us"]["p50"] > 0, name
        assert sum(run["errors"].values()) == 0, (name, run["errors"])
    assert len(doc["rows"]) == 5
    table = capsys.readouterr().out
    assert "| create 1 KiB unencrypted, 2 conn" in table and "| read raw, 2 conn" in table


def peers_run(tmp_path, capsys) -> tuple[dict, str]:
    report = tmp_path / "bench.json"
    code = main(["--peers", "privatebin", "--connections", "2", "--duration", "1",
                 "--warmup", "0", "--read-pastes", "5", "--work", str(tmp_path / "work"),
                 "--json", str(report)])
    assert code == 0
    return json.loads(report.read_text()), capsys.readouterr().out


def test_bench_peers_smoke(tmp_path, capsys) -> None:
    """``--peers``: Pasteur and PrivateBin (run from $PASTEUR_PEERS_DIR, default
    ../shared/peers) in one table; PrivateBin has figures or says why not."""
    doc, out = peers_run(tmp_path, capsys)
    sides = {s["label"]: s for s in doc["raw"]["peers"]}
    assert set(sides) == {"Pasteur, encrypted", "Pasteur, unencrypted", "PrivateBin 2.0.5"}
    for label in ("Pasteur, encrypted", "Pasteur, unencrypted"):
        assert sides[label]["creates"]["2"]["rps"] > 0, label
        assert sum(sides[label]["creates"]["2"]["errors"].values()) == 0, label
    assert sides["Pasteur, encrypted"]["peak"]["pss"] > 0
    row = next(line for line in out.splitlines() if line.startswith("| PrivateBin 2.0.5"))
    pb = sides["PrivateBin 2.0.5"]
    if pb["skipped"]:
        assert f"SKIPPED: {pb['skipped']}" in row
        return
    for run in [pb["creates"]["2"], *pb["reads"].values()]:
        assert run["rps"] > 0 and sum(run["errors"].values()) == 0, run
    assert len(pb["reads"]) == 2 and pb["idle"]["pss"] > 0
    assert "/s (" in row and " ms (" in row  # figures, each with its ratio
    assert "issue 17 item 2 (encrypted creates against PrivateBin's): 2 conn" in out


def test_bench_peers_skipped(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PASTEUR_PEERS_DIR", str(tmp_path / "nowhere"))
    doc, out = peers_run(tmp_path, capsys)
    row = next(line for line in out.splitlines() if line.startswith("| PrivateBin 2.0.5"))
    assert f"SKIPPED: no privatebin-2.0.5.tar.gz at {tmp_path / 'nowhere'}" in row
    assert "| Pasteur, encrypted" in out and "not measured (no PrivateBin figures)" in out


def test_bench_scale_smoke(tmp_path, capsys) -> None:
    """The scale scenario: creates, reads and the process tree's peak RSS at two sizes."""
    report = tmp_path / "bench.json"
    code = main(["--only", "scale", "--no-pinnwand", "--scale", "2000", "--duration", "1",
                 "--warmup", "0", "--scale-rounds", "1", "--work", str(tmp_path / "work"),
                 "--json", str(report)])
    assert code == 0
    doc = json.loads(report.read_text())
    rss = doc["raw"]["scale-rss"]
    assert set(rss) == {"1000", "2000"} and all(v["peak"] > 0 for v in rss.values())
    assert "server" in rss["2000"]["parts"]
    assert doc["raw"]["fill-2000-s"] > 0
    table = capsys.readouterr().out
    for row in ("| create at 2,000 pastes vs 1,000", "| read raw at 2,000 pastes vs 1,000",
                "| peak RSS, server + children, creates at 2,000 pastes"):
        assert row in table
