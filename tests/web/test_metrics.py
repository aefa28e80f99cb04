"""/metrics (web/metrics.py, --metrics): real servers scraped over HTTP and
parsed with prometheus_client's own text parser; the counters move with the
requests made, the commit histogram fills, sync and TLS figures appear when
those run, and nothing of it is on the public listener."""

from __future__ import annotations

import math
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server
from tests.fixtures_acme import self_signed
from tests.fixtures_git import bare_remote
from tests.ports import free_port, wait_port
from tests.processes import stop

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def poll(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def with_metrics(server_factory: Callable[..., Server], *args: str) -> tuple[Server, str]:
    port = free_port()
    server = server_factory("--metrics", f"127.0.0.1:{port}", *args)
    return server, f"http://127.0.0.1:{port}/metrics"


def test_counters_move_and_commits_are_timed(server_factory: Callable[..., Server]) -> None:
    server, metrics = with_metrics(server_factory)
    before = scrape(metrics)
    created = httpx.post(server.url + "/", content=b"counted\n", timeout=10)
    assert created.status_code == 201
    paste = created.text.strip().rsplit("/", 1)[1]
    assert httpx.get(f"{server.url}/{paste}", params={"raw": "1"}, timeout=10).status_code == 200
    assert httpx.get(server.url + "/nOsUcHpAsTe", timeout=10).status_code == 404
    server.settle()
    after = scrape(metrics)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("pasteur_responses_total", kind="create", status="201") == 1
    assert moved("pasteur_responses_total", kind="read", status="200") == 1
    assert moved("pasteur_responses_total", kind="read", status="404") == 1
    assert moved("pasteur_creates_total") == 1
    assert moved("pasteur_reads_total") == 1  # the 404 is an answer, not a read
    count = value(after, "pasteur_commit_seconds_count")
    assert count >= 1 and value(after, "pasteur_commit_seconds_sum") > 0
    assert value(after, "pasteur_commit_seconds_bucket", le="+Inf") == count
    assert value(after, "pasteur_pastes_committed_total") >= 1
    assert value(after, "pasteur_journal_backlog") == 0
    assert value(after, "process_resident_memory_bytes") > 0
    # No sync, no TLS: none of their figures.
    assert not any(name.startswith(("pasteur_sync_", "pasteur_tls_")) for name, _ in after)


def test_only_metrics_on_their_listener_and_none_on_the_public_one(
        server_factory: Callable[..., Server]) -> None:
    plain = server_factory()
    r = httpx.get(plain.url + "/metrics", timeout=10)
    assert r.status_code == 404 and "pasteur_" not in r.text
    server, metrics = with_metrics(server_factory)
    r = httpx.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 404 and "pasteur_" not in r.text
    base = metrics.removesuffix("/metrics")
    assert httpx.get(base + "/", timeout=10).status_code == 404
    assert httpx.get(base + "/healthz", timeout=10).status_code == 404
    assert httpx.post(metrics, timeout=10).status_code == 405
    head = httpx.head(metrics, timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_bad_metrics_bind_exits_with_a_message(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pasteur", "serve", "--data",
                               str(tmp_path / "d"), "--port", str(free_port()), *args],
                              capture_output=True, text=True, timeout=60)

    bad = serve("--metrics", "here:there")
    assert bad.returncode == 2 and "metrics:" in bad.stderr, bad.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = serve("--metrics", f"127.0.0.1:{taken.getsockname()[1]}")
    assert busy.returncode == 1 and "cannot serve the metrics" in busy.stderr, busy.stderr


def test_sync_figures_and_push_failures(server_factory: Callable[..., Server],
                                        tmp_path: Path) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    server, metrics = with_metrics(server_factory, "--remote", str(remote))
    assert httpx.post(server.url + "/", content=b"pushed\n", timeout=10).status_code == 201
    poll(lambda: value(scrape(metrics), "pasteur_sync_pushes_total") >= 1, "a push")
    poll(lambda: value(scrape(metrics), "pasteur_sync_pending_commits") == 0, "all pushed")
    assert value(scrape(metrics), "pasteur_sync_push_failures_total") == 0
    # The remote now refuses every push: the failures are counted.
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho refused by the test >&2\nexit 1\n")
    hook.chmod(0o755)
    assert httpx.post(server.url + "/", content=b"refused\n", timeout=10).status_code == 201
    poll(lambda: value(scrape(metrics), "pasteur_sync_push_failures_total") >= 1,
         "a counted push failure")
    samples = scrape(metrics)
    assert value(samples, "pasteur_sync_pending_commits") >= 1
    assert value(samples, "pasteur_sync_consecutive_failures") >= 1
    sync = httpx.get(server.url + "/healthz", timeout=10).json()["sync"]
    assert sync["push_failures"] >= 1
    # The lag, where sync's status tells the oldest unpushed commit's wait.
    assert (("pasteur_sync_lag_seconds", frozenset()) in samples) == ("oldest_unpushed_s" in sync)


def test_certificate_days_left(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, days=30)
    port, mport = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pasteur", "serve", "--data", str(tmp_path / "d"),
         "--tls-cert", str(cert), "--tls-key", str(key), "--port", str(port),
         "--metrics", f"127.0.0.1:{mport}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, timeout=40)
        https = ssl.create_default_context(cafile=str(cert))
        poll(lambda: httpx.get(f"https://127.0.0.1:{port}/healthz", verify=https,
                               timeout=5).status_code == 200, "the TLS listener")
        days = value(scrape(f"http://127.0.0.1:{mport}/metrics"),
                     "pasteur_tls_certificate_days_left")
        assert math.isclose(days, 30, abs_tol=0.1), days
    finally:
        stop(proc)
