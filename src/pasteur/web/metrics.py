"""``/metrics``: the server's figures in the Prometheus text format
(prometheus_client), served on a listener of its own (``--metrics``), never
on the public one.

Nothing is counted for it on the hot path beyond the front door's one dict
update per answer (``ResponseCounts``) and the writer's per-batch figures
(``storage.writer.Figures``): everything else is read when scraped, by the
collector below, from the store and from callables that ``server.py`` hands
in (sync's status, the certificate's days left), so that web imports
neither sync nor tls.

Metrics (all ``pasteur_`` prefixed):

- ``responses_total{kind,status}``: answers by kind (create, read, delete,
  other) and HTTP status; ``creates_total`` and ``reads_total`` count the
  successful ones (status below 400);
- ``commit_seconds``: histogram of group commits' wall time, fsyncs
  included; ``commits_total``, ``pastes_committed_total``;
- ``journal_backlog`` (pastes acknowledged, not yet committed) and
  ``journal_backlog_age_seconds`` (the oldest's wait), ``pending_erasure``;
- with ``--remote``: ``sync_pending_commits`` (local commits the remote has
  not got), ``sync_lag_seconds`` (how long the oldest of them has waited, when
  sync's status tells it), ``sync_push_failures_total``,
  ``sync_consecutive_failures``, ``sync_failing_seconds``, ``sync_stuck``,
  ``sync_pushes_total``, ``sync_fetches_total``;
- with HTTPS: ``tls_certificate_days_left``;
- the process's own (``process_cpu_seconds_total``, ``process_resident_memory_bytes`` ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..storage.store import Store
from .frontdoor import ASGIApp, ResponseCounts, send_plain

log = logging.getLogger("pasteur.metrics")

SyncStatus = Callable[[], dict[str, Any]]  # Syncer.status
DaysLeft = Callable[[], float | None]  # LiveTLS.days_left
# The key of sync's status that gives the oldest unpushed commit's wait, in seconds.
SYNC_LAG_KEY = "oldest_unpushed_s"


class PasteurCollector(Collector):
    """The server's metrics, read from their owners at each scrape."""

    def __init__(self, counts: ResponseCounts, store: Store,
                 sync_status: SyncStatus | None = None,
                 days_left: DaysLeft | None = None) -> None:
        self.counts = counts
        self.store = store
        self.sync_status = sync_status
        self.days_left = days_left

    def collect(self) -> Iterator[Metric]:
        yield from self._responses()
        yield from self._store()
        if self.sync_status is not None:
            yield from self._sync(self.sync_status())
        if self.days_left is not None and (days := self.days_left()) is not None:
            yield GaugeMetricFamily("pasteur_tls_certificate_days_left",
                                    "Days until the certificate in use expires.", value=days)

    def _responses(self) -> Iterator[Metric]:
        answers = CounterMetricFamily("pasteur_responses", "Answers by kind and HTTP status.",
                                      labels=["kind", "status"])
        done = {"create": 0, "read": 0}
        for (kind, status), n in sorted(self.counts.counts.items()):
            answers.add_metric([kind, str(status)], n)
            if kind in done and status < 400:
                done[kind] += n
        yield answers
        yield CounterMetricFamily("pasteur_creates", "Pastes created.", value=done["create"])
        yield CounterMetricFamily("pasteur_reads", "Pastes read (a page, raw or a burn reading).",
                                  value=done["read"])

    def _store(self) -> Iterator[Metric]:
        store = self.store
        buckets, total = store.commit_times()
        yield HistogramMetricFamily(
            "pasteur_commit_seconds",
            "Group commits of new pastes by wall time, fsyncs included.",
            buckets=[(_bound(b), n) for b, n in buckets], sum_value=total)
        yield CounterMetricFamily("pasteur_commits", "Commits made by this process.",
                                  value=store.commits)
        yield CounterMetricFamily("pasteur_pastes_committed", "Pastes in those group commits.",
                                  value=store.added)
        yield GaugeMetricFamily("pasteur_journal_backlog",
                                "Pastes acknowledged and not yet committed.",
                                value=store.uncommitted)
        yield GaugeMetricFamily("pasteur_journal_backlog_age_seconds",
                                "Seconds the oldest uncommitted paste has waited.",
                                value=store.backlog_age())
        yield GaugeMetricFamily("pasteur_pending_erasure",
                                "Removed pastes not yet erased from history.",
                                value=len(store.pending_erasure()))

    def _sync(self, status: dict[str, Any]) -> Iterator[Metric]:
        yield GaugeMetricFamily("pasteur_sync_pending_commits",
                                "Local commits the remote has not got yet.",
                                value=status.get("pending") or 0)
        if (lag := status.get(SYNC_LAG_KEY)) is not None:
            yield GaugeMetricFamily("pasteur_sync_lag_seconds",
                                    "Seconds the oldest unpushed commit has waited.", value=lag)
        yield CounterMetricFamily("pasteur_sync_push_failures",
                                  "Failed rounds of the push loop since the start.",
                                  value=status.get("push_failures") or 0)
        yield GaugeMetricFamily("pasteur_sync_consecutive_failures",
                                "Failed rounds of the push loop in a row.",
                                value=status.get("failures") or 0)
        yield GaugeMetricFamily("pasteur_sync_failing_seconds",
                                "Seconds the push loop has failed in a row.",
                                value=status.get("failing_s") or 0)
        yield GaugeMetricFamily("pasteur_sync_stuck", "1 when /healthz reports sync as stuck.",
                                value=1 if status.get("stuck") else 0)
        yield CounterMetricFamily("pasteur_sync_pushes", "Pushes since the start.",
                                  value=status.get("pushes") or 0)
        yield CounterMetricFamily("pasteur_sync_fetches", "Fetches since the start.",
                                  value=status.get("fetches") or 0)


def _bound(seconds: float) -> str:
    return "+Inf" if seconds == float("inf") else repr(seconds)


def registry_for(collector: PasteurCollector) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one): the
    collector and the process's figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """The metrics listener's app: ``GET /metrics`` (and HEAD), nothing else."""
    allowed = [(b"allow", b"GET, HEAD")]

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":  # run with lifespan="off"
            return
        if scope["path"] != "/metrics":
            await send_plain(send, 404, b"only /metrics here\n", [])
        elif scope["method"] not in ("GET", "HEAD"):
            await send_plain(send, 405, b"GET /metrics\n", allowed)
        else:
            try:
                body = generate_latest(registry)
            except Exception:  # noqa: BLE001 - a figure that fails is logged, not a crash
                log.exception("cannot collect the metrics")
                await send_plain(send, 500, b"cannot collect the metrics\n", [])
                return
            await send({"type": "http.response.start", "status": 200, "headers": [
                # 0.0.4, not the library's 1.0.0: what every Prometheus reads (same body).
                (b"content-type", CONTENT_TYPE_PLAIN_0_0_4.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body",
                        "body": b"" if scope["method"] == "HEAD" else body})

    return app
