"""Showing a paste: its page, raw text or JSON document, streamed when
large, cached when it cannot change; burn-after-reading served once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import languages
from ..ids import valid_id
from ..paste import Paste
from ..storage.errors import StoreError
from . import compress
from .caches import BaseUrls, CachedPage, CommitLinks, PageCache
from .cookies import CREATOR_COOKIE, FRESH_COOKIE, cookie
from .form import format_size
from .pastes import LargeDocument, Pastes, gone_message
from .render import HIGHLIGHT_BUDGET, Renderer, gutter, highlight, wants

TRUE = ("1", "true", "on", "yes")
# For the encrypted page: a download's extension by language (show.js).
EXTENSIONS = json.dumps(languages.extensions(), separators=(",", ":"))


def raw_asked(query: str) -> bool:
    """Whether a query string asks for the raw view: ``raw=true`` (or 1, on,
    yes), or a bare ``raw`` as the original Pasteur's links may say (``raw=``
    is the page, there as here). The last ``raw`` decides."""
    asked = False
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if unquote_plus(name) == "raw":
            asked = not eq or unquote_plus(value).lower() in TRUE
    return asked


def link_language(hl: str | None, own: str) -> str:
    """The language to show a paste in: a link's ``hl`` when it names one
    (ours, or the original Pasteur's mapped to the closest), else the paste's
    own (an unknown ``hl`` is ignored, as the original did)."""
    lang = languages.resolve(hl)
    return own if lang is None else lang


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing (a HEAD's body)


class ShowPage:
    """``GET /<id>`` and ``POST /<id>/read`` (a burn paste, confirmed)."""

    def __init__(self, pastes: Pastes, pages: Renderer, cache: PageCache,
                 commits: CommitLinks, base_urls: BaseUrls) -> None:
        self.pastes = pastes
        self.pages = pages
        self.cache = cache
        self.commits = commits
        self.base_urls = base_urls
        self.burning: set[str] = set()  # burned, or being burned: served once

    async def show(self, request: Request) -> Response:
        paste_id = request.path_params["paste_id"]
        if not valid_id(paste_id):
            return self.pages.error(request, 404, "no such page")
        token = cookie(request.headers, CREATOR_COOKIE)
        if token is None and wants(request) != "json":
            key = (paste_id, request.url.query)
            hit = self.cache.get(key)
            if hit is not None:
                return await self.cached(request, key, hit)
        found = await self.pastes.lookup(request, paste_id)
        if isinstance(found, Response):
            return found
        paste, data = found
        raw = raw_asked(request.url.query)
        creator = self.is_creator(request, paste)
        api = raw or wants(request) == "json"
        if paste.burn and not creator:
            # A GET or HEAD never burns (a link preview, a prefetch, a HEAD
            # would): a person is asked first, a program is told to POST.
            if not api:
                return self.pages.render("burn.html", id=paste_id, created=paste.created,
                                   encrypted=paste.encrypted, exts=EXTENSIONS)
            read = f"/{paste_id}/read" + ("?raw=true" if raw else "")
            return self.pages.error(request, 409, f"paste {paste_id} is deleted once read: "
                                                  f"POST {read} reads it, and deletes it")
        if not (creator and not api and cookie(request.headers, FRESH_COOKIE)):
            return self.present(request, paste_id, paste, data, raw, creator)
        response = self.present(request, paste_id, paste, data, raw, creator,
                                first=await self.first_view(request, paste_id))
        response.headers.append(
            "set-cookie", f"{FRESH_COOKIE}=; Max-Age=0; Path=/{paste_id}; SameSite=strict")
        return response

    async def first_view(self, request: Request, paste_id: str) -> dict:
        """What the creator's first view adds: the link (show.js adds the key
        of an encrypted paste, from the page's address), the delete link
        (shown this once), and the commit link, waited for (a create is
        answered once journaled, before its commit)."""
        url = f"{self.base_urls.of(request)}/{paste_id}"
        token = cookie(request.headers, CREATOR_COOKIE)
        if self.commits.template and self.commits.link(paste_id) is None:
            with contextlib.suppress(StoreError, TimeoutError):
                await asyncio.wait_for(self.pastes.store.flush(), 10)
        return {"fresh": True, "link": url, "delete_url": f"{url}/delete?token={token}",
                "commit_link": self.commits.link(paste_id)}

    async def cached(self, request: Request, key: tuple, page: CachedPage) -> Response:
        """A cached page in the content coding asked for, compressed once (the
        front door's ``compressing`` passes a response that has its coding)."""
        coding = compress.coding(request.headers.get("accept-encoding", ""), page.ctype,
                                 len(page.body))
        body = await self.cache.encoded(key, page, coding or "")
        return page.response(coding, body)

    def _streamed(
        self, request: Request, chunks: AsyncIterator[bytes], ctype: str, size: int | None = None
    ) -> Response:
        """A streamed answer (a HEAD gets its head only: nothing is read)."""
        headers = {"cache-control": "no-store"}
        if size is not None:
            headers["content-length"] = str(size)
        if request.method == "HEAD":
            chunks = _nothing()
        return StreamingResponse(chunks, media_type=ctype, headers=headers)

    def _present_large(
        self, request: Request, paste: Paste, document: LargeDocument, raw: bool, meta: dict
    ) -> Response:
        """A large paste, never read whole: the raw text or the stored document
        streamed; its page only links to them (encrypted: show.js fetches the
        document; clear: too large to highlight)."""
        raw_url = f"/{meta['id']}?raw=true"
        if paste.encrypted:
            if raw or wants(request) == "json":
                return self._streamed(request, self.pastes.stored(document),
                                      "application/json", document.blob.size)
            return self.pages.render("encrypted.html", ct="", iv=paste.iv, kdf=paste.kdf,
                                     fmt=paste.fmt, src=raw_url, **meta)
        if raw:
            return self._streamed(request, self.pastes.text_of(document),
                                  "text/plain; charset=utf-8")
        return self.pages.render("show.html", lang=paste.lang, ln=False, code_html="",
                           ext=languages.extension(paste.lang),
                           too_large=format_size(paste.size), raw_url=raw_url, **meta)

    def is_creator(self, request: Request, paste: Paste) -> bool:
        token = cookie(request.headers, CREATOR_COOKIE)
        return bool(token and paste.token_ok(token))

    async def burn(
        self, request: Request, paste_id: str, paste: Paste, data: bytes | LargeDocument,
        raw: bool,
    ) -> Response:
        """Serve a burn-after-reading paste once, then delete it."""
        if paste_id in self.burning:
            return self.pages.error(request, 410, gone_message(paste_id, "Burn"))
        self.burning.add(paste_id)
        try:
            outcome = await self.pastes.burn(paste_id)
        except StoreError as exc:
            outcome = f"failed: {exc}"
        if outcome == "read":
            return self.pages.error(request, 410, f"paste {paste_id} was already read "
                                                  "(burned after reading)")
        if outcome != "won":
            self.burning.discard(paste_id)
            why = "the remote is unreachable" if outcome == "unreachable" else outcome
            return self.pages.error(request, 503, "the paste could not be burned, so it is "
                                                  f"not shown ({why})")
        response = self.present(request, paste_id, paste, data, raw, creator=False, cache=False)
        response.headers["cache-control"] = "no-store"
        return response

    def present(
        self,
        request: Request,
        paste_id: str,
        paste: Paste,
        data: bytes | LargeDocument,
        raw: bool,
        creator: bool,
        cache: bool = True,
        first: dict | None = None,
    ) -> Response:
        query = request.query_params
        meta = {"id": paste_id, "created": paste.created, "expires": paste.expires,
                "burn": paste.burn, "creator": creator, "commit_link": self.commits.link(paste_id),
                "exts": EXTENSIONS, **(first or {})}
        if isinstance(data, LargeDocument):
            return self._present_large(request, paste, data, raw, meta)
        if paste.encrypted:
            if wants(request) == "json" or (raw and not paste.legacy):
                return Response(data, media_type="application/json",
                                headers={"cache-control": "no-store"})
            if raw:  # the original's raw view: its hex ciphertext, as text
                return Response((paste.ct or "").encode(), media_type="text/plain; charset=utf-8",
                                headers={"cache-control": "no-store"})
            if paste.legacy:  # the language comes from the link, as the original's did
                meta["legacy_lang"] = link_language(query.get("hl"), "")
            return self.pages.render("encrypted.html", ct=paste.ct, iv=paste.iv, kdf=paste.kdf,
                                     fmt=paste.fmt, **meta)
        # Responses that stay true until the paste is removed are cached under
        # the request's query (the fast path in ``show``).
        cacheable = cache and not (creator or paste.expires or paste.burn)
        if raw:
            body, ctype = (paste.text or "").encode(), "text/plain; charset=utf-8"
        else:
            lang = link_language(query.get("hl"), paste.lang)
            ln_param = query.get("ln")
            ln = paste.ln if ln_param is None else ln_param.lower() in TRUE
            html = self.pages.templates.get_template("show.html").render(
                lang=lang,
                ext=languages.extension(lang),
                ln=ln,
                code_html=highlight(paste.text or "", lang),
                later=lang if len(paste.text or "") > HIGHLIGHT_BUDGET else "",
                gutter=gutter(paste.text or "") if ln else None,
                raw_url=f"/{paste_id}?raw=true",
                **meta,
            )
            body, ctype = html.encode(), "text/html; charset=utf-8"
        if cacheable and wants(request) != "json":
            self.cache.put((paste_id, request.url.query), body, ctype)
        return Response(body, media_type=ctype)

    async def read_burn(self, request: Request) -> Response:
        """POST /<id>/read[?raw=true]: the reader confirmed; serve the paste once
        and burn it (the only way a paste is burned: never by a GET or HEAD)."""
        paste_id = request.path_params["paste_id"]
        found = await self.pastes.lookup(request, paste_id)
        if isinstance(found, Response):
            return found
        paste, data = found
        raw = raw_asked(request.url.query)
        if not paste.burn:
            return self.present(request, paste_id, paste, data, raw, False)
        return await self.burn(request, paste_id, paste, data, raw=raw)
