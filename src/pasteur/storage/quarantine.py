"""Journaled records that cannot be committed or served (a replayed record
this version refuses, say) are set aside: logged, appended durably to the
quarantine file with their id and reason, never committed, never served.
Their journal records are passed by the checkpoint like committed ones."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from .. import record
from .batch import Pending

log = logging.getLogger("pasteur.store")


class Quarantine:
    """``check_document``: why a document cannot be served (None: it can);
    ``path``: the quarantine file, one JSON object a line."""

    def __init__(self, path: Path,
                 check_document: Callable[[bytes], str | None] | None = None) -> None:
        self.path = path
        self.check_document = check_document

    def problem(self, p: Pending) -> str | None:
        """Why a journaled record cannot be committed or served, or None."""
        reason = record.commit_problem(p.paste_id, p.author, p.message)
        if reason is None and self.check_document is not None and isinstance(p.data, bytes):
            reason = self.check_document(p.data)
        return reason

    def set_aside(self, p: Pending, reason: str) -> None:
        """Quarantine one record: logged, appended (durably) to the quarantine
        file with its id and reason, dropped from what is served and committed."""
        log.error("paste %s set aside in %s: %s", p.paste_id, self.path, reason)
        p.quarantine = reason
        if isinstance(p.data, bytes):
            data, encoding = p.data.decode("utf-8", "replace"), "utf-8"
            if data.encode() != p.data:
                data, encoding = base64.b64encode(p.data).decode(), "base64"
        else:
            data, encoding = str(p.data), "path"
        line = json.dumps({"id": p.paste_id, "seq": p.seq, "reason": reason,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "user": p.author, "comment": p.message,
                           "data": data, "encoding": encoding})
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "backslashreplace") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("the quarantine file cannot be written (%s): the record was %s", exc, line)
