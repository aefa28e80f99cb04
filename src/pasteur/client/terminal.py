"""The terminal client: ``pasteur paste`` and ``pasteur get``.

It encrypts and decrypts in exactly the browser's formats (``pasteur.crypto``:
new pastes in v2, compressed then encrypted; v1 and the original Pasteur's read),
so a paste made here opens in a browser and the reverse. The key stays in the
URL fragment, which is never sent to the server.
"""

from __future__ import annotations

import argparse
import getpass
import mimetypes
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from pasteur import crypto, languages, mediatype

DEFAULT_SERVER = "http://127.0.0.1:4343"


class ClientError(Exception):
    """Printed as one line; the command exits 1."""


def add_client_commands(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001
    p = sub.add_parser("paste", help="encrypt and upload a paste from a file or stdin",
                       description="Encrypt a file (or standard input) in the browser's format, "
                                   "upload it and print its URL with the key.")
    p.add_argument("file", nargs="?", type=Path, help="file to paste (default: standard input)")
    p.add_argument("-a", "--attach", action="append", type=Path, default=[], metavar="FILE",
                   help="attach a file, encrypted with the text (repeatable); with attachments "
                        "the text may be empty, and standard input is not read when it is a "
                        "terminal")
    p.add_argument("-s", "--server", default=os.environ.get("PASTEUR_SERVER", DEFAULT_SERVER),
                   help=f"server URL (default {DEFAULT_SERVER}) [env PASTEUR_SERVER]")
    p.add_argument("-l", "--lang", default=None,
                   help="language for highlighting (default: guessed from the file name)")
    p.add_argument("-n", "--ln", action="store_true", help="show line numbers")
    p.add_argument("-e", "--expiry", default=None, help="5m, 1h, 1d, 1w, 30d, 1y or never")
    p.add_argument("-b", "--burn", action="store_true", help="delete after the first reading")
    p.add_argument("-p", "--password", action="store_true",
                   help="protect with a password (asked, or PASTEUR_PASSWORD)")
    p.add_argument("--uncompressed", action="store_true",
                   help="encrypt in format v1, not compressed first (for a paste that mixes a "
                        "secret with text someone else chose: README, Encryption formats)")
    p.add_argument("--plain", action="store_true",
                   help="do not encrypt (the server can read it; it gets a raw view)")
    p.add_argument("--user", default=None, help="Git author (stored in clear)")
    p.add_argument("--comment", default=None, help="Git commit message (stored in clear)")
    _tls_arguments(p)

    g = sub.add_parser("get", help="download and decrypt a paste",
                       description="Fetch a paste by its URL and print its text; the key is "
                                   "read from the URL's fragment.")
    g.add_argument("url", help="the paste's URL, with #key for an encrypted paste")
    g.add_argument("-p", "--password", action="store_true",
                   help="ask for the password (or PASTEUR_PASSWORD) if the paste has one")
    g.add_argument("--save-files", type=Path, metavar="DIR", default=None,
                   help="write the paste's attachments into DIR, made if missing "
                        "(never overwrites a file)")
    _tls_arguments(g)


def _tls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cacert", type=Path, default=os.environ.get("PASTEUR_CACERT"),
                   help="CA bundle to verify an HTTPS server [env PASTEUR_CACERT]")
    p.add_argument("-k", "--insecure", action="store_true",
                   help="do not verify the server's certificate")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")


def _client(args: argparse.Namespace) -> httpx.Client:
    verify: bool | str = True
    if args.insecure:
        verify = False
    elif args.cacert:
        verify = str(args.cacert)
    return httpx.Client(verify=verify, timeout=args.timeout, http2=True)


