"""Server-side rendering of a paste's text (``web/render.py``): highlight.js
classes from Pygments' tokens, no element per line, large pastes in blocks."""

from __future__ import annotations

import html
import re
import sysconfig
from pathlib import Path

import brotli
import httpx

from pasteur.web.render import CHUNK_LINES, HIGHLIGHT_BUDGET, chunked, gutter, highlight

TAG = re.compile(r"<[^>]+>")


def text_of(markup: str) -> str:
    return html.unescape(TAG.sub("", markup))


def python_text(size: int) -> str:
    """About ``size`` bytes of real Python: the standard library's first modules."""
    text = ""
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text += f.read_text("utf-8", "replace")
        if len(text) > size:
            break
    return text[: text.rfind("\n", 0, size) + 1]


def test_highlight_uses_highlight_js_classes_and_nothing_per_line() -> None:
    code = "import os\n\ndef f(x):\n    return len(x)  # <b>\n"
    out = highlight(code, "python")
    assert text_of(out) == code
    assert '<span class="hljs-keyword">def</span>' in out
    assert '<span class="hljs-title function_">f</span>' in out
    assert '<span class="hljs-built_in">len</span>' in out
    assert '<span class="hljs-comment"># &lt;b&gt;</span>' in out
    assert out.count("<span") == 6  # import, def, f, return, len, the comment
    assert highlight(code, "") == html.escape(code, quote=False)


def test_gutter_is_one_text() -> None:
    assert gutter("a\nb\n") == ("1\n2", "gutter")
    assert gutter("a\nb") == ("1\n2", "gutter")
    assert gutter("") == ("", "gutter")


def test_a_large_paste_comes_in_blocks_of_lines() -> None:
    code = python_text(HIGHLIGHT_BUDGET + 10_000)
    lines = code.count("\n")
    out = highlight(code, "python")  # over the budget: not highlighted here
    assert text_of(out) == code
    assert out.count("<span") == out.count('<span class="chunk">') == -(-lines // CHUNK_LINES)
    numbers, cls = gutter(code)
    assert text_of(numbers) == "\n".join(map(str, range(1, lines + 1)))
    assert cls == f"gutter d{len(str(lines))}"
    assert chunked("a\nb") == '<span class="chunk">a\nb</span>'


def elements(page: str) -> int:
    return len(re.findall(r"<[a-z]", page))


def test_page_elements_do_not_grow_with_lines_and_weigh_little(shared_server) -> None:
    with httpx.Client(base_url=shared_server.url, timeout=60) as client:
        def page_of(text: str, lang: str) -> httpx.Response:
            r = client.post("/", files={"paste": (None, text), "hl": (None, lang),
                                        "ln": (None, "true")},
                            headers={"accept": "application/json"})
            assert r.status_code == 201, r.text
            return client.get(f"/{r.json()['code']}", headers={"accept-encoding": "br"})

        small = page_of("x\n" * 10, "").text
        big_text = "x\n" * 40_000  # over the highlight budget
        big = page_of(big_text, "").text
        # 40,000 lines: a block per 200 lines for the text and for the gutter.
        assert elements(big) - elements(small) == 2 * 40_000 // CHUNK_LINES
        # ~900 KB of Python: sent as text (highlighted in the browser, later.js).
        code = python_text(900_000)
        r = page_of(code, "python")
        assert "later.js" in r.text and 'data-lang="python"' in r.text
        blocks = -(-code.count("\n") // CHUNK_LINES)
        assert elements(r.text) == elements(small) + 2 + 2 * blocks  # later.js, the badge
        assert r.headers["content-encoding"] == "br"
        sent, paste = r.num_bytes_downloaded, len(brotli.compress(code.encode(), quality=5))
        assert sent < 2 * paste, (sent, paste)
