"""The sweeper (web/sweeper.py): its watch list stays bounded."""

from __future__ import annotations

import asyncio
import time

from pasteur.paste import iso
from pasteur.storage.store import Store
from pasteur.web.caches import CommitLinks, PageCache
from pasteur.web.sweeper import Sweeper


def test_the_watch_list_is_bounded_and_the_soonest_are_kept(tmp_path):
    async def main() -> None:
        store = Store(tmp_path / "repo.git")
        store.start()
        try:
            sweeper = Sweeper(store, PageCache(store), CommitLinks(None, store), None)
            sweeper.MAX_WATCHED = 100
            now = time.time()
            ids = [f"{n:04d}" for n in range(1000)]
            for n in reversed(range(1000)):  # the latest first: each new one is sooner
                sweeper.watch(ids[n], iso(now + 3600 + n * 60))
                assert len(sweeper.due) <= 100 and len(sweeper.watched) <= 100
            assert sweeper.horizon < now + 3600 + 100 * 60
            assert set(sweeper.watched) >= set(ids[:10])  # the soonest are watched
            sweeper.watch(ids[999], iso(now + 3600 + 999 * 60))  # past the horizon: not
            assert ids[999] not in sweeper.watched
            # all watched ones swept: the whole tree is to be scanned again
            swept = await sweeper.sweep(now + 3600 + 1000 * 60)
            assert set(ids[:10]) <= set(swept) and len(swept) <= 100 and not sweeper.watched
            assert sweeper.rescan and not sweeper.due
        finally:
            await store.stop()

    asyncio.run(main())
