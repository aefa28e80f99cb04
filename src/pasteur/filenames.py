"""Pygments' lexer for a file's name (``find_lexer_class_for_filename``),
remembered: an upload sent as a file part (``curl -F paste=@notes.txt``) is
highlighted by its name's language.

Pygments tries its ~930 filename patterns and asks every installed package
for plugin lexers (``importlib.metadata``) on each call: measured 0.3-10 ms
of CPU per create sent as a file part, more than the rest of the create
(issue 17). Most patterns are ``*.<ext>`` (no other ``*``): for a name that
matches none of the others, the answer depends only on what follows the
name's first dot, and is remembered by that; the 80 other patterns
(``Makefile``, ``.bashrc``, ``CMakeLists.txt`` ...) are matched first, and a
name one of them matches is remembered by the whole name. Both tables are
bounded, emptied when full (the names are the clients'). A call now costs
2-3 us.
"""

from __future__ import annotations

import fnmatch
import os
import re
from functools import cache

from pygments.lexer import Lexer
from pygments.lexers import find_lexer_class_for_filename, get_all_lexers

KEPT = 1024  # names or suffixes remembered, in each table
BY_SUFFIX: dict[str, type[Lexer] | None] = {}
BY_NAME: dict[str, type[Lexer] | None] = {}


def lexer_class_for_filename(filename: str) -> type[Lexer] | None:
    """Pygments' lexer class for a file's name (its directories ignored, as
    Pygments does), None if none matches."""
    name = os.path.basename(filename)
    if special_names().match(name) is None:
        dot = name.find(".")
        if dot < 0:
            return None  # no *.<ext> pattern can match, nor any other
        key, table = name[dot:], BY_SUFFIX
    else:
        key, table = name, BY_NAME
    if key in table:
        return table[key]
    found = find_lexer_class_for_filename(name)
    if len(table) >= KEPT:
        table.clear()
    table[key] = found
    return found


@cache
def special_names() -> re.Pattern[str]:
    """Pygments' filename patterns, plugins' included, other than ``*.<ext>``
    (ext without ``*``), as one regular expression (matched as Pygments
    matches them: ``fnmatch.translate``, case-sensitive)."""
    patterns = [p for _, _, names, _ in get_all_lexers(plugins=True) for p in names]
    special = [p for p in patterns if not (p.startswith("*.") and "*" not in p[2:])]
    return re.compile("|".join(fnmatch.translate(p) for p in special) or "(?!)")
