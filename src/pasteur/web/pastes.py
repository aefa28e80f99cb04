"""Pastes as the pages see them: found by id (or the error page saying why
not), a large one's document streamed, never read whole, and removed with
the cached pages that showed it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from ..ids import valid_id
from ..paste import InvalidPaste, Paste, TextUnescaper, document_head, iso
from ..storage.errors import StoreError
from ..storage.store import LargeBlob, Store
from .caches import PageCache
from .form import SPOOL_THRESHOLD
from .render import Renderer

log = logging.getLogger("pasteur.access")

# Documents larger than this are never read whole: streamed from Git, as
# uploads this large are spooled to disk (measured: a 96 MiB paste's raw view
# read whole peaked ~400 MiB higher; streamed, a few MiB).
STREAM_ABOVE = SPOOL_THRESHOLD
# A stored document in no format this server reads: it stays as it is in Git.
UNREADABLE = 422


# Why a paste is gone (410), by the reason it was removed for. A paste its
# author deleted is not listed: it answers 404, as if it had never been made.
GONE = {
    "Burn": "was read and deleted: it was made to be read once",
    "Expire": "has expired and was deleted",
}


def gone_message(paste_id: str, reason: str) -> str:
    return f"paste {paste_id} {GONE[reason]}"


@dataclass(frozen=True)
class LargeDocument:
    """A large paste's stored document: its blob, and where its text or
    ciphertext starts (after the metadata, read from its first bytes)."""

    blob: LargeBlob
    start: int


class Pastes:
    """Lookup and removal of pastes, for the show, burn and delete pages."""

    def __init__(
        self,
        store: Store,
        pages: Renderer,
        cache: PageCache,
        watch: Callable[[str, str], None],
        misses: Callable[[], Awaitable[bool]] | None = None,
        claim: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        self.store = store
        self.pages = pages
        self.cache = cache
        # An expired paste found on reading is handed to the sweeper.
        self.watch = watch
        # Asked on a miss whether a fetch brought new pastes (sync), if any.
        self.misses = misses
        # Claims a burn paste on the remote before it is served (sync), if any.
        self.claim = claim

    async def lookup(
        self, request: Request, paste_id: str
    ) -> tuple[Paste, bytes | LargeDocument] | Response:
        """The paste of an id, or the error page saying why there is none."""
        if not valid_id(paste_id):
            return self.pages.error(request, 404, "no such page")
        found = self.store.get_bounded(paste_id, STREAM_ABOVE)
        if found is None and self.misses is not None and await self.misses():
            found = self.store.get_bounded(paste_id, STREAM_ABOVE)  # pushed by another instance?
        if found is None:
            reason = self.store.gone(paste_id)
            if reason in GONE:
                return self.pages.error(request, 410, gone_message(paste_id, reason))
            return self.pages.error(request, 404, f"no paste {paste_id}")
        data: bytes | LargeDocument
        try:
            if isinstance(found, LargeBlob):
                paste, data = await self._large(found)
            else:
                paste, data = Paste.from_json(found), found
        except (InvalidPaste, KeyError, TypeError) as exc:
            # Not a server fault that a retry could mend: the document is in
            # the repository as it is (UNREADABLE: 422, said in plain words).
            log.error("paste %s is unreadable: %s", paste_id, exc)
            return self.pages.error(
                request, UNREADABLE,
                f"paste {paste_id} is stored in a format this server cannot read: neither "
                f"Pasteur's (v1) nor the original OCaml Pasteur's {{contents, encrypted}} "
                f"({exc})")
        except StoreError as exc:
            return self.pages.error(request, 503, f"paste {paste_id} could not be read ({exc})")
        if paste.expired():
            self.watch(paste_id, paste.expires or iso(0))
            return self.pages.error(request, 410, gone_message(paste_id, "Expire"))
        return paste, data

    async def _large(self, blob: LargeBlob) -> tuple[Paste, LargeDocument]:
        """A large paste's metadata, from the first bytes of its document."""
        head = b""
        chunks = self.store.stream(blob, 4096)
        try:
            async for chunk in chunks:
                head += chunk
                if len(head) >= 4096:
                    break
        finally:
            await chunks.aclose()
        paste, start = document_head(head)
        return paste, LargeDocument(blob, start)

    def stored(self, document: LargeDocument) -> AsyncIterator[bytes]:
        """A large paste's stored document, as it streams from Git."""
        return self.store.stream(document.blob)

    async def text_of(self, document: LargeDocument) -> AsyncIterator[bytes]:
        """A large clear paste's text, unescaped from its document as it streams."""
        unescaper = TextUnescaper()
        skip, held = document.start, b""
        async for chunk in self.store.stream(document.blob):
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            chunk = held + chunk
            chunk, held = chunk[:-2], chunk[-2:]  # the document ends with '"}'
            if out := unescaper.feed(chunk):
                yield out
        if held != b'"}':
            raise InvalidPaste("the stored paste does not end its text")
        if out := unescaper.feed(b"", final=True):
            yield out

    async def delete(self, paste_id: str, reason: str) -> None:
        await self.store.remove([paste_id], reason)
        self.cache.forget(paste_id)

    async def burn(self, paste_id: str) -> str:
        """Remove a burn paste before it is served once: ``"won"`` (serve it),
        ``"read"`` (another instance sharing the remote served it: 410) or
        ``"unreachable"`` (the remote could not confirm this is the one
        reader: 503). Without a remote, the local removal is the claim;
        a StoreError if it fails."""
        if self.claim is None:
            await self.delete(paste_id, "Burn")
            return "won"
        outcome = await self.claim(paste_id)
        self.cache.forget(paste_id)
        return outcome
