"""The stored paste document (format v1), a JSON object in a Git blob.

Unencrypted::

    {"v": 1, "created": "2026-11-23T01:02:03Z", "size": 12,
     "lang": "python", "ln": true, "text": "print('hi')\\n"}

Encrypted (the server holds ciphertext only; language and options travel
inside it, see ``pasteur.crypto``)::

    {"v": 1, "created": "...", "size": 44, "enc": "aes-256-gcm",
     "iv": "<base64url>", "ct": "<base64url>"}
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from typing import Any

VERSION = 1
ENC_ALG = "aes-256-gcm"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class InvalidPaste(ValueError):
    """A paste document or upload that does not follow the format."""


def b64url_decode(value: str) -> bytes:
    if not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise InvalidPaste("not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidPaste("not base64url") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True, slots=True)
class Paste:
    created: str
    size: int
    text: str | None = None
    lang: str = ""
    ln: bool = False
    iv: str | None = None
    ct: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.ct is not None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"v": VERSION, "created": self.created, "size": self.size}
        if self.encrypted:
            doc.update(enc=ENC_ALG, iv=self.iv, ct=self.ct)
        else:
            doc.update(lang=self.lang, ln=self.ln, text=self.text)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Paste:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidPaste("stored paste is not JSON") from exc
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            raise InvalidPaste(f"unsupported paste format {doc.get('v')!r}")
        if "ct" in doc:
            return cls(created=doc["created"], size=doc["size"], iv=doc["iv"], ct=doc["ct"])
        return cls(
            created=doc["created"],
            size=doc["size"],
            text=doc["text"],
            lang=doc.get("lang", ""),
            ln=bool(doc.get("ln", False)),
        )

    @classmethod
    def plain(cls, text: str, lang: str = "", ln: bool = False) -> Paste:
        return cls(created=now_iso(), size=len(text.encode("utf-8")), text=text, lang=lang, ln=ln)

    @classmethod
    def sealed(cls, ct: str, iv: str) -> Paste:
        """An encrypted paste from its base64url ciphertext and IV (validated)."""
        raw_iv = b64url_decode(iv)
        if len(raw_iv) != 12:
            raise InvalidPaste("the IV must be 12 bytes (base64url, 16 characters)")
        raw_ct = b64url_decode(ct)
        if len(raw_ct) < 16:
            raise InvalidPaste("the ciphertext is shorter than its authentication tag")
        return cls(created=now_iso(), size=len(raw_ct), ct=ct, iv=iv)
