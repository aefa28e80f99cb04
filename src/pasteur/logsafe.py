"""Text from clients made safe for a log line.

A path, a header or a form field may hold CR, LF, ANSI escapes or other
control characters: written as they are, a percent-encoded CR/LF in a path
forges a whole access-log line and an escape sequence drives the terminal.
Every character that is not printable (Unicode categories C and Z but the
ASCII space: controls, C1, line and paragraph separators), the backslash
and, in a quoted field (the access log's request line), the double quote are
written as Python-style escapes (``\\n``, ``\\x1b``, ``\\u2028``), so that the
line stays one line and says exactly what was received. A leaf: imports
nothing of ours.
"""

from __future__ import annotations

import logging
from types import TracebackType

# What logging hands Formatter.formatException (sys.exc_info()).
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}


def _escape_char(c: str) -> str:
    short = _SHORT.get(c)
    if short is not None:
        return short
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, also: str = "\\") -> str:
    """``text`` on one line, its control characters and those of ``also``
    escaped (cheap when there are none)."""
    if text.isprintable() and not any(c in text for c in also):
        return text
    return "".join(c if c.isprintable() and c not in also else _escape_char(c) for c in text)


def quoted(text: str) -> str:
    """``text`` escaped to sit between double quotes."""
    if text.isprintable() and "\\" not in text and '"' not in text:
        return text  # the common case, without escape's generator (per access-log field)
    return escape(text, '\\"')


class SafeFormatter(logging.Formatter):
    """A formatter whose every record stays one line per line it means.

    The message is escaped whole (its arguments may come from a client: a
    Git author, an exception's text). A traceback keeps its own line breaks,
    its other control characters escaped, each of its lines indented, so that
    no text in an exception's message can pass for a log line of its own.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: ExcInfo) -> str:  # noqa: N802 - logging's name
        text = super().formatException(ei)
        return "\n".join("    " + escape(line, "") for line in text.split("\n"))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return "\n".join("    " + escape(line, "") for line in stack_info.split("\n"))


def configure(level: int, fmt: str) -> None:
    """``logging.basicConfig`` on stderr with the safe formatter."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
