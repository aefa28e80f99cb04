"""Creating a paste: the form, and ``POST /`` (a form, or a raw body with
its options in the query string)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from .. import languages, record
from ..config import Config, parse_duration
from ..paste import new_token
from ..storage.errors import StoreBusy, StoreError
from ..storage.layout import TMP_BLOB_PREFIX
from ..storage.loose import LooseBlob
from ..storage.store import Store
from . import original
from .assets import Asset, Bundle, choose_encoding
from .caches import BaseUrls, RateLimiter
from .cookies import CREATOR_COOKIE, FRESH_COOKIE, FRESH_SECONDS
from .form import FormError, format_size, read_upload
from .render import Renderer, wants
from .uploads import finish_document, paste_of, with_options


class CreatePage:
    """``GET /`` (the form) and ``POST /`` (a new paste)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        pages: Renderer,
        base_urls: BaseUrls,
        watch: Callable[[str, str], None],
    ) -> None:
        self.config = config
        self.store = store
        self.pages = pages
        self.base_urls = base_urls
        # A paste with an expiry is handed to the sweeper when it is created.
        self.watch = watch
        self.limiter = RateLimiter(*config.rate_limit) if config.rate_limit else None
        self.spool_dir = config.paths.tmp  # large uploads and documents
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for left in self.spool_dir.glob(f"{TMP_BLOB_PREFIX}*"):  # by a crash (the data is locked)
            left.unlink(missing_ok=True)
        self.form_page: Asset | None = None

    async def index(self, request: Request) -> Response:
        """The form: rendered and compressed once (it only depends on the flags)."""
        if self.form_page is None:
            html = self.pages.templates.get_template("form.html").render(
                expiries=self.config.expiry_choices(),
                default_expiry=self._default_expiry_choice(),
                languages=languages.choices(),
                max_size=self.config.max_size,
                max_size_text=format_size(self.config.max_size),
            )
            self.form_page = Bundle.page("form.html", html.encode())
        page = self.form_page
        encoding = choose_encoding(page, request.headers.get("accept-encoding", ""))
        headers = {"vary": "Accept-Encoding", "cache-control": "no-cache",
                   "etag": page.etag(encoding)}
        if encoding:
            headers["content-encoding"] = encoding
        return Response(page.variants[encoding], headers=headers, media_type=page.content_type)

    def _default_expiry_choice(self) -> str:
        default = self.config.default_expiry
        for value, _ in self.config.expiry_choices():
            if parse_duration(value) == default:
                return value
        return ""

    async def create(self, request: Request) -> Response:
        if original.from_original_page(request.headers):
            # The original Pasteur's page, still open in a browser (original.py).
            response = await self._create(request, legacy=True)
            if response.status_code >= 400:
                response.status_code = original.status_for(response.status_code)
            return response
        return await self._create(request, legacy=False)

    async def _create(self, request: Request, legacy: bool) -> Response:
        if self.limiter is not None:
            wait = self.limiter.take(request.client.host if request.client else "-")
            if wait > 0:
                response = self.pages.error(
                    request, 429, f"too many pastes from your address: retry in {wait:.0f} s"
                )
                response.headers["retry-after"] = str(max(1, round(wait)))
                return response
        length_header = request.headers.get("content-length")
        try:
            length = int(length_header) if length_header is not None else None
            upload = await read_upload(
                request.stream(),
                request.headers.get("content-type", ""),
                length,
                self.config.max_size,
                self.config.body_timeout,
                self.spool_dir,
            )
        except FormError as exc:
            return self.pages.error(request, exc.status, exc.message,
                                    close=exc.status in (408, 413))
        except ClientDisconnect:
            return self.pages.error(request, 400,
                                    "the client went away before the end of the upload")
        except ValueError:
            return self.pages.error(request, 400, "bad Content-Length")
        if not upload.multipart:
            # A raw body (curl --data-binary): options come in the query string.
            upload.fields = {k: v for k, v in request.query_params.items()
                             if k in ("hl", "ln", "raw")}
        encrypted_there, answer_hl = False, None
        if legacy:
            upload.fields, answer_hl, encrypted_there = original.translated(upload.fields)
        token, token_hash = new_token()
        document: bytes | LooseBlob = b""
        try:
            config = self.config
            rec = record.checked(upload.fields, config.default_expiry, config.max_expiry)
            if encrypted_there:
                paste, big = original.sealed(upload, config.max_size), False
            else:
                paste, big = paste_of(upload, rec, config.max_size)
            paste = with_options(paste, rec, token_hash)
            if big:
                document = await asyncio.to_thread(finish_document, paste, upload)
            else:
                document = paste.to_json()
            paste_id = await self.store.add(document, rec.user, rec.comment)
        except record.RecordError as exc:
            return self.pages.error(request, 400, f"{exc}; nothing was stored")
        except FormError as exc:
            return self.pages.error(request, exc.status, exc.message)
        except StoreError as exc:
            response = self.pages.error(
                request, 503, f"the paste could not be stored, nothing was saved ({exc})"
            )
            if isinstance(exc, StoreBusy):
                response.headers["retry-after"] = str(exc.retry_after)
            return response
        finally:
            upload.close()
            if isinstance(document, LooseBlob):  # moved into Git unless it failed
                document.discard()
        if paste.expires:
            self.watch(paste_id, paste.expires)
        base = self.base_urls.of(request)
        url = f"{base}/{paste_id}"
        raw = not paste.encrypted and rec.raw and not paste.burn
        kind = wants(request)
        delete_url = f"{url}/delete?token={token}"
        # The creator's browser keeps the token in a cookie scoped to the paste:
        # its page then offers "delete", and a burn paste is not burned by it.
        # (Written here: the token is base64url, nothing to quote; Starlette's
        # set_cookie, through http.cookies, cost ~5% of a create.)
        cookie = (f"{CREATOR_COOKIE}={token}; HttpOnly; Max-Age={rec.expiry or 365 * 86400}; "
                  f"Path=/{paste_id}; SameSite=strict")
        # And, for the first view only: "show the link and the delete link".
        fresh = (f"{FRESH_COOKIE}=1; HttpOnly; Max-Age={FRESH_SECONDS}; Path=/{paste_id}; "
                 "SameSite=strict")
        if base.startswith("https:"):
            cookie += "; Secure"
            fresh += "; Secure"
        headers = {"x-delete-token": token, "x-delete-url": delete_url, "set-cookie": cookie}
        if legacy:
            return original.answer(paste_id, rec.ln, rec.raw, answer_hl, headers)
        if kind == "json":
            body = {"code": paste_id, "url": url, "delete_url": delete_url,
                    "delete_token": token, "expires": paste.expires, "burn": paste.burn}
            response = JSONResponse(body, 201, headers=headers)
        elif kind == "html":
            response = RedirectResponse(f"/{paste_id}" + ("?raw=true" if raw else ""), 303,
                                        headers=headers)
        else:
            headers["location"] = url
            return PlainTextResponse(url + "\n", 201, headers=headers)
        response.headers.append("set-cookie", fresh)  # a browser's: the form's
        return response
