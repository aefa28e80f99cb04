"""Random bytes for ids and tokens, from the OS CSPRNG, read in blocks.

``os.urandom`` releases the GIL: called on the event loop once per create, it
handed the GIL to the writer thread, and the loop waited for it to come back
(measured: 15% of the samples of the loop thread under load). One read of
4 KiB serves ~200 tokens; each byte is handed out once, never reused, and a
forked child starts with an empty block.
"""

from __future__ import annotations

import base64
import os
import threading

BLOCK = 4096


class Entropy:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def bytes(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf = os.urandom(max(BLOCK, n))
                self._pos = 0
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out

    def forget(self) -> None:
        self._buf, self._pos = b"", 0


_entropy = Entropy()
os.register_at_fork(after_in_child=_entropy.forget)


def token_bytes(n: int) -> bytes:
    return _entropy.bytes(n)


def token_urlsafe(n: int) -> str:
    """Like ``secrets.token_urlsafe``: ``n`` random bytes in unpadded base64url."""
    return base64.urlsafe_b64encode(_entropy.bytes(n)).rstrip(b"=").decode("ascii")
