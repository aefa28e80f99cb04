"""A request's cookie, found in time linear in its Cookie header whatever it holds.

Starlette's `Request.cookies` unquotes every value with the standard library's
`http.cookies._unquote`, quadratic in backslashes before Python 3.11.10 and 3.12.6
(CVE-2024-7592): measured on 3.11.7, backslashes in quotes cost 0.21 s of CPU in a
Cookie of 8 KiB (the longest header line limits.py lets through), 3.3 s in 32 KiB.
Pasteur reads one cookie, the creator's token; this finds it by name and unquotes
that value alone, in one pass (0.1 ms for the same 8 KiB).
This module imports nothing of ours.
"""

from __future__ import annotations

import re
from typing import Protocol

# The creator's delete token, kept by the browser that made a paste and scoped
# to the paste's path: its page then offers "delete", and a burn paste is not
# burned by it.
CREATOR_COOKIE = "pasteur_creator"
# Set with it, for a few minutes: the creator's first view of the paste shows
# its link and delete link once (show.py), and expires it.
FRESH_COOKIE = "pasteur_new"
FRESH_SECONDS = 600

_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))", re.DOTALL)


class Headers(Protocol):
    def getlist(self, key: str) -> list[str]: ...


def cookie(headers: Headers, name: str) -> str | None:
    """The value of cookie `name`, or None; as Starlette, the last one wins (each
    Cookie field is read: HTTP/2 may split the cookies into several)."""
    found = None
    for field in headers.getlist("cookie"):
        for item in field.split(";"):
            key, sep, value = item.partition("=")
            if sep and key.strip() == name:
                found = value.strip()
    return None if found is None else unquote(found)


def unquote(value: str) -> str:
    """A cookie value without its double quotes and backslash escapes, as
    `http.cookies` reads it (octal escapes included), in one pass."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    return _ESCAPE.sub(_unescape, value[1:-1])


def _unescape(match: re.Match[str]) -> str:
    octal, char = match.groups()
    return chr(int(octal, 8)) if octal else char
