"""The web application (plain ASGI, Starlette routing)."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from . import languages
from .assets import Bundle, choose_encoding
from .config import Config
from .form import FormError, format_size, read_upload
from .paste import InvalidPaste, Paste
from .render import environment, highlight
from .store import Store, StoreError, valid_id

log = logging.getLogger("pasteur.access")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
TRUE = ("1", "true", "on", "yes")

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class Frontdoor:
    """Outermost middleware: basic auth, security headers, one log line per request.

    The log line holds the method, path, status, size and time: never a body,
    never a query string (a paste's content or key never appears in it).
    """

    def __init__(self, app: ASGIApp, auth: tuple[str, str] | None) -> None:
        self.app = app
        self.auth = None
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.auth = f"Basic {token}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        size = 0

        async def send_wrapper(message: dict) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            if self.auth is not None and not self._authorized(scope):
                await _send_plain(
                    send_wrapper,
                    401,
                    b"authentication required\n",
                    [(b"www-authenticate", b'Basic realm="pasteur", charset="UTF-8"')],
                )
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            client = scope.get("client") or ("-", 0)
            log.info(
                '%s "%s %s" %d %dB %.1fms',
                client[0],
                scope["method"],
                scope["path"],
                status,
                size,
                (time.perf_counter() - start) * 1000,
            )

    def _authorized(self, scope: dict) -> bool:
        if scope["path"] == "/healthz":
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self.auth or b"")
        return False


async def _send_plain(send: Callable, status: int, body: bytes, headers: list) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PageCache:
    """Rendered pages of unencrypted pastes (immutable until deleted)."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.items: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()

    def get(self, key: tuple) -> tuple[bytes, str] | None:
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key: tuple, body: bytes, ctype: str) -> None:
        if len(body) > self.max_bytes // 8:
            return
        old = self.items.pop(key, None)
        if old is not None:
            self.size -= len(old[0])
        self.items[key] = (body, ctype)
        self.size += len(body)
        while self.size > self.max_bytes:
            _, (dropped, _) = self.items.popitem(last=False)
            self.size -= len(dropped)

    def forget(self, paste_id: str) -> None:
        for key in [k for k in self.items if k[0] == paste_id]:
            body, _ = self.items.pop(key)
            self.size -= len(body)


def wants(request: Request) -> str:
    accept = request.headers.get("accept", "")
    if "application/json" in accept:
        return "json"
    if "text/html" in accept:
        return "html"
    return "text"


