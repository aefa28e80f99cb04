"""The original OCaml Pasteur's page posting here during a switch-over.

Its script (``js/pasteur_js.ml`` at c2bf170, UPSTREAM.md §2-3) posts the
form with ``fetch("/", {method: "POST", body: formData})``: multipart with
the fields ``paste``, ``hl``, ``ln``, ``raw``, ``encrypted`` (``on`` when
checked), ``user`` and ``comment``; an encrypted paste is its AES-128-CBC
ciphertext in hex, the key staying in the browser. It takes only a 200 with
compact JSON ``{"ln","raw","hl"?,"code"}`` as success and builds the link
``<code>?ln=true&hl=<hl>&raw=true#<key>`` from it; a 400 or 500 body is shown
in an alert, any other status as "Invalid response from the server.".

Such a POST is told apart from the project's own clients by its request
metadata, never by its body: a script's fetch (``Sec-Fetch-Mode`` other
than ``navigate``, which browsers send and curl does not) of a multipart
body that asks for neither JSON nor HTML (the project's form script asks
for JSON; a form without script navigates). The project's documented API
is unchanged."""

from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.responses import Response

from .. import languages, mediatype
from ..crypto import LEGACY_ENC
from ..paste import Paste, now_iso
from .form import FormError, Upload

_HEX_BLOCKS = re.compile(rb"(?:[0-9A-Fa-f]{32})+")


def from_original_page(headers: Headers) -> bool:
    """Whether a POST comes from the original Pasteur's script (see above)."""
    mode = headers.get("sec-fetch-mode", "").lower()
    if mode in ("", "navigate"):
        return False
    if mediatype.parse(headers.get("content-type", ""))[0] != "multipart/form-data":
        return False
    accept = headers.get("accept", "")
    return not (mediatype.accepts(accept, "application/json")
                or mediatype.accepts(accept, "text/html"))


def translated(fields: dict[str, str]) -> tuple[dict[str, str], str | None, bool]:
    """The original's form fields as this server's (``record.checked``
    takes them), the ``hl`` to answer (kept when it is a language the
    original knew, or one of ours; None otherwise), and whether the paste
    is encrypted (``encrypted`` is exactly ``on``, as the original tested)."""
    hl = fields.get("hl")
    lang = languages.resolve(hl)
    kept = hl if hl and hl != languages.ORIGINAL_NONE and lang is not None else None
    ours = {
        # Stored when the form here offers it; a link-only language (coq)
        # comes back in the link the original's script builds (?hl=coq).
        "hl": lang if lang in languages.NAMES else "",
        # Present means true, whatever the value (an unchecked box is not sent).
        "ln": "true" if "ln" in fields else "",
        "raw": "true" if "raw" in fields else "",
        "form": "html",  # a textarea: its line breaks arrive as CRLF
    }
    for name in ("user", "comment"):
        if name in fields:
            ours[name] = fields[name]
    return ours, kept, fields.get("encrypted") == "on"


def sealed(upload: Upload, max_size: int) -> Paste:
    """The paste of an encrypted upload from the original's page: its hex
    ciphertext, kept as it came (the original's link decrypts it)."""
    if not upload.has_paste:
        raise FormError(400, "the form has no 'paste' field")
    if upload.body.spooled or upload.body.size > 2 * (max_size + 16):
        raise FormError(400, "paste too large")
    ct = upload.paste
    if not _HEX_BLOCKS.fullmatch(ct):
        raise FormError(400, "bad encrypted paste: the original Pasteur's page sends whole "
                             "AES blocks in hex")
    return Paste(created=now_iso(), size=len(ct) // 2, ct=ct.decode("ascii"), enc=LEGACY_ENC)


def answer(code: str, ln: bool, raw: bool, hl: str | None,
           headers: dict[str, str]) -> Response:
    """The original's answer: 200, compact JSON in its order, any origin."""
    body: dict[str, object] = {"ln": ln, "raw": raw}
    if hl is not None:
        body["hl"] = hl
    body["code"] = code
    return Response(json.dumps(body, separators=(",", ":")), 200,
                    headers={**headers, "access-control-allow-origin": "*"},
                    media_type="application/json")


def status_for(status: int) -> int:
    """The status the original's script shows the message of: 400 or 500."""
    return 500 if status >= 500 else 400
