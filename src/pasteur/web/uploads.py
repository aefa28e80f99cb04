"""A new paste from its upload: the fields checked against the content, and
a large paste's stored document finished as a Git blob (its content was
written as it arrived: ``form.Spool``)."""

from __future__ import annotations

import time

from .. import languages, record
from ..paste import InvalidPaste, Paste, iso
from ..storage.loose import LooseBlob, LooseError
from .form import FormError, Upload, format_size


def with_options(paste: Paste, rec: record.Record, del_hash: str) -> Paste:
    """Expiry, burn after reading, password and delete token of a new paste."""
    expires = iso(time.time() + rec.expiry) if rec.expiry else None
    if expires is None and not rec.burn and rec.kdf is None:
        return paste.with_options(del_hash=del_hash)
    return paste.with_options(expires=expires, burn=rec.burn, kdf=rec.kdf, del_hash=del_hash)


def paste_of(upload: Upload, rec: record.Record, max_size: int) -> tuple[Paste, bool]:
    """The paste of an upload, and whether its content stays on disk (large)."""
    if not upload.has_paste:
        raise FormError(400, "the form has no 'paste' field")
    size = upload.body.size
    if size == 0:
        raise FormError(400, "the paste is empty")
    big = upload.body.spooled
    too_large = FormError(413, f"paste too large: the limit is {format_size(max_size)}")
    if rec.encrypted:
        if rec.raw:
            raise FormError(
                400, "an encrypted paste has no raw view: uncheck 'raw' or 'encrypted'"
            )
        iv = rec.iv
        if not iv:
            raise FormError(
                400,
                "encryption was asked for but the paste arrived unencrypted (is JavaScript "
                "on?); nothing was stored. Uncheck 'encrypted' to paste in clear.",
            )
        # A large ciphertext was checked as it arrived (Spool.b64url).
        if big and (not upload.body.b64url or size % 4 == 1):
            raise FormError(400, "bad paste: the ciphertext is not base64url")
        ct = "A" * 22 if big else upload.paste.decode("ascii", "replace")
        try:
            paste = Paste.sealed(ct, iv, rec.fmt)
        except InvalidPaste as exc:
            raise FormError(400, f"bad encrypted paste: {exc}") from exc
        if big:
            paste = paste.with_options(ct="", size=size * 3 // 4)
        if paste.size > max_size + 16:
            raise too_large
        return paste, big
    if size > max_size:
        raise too_large
    lang = rec.lang
    if not lang and upload.filename:
        lang = languages.guess_from_filename(upload.filename)
    if big:
        problem = upload.body.problem()
        if problem is not None:
            raise FormError(400, f"bad paste: {problem}")
        return Paste.plain("", lang, rec.ln).with_options(size=size), True
    try:
        text = upload.paste.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError(
            400, f"the paste is not UTF-8 text (bad byte at offset {exc.start})"
        ) from exc
    if upload.filename is None and rec.form:
        text = text.replace("\r\n", "\n")  # a textarea is submitted with CRLF
    return Paste.plain(text, lang, rec.ln), False


def finish_document(paste: Paste, upload: Upload) -> LooseBlob:
    """The Git blob of a large paste's stored document: its content was
    written as it arrived (``Spool``); its head and tail go around it (a
    thread: the blob is read back for its id and synced)."""
    assert upload.body.file is not None, "a large paste is spooled"
    head = paste.to_json()
    assert head.endswith(b'""}')
    try:
        return upload.body.file.finish(head[:-2], b'"}')
    except LooseError as exc:
        raise FormError(400, f"bad paste: {exc}") from exc
