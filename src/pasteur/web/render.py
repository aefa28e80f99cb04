"""Server-side rendering: Pygments highlighting, the Jinja2 templates, and the
form of an answer (JSON, HTML or plain text, as the client's Accept asks)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import pygments
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygments.formatters import HtmlFormatter
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .. import languages, mediatype

_FORMATTER = HtmlFormatter(nowrap=True)


def highlight(text: str, lang: str, ln: bool) -> Markup:
    """Highlighted HTML of a paste, one self-contained line per source line.

    Pygments closes every span at the end of a line, so the output splits on
    newlines; line numbers are spans the stylesheet makes unselectable.
    """
    lexer = languages.lexer(lang) if lang else None
    html = pygments.highlight(text, lexer, _FORMATTER) if lexer else escape(text, quote=False)
    lines = html.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if ln:
        body = "".join(
            f'<span class="line"><span class="ln">{n}</span>{line}\n</span>'
            for n, line in enumerate(lines, 1)
        )
    else:
        body = "".join(f'<span class="line">{line}\n</span>' for line in lines)
    return Markup(body)


def environment(static_url: Callable[[str], str]) -> Environment:  # an asset's name -> url
    env = Environment(
        loader=PackageLoader("pasteur", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    env.globals["language_labels"] = dict(languages.choices())  # "cpp" -> "C++"
    return env


def wants(request: Request) -> str:
    """The form of answer a request asks for: "json", "html" or "text"."""
    accept = request.headers.get("accept", "")
    if mediatype.accepts(accept, "application/json"):
        return "json"
    if mediatype.accepts(accept, "text/html"):
        return "html"
    return "text"


class Renderer:
    """Pages from the templates, and the error answer every handler gives."""

    def __init__(self, templates: Environment) -> None:
        self.templates = templates

    def render(self, template: str, status: int = 200, /, **context: Any) -> Response:
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
