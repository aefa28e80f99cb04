"""filenames.lexer_class_for_filename remembers Pygments' answers by suffix or
by name: every answer must still be Pygments' own, whatever came before; and
languages.guess_from_filename names the language by it."""

from __future__ import annotations

from pygments.lexers import find_lexer_class_for_filename

from pasteur import filenames, languages

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


def forget() -> None:
    filenames.BY_SUFFIX.clear()
    filenames.BY_NAME.clear()


def test_answers_are_pygments_in_any_order() -> None:
    expected = {name: find_lexer_class_for_filename(name) for name in NAMES}
    assert expected["notes.am"] is not expected["Makefile.am"]  # a suffix alone would be wrong
    assert expected["CMakeLists.txt"] is not expected["notes.txt"]
    for order in (NAMES, NAMES[::-1], NAMES * 2):
        forget()
        assert {n: filenames.lexer_class_for_filename(n) for n in order} == expected


def test_languages_by_file_name() -> None:
    forget()
    guesses = {n: languages.guess_from_filename(n) for n in NAMES * 2}
    assert guesses["main.py"] == guesses["dir/sub/main.py"] == "python"
    assert guesses["Makefile.am"] == guesses["rules.mk"] == "makefile"
    assert guesses["notes.am"] == guesses["notes.txt"] == guesses["f"] == ""
    assert guesses["Dockerfile"] == "dockerfile" and guesses["x.rs"] == "rust"


def test_tables_stay_bounded() -> None:
    for i in range(3 * filenames.KEPT):
        filenames.lexer_class_for_filename(f"f.x{i}")
    assert len(filenames.BY_SUFFIX) <= filenames.KEPT
    assert languages.guess_from_filename("main.py") == "python"
