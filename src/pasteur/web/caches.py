"""What the web app keeps between requests: rendered pages of pastes that
never change, base URLs, commit links, and the creates' rate limiter."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from ..proxy import bucket
from ..storage.store import Store
from . import compress
from .compress import compress_async


@dataclass
class CachedPage:
    """A cached response's body, its type, its compressed bodies made so far,
    and the heads the application sends with them (``hotpath.py``)."""

    body: bytes
    ctype: str
    variants: dict[str, bytes] = field(default_factory=dict)  # content coding -> body
    # What ``compress.coding`` said (None, "" or a coding) -> the response's header lines.
    heads: dict[str | None, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return (len(self.body) + sum(len(v) for v in self.variants.values())
                + sum(len(h) for h in self.heads.values()))

    def response(self, coding: str | None, body: bytes) -> Response:
        """The answer to a read of this page: ``body`` is its body in ``coding``
        (``compress.coding``; the front door's ``compressing`` passes a
        response that has its coding)."""
        return Response(body, media_type=self.ctype, headers=compress.headers(coding))


class PageCache:
    """Responses for pastes that never change (no expiry, no burn) until removed,
    with their compressed bodies (``encoded``): a hit compresses nothing.

    Emptied whenever the store's generation moves (a removal, a rebase, a reset).
    """

    def __init__(self, store: Store, max_bytes: int = 64 << 20) -> None:
        self.store = store
        self.generation = store.generation
        self.max_bytes = max_bytes
        self.size = 0
        self.items: OrderedDict[tuple, CachedPage] = OrderedDict()

    def get(self, key: tuple) -> CachedPage | None:
        if self.generation != self.store.generation:
            self.items.clear()
            self.size = 0
            self.generation = self.store.generation
            return None
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key: tuple, body: bytes, ctype: str) -> CachedPage:
        """The page (cached unless too large for the cache)."""
        page = CachedPage(body, ctype)
        if len(body) > self.max_bytes // 8:
            return page
        old = self.items.pop(key, None)
        if old is not None:
            self.size -= old.size
        self.items[key] = page
        self.size += len(body)
        self._trim()
        return page

    async def encoded(self, key: tuple, page: CachedPage, encoding: str) -> bytes:
        """The body of ``page`` (got under ``key``) in a content coding ("":
        identity), compressed once and kept with it."""
        if not encoding:
            return page.body
        body = page.variants.get(encoding)
        if body is None:
            body = await compress_async(page.body, encoding)
            if encoding not in page.variants:  # another request may have made it meanwhile
                page.variants[encoding] = body
                if self.items.get(key) is page:  # still cached: count it
                    self.size += len(body)
                    self._trim()
        return body

    def add_head(self, key: tuple, page: CachedPage, coding: str | None, head: bytes) -> None:
        """Keep ``head`` with ``page`` (got under ``key``), counted while cached."""
        if coding not in page.heads:
            page.heads[coding] = head
            if self.items.get(key) is page:
                self.size += len(head)
                self._trim()

    def _trim(self) -> None:
        while self.size > self.max_bytes:
            _, dropped = self.items.popitem(last=False)
            self.size -= dropped.size

    def forget(self, paste_id: str) -> None:
        for key in [k for k in self.items if k[0] == paste_id]:
            self.size -= self.items.pop(key).size


class BaseUrls:
    """The site's URL: ``--url``, else the request's own, cached by what it
    depends on (Starlette builds a URL object per request)."""

    MAX = 256

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.urls: dict[tuple, str] = {}

    def of(self, request: Request) -> str:
        if self.url:
            return self.url.rstrip("/")
        scope = request.scope
        key = (scope.get("scheme"), scope.get("server"), scope.get("root_path", ""),
               request.headers.get("host"))
        url = self.urls.get(key)
        if url is None:
            if len(self.urls) > self.MAX:
                self.urls.clear()
            url = self.urls[key] = str(request.base_url).rstrip("/")
        return url


class CommitLinks:
    """A paste's link to the commit that added it (``--commit-url``), its
    commit id cached (the newest ``MAX`` pastes read: ~200 bytes each);
    cleared when an erasure rewrites the commits."""

    MAX = 10_000

    def __init__(self, template: str | None, store: Store) -> None:
        self.template = template
        self.store = store
        self.commits: dict[str, str] = {}

    def link(self, paste_id: str) -> str | None:
        template = self.template
        if not template:
            return None
        commit = self.commits.get(paste_id)
        if commit is None:
            found = self.store.commit_of(paste_id)
            if found is None:
                return None
            if len(self.commits) >= self.MAX:  # the oldest out (dicts keep their order)
                del self.commits[next(iter(self.commits))]
            commit = self.commits[paste_id] = str(found.id)
        return template.replace("{commit}", commit)

    def clear(self) -> None:
        self.commits.clear()


class RateLimiter:
    """A token bucket per client address, an IPv6 client's per /64 (creates only)."""

    MAX_CLIENTS = 100_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """Take a token; returns 0 if allowed, else the seconds to wait."""
        client = bucket(client)
        now = time.monotonic()
        tokens, last = self.buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self.buckets) >= self.MAX_CLIENTS and client not in self.buckets:
            full = [
                key
                for key, (left, then) in self.buckets.items()
                if left + (now - then) * self.rate >= self.burst
            ]
            for key in full:
                del self.buckets[key]
        self.buckets[client] = (tokens - 1, now)
        return 0.0
