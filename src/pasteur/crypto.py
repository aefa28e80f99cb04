"""Encryption formats v1 and v2, shared by the browser (static/crypto.js) and the terminal
client.

- key: 32 random bytes (AES-256), carried in the URL fragment as base64url without padding;
- iv: 12 random bytes;
- plaintext: UTF-8 JSON ``{"v": 1, "text": str, "lang": str, "ln": bool}``, plus, when the
  paste has attachments, ``"files": [{"name": str, "type": str, "data": base64url}, ...]``
  (the files' bytes, encrypted with the text; ``type`` is the declared media type, possibly
  empty, never trusted for display); more keys may come and readers ignore keys they do not
  know;
- ciphertext: AES-256-GCM(key, iv, plaintext), no additional data, 128-bit tag appended
  (what WebCrypto returns);
- ciphertext and iv travel and are stored as base64url without padding.

Format v2 is v1 with the plaintext compressed: AES-256-GCM(key, iv, raw DEFLATE(payload
bytes)) (RFC 1951, no zlib or gzip header: what the browser's
``CompressionStream("deflate-raw")`` makes and ``zlib`` with ``wbits=-15`` reads); the
payload inside is the same v1 JSON. The stored document says which (``"fmt": 2``; no
``fmt`` is v1), so a reader knows to inflate after decrypting. Why: ciphertext does not
compress, so a v1 paste's page weighs its whole base64 ciphertext (1.33x the text), a v2
one about a third of that for source code (README, "Big pastes"). Both clients write v2
whenever they can (always, but for a payload over ``MAX_INFLATED``, or a browser without
``CompressionStream``: then v1): the cost is a few milliseconds per MiB, and a tiny paste
grows by a few bytes at most. A reader inflates at most ``MAX_INFLATED`` bytes (64 MiB) and
refuses a paste that inflates to more (a decompression bomb: 64 KiB of ciphertext can
inflate to 64 MiB), with a clear error; the writers never make such a v2 paste.

With a password, the AES key is PBKDF2-HMAC-SHA256(link key ‖ UTF-8(password), salt, iter),
32 bytes; the salt (16 random bytes, base64url) and iter are stored in clear beside ``ct``
and ``iv``. Reading then needs both the full link and the password.

iter is ``KDF_ITERATIONS`` (600,000) when made here or in the browser, the least the server
accepts, and at most ``MAX_KDF_ITERATIONS`` (10,000,000): the server refuses to store more,
and readers (this module, the terminal client, static/crypto.js) refuse to derive a key
with more, because the count comes from the stored paste and a hostile one could ask for
hours of work (measured on a busy core here: 600,000 iterations took 2 s, so the maximum
would take ~33 s). These two numbers live here; static/crypto.js repeats them and a test
checks that they agree.

The server never sees the key: it stores ``ct`` and ``iv`` (and ``salt``, ``iter``) only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1  # of the payload (the JSON inside), in either format
FORMATS = (1, 2)  # of the encryption: 1 plain JSON, 2 raw DEFLATE of it (``fmt``)
FORMAT = 2  # what new pastes are written in
MAX_INFLATED = 64 * 1024 * 1024  # the most a v2 payload inflates to (and is written with)
KEY_BYTES = 32
IV_BYTES = 12
TAG_BYTES = 16
KDF = "pbkdf2-sha256"
KDF_ITERATIONS = 600_000  # made by the clients; the least the server stores
MAX_KDF_ITERATIONS = 10_000_000  # the most the server stores and a reader derives
SALT_BYTES = 16

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")


class DecryptError(ValueError):
    """The paste cannot be decrypted: malformed input, wrong key, or altered ciphertext."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url without padding; refuse anything else (padding, other alphabets)."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - the regex already filters
        raise ValueError("not base64url") from exc


def make_payload(
    text: str,
    lang: str = "",
    ln: bool = False,
    files: Iterable[tuple[str, str, bytes]] = (),
) -> dict:
    """A v1 payload; ``files`` are (name, media type, bytes) attachments."""
    payload = {"v": VERSION, "text": text, "lang": lang, "ln": bool(ln)}
    attached = [
        {"name": name, "type": media_type, "data": b64url_encode(data)}
        for name, media_type, data in files
    ]
    if attached:
        payload["files"] = attached
    return payload


def payload_files(payload: dict) -> list[tuple[str, str, bytes]]:
    """The attachments of a checked payload, as (name, media type, bytes)."""
    return [
        (f["name"], f.get("type", ""), b64url_decode(f["data"])) for f in payload.get("files", [])
    ]


