"""storage/tombstones.py: why removed ids are gone, durable and bounded."""

from __future__ import annotations

import time

from pasteur.storage.tombstones import Tombstones


def test_remembered_across_loads_newest_reason_wins(tmp_path):
    path = tmp_path / "gone"
    book = Tombstones(path)
    assert book.reason("abcd") is None
    book.add(["abcd", "efgh"], "Burn")
    book.add(["abcd"], "Expire")
    again = Tombstones(path)
    assert again.reason("abcd") == "Expire" and again.reason("efgh") == "Burn"
    assert again.reason("zzzz") is None


def test_old_entries_cut_lines_and_overflow_are_dropped_and_the_file_rewritten(tmp_path):
    path = tmp_path / "gone"
    old = int(time.time()) - 1000
    path.write_text(f"old1 Burn {old}\ncut Bu\nnew1 Burn {int(time.time())}\n"
                    f"new2 Expire {int(time.time())}\nnew3 Burn x\n")
    book = Tombstones(path, keep=500, limit=1)
    assert book.gone == {"new2": "Expire"}  # only the newest within the limit
    assert path.read_text().split() == ["new2", "Expire", path.read_text().split()[2]]
    book.add(["a1", "a2"], "Burn")
    assert list(book.gone) == ["a2"]  # the limit holds in memory too
