"""cookies.py: the creator's cookie found as Starlette finds it, in one pass."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from pasteur.web.cookies import cookie, unquote

CASES = [
    "pasteur_creator=tok-EN_123",
    "a=1; pasteur_creator=tok; b=2",
    "pasteur_creator=first; pasteur_creator=last",
    ' pasteur_creator = "quoted \\"value\\" \\101\\\\" ;x=y',
    "noequals; pasteur_creator=v=with=equals",
    "pasteur_creatorx=no; xpasteur_creator=no",
    'junk="' + "\\" * 1000 + '"; pasteur_creator=tok',
    "",
]


@pytest.mark.parametrize("header", CASES)
def test_the_same_value_as_starlette(header: str) -> None:
    expected = cookie_parser(header).get("pasteur_creator")
    assert cookie(Headers({"cookie": header}), "pasteur_creator") == expected


def test_every_cookie_field_is_read() -> None:
    """HTTP/2 may split the cookies into several fields (RFC 9113 8.2.3)."""
    headers = Headers(raw=[(b"cookie", b"a=1"), (b"cookie", b"pasteur_creator=tok")])
    assert cookie(headers, "pasteur_creator") == "tok"
    assert cookie(Headers(), "pasteur_creator") is None


def test_unquote() -> None:
    assert unquote('"\\012\\"\\\\"') == '\n"\\'
    assert unquote('"') == '"' and unquote("plain") == "plain"