def encode_payload(payload: dict) -> bytes:
    """The plaintext bytes: compact JSON, UTF-8, like JavaScript's JSON.stringify."""
    _check_payload(payload)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def deflate(data: bytes) -> bytes:
    """Raw DEFLATE (RFC 1951, no header), as ``CompressionStream("deflate-raw")``."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def inflate(data: bytes, limit: int = MAX_INFLATED) -> bytes:
    """Raw DEFLATE back to bytes, at most ``limit`` of them: a stream that inflates to more
    (a decompression bomb), is cut short or is followed by anything raises DecryptError."""
    unpacker = zlib.decompressobj(-15)
    try:
        out = unpacker.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecryptError(f"the decrypted paste is not valid v2 (DEFLATE) data: {exc}") from exc
    if len(out) > limit:
        raise DecryptError(
            f"the paste inflates to more than {limit:,} bytes: refused (a damaged or hostile "
            "paste, a decompression bomb)"
        )
    if not unpacker.eof or unpacker.unused_data:
        raise DecryptError("the decrypted paste is not valid v2 (DEFLATE) data: "
                           + ("it is cut short" if not unpacker.eof else "data after its end"))
    return out


def check_format(fmt: object) -> int:
    """The format of a stored paste (its ``fmt``, 1 when absent), or DecryptError."""
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt not in FORMATS:
        raise DecryptError(
            f"unknown encryption format {fmt!r} (this version reads formats 1 and 2): "
            "a newer Pasteur made it, or it is damaged"
        )
    return fmt


def format_for(plain: bytes) -> int:
    """The format a new paste is written in: v2, but for a payload too large to inflate."""
    return FORMAT if len(plain) <= MAX_INFLATED else 1


def seal(key: bytes, iv: bytes, payload: dict, fmt: int = 1) -> str:
    """Deterministic encryption with a given key and iv (for test vectors): returns ct."""
    if len(key) != KEY_BYTES or len(iv) != IV_BYTES:
        raise ValueError("key must be 32 bytes and iv 12 bytes")
    plain = encode_payload(payload)
    if check_format(fmt) == 2:
        plain = deflate(plain)
    return b64url_encode(AESGCM(key).encrypt(iv, plain, None))


@dataclass(frozen=True, slots=True)
class Sealed:
    """A new encrypted paste: the link's key, and what the server is sent and stores."""

    key: str
    iv: str
    ct: str
    fmt: int
    salt: str | None = None  # a password paste's
    iter: int | None = None

    def fields(self) -> dict[str, str]:
        """The create's form fields (``paste``, ``iv``, ``encrypted``, ``fmt``, ...)."""
        fields = {"paste": self.ct, "iv": self.iv, "encrypted": "true", "fmt": str(self.fmt)}
        if self.salt is not None:
            fields.update(salt=self.salt, iter=str(self.iter))
        return fields


def new_paste(payload: dict, password: str | None = None, compress: bool = True) -> Sealed:
    """A new paste sealed in the format new pastes take (``format_for``; v1 when not
    ``compress``), under a fresh key and iv (and salt, behind a password)."""
    fmt = format_for(encode_payload(payload)) if compress else 1
    if password is not None:
        key, iv, ct, salt, iterations = encrypt_with_password(payload, password, fmt=fmt)
        return Sealed(key, iv, ct, fmt, salt, iterations)
    key, iv, ct = encrypt(payload, fmt=fmt)
    return Sealed(key, iv, ct, fmt)


def encrypt(
    payload: dict, key: bytes | None = None, iv: bytes | None = None, fmt: int = 1
) -> tuple[str, str, str]:
    """Encrypt a payload: returns (key, iv, ct), all base64url.

    The key and iv are fresh random bytes; passing them is for tests only (an iv must
    never be used twice with the same key).
    """
    key = os.urandom(KEY_BYTES) if key is None else key
    iv = os.urandom(IV_BYTES) if iv is None else iv
    ct = seal(key, iv, payload, fmt)
    return b64url_encode(key), b64url_encode(iv), ct


def derive_key(link_key: bytes, password: str, salt: bytes, iterations: int) -> bytes:
    """The AES key of a password paste: PBKDF2-HMAC-SHA256(link key ‖ password)."""
    material = link_key + password.encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", material, salt, iterations, KEY_BYTES)


def check_iterations(iterations: object) -> int:
    """The PBKDF2 iteration count of a paste being read, refused (DecryptError) if it is
    not a positive integer or is above ``MAX_KDF_ITERATIONS``."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise DecryptError("a password paste needs its salt and iteration count")
    if iterations > MAX_KDF_ITERATIONS:
        raise DecryptError(
            f"the paste asks for {iterations:,} PBKDF2 iterations, more than the "
            f"{MAX_KDF_ITERATIONS:,} allowed: refused (a hostile or damaged paste)"
        )
    return iterations


def encrypt_with_password(
    payload: dict, password: str, iterations: int = KDF_ITERATIONS, fmt: int = 1
) -> tuple[str, str, str, str, int]:
    """Encrypt behind the link's key and a password: returns (key, iv, ct, salt, iter)."""
    if not password:
        raise ValueError("the password is empty")
    key = os.urandom(KEY_BYTES)
    iv = os.urandom(IV_BYTES)
    salt = os.urandom(SALT_BYTES)
    ct = seal(derive_key(key, password, salt, iterations), iv, payload, fmt)
    return b64url_encode(key), b64url_encode(iv), ct, b64url_encode(salt), iterations


