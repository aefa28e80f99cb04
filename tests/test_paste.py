"""paste.py's shortcuts on the create path give what the long way gives; a
large paste's text escaped into its document as it arrives (``JsonEscaper``)
and unescaped from it as it is read (``TextUnescaper``), in chunks cut
anywhere, exactly as ``json.dumps``/``json.loads`` would."""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pasteur.paste import (
    InvalidPaste,
    JsonEscaper,
    Paste,
    TextUnescaper,
    b64url_decode,
    b64url_length,
    iso,
    now_iso,
)


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


B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ALPHABETS = ("ab \t\n\r\"\\\x00\x01\x1f\x7fé€😀/u", "ab \t\n\"\\é€😀", "a\\\\\\n", "Az09-_")


def chunked(data: bytes, rng: random.Random, most: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        j = i + rng.randint(1, most)
        out.append(data[i:j])
        i = j
    return out


@pytest.mark.parametrize("alphabet", ALPHABETS)
def test_escaped_and_unescaped_in_any_chunks(alphabet: str) -> None:
    rng = random.Random(alphabet)
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        data = text.encode()
        escaper = JsonEscaper()
        escaped = b"".join(escaper.feed(c) for c in chunked(data, rng, rng.choice((3, 50))))
        assert escaper.close() is None
        assert escaped == json.dumps(text, ensure_ascii=False)[1:-1].encode()
        assert escaper.b64url == (not data.translate(None, B64URL))
        unescaper = TextUnescaper()
        back = b"".join(unescaper.feed(c) for c in chunked(escaped, rng, rng.choice((3, 60))))
        assert back + unescaper.feed(b"", final=True) == data


def test_bad_utf8_is_found_with_its_offset() -> None:
    escaper = JsonEscaper()
    escaper.feed(b"abc")
    assert escaper.feed(b"x\xffy") == b""
    assert escaper.close() == "the paste is not UTF-8 text (bad byte at offset 4)"
    escaper = JsonEscaper()
    escaper.feed(b"abc\xc3")
    assert escaper.close() == "the paste is not UTF-8 text (it ends inside a character)"
    with pytest.raises(InvalidPaste):
        TextUnescaper().feed(b"ab\\ncd\xff")


def test_large_chunks_with_every_kind_of_escape() -> None:
    """Chunks past the slice given to json.loads at a time, cut anywhere."""
    rng = random.Random(3)
    text = "".join(rng.choice(ALPHABETS[0]) for _ in range(300_000))
    escaped = json.dumps(text, ensure_ascii=False)[1:-1].encode()
    for most in (70_000, 200_000, 1 << 20):
        unescaper = TextUnescaper()
        back = b"".join(unescaper.feed(c) for c in chunked(escaped, rng, most))
        assert back + unescaper.feed(b"", final=True) == text.encode()
    assert TextUnescaper().feed(escaped, final=True) == text.encode()
