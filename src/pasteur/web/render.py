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


def highlight(text: str, lang: str) -> Markup:
    """Highlighted HTML of a paste: escaped text and one ``hljs-…`` span per
    coloured token (adjacent tokens of a scope merged), nothing per line.

    Measured on a 1 MiB Python file: 118,000 elements where Pygments'
    HtmlFormatter (a span per token, whitespace included, then two per line
    for the line numbers) made 370,000.
    """
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


def _span(cls: str | None, run: str) -> str:
    if not run:
        return ""
    if cls is None:
        return escape(run, quote=False)
    names = " ".join(f"hljs-{c}" if i == 0 else c for i, c in enumerate(cls.split()))
    return f'<span class="{names}">{escape(run, quote=False)}</span>'


def gutter(text: str) -> str:
    """Line numbers for a paste, as one text: "1\n2\n…" (a final newline ends
    the last line rather than starting one)."""
    n = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    return "\n".join(map(str, range(1, n + 1)))


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