def _password(args: argparse.Namespace, confirm: bool) -> str:
    env = os.environ.get("PASTEUR_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        raise ClientError("a password is needed: set PASTEUR_PASSWORD (stdin is not a terminal)")
    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise ClientError("the passwords differ")
    if not first:
        raise ClientError("empty password")
    return first


def _error_of(response: httpx.Response) -> str:
    try:
        return response.json().get("error", response.text.strip())
    except ValueError:
        return response.text.strip()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from exc


def _attachments(paths: list[Path]) -> list[tuple[str, str, bytes]]:
    files = []
    for path in paths:
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        files.append((path.name, media_type, _read(path)))
    return files


def paste(args: argparse.Namespace) -> int:
    if args.attach and args.plain:
        raise ClientError("attachments are encrypted with the text: drop --plain")
    files = _attachments(args.attach)
    if args.file is not None:
        data = _read(args.file)
    elif files and sys.stdin.isatty():
        data = b""  # only attachments: no text to wait for
    else:
        data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(f"the input is not UTF-8 text (bad byte at offset {exc.start})") from exc
    if not text and not files:
        raise ClientError("nothing to paste: the input is empty")
    lang = args.lang
    if lang is None:
        lang = languages.guess_from_filename(args.file.name) if args.file else ""
    if lang and lang not in languages.NAMES:
        raise ClientError(f"unknown language {lang!r}; known: {', '.join(sorted(languages.NAMES))}")
    fields: dict[str, str] = {}
    key = None
    if args.plain:
        if args.password:
            raise ClientError("a password needs encryption: drop --plain")
        fields.update(paste=text, hl=lang, ln="true" if args.ln else "")
    else:
        payload = crypto.make_payload(text, lang, args.ln, files)
        password = _password(args, confirm=True) if args.password else None
        # format v2 (compressed, then encrypted), or v1 with --uncompressed
        sealed = crypto.new_paste(payload, password, compress=not args.uncompressed)
        key = sealed.key
        fields.update(sealed.fields())
    for name in ("expiry", "user", "comment"):
        if getattr(args, name):
            fields[name] = getattr(args, name)
    if args.burn:
        fields["burn"] = "true"
    form = {name: (None, value) for name, value in fields.items() if value}
    server = args.server.rstrip("/")
    with _client(args) as client:
        try:
            r = client.post(server + "/", files=form, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {server}: {exc}") from exc
    if r.status_code != 201:
        raise ClientError(f"the server refused the paste ({r.status_code}): {_error_of(r)}")
    body = r.json()
    print(body["url"] + (f"#{key}" if key else ""))
    print(f"delete: {body['delete_url']}", file=sys.stderr)
    return 0


def get(args: argparse.Namespace) -> int:
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"not a paste URL: {args.url!r}")
    key = parts.fragment
    raw_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "raw=true", ""))
    with _client(args) as client:
        try:
            r = client.get(raw_url, headers={"accept": "application/json"})
            if r.status_code == 409:  # read once: only a POST reads (and burns) it
                read_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/read",
                                       "raw=true", ""))
                r = client.post(read_url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {parts.netloc}: {exc}") from exc
    if r.status_code != 200:
        raise ClientError(f"cannot get the paste ({r.status_code}): {_error_of(r)}")
    if mediatype.parse(r.headers.get("content-type", ""))[0] != "application/json":
        sys.stdout.write(r.text)  # an unencrypted paste
        return 0
    doc = r.json()
    if not key:
        raise ClientError("this paste is encrypted and the URL has no #key")
    legacy = legacy_ciphertext(doc)
    if legacy is not None:
        try:
            sys.stdout.write(crypto.decrypt_legacy(unquote(key), legacy))
        except crypto.DecryptError as exc:
            raise ClientError(f"cannot decrypt: {exc}; check the key") from exc
        return 0
    kdf = doc.get("kdf")
    password = None
    try:  # an unknown format is said before any password is asked for
        fmt = crypto.check_format(doc.get("fmt", 1))
    except crypto.DecryptError as exc:
        raise ClientError(f"cannot decrypt: {exc}") from exc
    if kdf:
        try:  # before the password is asked for: a hostile count would take hours
            crypto.check_iterations(kdf.get("iter") if isinstance(kdf, dict) else None)
        except crypto.DecryptError as exc:
            raise ClientError(f"cannot decrypt: {exc}") from exc
        password = _password(args, confirm=False)
    try:
        payload = crypto.decrypt(
            key, doc["iv"], doc["ct"], password,
            kdf.get("salt") if kdf else None, kdf.get("iter") if kdf else None, fmt,
        )
    except crypto.DecryptError as exc:
        hint = " (or the password)" if kdf else ""
        raise ClientError(f"cannot decrypt: {exc}; check the key{hint}") from exc
    files = crypto.payload_files(payload)
    if args.save_files is not None:
        for path in save_files(files, args.save_files):
            print(f"saved {path}", file=sys.stderr)
    elif files:
        print(f"pasteur: this paste has {len(files)} attached file(s): "
              "add --save-files DIR to save them", file=sys.stderr)
    sys.stdout.write(payload["text"])
    return 0


def legacy_ciphertext(doc: object) -> str | None:
    """The hex ciphertext of a paste encrypted by the original Pasteur's page
    (told by its stored document: the original's ``{"contents", "encrypted":
    true}``, or v1 with ``"enc": "aes-128-cbc"``), or None for another."""
    if not isinstance(doc, dict):
        return None
    if "v" not in doc and doc.get("encrypted") is True and isinstance(doc.get("contents"), str):
        return doc["contents"]
    if doc.get("enc") == crypto.LEGACY_ENC and isinstance(doc.get("ct"), str):
        return doc["ct"]
    return None


def safe_name(name: str, index: int) -> str:
    """A file name from a paste, made harmless: no directories, no '..', no control
    characters, no leading dot; an unusable name becomes ``attachment-N``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip().lstrip(".")
    return base[:200] or f"attachment-{index + 1}"


def save_files(files: list[tuple[str, str, bytes]], directory: Path) -> list[Path]:
    """Write attachments into a directory (made if missing); refuse if any name is taken."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ClientError(f"{directory} is not a directory") from None
    except OSError as exc:
        raise ClientError(f"cannot make {directory}: {exc.strerror}") from exc
    names: list[str] = []
    for i, (name, _, _) in enumerate(files):
        first = candidate = safe_name(name, i)
        stem, dot, ext = first.rpartition(".")
        n = 1
        while candidate in names:  # two attachments of the same name
            n += 1
            candidate = f"{stem}-{n}.{ext}" if dot and stem else f"{first}-{n}"
        names.append(candidate)
    paths = [directory / name for name in names]
    taken = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if taken:
        raise ClientError(f"not overwriting {', '.join(taken)}: nothing was saved")
    for path, (_, _, data) in zip(paths, files, strict=True):
        try:
            with path.open("xb") as out:
                out.write(data)
        except OSError as exc:
            raise ClientError(f"cannot write {path}: {exc.strerror}") from exc
    return paths


def run(args: argparse.Namespace) -> int:
    try:
        return paste(args) if args.command == "paste" else get(args)
    except ClientError as exc:
        print(f"pasteur: {exc}", file=sys.stderr)
        return 1
