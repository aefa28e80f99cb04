"""Static assets: a read-only bundle, compressed once, served with ETags.

Every file under ``pasteur/static`` (plus the generated Pygments stylesheet)
is loaded at start-up and compressed with brotli, zstd and gzip; a request
gets the smallest variant its ``Accept-Encoding`` allows, a strong ETag per
variant, ``Vary: Accept-Encoding``, a 304 for a matching ``If-None-Match``
and a year of caching (URLs carry the content hash: ``/static/x.css?v=…``).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable

import brotli
import zstandard
from pygments.formatters import HtmlFormatter
from starlette.requests import Request
from starlette.responses import Response

from .compress import negotiate
from .render import Renderer

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
COMPRESSIBLE = (".js", ".mjs", ".css", ".json", ".svg", ".txt", ".html", ".map")


@dataclass
class Asset:
    name: str
    content_type: str
    digest: str
    variants: dict[str, bytes] = field(default_factory=dict)  # encoding ("" = identity)

    def etag(self, encoding: str) -> str:
        return f'"{self.digest}{"-" + encoding if encoding else ""}"'


def pygments_css() -> bytes:
    light = HtmlFormatter(style="default").get_style_defs(".highlight")
    dark = HtmlFormatter(style="monokai").get_style_defs(".highlight")
    return (
        f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n".encode()
    )


def _compress(name: str, data: bytes) -> dict[str, bytes]:
    variants = {"": data}
    if not name.endswith(COMPRESSIBLE) or len(data) < 256:
        return variants
    for enc, packed in (
        ("br", brotli.compress(data, quality=11)),
        ("zstd", zstandard.ZstdCompressor(level=19).compress(data)),
        ("gzip", gzip.compress(data, compresslevel=9, mtime=0)),
    ):
        if len(packed) < len(data):
            variants[enc] = packed
    return variants


class Bundle:
    def __init__(self) -> None:
        self.assets: dict[str, Asset] = {}
        root = resources.files("pasteur") / "static"
        self._walk(root, "")
        self.add("pygments.css", pygments_css())

    def _walk(self, node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                self._walk(child, name + "/")
            elif not child.name.startswith(".") and child.name != "README":
                self.add(name, child.read_bytes())

    def add(self, name: str, data: bytes) -> None:
        self.assets[name] = self.page(name, data)

    @staticmethod
    def page(name: str, data: bytes) -> Asset:
        """An asset (compressed variants, digest) for a name and its bytes."""
        ext = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        ctype = TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        digest = hashlib.sha256(data).hexdigest()[:16]
        return Asset(name, ctype, digest, _compress(name, data))

    def url(self, name: str) -> str:
        asset = self.assets.get(name)
        if asset is None:
            raise KeyError(f"no static asset {name!r}")
        return f"/static/{name}?v={asset.digest}"

    def get(self, name: str) -> Asset | None:
        return self.assets.get(name)


def choose_encoding(asset: Asset, accept_encoding: str) -> str:
    if len(asset.variants) == 1:
        return ""
    return negotiate(accept_encoding, asset.variants)


class StaticFiles:
    """``GET /static/<path>``: the bundle's files, in the encoding asked for."""

    def __init__(self, bundle: Bundle, pages: Renderer) -> None:
        self.bundle = bundle
        self.pages = pages

    async def static(self, request: Request) -> Response:
        asset = self.bundle.get(request.path_params["path"])
        if asset is None:
            return self.pages.error(request, 404, "no such file")
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
