"""form.py's ``whole_form``: a complete body read in one go must give exactly
what the streaming parser gives for it, or leave it to the parser."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pasteur.web.form import FormError, Upload, read_upload, whole_form

B = "XyZb0und"
CT = f"multipart/form-data; boundary={B}"


def part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disp = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disp += f'; filename="{filename}"'
    head = disp + (f"\r\nContent-Type: {ctype}" if ctype else "")
    return f"--{B}\r\n{head}\r\n\r\n".encode() + value + b"\r\n"


def form(*parts: bytes, end: bytes = f"--{B}--\r\n".encode()) -> bytes:
    return b"".join(parts) + end


async def outcome(body: bytes, whole: bool) -> tuple:
    """read_upload on ``body`` in one chunk: with its Content-Length (whole_form
    may read it) or without (the streaming parser always does)."""

    async def chunks():
        yield body
        yield b""

    try:
        upload: Upload = await read_upload(chunks(), CT, len(body) if whole else None, 4096)
    except FormError as exc:
        return ("error", exc.status, exc.message)
    try:
        return ("ok", upload.fields, upload.has_paste, upload.filename,
                upload.paste)  # small bodies: never spooled
    finally:
        upload.close()


def same(body: bytes) -> tuple:
    fast, slow = asyncio.run(outcome(body, True)), asyncio.run(outcome(body, False))
    assert fast == slow, body
    return fast


def test_what_clients_send_is_read_whole() -> None:
    for body in (
        form(part("encrypted", b"true"), part("iv", b"A" * 16), part("paste", b"x" * 100)),
        form(part("paste", b"hello\r\n", "notes.txt", "text/plain"), part("hl", b"python")),
        form(part("paste", b"hi"), end=f"--{B}--".encode()),  # no CRLF at the end
    ):
        assert whole_form(body, B.encode()) is not None, body
        assert same(body)[0] == "ok"
    assert same(form(part("paste", b"a\r\nb"), part("ln", b"1"), part("junk", b"z")))[1:3] == (
        {"ln": "1"}, True)


@pytest.mark.parametrize("body", [
    form(part("paste", b"a"), part("paste", b"b")),  # two paste fields: 400 from both
    form(part("hl", b"x" * 65), part("paste", b"a")),  # a field too long
    form(part("paste", b"\xff")) + b"",
    b"preamble\r\n" + form(part("paste", b"a")),  # left to the parser
    form(part("paste", b"a"), end=f"--{B}xx".encode()),
    form(part("paste", b"a"), end=b""),  # no final boundary
    f"--{B}\r\ncontent-disposition: form-data; name=\"paste\"\r\n\r\na\r\n--{B}--".encode(),
    f"--{B}\r\nContent-Disposition: attachment; name=\"paste\"\r\n\r\na\r\n--{B}--".encode(),
    f"--{B}\r\nContent-Disposition: form-data\r\n\r\na\r\n--{B}--".encode(),
    f"--{B}\r\nContent-Length: 1\r\nContent-Disposition: form-data; name=\"paste\"\r\n\r\na"
    f"\r\n--{B}--".encode(),
    f"--{B}\r\n\r\na\r\n--{B}--".encode(),
    b"".join(part("f", b"1") for _ in range(40)) + f"--{B}--".encode(),  # too many parts
])
def test_odd_bodies_answer_as_the_parser_does(body: bytes) -> None:
    same(body)


PIECES = st.sampled_from([
    f"--{B}\r\n".encode(), f"\r\n--{B}\r\n".encode(), f"\r\n--{B}--".encode(),
    f"--{B}--\r\n".encode(), b'Content-Disposition: form-data; name="paste"\r\n',
    b'Content-Disposition: form-data; name="hl"\r\n', b'Content-Disposition: form-data; '
    b'name="paste"; filename="a.py"\r\n', b"Content-Type: text/plain\r\n", b"\r\n", b"\r",
    b"\n", b"data", b"\xff", b"x" * 70, b"--", B.encode(), b"name=\"iv\"", b":",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=16))
def test_any_body_answers_as_the_parser_does(pieces: list[bytes]) -> None:
    same(b"".join(pieces))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["paste", "hl", "ln", "iv", "other", ""]),
                          st.binary(max_size=80)), max_size=6))
def test_forms_answer_as_the_parser_does(fields: list[tuple[str, bytes]]) -> None:
    same(form(*(part(name, value) for name, value in fields)))
