"""The stored paste document (format v1), a JSON object in a Git blob.

Unencrypted::

    {"v": 1, "created": "2026-11-23T01:02:03Z", "size": 12,
     "lang": "python", "ln": true, "text": "print('hi')\\n"}

Encrypted (the server holds ciphertext only; language and options travel
inside it, see ``pasteur.crypto``)::

    {"v": 1, "created": "...", "size": 44, "enc": "aes-256-gcm",
     "iv": "<base64url>", "ct": "<base64url>"}

A paste encrypted in format v2 (compressed before it was encrypted, see
``pasteur.crypto``) says so with ``"fmt": 2`` before ``iv``; no ``fmt`` is v1.

A paste sent by the original OCaml Pasteur's page (encrypted there with its
scheme, see ``crypto.decrypt_legacy``) is stored as v1 with
``"enc": "aes-128-cbc"`` and its hex ciphertext in ``ct`` (no ``iv``: the
scheme's IV is fixed).

The original's own documents, blobs at the root of the tree, are read too
(never written): ``{"contents": str, "encrypted": true?}``, pretty-printed
by OCaml, parsed as JSON (``legacy_document``).

Optional plaintext metadata, only what the server needs: ``expires`` (ISO 8601
UTC), ``burn`` (true: deleted by its first reading), ``del`` (SHA-256 hex of
the delete token; the token itself is never stored) and, for a password
paste, ``kdf`` ``{"alg": "pbkdf2-sha256", "salt": "<base64url>", "iter": N}``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import IO, Any

from . import entropy
from .crypto import FORMATS, LEGACY_ENC, MAX_KDF_ITERATIONS
from .crypto import KDF as KDF_ALG
from .crypto import KDF_ITERATIONS as MIN_KDF_ITERATIONS

VERSION = 1
ENC_ALG = "aes-256-gcm"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_B64URL_BYTES = re.compile(rb"[A-Za-z0-9_-]*")
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# json.dumps(doc, ensure_ascii=False, separators=(",", ":")) without making an
# encoder per call
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_string(value: Any) -> str:
    """A value as that encoder writes it: a string or an int at once, anything
    else (None, a float read from an old document) through the encoder."""
    if type(value) is str:
        return encode_basestring(value)
    return str(value) if type(value) is int else _JSON.encode(value)


class InvalidPaste(ValueError):
    """A paste document or upload that does not follow the format."""


def b64url_decode(value: str) -> bytes:
    if not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise InvalidPaste("not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidPaste("not base64url") from exc


def b64url_length(value: str) -> int:
    """The length of what ``b64url_decode(value)`` returns, without decoding
    (InvalidPaste alike): a create checks its ciphertext, it never reads it."""
    if (len(value) % 4 == 1 or not value.isascii()
            or value.encode().translate(None, _B64URL_ALPHABET)):  # a byte not of it
        raise InvalidPaste("not base64url")
    return len(value) * 3 // 4


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_second: tuple[int, str] = (-1, "")  # the last second now_iso wrote, and how


def now_iso() -> str:
    global _second
    now = int(time.time())
    if _second[0] != now:
        _second = (now, iso(now))
    return _second[1]


def iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def parse_iso(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def new_token() -> tuple[str, str]:
    """A delete token and the hash that is stored in its place."""
    token = entropy.token_urlsafe(18)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Paste:
    created: str
    size: int
    text: str | None = None
    lang: str = ""
    ln: bool = False
    iv: str | None = None
    ct: str | None = None
    expires: str | None = None
    burn: bool = False
    del_hash: str | None = None
    kdf: dict[str, Any] | None = None
    enc: str = ENC_ALG  # of an encrypted paste: ENC_ALG, or LEGACY_ENC (hex ``ct``, no iv)
    fmt: int = 1  # of an ENC_ALG paste: crypto.FORMATS (2: compressed, then encrypted)

    @property
    def encrypted(self) -> bool:
        return self.ct is not None

    @property
    def legacy(self) -> bool:
        """Encrypted by the original Pasteur's page (AES-128-CBC, fixed IV)."""
        return self.ct is not None and self.enc == LEGACY_ENC

    def expired(self, now: float | None = None) -> bool:
        if self.expires is None:
            return False
        try:
            when = parse_iso(self.expires)
        except ValueError:
            # Written before expiries were checked (a year past 9999): not a
            # date this code can hold, so as good as never.
            return False
        return when <= (time.time() if now is None else now)

    def token_ok(self, token: str) -> bool:
        return self.del_hash is not None and hmac.compare_digest(
            self.del_hash, token_hash(token)
        )

    def with_options(self, **changes: Any) -> Paste:
        return replace(self, **changes)

    def to_json(self) -> bytes:
        """The document: what ``json.dumps(doc, ensure_ascii=False,
        separators=(",", ":"))`` writes for it, written here field by field
        (the encoder's set-up cost more than the 1 KiB it encodes)."""
        q = _json_string
        out = [f'{{"v":{VERSION},"created":{q(self.created)},"size":{q(self.size)}']
        if self.expires:
            out.append(f',"expires":{q(self.expires)}')
        if self.burn:
            out.append(',"burn":true')
        if self.del_hash:
            out.append(f',"del":{q(self.del_hash)}')
        if self.encrypted:
            if self.kdf:
                out.append(f',"kdf":{_JSON.encode(self.kdf)}')
            out.append(f',"enc":{q(self.enc)}')
            if self.fmt != 1:
                out.append(f',"fmt":{int(self.fmt)}')
            if self.iv is not None:
                out.append(f',"iv":{q(self.iv)}')
            out.append(f',"ct":{q(self.ct)}}}')
        else:
            out.append(f',"lang":{q(self.lang)},"ln":{"true" if self.ln else "false"},'
                       f'"text":{q(self.text)}}}')
        return "".join(out).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Paste:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidPaste("stored paste is not JSON") from exc
        if isinstance(doc, dict) and "v" not in doc and "contents" in doc:
            return legacy_document(doc)
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            found = doc.get("v") if isinstance(doc, dict) else type(doc).__name__
            raise InvalidPaste(f"unsupported paste format {found!r}")
        common = {
            "created": doc["created"],
            "size": doc["size"],
            "expires": doc.get("expires"),
            "burn": bool(doc.get("burn", False)),
            "del_hash": doc.get("del"),
        }
        if "ct" in doc:
            enc = doc.get("enc", ENC_ALG)
            if enc == LEGACY_ENC:
                return cls(ct=doc["ct"], enc=LEGACY_ENC, **common)
            if enc != ENC_ALG:
                raise InvalidPaste(f"unknown encryption {enc!r}")
            return cls(iv=doc["iv"], ct=doc["ct"], kdf=doc.get("kdf"),
                       fmt=checked_format(doc.get("fmt", 1)), **common)
        return cls(text=doc["text"], lang=doc.get("lang", ""), ln=bool(doc.get("ln", False)),
                   **common)

    @classmethod
    def plain(cls, text: str, lang: str = "", ln: bool = False) -> Paste:
        return cls(created=now_iso(), size=len(text.encode("utf-8")), text=text, lang=lang, ln=ln)

    @classmethod
    def sealed(cls, ct: str, iv: str, fmt: int = 1) -> Paste:
        """An encrypted paste from its base64url ciphertext and IV (validated), in
        encryption format ``fmt``."""
        if b64url_length(iv) != 12:
            raise InvalidPaste("the IV must be 12 bytes (base64url, 16 characters)")
        size = b64url_length(ct)
        if size < 16:
            raise InvalidPaste("the ciphertext is shorter than its authentication tag")
        return cls(created=now_iso(), size=size, ct=ct, iv=iv, fmt=checked_format(fmt))


