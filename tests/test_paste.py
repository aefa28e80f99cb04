"""paste.py's shortcuts on the create path give what the long way gives."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pasteur.paste import InvalidPaste, Paste, b64url_decode, b64url_length, iso, now_iso


@given(st.text(alphabet="AZaz09-_+/=. \n\u00e9", max_size=40))
def test_b64url_length_is_the_decoded_length(value: str) -> None:
    try:
        decoded = len(b64url_decode(value))
    except InvalidPaste:
        with pytest.raises(InvalidPaste):
            b64url_length(value)
        return
    assert b64url_length(value) == decoded


def test_to_json_as_json_dumps() -> None:
    paste = Paste.plain("é \"quoted\" \u2028 \x00 tab\t", "python", True).with_options(
        expires="2030-01-01T00:00:00Z", burn=True, del_hash="ab" * 32)
    sealed = Paste.sealed("A" * 40, "B" * 16).with_options(
        kdf={"alg": "pbkdf2-sha256", "salt": "c" * 22, "iter": 600000})
    legacy = Paste(created="2020-01-01T00:00:00Z", size=3.0, ct="0a" * 8, enc="aes-128-cbc")  # type: ignore[arg-type]
    compressed = Paste.sealed("A" * 40, "B" * 16, fmt=2)
    assert b'"enc":"aes-256-gcm","fmt":2,"iv":' in compressed.to_json()
    for p in (paste, sealed, compressed, legacy, Paste.plain("")):
        doc = json.loads(p.to_json())
        assert p.to_json() == json.dumps(doc, ensure_ascii=False,
                                         separators=(",", ":")).encode()
        assert Paste.from_json(p.to_json()) == p


def test_now_iso_is_now() -> None:
    before = iso(time.time())
    assert before <= now_iso() <= iso(time.time())
