"""languages.guess_from_filename remembers Pygments' answers by suffix or by
name: every answer must still be Pygments' own, whatever came before."""

from __future__ import annotations

from pygments.lexers import find_lexer_class_for_filename

from pasteur import languages

# Pairs that share a suffix but not an answer (a special name first, then a
# plain one), names Pygments matches whole, dotfiles, no extension, paths.
NAMES = [
    "Makefile.am", "notes.am", "CMakeLists.txt", "notes.txt", "todo.txt", "Dockerfile",
    "x.Dockerfile", "main.py", "other.py", "dir/sub/main.py", "a.b.py", ".bashrc",
    "setup.bashrc", "bash_profile", "x.bash", "Rakefile", "r.rb", "Gemfile", "GNUmakefile",
    "rules.mk", "nginx.conf", "site.conf", "x.d.ts", "y.ts", "f", "README", "x.unknownext",
    "UPPER.PY", "index.html", "page.htm", "query.sql", "a.json", "b.yaml", "c.yml",
    "d.toml", "e.ini", "main.c", "main.h", "main.cpp", "main.hpp", "Cargo.lock", "x.rs",
]


def pygments_answer(name: str) -> str:
    found = find_lexer_class_for_filename(name)
    names = {alias: lang for lang, _, alias in languages.LANGUAGES}
    return next((names[a] for a in (found.aliases if found else ()) if a in names), "")


def test_answers_are_pygments_in_any_order() -> None:
    expected = {name: pygments_answer(name) for name in NAMES}
    assert expected["main.py"] == "python" and expected["Makefile.am"] == "makefile"
    assert expected["notes.am"] != expected["Makefile.am"]  # a suffix alone would be wrong
    for order in (NAMES, NAMES[::-1], NAMES * 2):
        languages.GUESSED_BY_SUFFIX.clear()  # start each order afresh
        languages.GUESSED_BY_NAME.clear()
        assert {n: languages.guess_from_filename(n) for n in order} == expected


def test_tables_stay_bounded() -> None:
    for i in range(3 * languages.GUESSES_KEPT):
        languages.guess_from_filename(f"f.x{i}")
    assert len(languages.GUESSED_BY_SUFFIX) <= languages.GUESSES_KEPT
    assert languages.guess_from_filename("main.py") == "python"
