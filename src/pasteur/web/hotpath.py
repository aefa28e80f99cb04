"""Hot reads: a read of a cached paste answered by the connection's protocol
(``pasteur.protocol``, ``HotAnswers``) as soon as its head is parsed, with no
ASGI request cycle, front door, router or handler.

``GET`` (or ``HEAD``) ``/<id>`` and ``/<id>?raw=true`` of a paste that cannot
change (no expiry, no burn) are most of a pastebin's traffic. Through
uvicorn's cycle, the front door and the handler a cached one cost ~85-130 µs
of CPU; yet its answer is known from the page cache (``caches.py``) once the
head is parsed: the body, in each content coding already made, and the head
the handler answers a cache hit with (``CachedPage.response``: the same
Starlette response, its header lines built once per page and coding and kept
with the page, counted in the cache's bytes). The answer is uvicorn's status
line and Date, that head, the front door's security headers and the body,
written in one call, with the access-log line and the /metrics count of the
front door.

The protocol asks only when no earlier answer is due on the connection (no
pipelining out of order), below the connection limit, without
``Expect: 100-continue``. Answered here only when the application would answer
the same bytes; anything else returns None and goes through the application
unchanged:

- the method is GET or HEAD, the target exactly ``/<id>`` with an optional
  query of printable ASCII (no ``%`` in the path, no ``#``, no space: its key
  is then the handler's, ``(id, request.url.query)``);
- the page cache holds that key (its generation check included: nothing is
  served once a paste may have left the tree; a removed paste's pages are
  forgotten; pastes with an expiry or burn-after-reading are never cached);
- its body in the coding asked for is made (else the handler compresses it
  first, in a thread when large);
- none of the headers the application reads for this route says otherwise:
  no ``Accept`` naming JSON (the JSON document is not cached), no creator's
  cookie (the creator's view is not cached), no request body
  (``Content-Length``, ``Transfer-Encoding``), no ``Upgrade``, a ``Host`` of
  plain host characters (Starlette builds the URL, and so the query, from it).
  Other headers are read by nobody on this route (conditional and range
  requests are answered 200 in full there too).

Built only without basic auth and without a trusted proxy (``create_app``):
those are the front door's to apply to every request.
"""

from __future__ import annotations

import re
import time

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from ..logsafe import quoted
from . import compress
from .caches import CachedPage, PageCache
from .frontdoor import SECURITY_HEADERS, AccessLog, ResponseCounts

# /<id>, then an optional query of printable ASCII but '#' (no space, no '%' in the path).
TARGET = re.compile(rb"/([A-Za-z0-9]{2,64})(?:\?([!\"$-~]*))?")
# What a Host header may hold here (deleted from it by bytes.translate, nothing must be left).
HOST = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.:[]-"
# Headers that send a request to the application: a body, an upgrade.
REFUSED = frozenset((b"content-length", b"transfer-encoding", b"upgrade"))
OK = STATUS_LINE[200]
# Read targets whose cache key is remembered (then all forgotten at once), each up to
# TARGET_BYTES long: at most ~2 MiB.
TARGETS = 4096
TARGET_BYTES = 256


class HotReads:
    """The answers of cached reads (see the module's docstring)."""

    def __init__(self, cache: PageCache, access_log: AccessLog,
                 counts: ResponseCounts | None = None) -> None:
        self.cache = cache
        self.access_log = access_log
        self.counts = counts  # None: /metrics is off
        self.served = 0  # answers given here
        self._defaults: list[tuple[bytes, bytes]] | None = None  # uvicorn's Date ...
        self._prefix = OK  # ... and the status line with them
        # A read's request target -> its page cache key (a regular expression
        # and two decodes cost as much as the rest of an answer).
        self.targets: dict[bytes, tuple[str, str]] = {}

    def answer(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
               keep_alive: bool, client: tuple[str, int] | None,
               default_headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The whole answer to a read of a cached page, or None (``HotAnswers``)."""
        start = time.perf_counter()
        if method == b"GET":
            head_only = False
        elif method == b"HEAD":
            head_only = True
        else:
            return None
        key = self.targets.get(url) or self._key(url)
        if key is None:
            return None
        accept_encoding = None
        for name, value in headers:
            if name == b"accept-encoding":
                if accept_encoding is None:
                    accept_encoding = value
            elif name == b"accept":
                if b"json" in value.lower():
                    return None
            elif name == b"cookie":
                if b"pasteur_creator" in value:
                    return None
            elif name == b"host":
                if value.translate(None, HOST):
                    return None
            elif name in REFUSED:
                return None
        page = self.cache.get(key)
        if page is None:
            return None
        accept = "" if accept_encoding is None else accept_encoding.decode("latin-1")
        coding = compress.coding(accept, page.ctype, len(page.body))
        body = page.variants.get(coding) if coding else page.body
        if body is None:
            return None
        head = page.heads.get(coding)
        if head is None:
            head = self._head(key, page, coding, body)
            if head is None:
                return None
        if default_headers is not self._defaults:
            self._defaults = default_headers
            self._prefix = OK + b"".join(b"%s: %s\r\n" % (n.lower(), v)
                                         for n, v in default_headers)
        end = b"\r\n" if keep_alive else b"connection: close\r\n\r\n"
        data = (self._prefix + head + end) if head_only else b"".join(
            (self._prefix, head, end, body))
        self.served += 1
        if self.counts is not None:
            self.counts.add("read", 200)
        if self.access_log.enabled:
            who = quoted(str(client[0])) if client else "-"
            ms = (time.perf_counter() - start) * 1000
            self.access_log.write(f'{who} "{method.decode()} /{key[0]}" 200 {len(body)}B '
                                  f"{ms:.1f}ms")
        return data

    def _key(self, url: bytes) -> tuple[str, str] | None:
        """The page cache key of a read's target (remembered if short), else None."""
        target = TARGET.fullmatch(url)
        if target is None:
            return None
        key = (target[1].decode(), (target[2] or b"").decode())
        if len(url) <= TARGET_BYTES:
            if len(self.targets) >= TARGETS:
                self.targets.clear()
            self.targets[url] = key
        return key

    def _head(self, key: tuple, page: CachedPage, coding: str | None,
              body: bytes) -> bytes | None:
        """The header lines of the handler's answer with ``body``, as uvicorn
        writes them, kept with the page; None if the front door would still
        compress that answer (never for a cached page's: it has its coding)."""
        response = page.response(coding, body)
        if compress.eligible(response.raw_headers):
            return None
        head = b"".join(b"%s: %s\r\n" % (n.lower(), v)
                        for n, v in [*response.raw_headers, *SECURITY_HEADERS])
        self.cache.add_head(key, page, coding, head)
        return head
