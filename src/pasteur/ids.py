"""Paste ids: [A-Za-z0-9], random from the CSPRNG, checked before any lookup."""

from __future__ import annotations

import re
import string

from . import entropy

ALPHABET = string.ascii_letters + string.digits
ID_RE = re.compile(r"[A-Za-z0-9]{2,64}")


def random_id(length: int) -> str:
    """``length`` characters from [A-Za-z0-9], uniformly, from one read of the CSPRNG."""
    out: list[str] = []
    while len(out) < length:
        # 248 = 4 × 62: rejecting larger bytes keeps every character equally likely
        out += [ALPHABET[b % 62] for b in entropy.token_bytes(length + 4) if b < 248]
    return "".join(out[:length])


def valid_id(paste_id: str) -> bool:
    return ID_RE.fullmatch(paste_id) is not None
