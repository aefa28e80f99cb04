"""What the syncer has done and is failing at, for /healthz (``Syncer.status``).

The push loop, fetches and pushes note their outcomes here; ``report`` turns
them, with the figures only the syncer knows (commits pending, the remote
head), into the ``sync`` section of /healthz.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SyncStatus:
    """Outcomes of the syncer's work: times are ``time.time()``, except
    ``failing_since`` (``time.monotonic()``)."""

    last_push: float | None = None
    last_fetch: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    retry_at: float | None = None
    # The push loop's failures in a row, and when the first of them was.
    failures: int = 0
    failing_since: float | None = None
    push_failures: int = 0  # the push loop's failures since the start (/metrics)
    pushes: int = 0
    fetches: int = 0
    restored: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        """A fetch or push failed (``kind: message``)."""
        self.last_error = text
        self.last_error_at = time.time()

    def success(self) -> None:
        """The push loop (or the first sync) went through."""
        self.failures, self.failing_since, self.retry_at = 0, None, None

    def backing_off(self, delay: float) -> None:
        """The push loop failed again; it retries in ``delay`` seconds."""
        self.failures += 1
        self.push_failures += 1
        self.failing_since = self.failing_since or time.monotonic()
        self.retry_at = time.time() + delay

    def pushed(self) -> None:
        self.last_push = time.time()
        self.pushes += 1
        self.last_error = None

    def fetched(self) -> None:
        self.last_fetch = time.time()
        self.fetches += 1

    def failing_for(self) -> float:
        """Seconds the push loop has failed in a row (0: it has not)."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since

    def report(self, pending: int, stuck_after: float,
               commit_error: str | None = None) -> dict[str, Any]:
        """``state``, the figures and times (ISO 8601) of /healthz's ``sync``;
        ``stuck``: the push loop failed more than once in a row, for more
        than ``stuck_after`` seconds (a remote down, refusing, or unreachable);
        ``commit_error``: why local commits fail, if they do (nothing new can
        be pushed: the state says so, never ``synchronised``)."""
        failing = self.failing_for()
        if commit_error is not None:
            state = "commits failing"
        elif self.last_error and pending:
            state = "retrying"
        elif pending:
            state = "pushing"
        else:
            state = "synchronised"
        return {
            "state": state,
            "pending": pending,
            "last_push": _iso(self.last_push),
            "last_fetch": _iso(self.last_fetch),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "next_retry": _iso(self.retry_at),
            "failures": self.failures,
            "push_failures": self.push_failures,
            "failing_s": round(failing, 1),
            "stuck": self.failures >= 2 and failing > stuck_after,
            "pushes": self.pushes,
            "fetches": self.fetches,
            "restored": self.restored,
        }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
