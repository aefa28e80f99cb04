"""Media types (``Content-Type``) and ``Accept``, parsed per RFC 9110.

Type, subtype and parameter names are case-insensitive (§8.3.1, §5.6.6);
parameter values are tokens or quoted strings (with ``\\`` escapes, §5.6.4);
whitespace may surround ``;`` and ``=``. ``Multipart/Form-Data; Boundary="a b"``
is ``multipart/form-data`` with the boundary ``a b``. A leaf: it imports
nothing of ours.
"""

from __future__ import annotations

import re

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(
    rf'\s*;\s*(?:({_TOKEN})\s*=\s*(?:({_TOKEN})|"((?:[^"\\]|\\.)*)")\s*)?', re.DOTALL)
_TYPE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def parse(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` in lower case and the parameters (names in lower
    case, the first of a repeated name wins); ("", {}) when it is not a
    media type."""
    m = _TYPE.match(value)
    if m is None:
        return "", {}
    mime = f"{m.group(1)}/{m.group(2)}".lower()
    params: dict[str, str] = {}
    pos = m.end()
    while pos < len(value):
        p = _PARAM.match(value, pos)
        if p is None or p.end() == pos:
            return "", {}
        name = p.group(1)
        if name is not None:
            raw = p.group(2) if p.group(2) is not None else _ESCAPE.sub(r"\1", p.group(3))
            params.setdefault(name.lower(), raw)
        pos = p.end()
    return mime, params


def accepts(accept: str, mime: str) -> bool:
    """Whether an ``Accept`` header names ``mime`` itself (not through
    ``*/*``) with a non-zero weight."""
    mime = mime.lower()
    if mime not in accept.lower():  # the common case, cheaply (a browser's read)
        return False
    for item in accept.split(","):
        kind, params = parse(item)
        if kind != mime:
            continue
        q = params.get("q", "1").strip()
        try:
            return float(q) > 0 if re.fullmatch(r"[01](\.[0-9]{0,3})?", q) else False
        except ValueError:
            return False
    return False
