"""Failed removals and erasures kept for /healthz (storage/failures.py); the
end-to-end check (a delete and a burn whose commits fail, a real server and
remote) is in tests/sync/test_progress.py."""

from __future__ import annotations

import asyncio

import pytest

from pasteur.storage.errors import StoreError
from pasteur.storage.failures import Failures
from pasteur.storage.writer import Figures


def test_a_removal_failure_lasts_until_a_commit_goes_through() -> None:
    figures, batches = Figures(), [0]
    failures = Failures(figures, lambda: batches[0])

    async def fail() -> None:
        raise OSError("No space left on device")

    async def work() -> str:
        return "done"

    async def main() -> None:
        with pytest.raises(StoreError, match="No space left"):
            await failures.run("removal", fail())
        with pytest.raises(StoreError):
            await failures.run("erasure", fail())
        assert failures.error() == "removal: OSError: No space left on device"
        assert [p.split(" have")[0] for p in failures.problems()] == ["removals", "erasures"]
        assert figures.last_error == "erasure: OSError: No space left on device"
        batches[0] += 1  # new pastes committed: the repository takes commits again
        assert failures.error() == "erasure: OSError: No space left on device"
        assert await failures.run("erasure", work()) == "done"
        assert failures.error() is None and failures.problems() == []
        assert figures.last_error is not None  # kept after the success

    asyncio.run(main())
