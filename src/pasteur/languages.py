"""Languages offered for highlighting.

The browser highlights encrypted pastes with highlight.js and the server
highlights unencrypted ones with Pygments; a language is offered when both
know it. Values are highlight.js names.
"""

from __future__ import annotations

import re
from functools import cache

from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name

from .filenames import lexer_class_for_filename

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
    found = lexer_class_for_filename(filename)  # remembered: see filenames.py
    if found is None:
        return ""
    for alias in found.aliases:
        if alias in _FROM_PYGMENTS:
            return _FROM_PYGMENTS[alias]
    return ""


# Languages a link may name that the form does not offer: the original OCaml
# Pasteur's ``hl`` values that no offered language covers (its values are
# highlight.js names). The server highlights them with Pygments; the browser
# (an encrypted paste of the original) with highlight.js when its grammar is
# vendored, else as plain text. (highlight.js name, label, Pygments alias)
LINK_ONLY: tuple[tuple[str, str, str], ...] = (
    ("ebnf", "EBNF", "ebnf"), ("wasm", "WebAssembly", "wast"), ("vhdl", "VHDL", "vhdl"),
    ("twig", "Twig", "twig"), ("ceylon", "Ceylon", "ceylon"), ("scilab", "Scilab", "scilab"),
    ("prolog", "Prolog", "prolog"), ("mathematica", "Mathematica", "mathematica"),
    ("awk", "Awk", "awk"), ("elm", "Elm", "elm"), ("coffeescript", "CoffeeScript", "coffeescript"),
    ("smalltalk", "Smalltalk", "smalltalk"), ("sml", "Standard ML", "sml"),
    ("cmake", "CMake", "cmake"), ("scheme", "Scheme", "scheme"),
    ("x86asm", "x86 assembly", "nasm"), ("bnf", "BNF", "bnf"),
    ("node-repl", "Node.js REPL", "nodejsrepl"), ("objectivec", "Objective-C", "objective-c"),
    ("fsharp", "F#", "fsharp"), ("haxe", "Haxe", "haxe"), ("ada", "Ada", "ada"),
    ("dns", "DNS zone", "zone"), ("nim", "Nim", "nim"), ("delphi", "Delphi", "delphi"),
    ("vim", "Vim script", "vim"), ("dart", "Dart", "dart"), ("verilog", "Verilog", "verilog"),
    ("crystal", "Crystal", "crystal"), ("haml", "Haml", "haml"), ("coq", "Coq", "coq"),
    ("python-repl", "Python REPL", "pycon"), ("reasonml", "ReasonML", "reasonml"),
    ("q", "Q", "q"), ("graphql", "GraphQL", "graphql"), ("fortran", "Fortran", "fortran"),
    ("vbnet", "VB.NET", "vbnet"), ("lisp", "Lisp", "common-lisp"), ("d", "D", "d"),
    ("php-template", "PHP template", "html+php"), ("julia", "Julia", "julia"),
    ("latex", "LaTeX", "latex"), ("less", "Less", "less"), ("llvm", "LLVM IR", "llvm"),
    ("julia-repl", "Julia REPL", "jlcon"), ("erlang", "Erlang", "erlang"),
    ("http", "HTTP", "http"), ("nix", "Nix", "nix"), ("erlang-repl", "Erlang REPL", "erl"),
    ("basic", "BASIC", "qbasic"),
)
LINK_NAMES = frozenset(name for name, _, _ in LINK_ONLY)
_PYGMENTS.update((name, alias) for name, _, alias in LINK_ONLY)

# The original's 85 ``hl`` values (UPSTREAM.md §4, in its form's order), each
# mapped to the closest language here: itself (offered, or link-only), or ""
# (plain text) for ``plaintext`` and ``armasm`` (no ARM assembly lexer).
_ORIGINAL_ORDER = (
    "bash", "armasm", "ebnf", "wasm", "vhdl", "diff", "swift", "lua", "xml", "twig", "ceylon",
    "scilab", "prolog", "mathematica", "ruby", "yaml", "awk", "go", "python", "elm",
    "coffeescript", "smalltalk", "haskell", "markdown", "sml", "cmake", "json", "scheme", "rust",
    "sql", "x86asm", "bnf", "javascript", "node-repl", "objectivec", "fsharp", "haxe", "css",
    "scala", "cpp", "ada", "plaintext", "r", "dns", "nim", "kotlin", "delphi", "vim", "java",
    "ini", "ocaml", "dart", "verilog", "crystal", "haml", "php", "coq", "python-repl",
    "dockerfile", "reasonml", "scss", "c", "powershell", "shell", "q", "graphql", "fortran",
    "makefile", "vbnet", "typescript", "lisp", "perl", "d", "php-template", "julia", "latex",
    "less", "llvm", "julia-repl", "erlang", "http", "nix", "erlang-repl", "csharp", "basic",
)
ORIGINAL_HL: dict[str, str] = {
    hl: hl if hl in NAMES or hl in LINK_NAMES else "" for hl in _ORIGINAL_ORDER
}
# The original's form sent this for "No highlighting".
ORIGINAL_NONE = "__no_highlighting__"


def resolve(hl: str | None) -> str | None:
    """The language named by a link's ``hl``: a name here, or the closest to
    one of the original Pasteur's ("" for none); None when ``hl`` is unknown
    (a link's unknown ``hl`` is ignored, as the original ignored it)."""
    if hl is None:
        return None
    if hl in NAMES or hl in LINK_NAMES or hl == "":
        return hl
    if hl == ORIGINAL_NONE:
        return ""
    return ORIGINAL_HL.get(hl)
