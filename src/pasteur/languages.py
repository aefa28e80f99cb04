"""Languages offered for highlighting.

The browser highlights encrypted pastes with highlight.js and the server
highlights unencrypted ones with Pygments; a language is offered when both
know it. Values are highlight.js names.
"""

from __future__ import annotations

import re
from functools import cache

from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.util import ClassNotFound

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


# Where Pygments' first file name pattern is not the usual extension.
_EXTENSIONS = {"r": "r", "nginx": "conf"}


@cache
def extension(name: str) -> str:
    """A downloaded paste's file extension ("py" for python; "txt" if none fits)."""
    if name in _EXTENSIONS:
        return _EXTENSIONS[name]
    found = lexer(name) if name else None
    for pattern in found.filenames if found is not None else ():
        m = re.fullmatch(r"\*\.([A-Za-z0-9]+)", pattern)
        if m:
            return m.group(1)
    return "txt"


def extensions() -> dict[str, str]:
    """``extension`` of every language, for the page that names encrypted downloads."""
    return {name: extension(name) for name in sorted(NAMES)}


def guess_from_filename(filename: str) -> str:
    """The language name for an uploaded file's name, or "" if none fits."""
    try:
        found = get_lexer_for_filename(filename)
    except ClassNotFound:
        return ""
    for alias in found.aliases:
        if alias in _FROM_PYGMENTS:
            return _FROM_PYGMENTS[alias]
    return ""
