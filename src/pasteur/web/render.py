"""Server-side rendering: Pygments highlighting and the Jinja2 templates."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

import pygments
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygments.formatters import HtmlFormatter

from .. import languages

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
    return env
