"""A new paste from its upload: the fields checked against the content, and
a large paste's stored document written to a file in the spool directory
(the upload itself is read and spooled by ``form.py``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .. import languages, record
from ..paste import InvalidPaste, Paste, checked_b64url, escaped_text, iso, write_document
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
        # A large ciphertext is checked while it is copied (write_document).
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


def spool_document(paste: Paste, upload: Upload, spool_dir: Path) -> Path:
    """Write the stored document of a large paste to a file, checking its content."""
    out = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed over to the store
        dir=spool_dir, prefix="paste-", delete=False
    )
    try:
        with out:
            body = upload.body.chunks()
            content = checked_b64url(body) if paste.encrypted else escaped_text(body)
            write_document(out, paste, content)
    except InvalidPaste as exc:
        Path(out.name).unlink(missing_ok=True)
        raise FormError(400, f"bad paste: {exc}") from exc
    except BaseException:
        Path(out.name).unlink(missing_ok=True)
        raise
    return Path(out.name)
