"""Languages offered for highlighting.

The browser highlights encrypted pastes with highlight.js and the server
highlights unencrypted ones with Pygments; a language is offered when both
know it. Values are highlight.js names.
"""

from __future__ import annotations

import fnmatch
import os
import re
from functools import cache

from pygments.lexer import Lexer
from pygments.lexers import find_lexer_class_for_filename, get_all_lexers, get_lexer_by_name

# (highlight.js name, label, Pygments alias)
LANGUAGES: tuple[tuple[str, str, str], ...] = (
    ("bash", "Bash", "bash"),
    ("c", "C", "c"),
    ("cpp", "C++", "cpp"),
    ("csharp", "C#", "csharp"),
    ("css", "CSS", "css"),
    ("diff", "Diff", "diff"),
    ("dockerfile", "Dockerfile", "docker"),
    ("go", "Go", "go"),
    ("haskell", "Haskell", "haskell"),
    ("ini", "INI / TOML", "ini"),
    ("java", "Java", "java"),
    ("javascript", "JavaScript", "javascript"),
    ("json", "JSON", "json"),
    ("kotlin", "Kotlin", "kotlin"),
    ("lua", "Lua", "lua"),
    ("makefile", "Makefile", "make"),
    ("markdown", "Markdown", "markdown"),
    ("nginx", "Nginx", "nginx"),
    ("ocaml", "OCaml", "ocaml"),
    ("perl", "Perl", "perl"),
    ("php", "PHP", "php"),
    ("powershell", "PowerShell", "powershell"),
    ("python", "Python", "python"),
    ("r", "R", "r"),
    ("ruby", "Ruby", "ruby"),
    ("rust", "Rust", "rust"),
    ("scala", "Scala", "scala"),
    ("scss", "SCSS", "scss"),
    ("shell", "Shell session", "console"),
    ("sql", "SQL", "sql"),
    ("swift", "Swift", "swift"),
    ("typescript", "TypeScript", "typescript"),
    ("xml", "HTML / XML", "html"),
    ("yaml", "YAML", "yaml"),
)

NAMES = frozenset(name for name, _, _ in LANGUAGES)
_PYGMENTS = {name: alias for name, _, alias in LANGUAGES}
_FROM_PYGMENTS = {alias: name for name, _, alias in LANGUAGES}


def choices() -> list[tuple[str, str]]:
    return [("", "No highlighting")] + [(name, label) for name, label, _ in LANGUAGES]


@cache
def lexer(name: str) -> Lexer | None:
    alias = _PYGMENTS.get(name)
    if alias is None:
        return None
    return get_lexer_by_name(alias, stripnl=False, ensurenl=False)


def guess_from_filename(filename: str) -> str:
    """The language name for an uploaded file's name, or "" if none fits:
    Pygments' answer (``find_lexer_class_for_filename``), remembered.

    Pygments tries its ~930 filename patterns and asks every installed
    package for plugin lexers on each call (measured: 0.3-10 ms of CPU per
    upload sent as a file part). Most patterns are ``*.<ext>``: for a name
    that matches none of the others, the answer depends only on what follows
    its first dot, so it is remembered by that; the few other names
    (``Makefile``, ``.bashrc``, ``CMakeLists.txt`` ...) by the name. Both
    tables are bounded (emptied when full: the names are the clients')."""
    name = os.path.basename(filename)
    if _special_names().match(name) is None:
        dot = name.find(".")
        if dot < 0:
            return ""  # no *.<ext> pattern can match, nor any other
        key, table = name[dot:], GUESSED_BY_SUFFIX
    else:
        key, table = name, GUESSED_BY_NAME
    found = table.get(key)
    if found is None:
        found = _guess(name)
        if len(table) >= GUESSES_KEPT:
            table.clear()
        table[key] = found
    return found


GUESSES_KEPT = 1024  # names or suffixes remembered, in each table
GUESSED_BY_SUFFIX: dict[str, str] = {}
GUESSED_BY_NAME: dict[str, str] = {}


@cache
def _special_names() -> re.Pattern[str]:
    """Pygments' filename patterns that are not ``*.<ext>`` (ext without
    ``*``), plugins' included, as one regular expression (as Pygments
    matches them: ``fnmatch.translate``, case-sensitive)."""
    patterns = [p for _, _, names, _ in get_all_lexers(plugins=True) for p in names]
    special = [p for p in patterns if not (p.startswith("*.") and "*" not in p[2:])]
    return re.compile("|".join(fnmatch.translate(p) for p in special) or "(?!)")


def _guess(name: str) -> str:
    found = find_lexer_class_for_filename(name)
    for alias in found.aliases if found is not None else ():
        if alias in _FROM_PYGMENTS:
            return _FROM_PYGMENTS[alias]
    return ""
