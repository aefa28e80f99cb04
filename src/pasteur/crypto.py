"""The encryption format shared by the browser and the terminal client (v1).

key = 32 random bytes (base64url, no padding, in the URL fragment);
iv = 12 random bytes; plaintext = UTF-8 JSON ``{"v":1,"text":…,"lang":…,"ln":…}``;
ciphertext = AES-256-GCM(key, iv, plaintext) with its 16-byte tag appended
and no additional data; ct and iv travel as base64url without padding.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .paste import InvalidPaste, b64url_decode, b64url_encode


class DecryptError(ValueError):
    """Wrong key, or the ciphertext was altered."""


def encrypt(payload: dict[str, Any], key: bytes | None = None, iv: bytes | None = None
            ) -> tuple[str, str, str]:
    """Encrypt a payload; returns (key, iv, ct), each base64url."""
    key = key if key is not None else os.urandom(32)
    iv = iv if iv is not None else os.urandom(12)
    plaintext = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    ct = AESGCM(key).encrypt(iv, plaintext, None)
    return b64url_encode(key), b64url_encode(iv), b64url_encode(ct)


def decrypt(key: str, iv: str, ct: str) -> dict[str, Any]:
    try:
        raw_key, raw_iv, raw_ct = b64url_decode(key), b64url_decode(iv), b64url_decode(ct)
    except InvalidPaste as exc:
        raise DecryptError(f"malformed key or ciphertext: {exc}") from exc
    if len(raw_key) != 32:
        raise DecryptError("the key must be 32 bytes")
    try:
        plaintext = AESGCM(raw_key).decrypt(raw_iv, raw_ct, None)
    except (InvalidTag, ValueError) as exc:
        raise DecryptError("wrong key, or the paste was altered") from exc
    payload = json.loads(plaintext)
    if not isinstance(payload, dict) or payload.get("v") != 1:
        raise DecryptError("unsupported payload version")
    return payload
