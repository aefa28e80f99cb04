"""A new paste's fields, checked once, before anything is stored.

Every field of a create (the form, the raw-body API) and every record the
journal replays goes through here; nothing else decides what reaches Git.
The rules follow what Git itself and ``git fsck --strict`` accept, so that a
record that was acknowledged can always be committed, read and pushed:

- a commit's author line is ``name SP < email > SP date``: neither part may
  hold ``<``, ``>`` or a line break, the name may not be empty (fsck:
  ``missingNameBeforeEmail``), libgit2 refuses an empty email and a NUL;
- a commit holding a NUL byte is refused by remotes that check what they
  receive (``receive.fsckObjects``: ``nulInCommit``);
- numbers are ASCII digits (``int()`` and ``str.isdigit`` take ``²`` or
  ``٣``), in range;
- an expiry gives a date that ``paste.iso``/``parse_iso`` can write and read
  back (up to year 9999).

A bad value is refused (``RecordError``, answered 400 with its message)
rather than changed, but for whitespace and ``\\r\\n`` (see the README's table).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import languages
from .config import parse_duration
from .crypto import FORMATS
from .paste import (
    MAX_KDF_ITERATIONS,
    MIN_KDF_ITERATIONS,
    InvalidPaste,
    Paste,
    kdf_params,
    parse_iso,
)

MAX_USER = 256  # bytes of UTF-8, as the form takes them
MAX_COMMENT = 2048
# The last second paste.iso can write and parse_iso read back.
LATEST = 253402300799  # 9999-12-31T23:59:59Z
TRUE = ("1", "true", "on", "yes")
FALSE = ("", "0", "false", "off", "no")
_SIGNATURE = re.compile(r"(.*?)\s*<([^<>]*)>", re.DOTALL)
_ID = re.compile(r"[A-Za-z0-9]{2,64}")


class RecordError(ValueError):
    """A field that cannot be stored; the message says which and why."""


def _controls(value: str, allowed: str = "") -> str | None:
    """The first control character (or lone surrogate: bad UTF-8) in value."""
    for c in value:
        if c not in allowed and unicodedata.category(c) in ("Cc", "Cs"):
            return c
    return None


def _no_controls(field: str, value: str, allowed: str = "") -> None:
    bad = _controls(value, allowed)
    if bad is None:
        return
    if bad == "\0":
        raise RecordError(f"{field} holds a NUL character")
    if unicodedata.category(bad) == "Cs":
        raise RecordError(f"{field} is not valid UTF-8")
    raise RecordError(f"{field} holds a control character (U+{ord(bad):04X})")


def signature_parts(user: str) -> tuple[str, str | None]:
    """``Name <mail>`` or ``Name`` -> (name, mail or None), checked.

    Surrounding whitespace is dropped; angle brackets anywhere but around
    one final email, control characters and an empty name are refused."""
    if len(user.encode("utf-8", "surrogatepass")) > MAX_USER:
        raise RecordError(f"user is longer than {MAX_USER} bytes")
    _no_controls("user", user)
    user = user.strip()
    m = _SIGNATURE.fullmatch(user)
    name, email = (m.group(1).strip(), m.group(2).strip()) if m else (user, None)
    if "<" in name or ">" in name:
        raise RecordError(
            "user: angle brackets are only for an email at the end: Name <mail@example.org>")
    if not name:
        raise RecordError("user: a name is needed before the email: Name <mail@example.org>")
    if email is not None and (not email or any(c.isspace() for c in email)):
        raise RecordError("user: the email between < > must be one word, not empty")
    return name, email


def checked_user(user: str | None) -> str | None:
    """The author as stored (journal, commit): canonical, or None (anonymous)."""
    if user is None or not user.strip():
        return None
    name, email = signature_parts(user)
    return f"{name} <{email}>" if email is not None else name


def checked_comment(comment: str | None) -> str | None:
    """The commit message: no NUL or control character but tab and line
    breaks (``\\r\\n`` and ``\\r`` become ``\\n``); None when empty."""
    if comment is None:
        return None
    if len(comment.encode("utf-8", "surrogatepass")) > MAX_COMMENT:
        raise RecordError(f"comment is longer than {MAX_COMMENT} bytes")
    _no_controls("comment", comment, "\t\n\r")
    comment = comment.replace("\r\n", "\n").replace("\r", "\n").strip()
    return comment or None


def ascii_int(field: str, value: str, low: int, high: int) -> int:
    """A number in ASCII digits within [low, high]."""
    value = value.strip()
    if not value or len(value) > len(str(high)) or not (value.isascii() and value.isdigit()):
        raise RecordError(f"{field} must be a number from {low} to {high} in digits 0-9")
    n = int(value)
    if not low <= n <= high:
        raise RecordError(f"{field} must be a number from {low} to {high} in digits 0-9")
    return n


def flag(field: str, value: str | None) -> bool:
    v = (value or "").strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise RecordError(f"{field} must be true or false (1/0, on/off, yes/no)")


def expiry_seconds(value: str | None, default: int | None, max_expiry: int | None,
                   now: float) -> int | None:
    """Seconds until expiry (None: never), within max_expiry and year 9999."""
    try:
        expiry = parse_duration(value) if value else default
    except ValueError as exc:
        raise RecordError(str(exc)) from exc
    if max_expiry is not None and (expiry is None or expiry > max_expiry):
        raise RecordError(f"expiry too long: pastes here expire within {max_expiry} s at most")
    if expiry is not None and now + expiry > LATEST:
        raise RecordError("expiry too far in the future: the latest is 9999-12-31")
    return expiry


@dataclass(frozen=True, slots=True)
class Record:
    """The checked fields of a create (the paste's content is checked by
    ``Paste``); what is stored comes from here only."""

    user: str | None = None  # the commit's author, canonical
    comment: str | None = None  # the commit's message
    lang: str = ""
    ln: bool = False
    raw: bool = False
    encrypted: bool = False
    burn: bool = False
    iv: str | None = None
    fmt: int = 1  # an encrypted paste's format (crypto.FORMATS; 2: compressed first)
    kdf: dict[str, Any] | None = None
    expiry: int | None = None  # seconds from creation
    form: bool = False  # sent by the HTML form (a textarea: CRLF)


PASSWORD_SENT = (
    "a password protects encrypted pastes only, and this page encrypts with JavaScript, which "
    "is off: nothing was stored. Turn JavaScript on, or clear the password to paste in clear."
)


def checked(fields: Mapping[str, str], default_expiry: int | None = None,
            max_expiry: int | None = None, now: float | None = None) -> Record:
    """Every field of a create, checked; RecordError says the first bad one."""
    now = time.time() if now is None else now
    lang = fields.get("hl", "")
    if lang and lang not in languages.NAMES:
        raise RecordError(f"unknown language {lang!r}")
    encrypted = flag("encrypted", fields.get("encrypted"))
    if fields.get("password"):  # sent by the form only without JavaScript
        raise RecordError(PASSWORD_SENT)
    fmt = 1
    if fields.get("fmt", "").strip():
        if not encrypted:
            raise RecordError("fmt is the format of an encrypted paste: it needs encrypted=true")
        fmt = ascii_int("fmt", fields["fmt"], min(FORMATS), max(FORMATS))
    kdf = None
    if fields.get("salt") or fields.get("iter"):
        if not encrypted:
            raise RecordError("a password protects encrypted pastes only")
        iterations = ascii_int("iter", fields.get("iter", ""), MIN_KDF_ITERATIONS,
                               MAX_KDF_ITERATIONS)
        try:
            kdf = kdf_params(fields.get("salt", ""), str(iterations))
        except InvalidPaste as exc:
            raise RecordError(f"bad password parameters: {exc}") from exc
    return Record(
        user=checked_user(fields.get("user")),
        comment=checked_comment(fields.get("comment")),
        lang=lang,
        ln=flag("ln", fields.get("ln")),
        raw=flag("raw", fields.get("raw")),
        encrypted=encrypted,
        burn=flag("burn", fields.get("burn")),
        iv=fields.get("iv") or None,
        fmt=fmt,
        kdf=kdf,
        expiry=expiry_seconds(fields.get("expiry"), default_expiry, max_expiry, now),
        form=fields.get("form") == "html",
    )


def commit_problem(paste_id: str | None, author: str | None, message: str | None) -> str | None:
    """Why a stored record (the journal's) cannot be committed, or None."""
    try:
        if paste_id is not None and not _ID.fullmatch(paste_id):
            raise RecordError(f"bad id {paste_id!r}")
        checked_user(author)
        checked_comment(message)
    except RecordError as exc:
        return str(exc)
    return None


def document_problem(data: bytes) -> str | None:
    """Why a stored paste document cannot be served (what ``Paste`` and the
    expiry need to read it back), or None."""
    try:
        paste = Paste.from_json(data)
        if paste.expires is not None:
            parse_iso(paste.expires)
        parse_iso(paste.created)
    except (InvalidPaste, KeyError, TypeError, ValueError) as exc:
        return f"the document cannot be read ({exc})"
    return None
