"""Failed removals and erasures, for ``/healthz``: a delete, burn or expiry
whose commit fails, or an erasure that fails, makes the store's
``commit_error`` say so (503), like a failed commit of new pastes.

Creates retry by themselves (their journal records wait), so the writer's
own failure clears itself once the disk is back. A removal is not retried
(its request was answered 503, the paste stays): its failure is cleared by
the next removal that goes through, or by a commit of new pastes after it
(the repository takes commits again). An erasure's failure is cleared by
the next erasure that goes through (the erase list waits for it). This
module imports nothing of ours but the error type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .errors import StoreError

log = logging.getLogger("pasteur.store")
T = TypeVar("T")

KINDS = ("removal", "erasure")


class LastError(Protocol):
    """Where the last failure is kept after a success (the writer's figures)."""

    last_error: str | None
    last_error_at: float | None


@dataclass
class Failure:
    kind: str  # "removal" or "erasure"
    error: str
    since: float  # monotonic, the first failure of those in a row
    batches: int  # commits of new pastes made before it


class Failures:
    """The current failure of removals and of erasures, if any; ``batches``
    counts the commits of new pastes (the writer's figures)."""

    def __init__(self, last: LastError, batches: Callable[[], int]) -> None:
        self.last = last
        self.batches = batches
        self.now: dict[str, Failure] = {}

    async def run(self, kind: str, work: Awaitable[T]) -> T:
        """Await ``work`` (a removal or an erasure in the writer thread): a
        failure is kept, and raised as a StoreError; a success clears it."""
        try:
            result = await work
        except Exception as exc:
            err = exc if isinstance(exc, StoreError) else StoreError(f"{type(exc).__name__}: "
                                                                     f"{exc}")
            before = self.now.get(kind)
            self.now[kind] = Failure(kind, str(err), before.since if before else time.monotonic(),
                                     self.batches())
            self.last.last_error, self.last.last_error_at = f"{kind}: {err}", time.time()
            log.error("%s failed: %s", kind, err)
            raise err from exc
        self.now.pop(kind, None)
        return result

    def current(self) -> list[Failure]:
        """The failures still current (a removal's is over once new pastes
        were committed after it)."""
        removal = self.now.get("removal")
        if removal is not None and self.batches() > removal.batches:
            del self.now["removal"]
        return [self.now[k] for k in KINDS if k in self.now]

    def error(self) -> str | None:
        """The first current failure, in the words of ``commit_error``."""
        failures = self.current()
        return f"{failures[0].kind}: {failures[0].error}" if failures else None

    def problems(self) -> list[str]:
        """One sentence per current failure (for ``/healthz``)."""
        return [f"{f.kind}s have failed for {time.monotonic() - f.since:.0f} s: {f.error}"
                for f in self.current()]
