"""Deleting a paste with its delete token: the confirmation page, and the
delete itself (``DELETE /<id>`` or ``POST /<id>/delete``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..storage.errors import StoreError
from .cookies import CREATOR_COOKIE, cookie
from .form import FormError, read_upload
from .pastes import Pastes
from .render import Renderer, wants


class DeletePage:
    """``GET /<id>/delete`` asks; ``DELETE /<id>`` and ``POST /<id>/delete`` delete."""

    def __init__(self, pastes: Pastes, pages: Renderer, body_timeout: float) -> None:
        self.pastes = pastes
        self.pages = pages
        self.body_timeout = body_timeout  # for a token posted in a form

    async def delete_confirm(self, request: Request) -> Response:
        """GET /<id>/delete?token=…: a page asking to confirm (a GET never deletes)."""
        paste_id = request.path_params["paste_id"]
        found = await self.pastes.lookup(request, paste_id)
        if isinstance(found, Response):
            return found
        return self.pages.render("delete.html", id=paste_id,
                                 token=request.query_params.get("token", ""))

    async def delete_paste(self, request: Request) -> Response:
        """DELETE /<id> or POST /<id>/delete with the paste's delete token."""
        paste_id = request.path_params["paste_id"]
        found = await self.pastes.lookup(request, paste_id)
        if isinstance(found, Response):
            return found
        paste, _ = found
        token = await self.token_of(request)
        if not token:
            return self.pages.error(request, 403, "a delete token is needed to delete this paste")
        if not paste.token_ok(token):
            return self.pages.error(request, 403, "wrong delete token: the paste is kept")
        try:
            await self.pastes.delete(paste_id, "Delete")
        except StoreError as exc:
            return self.pages.error(request, 503, f"the paste could not be deleted ({exc})")
        kind = wants(request)
        if kind == "json":
            response: Response = JSONResponse({"deleted": paste_id})
        elif kind == "html" or request.method == "POST":
            response = self.pages.render("message.html", heading="Deleted",
                                   message=f"Paste {paste_id} was deleted.")
        else:
            response = PlainTextResponse(f"deleted {paste_id}\n")
        response.delete_cookie(CREATOR_COOKIE, path=f"/{paste_id}")
        return response

    async def token_of(self, request: Request) -> str:
        for header in ("x-delete-token",):
            if request.headers.get(header):
                return request.headers[header]
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if request.query_params.get("token"):
            return request.query_params["token"]
        if request.method == "POST":
            try:
                upload = await read_upload(
                    request.stream(), request.headers.get("content-type", ""),
                    None, 4096, self.body_timeout,
                )
            except (FormError, ClientDisconnect):
                upload = None
            if upload is not None:
                token = upload.fields.get("token")
                if token is None and upload.paste:
                    token = parse_qs(upload.paste.decode("utf-8", "replace")).get("token", [""])[0]
                if token:
                    return token
        return cookie(request.headers, CREATOR_COOKIE) or ""
