"""Server configuration and the parsing of flag values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?|[kmgt]i?b?)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str) -> int:
    """'1MiB', '64KiB', '512k', '1000' -> bytes (binary units: 1 MB = 1 MiB)."""
    m = _SIZE.fullmatch(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (try 64KiB, 1MiB or a number of bytes)")
    number, unit = m.groups()
    unit = (unit or "").upper().rstrip("B").rstrip("I")
    size = int(float(number) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"size must be positive: {value!r}")
    return size


def parse_auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected USER:PASSWORD")
    return user, password


@dataclass
class Config:
    data: Path = Path("pasteur-data")
    bind: str = "127.0.0.1"
    port: int = 4343
    length: int = 4
    max_size: int = 1 << 20
    title: str = "Pasteur"
    subtitle: str = "a zero-knowledge pastebin on Git"
    auth: tuple[str, str] | None = None
    url: str | None = None  # public base URL, e.g. https://paste.example.org
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def repo_path(self) -> Path:
        return self.data / "repo.git"
