"""Logs hold what clients send escaped: one request, one line, no terminal escapes."""

from __future__ import annotations

import logging
import re
import socket

from pasteur.logsafe import SafeFormatter

FORGED = "2030-01-01 00:00:00 INFO pasteur.access: 6.6.6.6 \"GET /forged\" 200 1B 0.1ms"
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def raw_request(port: int, request_line: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_access_log_escapes_control_characters_of_the_path(shared_server):
    forged = FORGED.replace(" ", "%20").replace('"', "%22")
    answer = raw_request(
        shared_server.port, b"GET /x%0d%0a" + forged.encode() + b"%1b[2J%e2%80%a8 HTTP/1.1"
    )
    assert answer.startswith(b"HTTP/1.1 404")
    shared_server.settle()
    log = shared_server.log_path.read_bytes()
    assert b"\x1b" not in log and "\u2028".encode() not in log
    lines = log.decode().splitlines()
    assert not [line for line in lines if "/forged" in line and line.startswith(FORGED[:20])]
    line = next(line for line in lines if "/forged" in line)
    assert STAMP.match(line) and ' 404 ' in line
    assert '"GET /x\\r\\n2030-01-01 00:00:00 INFO pasteur.access: 6.6.6.6 \\"GET /forged\\"' in line
    assert "\\x1b[2J\\u2028" in line


def test_formatter_keeps_a_record_on_its_lines():
    formatter = SafeFormatter("%(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError("bad user\nINFO pasteur: forged \x1b[31m")
    except ValueError as exc:
        record = logging.LogRecord(
            "pasteur", logging.ERROR, __file__, 1, "commit failed: %s", (exc,), None
        )
        record.exc_info = (type(exc), exc, exc.__traceback__)
    text = formatter.format(record)
    first, *rest = text.split("\n")
    assert first == "ERROR pasteur: commit failed: bad user\\nINFO pasteur: forged \\x1b[31m"
    assert rest and all(line.startswith("    ") for line in rest), rest
    assert "\x1b" not in text
