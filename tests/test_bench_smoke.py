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
