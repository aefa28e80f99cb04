"""Server-side rendering: Pygments highlighting, the Jinja2 templates, and the
form of an answer (JSON, HTML or plain text, as the client's Accept asks)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygments.token import Token, _TokenType
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .. import languages, mediatype

# Pygments token types as highlight.js scopes: both highlighters emit the same
# classes, and one palette (static/theme.css) colours plain and encrypted
# pastes alike. A type takes the scope of its nearest listed ancestor; a type
# with none (text, punctuation, plain names and operators) gets no element.
SCOPES: dict[_TokenType, str] = {
    Token.Keyword: "keyword",
    Token.Keyword.Constant: "literal",
    Token.Keyword.Type: "type",
    Token.Operator.Word: "keyword",
    Token.Name.Builtin: "built_in",
    Token.Name.Builtin.Pseudo: "variable language_",
    Token.Name.Function: "title function_",
    Token.Name.Class: "title class_",
    Token.Name.Exception: "title class_",
    Token.Name.Decorator: "meta",
    Token.Name.Tag: "name",
    Token.Name.Attribute: "attr",
    Token.Name.Property: "property",
    Token.Name.Variable: "variable",
    Token.Name.Constant: "variable constant_",
    Token.Name.Label: "symbol",
    Token.Name.Entity: "symbol",
    Token.Literal.String: "string",
    Token.Literal.String.Escape: "char escape_",
    Token.Literal.String.Regex: "regexp",
    Token.Literal.String.Symbol: "symbol",
    Token.Literal.String.Interpol: "subst",
    Token.Literal.Number: "number",
    Token.Comment: "comment",
    Token.Comment.Preproc: "meta",
    Token.Comment.PreprocFile: "string",
    Token.Generic.Deleted: "deletion",
    Token.Generic.Inserted: "addition",
    Token.Generic.Heading: "section",
    Token.Generic.Subheading: "section",
    Token.Generic.Emph: "emphasis",
    Token.Generic.Strong: "strong",
    Token.Generic.Prompt: "meta",
}
_SCOPE_OF: dict[_TokenType, str | None] = {}


def scope(ttype: _TokenType) -> str | None:
    """The highlight.js scope of a Pygments token type, or None (plain)."""
    found = _SCOPE_OF.get(ttype, "")
    if found == "":
        t: _TokenType | None = ttype
        while t is not None and t not in SCOPES:
            t = t.parent
        found = _SCOPE_OF[ttype] = SCOPES[t] if t is not None else None
    return found


# Above this many characters the server does not highlight: Pygments takes
# about 6 s per MiB of Python (measured: 1 MiB of the standard library, 6.3 s
# on this machine, blocking), so a large paste is sent as plain text, on
# screen at once, and static/later.js colours it in the browser afterwards.
HIGHLIGHT_BUDGET = 64 * 1024


def highlight(text: str, lang: str) -> Markup:
    """Highlighted HTML of a paste: escaped text and one ``hljs-…`` span per
    coloured token (adjacent tokens of a scope merged), nothing per line.

    Measured on 1 MiB of Python (29,770 lines): 37,000 elements, where
    Pygments' HtmlFormatter (a span per token, whitespace included) and a
    line and a number span per line made 180,000.
    """
    if len(text) > HIGHLIGHT_BUDGET:
        return chunked(escape(text, quote=False))
    lexer = languages.lexer(lang) if lang else None
    if lexer is None:
        return Markup(escape(text, quote=False))
    out: list[str] = []
    pending, run = None, ""
    for ttype, value in lexer.get_tokens(text):
        cls = scope(ttype)
        if cls != pending:
            out.append(_span(pending, run))
            pending, run = cls, value
        else:
            run += value
    out.append(_span(pending, run))
    return Markup("".join(out))


# Lines in a block of a large paste's text (static/style.css gives a block
# its height when off screen: keep CHUNK_LINES there the same).
CHUNK_LINES = 200


def chunked(html: str) -> Markup:
    """Escaped text in blocks of CHUNK_LINES lines, which the browser lays out
    only when they come near the screen (``content-visibility: auto``)."""
    lines = html.split("\n")
    last = lines.pop()  # "" when the text ends with a newline
    ended = [line + "\n" for line in lines] + ([last] if last else [])
    blocks = ("".join(ended[i:i + CHUNK_LINES]) for i in range(0, len(ended), CHUNK_LINES))
    return Markup("".join(f'<span class="chunk">{b}</span>' for b in blocks))


def _span(cls: str | None, run: str) -> str:
    if not run:
        return ""
    if cls is None:
        return escape(run, quote=False)
    names = " ".join(f"hljs-{c}" if i == 0 else c for i, c in enumerate(cls.split()))
    return f'<span class="{names}">{escape(run, quote=False)}</span>'


def gutter(text: str) -> tuple[Markup, str]:
    """Line numbers for a paste and the gutter's class: "1\\n2\\n…", one text
    node (a final newline ends the last line rather than starting one); for
    a large paste in blocks like its text, the class giving the width of its
    widest number, which the blocks off screen do not show."""
    n = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    numbers = "\n".join(map(str, range(1, n + 1)))
    if len(text) > HIGHLIGHT_BUDGET:
        return chunked(numbers), f"gutter d{len(str(n))}"
    return Markup(numbers), "gutter"


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
