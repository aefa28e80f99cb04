"""Languages offered for highlighting.

The browser highlights encrypted pastes with highlight.js and the server
highlights unencrypted ones with Pygments; a language is offered when both
know it. Values are highlight.js names.
"""

from __future__ import annotations

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


# The original OCaml Pasteur's 85 ``hl`` values (UPSTREAM.md §4, in its form's
# order), each mapped to the closest language here ("": shown as plain text,
# when nothing here is close). Old links keep them: ``resolve`` reads both.
ORIGINAL_HL: dict[str, str] = {
    "bash": "bash", "armasm": "", "ebnf": "", "wasm": "", "vhdl": "", "diff": "diff",
    "swift": "swift", "lua": "lua", "xml": "xml", "twig": "xml", "ceylon": "java",
    "scilab": "", "prolog": "", "mathematica": "", "ruby": "ruby", "yaml": "yaml",
    "awk": "bash", "go": "go", "python": "python", "elm": "haskell",
    "coffeescript": "javascript", "smalltalk": "", "haskell": "haskell",
    "markdown": "markdown", "sml": "ocaml", "cmake": "makefile", "json": "json",
    "scheme": "", "rust": "rust", "sql": "sql", "x86asm": "", "bnf": "",
    "javascript": "javascript", "node-repl": "javascript", "objectivec": "c",
    "fsharp": "ocaml", "haxe": "javascript", "css": "css", "scala": "scala", "cpp": "cpp",
    "ada": "", "plaintext": "", "r": "r", "dns": "", "nim": "python", "kotlin": "kotlin",
    "delphi": "", "vim": "", "java": "java", "ini": "ini", "ocaml": "ocaml", "dart": "java",
    "verilog": "", "crystal": "ruby", "haml": "xml", "php": "php", "coq": "ocaml",
    "python-repl": "python", "dockerfile": "dockerfile", "reasonml": "ocaml", "scss": "scss",
    "c": "c", "powershell": "powershell", "shell": "shell", "q": "", "graphql": "",
    "fortran": "", "makefile": "makefile", "vbnet": "", "typescript": "typescript",
    "lisp": "", "perl": "perl", "d": "cpp", "php-template": "php", "julia": "python",
    "latex": "", "less": "css", "llvm": "", "julia-repl": "python", "erlang": "",
    "http": "", "nix": "", "erlang-repl": "", "csharp": "csharp", "basic": "",
}
# The original's form sent this for "No highlighting".
ORIGINAL_NONE = "__no_highlighting__"


def resolve(hl: str | None) -> str | None:
    """The language named by a link's ``hl``: a name here, or the closest to
    one of the original Pasteur's ("" for none); None when ``hl`` is unknown
    (a link's unknown ``hl`` is ignored, as the original ignored it)."""
    if hl is None:
        return None
    if hl in NAMES or hl == "":
        return hl
    if hl == ORIGINAL_NONE:
        return ""
    return ORIGINAL_HL.get(hl)