def decrypt(
    key_b64url: str,
    iv_b64url: str,
    ct_b64url: str,
    password: str | None = None,
    salt_b64url: str | None = None,
    iterations: int | None = None,
    fmt: object = 1,
) -> dict:
    """Decrypt and check a payload (a password paste also needs password, salt, iterations;
    a v2 one its ``fmt``, which is checked); raises DecryptError."""
    fmt = check_format(fmt)
    try:
        key = b64url_decode(key_b64url)
        iv = b64url_decode(iv_b64url)
        ct = b64url_decode(ct_b64url)
        salt = b64url_decode(salt_b64url) if salt_b64url is not None else None
    except ValueError as exc:
        raise DecryptError("malformed key, iv, salt or ciphertext") from exc
    if len(key) != KEY_BYTES:
        raise DecryptError("the key must be 32 bytes")
    if salt is not None or password is not None:
        if password is None:
            raise DecryptError("this paste needs a password")
        if salt is None:
            raise DecryptError("a password paste needs its salt and iteration count")
        key = derive_key(key, password, salt, check_iterations(iterations))
    if len(iv) != IV_BYTES:
        raise DecryptError("the iv must be 12 bytes")
    if len(ct) < TAG_BYTES:
        raise DecryptError("the ciphertext is too short")
    try:
        plain = AESGCM(key).decrypt(iv, ct, None)
    except InvalidTag as exc:
        raise DecryptError("wrong key, or the paste was altered") from exc
    if fmt == 2:
        plain = inflate(plain)
    try:
        payload = json.loads(plain.decode("utf-8"))
        _check_payload(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecryptError(f"not a valid v{VERSION} payload") from exc
    return payload


def _check_payload(payload: object) -> None:
    if not isinstance(payload, dict):
        raise ValueError("the payload must be an object")
    if payload.get("v") != VERSION:
        raise ValueError(f"unsupported payload version {payload.get('v')!r}")
    if not isinstance(payload.get("text"), str):
        raise ValueError("the payload text must be a string")
    if not isinstance(payload.get("lang", ""), str):
        raise ValueError("the payload lang must be a string")
    if not isinstance(payload.get("ln", False), bool):
        raise ValueError("the payload ln must be a boolean")
    files = payload.get("files", [])
    if not isinstance(files, list):
        raise ValueError("the payload files must be a list")
    for f in files:
        if not (
            isinstance(f, dict)
            and isinstance(f.get("name"), str)
            and isinstance(f.get("type", ""), str)
            and isinstance(f.get("data"), str)
            and _B64URL.fullmatch(f["data"])
            and len(f["data"]) % 4 != 1
        ):
            raise ValueError("each attached file needs a name, a type and base64url data")


# -- the original OCaml Pasteur's scheme: read only --------------------------
#
# Its page (js/pasteur_js.ml at c2bf170) encrypts with AES-128-CBC under a
# FIXED IV (below), PKCS#7 padding, stores the ciphertext as lowercase hex and
# puts the key in the fragment as base64 (with padding) of the JWK JSON
# WebCrypto exports. Weak: with a fixed IV, two pastes under one key that
# start alike give the same first ciphertext blocks, and CBC is malleable (no
# authentication): an altered ciphertext decrypts to altered text without
# an error. It is read here so that old links keep working; nothing is ever
# encrypted with it.

LEGACY_ENC = "aes-128-cbc"  # its name in a stored document (paste.py)
LEGACY_IV = bytes.fromhex("483b2ec4440d2cb046f4d576a194260d")


def legacy_key(fragment: str) -> bytes | None:
    """The AES key of an original Pasteur link's fragment (base64 of a JWK
    JSON, ``{"kty":"oct","k":…}``), or None when the fragment has another
    shape (a v1 key is base64url of 32 bytes: not a JSON object)."""
    try:
        jwk = json.loads(base64.b64decode(fragment + "=" * (-len(fragment) % 4), validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(jwk, dict) or jwk.get("kty") != "oct" or not isinstance(jwk.get("k"), str):
        return None
    try:
        key = b64url_decode(jwk["k"])
    except ValueError:
        return None
    return key if len(key) in (16, 24, 32) else None


def decrypt_legacy(fragment: str, ct_hex: str) -> str:
    """The text of an original Pasteur paste: its hex ciphertext decrypted
    with the key of the link's fragment (``legacy_key``) and the fixed IV;
    the padding and the UTF-8 are checked strictly (as the original's page
    decodes with ``fatal``). Raises DecryptError."""
    key = legacy_key(fragment)
    if key is None:
        raise DecryptError("the link's key is not the original Pasteur's (base64 of a JWK)")
    if not _HEX.fullmatch(ct_hex):
        raise DecryptError("the stored ciphertext is not hex")
    ct = bytes.fromhex(ct_hex)
    if not ct or len(ct) % 16:
        raise DecryptError("the stored ciphertext is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(LEGACY_IV)).decryptor()
    padded = decryptor.update(ct) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecryptError("wrong key, or the paste was altered") from exc