def checked_format(fmt: object) -> int:
    """An encrypted paste's format (``fmt``): one of ``crypto.FORMATS``."""
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt not in FORMATS:
        raise InvalidPaste(f"unknown encryption format {fmt!r}: this server knows "
                           f"{', '.join(map(str, FORMATS))}")
    return fmt


def legacy_document(doc: dict[str, Any]) -> Paste:
    """A paste of the original OCaml Pasteur: ``{"contents": str}`` (clear)
    or ``{"contents": "<hex>", "encrypted": true}`` and no other field, as its
    data-encoding reader demands (UPSTREAM.md §1). Its creation time is not
    stored (``created`` is empty)."""
    contents, encrypted = doc.get("contents"), doc.get("encrypted", False)
    if set(doc) - {"contents", "encrypted"} or not isinstance(encrypted, bool):
        raise InvalidPaste("a document of the original Pasteur holds contents and encrypted only")
    if isinstance(contents, dict) and not encrypted:
        contents = _invalid_utf8_string(contents)
    if not isinstance(contents, str):
        raise InvalidPaste("the original Pasteur's contents is not a string (not UTF-8 text?)")
    try:
        size = len(contents.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate escaped in the JSON
        raise InvalidPaste("the original Pasteur's contents is not UTF-8 text") from exc
    if encrypted:
        return Paste(created="", size=size, ct=contents, enc=LEGACY_ENC)
    return Paste(created="", size=size, text=contents)


def _invalid_utf8_string(contents: dict[str, Any]) -> str | None:
    """The original's JSON for a string that is not UTF-8 (data-encoding's
    ``{"invalid_utf8_string": [byte, ...]}``, UPSTREAM.md §1), as text: the bytes
    decoded with U+FFFD for each invalid sequence (a page and a raw view are UTF-8
    text); None when it is not that shape."""
    values = contents.get("invalid_utf8_string")
    if set(contents) != {"invalid_utf8_string"} or not isinstance(values, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in values
    ):
        return None
    return bytes(values).decode("utf-8", "replace")


def kdf_params(salt: str, iterations: str) -> dict[str, Any]:
    """Validated PBKDF2 parameters of a password paste."""
    if len(b64url_decode(salt)) < 16:
        raise InvalidPaste("the password salt must be at least 16 bytes")
    if not (iterations.isascii() and iterations.isdigit()) or not (
        MIN_KDF_ITERATIONS <= int(iterations) <= MAX_KDF_ITERATIONS
    ):
        raise InvalidPaste(
            f"PBKDF2 iterations must be between {MIN_KDF_ITERATIONS} and {MAX_KDF_ITERATIONS}"
        )
    return {"alg": KDF_ALG, "salt": salt, "iter": int(iterations)}


def write_document(out: IO[bytes], paste: Paste, content: Iterable[bytes]) -> None:
    """Write a paste's document with its content streamed in (large pastes).

    ``paste`` carries the metadata with an empty text or ciphertext, which is
    the document's last key; ``content`` yields it already JSON-escaped.
    """
    head = paste.to_json()
    assert head.endswith(b'""}')
    out.write(head[:-2])
    for piece in content:
        out.write(piece)
    out.write(b'"}')


def escaped_text(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """UTF-8 chunks -> JSON string content, refusing bad UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    for chunk in chunks:
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise InvalidPaste(
                f"the paste is not UTF-8 text (bad byte at offset {offset + exc.start})"
            ) from exc
        offset += len(chunk)
        if text:
            yield json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise InvalidPaste("the paste is not UTF-8 text (it ends inside a character)") from exc


def checked_b64url(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Base64url chunks passed through, refusing any other character."""
    total = 0
    for chunk in chunks:
        if not _B64URL_BYTES.fullmatch(chunk):
            raise InvalidPaste("the ciphertext is not base64url")
        total += len(chunk)
        yield chunk
    if total % 4 == 1:
        raise InvalidPaste("the ciphertext is not base64url")


CONTENT_KEYS = (b',"text":"', b',"ct":"')


def document_head(prefix: bytes) -> tuple[Paste, int]:
    """A stored document's metadata from its first bytes (a few hundred are
    enough), with an empty text or ciphertext, and the offset where that
    content begins: it is the document's last key (``to_json``,
    ``write_document``) and no value before it can hold the key's bytes."""
    for key in CONTENT_KEYS:
        i = prefix.find(key)
        if i >= 0:
            start = i + len(key)
            return Paste.from_json(prefix[:start] + b'"}'), start
    raise InvalidPaste("no text or ciphertext at the start of the stored paste")


class TextUnescaper:
    """JSON string content, in chunks of any size, back to UTF-8 text: the
    inverse of ``escaped_text``, for a large paste's raw view. A chunk is cut
    before an escape it splits (``\\uXXXX`` pairs of surrogates included)."""

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.tail = ""

    def feed(self, chunk: bytes, final: bool = False) -> bytes:
        try:
            text = self.tail + self.decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise InvalidPaste("the stored text is not UTF-8") from exc
        cut = len(text) if final else _escape_boundary(text)
        text, self.tail = text[:cut], text[cut:]
        if not text:
            return b""
        try:
            return json.loads('"' + text + '"').encode("utf-8")
        except (ValueError, UnicodeEncodeError) as exc:
            raise InvalidPaste("the stored text is not a JSON string") from exc


def _escape_boundary(text: str) -> int:
    """Where ``text`` may be cut without splitting an escape: its length, or
    the start of the escape (or surrogate pair) it ends inside."""
    i = text.rfind("\\", max(0, len(text) - 12))
    if i < 0:
        return len(text)
    run = i
    while run > 0 and text[run - 1] == "\\":
        run -= 1
    if (i - run) % 2 == 1:  # an even run of backslashes: escaped backslashes
        return len(text)
    if i + (6 if text[i + 1:i + 2] == "u" else 2) > len(text):
        cut = i
    elif text[i + 1:i + 2] == "u" and _high_surrogate(text[i + 2:i + 6]) and i + 12 > len(text):
        return i
    else:
        return len(text)
    # a pair of surrogates cut after its first half: cut before it
    if cut >= 6 and text[cut - 6:cut - 4] == "\\u" and _high_surrogate(text[cut - 4:cut]):
        return cut - 6
    return cut


def _high_surrogate(hex4: str) -> bool:
    return len(hex4) == 4 and hex4[:2].lower() in ("d8", "d9", "da", "db")