class Pasteur:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.repo_path, config.length)
        self.bundle = Bundle()
        self.templates = environment(self.bundle.url)
        self.templates.globals.update(title=config.title, subtitle=config.subtitle)
        self.cache = PageCache()
        self.form_page: bytes | None = None

    # -- helpers ------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        if self.config.url:
            return self.config.url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        html = self.templates.get_template(template).render(**context)
        return Response(html, status, media_type="text/html; charset=utf-8")

    def error(self, request: Request, status: int, message: str, close: bool = False) -> Response:
        kind = wants(request)
        if kind == "json":
            response: Response = JSONResponse({"error": message}, status)
        elif kind == "html":
            response = self.render("error.html", status, status=status, message=message)
        else:
            response = PlainTextResponse(message + "\n", status)
        response.headers["cache-control"] = "no-store"
        if close:
            response.headers["connection"] = "close"
        return response

    # -- routes -------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        if self.form_page is None:
            self.form_page = (
                self.templates.get_template("form.html")
                .render(
                    languages=languages.choices(),
                    max_size=self.config.max_size,
                    max_size_text=format_size(self.config.max_size),
                )
                .encode()
            )
        return Response(self.form_page, media_type="text/html; charset=utf-8")

    async def create(self, request: Request) -> Response:
        length_header = request.headers.get("content-length")
        try:
            length = int(length_header) if length_header is not None else None
            upload = await read_upload(
                request.stream(),
                request.headers.get("content-type", ""),
                length,
                self.config.max_size,
            )
        except FormError as exc:
            return self.error(request, exc.status, exc.message, close=exc.status == 413)
        except ValueError:
            return self.error(request, 400, "bad Content-Length")
        fields = upload.fields
        if not request.headers.get("content-type", "").startswith("multipart/"):
            # A raw body (curl --data-binary): options come in the query string.
            fields = {k: v for k, v in request.query_params.items() if k in ("hl", "ln", "raw")}
            upload.fields = fields
        try:
            paste = self._paste_from(upload)
        except FormError as exc:
            return self.error(request, exc.status, exc.message)
        user = fields.get("user", "").strip() or None
        comment = fields.get("comment", "").strip() or None
        try:
            paste_id = await self.store.add(paste.to_json(), user, comment)
        except StoreError as exc:
            return self.error(
                request, 503, f"the paste could not be stored, nothing was saved ({exc})"
            )
        url = f"{self.base_url(request)}/{paste_id}"
        raw = not paste.encrypted and upload.flag("raw")
        kind = wants(request)
        if kind == "json":
            return JSONResponse({"code": paste_id, "url": url}, 201)
        if kind == "html":
            return RedirectResponse(f"/{paste_id}" + ("?raw=true" if raw else ""), 303)
        return PlainTextResponse(url + "\n", 201, headers={"location": url})

    def _paste_from(self, upload: Any) -> Paste:
        if not upload.has_paste:
            raise FormError(400, "the form has no 'paste' field")
        if not upload.paste:
            raise FormError(400, "the paste is empty")
        max_size = self.config.max_size
        if upload.flag("encrypted"):
            if upload.flag("raw"):
                raise FormError(
                    400, "an encrypted paste has no raw view: uncheck 'raw' or 'encrypted'"
                )
            iv = upload.fields.get("iv")
            if not iv:
                raise FormError(
                    400,
                    "encryption was asked for but the paste arrived unencrypted (is JavaScript "
                    "on?); nothing was stored. Uncheck 'encrypted' to paste in clear.",
                )
            try:
                paste = Paste.sealed(upload.paste.decode("ascii"), iv)
            except (UnicodeDecodeError, InvalidPaste) as exc:
                raise FormError(400, f"bad encrypted paste: {exc}") from exc
            if paste.size > max_size + 16:
                raise FormError(413, f"paste too large: the limit is {format_size(max_size)}")
            return paste
        if len(upload.paste) > max_size:
            raise FormError(413, f"paste too large: the limit is {format_size(max_size)}")
        try:
            text = upload.paste.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormError(
                400, f"the paste is not UTF-8 text (bad byte at offset {exc.start})"
            ) from exc
        lang = upload.fields.get("hl", "")
        if not lang and upload.filename:
            lang = languages.guess_from_filename(upload.filename)
        if lang and lang not in languages.NAMES:
            raise FormError(400, f"unknown language {lang!r}")
        return Paste.plain(text, lang, upload.flag("ln"))

    async def show(self, request: Request) -> Response:
        paste_id = request.path_params["paste_id"]
        if not valid_id(paste_id):
            return self.error(request, 404, "no such page")
        data = self.store.get(paste_id)
        if data is None:
            return self.error(request, 404, f"no paste {paste_id}")
        try:
            paste = Paste.from_json(data)
        except (InvalidPaste, KeyError, TypeError) as exc:
            log.error("paste %s is unreadable: %s", paste_id, exc)
            return self.error(request, 500, f"paste {paste_id} is stored in an unknown format")
        query = request.query_params
        raw = query.get("raw", "").lower() in TRUE
        if paste.encrypted:
            if raw or wants(request) == "json":
                return Response(data, media_type="application/json")
            return self.render(
                "encrypted.html", id=paste_id, created=paste.created, ct=paste.ct, iv=paste.iv
            )
        if raw:
            return Response(paste.text, media_type="text/plain; charset=utf-8")
        lang = query.get("hl", paste.lang)
        if lang and lang not in languages.NAMES:
            return self.error(request, 400, f"unknown language {lang!r}")
        ln_param = query.get("ln")
        ln = paste.ln if ln_param is None else ln_param.lower() in TRUE
        key = (paste_id, lang, ln)
        cached = self.cache.get(key)
        if cached is None:
            html = self.templates.get_template("show.html").render(
                id=paste_id,
                created=paste.created,
                lang=lang,
                ln=ln,
                code_html=highlight(paste.text or "", lang, ln),
                raw_url=f"/{paste_id}?raw=true",
            )
            cached = (html.encode(), "text/html; charset=utf-8")
            self.cache.put(key, *cached)
        return Response(cached[0], media_type=cached[1])

    async def static(self, request: Request) -> Response:
        asset = self.bundle.get(request.path_params["path"])
        if asset is None:
            return self.error(request, 404, "no such file")
        encoding = choose_encoding(asset, request.headers.get("accept-encoding", ""))
        etag = asset.etag(encoding)
        headers = {
            "etag": etag,
            "cache-control": "public, max-age=31536000, immutable",
            "vary": "Accept-Encoding",
        }
        if encoding:
            headers["content-encoding"] = encoding
        inm = request.headers.get("if-none-match")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            return Response(status_code=304, headers=headers)
        return Response(asset.variants[encoding], headers=headers, media_type=asset.content_type)

    async def health(self, request: Request) -> Response:
        store = self.store
        body = {
            "status": "ok",
            "head": str(store.head) if store.head else None,
            "commits": store.commits,
        }
        sync = getattr(request.app.state, "sync", None)
        if sync is not None:
            body["sync"] = sync.status()
        return Response(json.dumps(body), media_type="application/json")


def create_app(config: Config, store: Store | None = None) -> ASGIApp:
    pasteur = Pasteur(config, store)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202
        pasteur.store.start()
        try:
            yield
        finally:
            await pasteur.store.stop()

    routes = [
        Route("/", pasteur.index, methods=["GET"]),
        Route("/", pasteur.create, methods=["POST"]),
        Route("/healthz", pasteur.health, methods=["GET"]),
        Route("/static/{path:path}", pasteur.static, methods=["GET"]),
        Route("/{paste_id}", pasteur.show, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.pasteur = pasteur

    async def not_found(request: Request, exc: Exception) -> Response:
        return pasteur.error(request, 404, "no such page")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return pasteur.error(request, 405, f"method {request.method} not allowed here")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)
    front = Frontdoor(app, config.auth)
    front.pasteur = pasteur  # type: ignore[attr-defined]
    return front
