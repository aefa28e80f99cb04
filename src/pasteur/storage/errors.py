"""The storage's errors (every layer below the facade raises these)."""

from __future__ import annotations


class StoreError(Exception):
    """The repository cannot be written (disk full, read-only, corrupt)."""


class StoreBusy(StoreError):
    """Nothing was stored, try again later (the journal is full)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
