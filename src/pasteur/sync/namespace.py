"""Paste ids that cannot collide across instances sharing a remote (issue 14, item 5).

Each instance claims a one-character id namespace on the remote, once: the
worker creates ``refs/pasteur/ids/<c>`` there with a plain (never forced)
push, which receive-pack lets only one instance do. Every id the instance
picks then ends with ``<c>`` (``storage.idbook``), so two instances never
pick the same id, whatever their sync lag: no id needs renaming on
integration, and an acknowledged URL always serves its own paste. The claim
is recorded in the repository directory (``pasteur-id-namespace``) with the
instance's name (``pasteur-instance``, random, made once): a crash between
the push and the record finds the same claim again (its commit is the same).

Why a namespace rather than checking the remote before each create: it costs
one push per instance lifetime instead of a round trip per paste, and creates
go on during an outage. Its price: 62 instances per remote at most, and one
character of each id is not random (the default length 4 keeps 3 random
characters, 238,328 ids per instance before ids grow). Until the first claim
succeeds (a first start with the remote down), creates answer 503.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from pasteur.ids import ALPHABET
from pasteur.storage.store import Store

log = logging.getLogger("pasteur.sync.syncer")

NAMESPACE_FILE = "pasteur-id-namespace"
INSTANCE_FILE = "pasteur-instance"
RETRY_FIRST, RETRY_CAP = 1.0, 30.0  # seconds between claims while the remote is down


class Worker(Protocol):
    async def call(self, op: str, **args: Any) -> dict[str, Any]: ...


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IdNamespace:
    """The instance's id namespace: loaded, or claimed on the remote."""

    def __init__(self, store: Store, worker: Worker) -> None:
        self.store = store
        self.worker = worker
        self.file = store.path / NAMESPACE_FILE
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None
        store.idbook.shared = True  # no id before the namespace is known
        char = self.file.read_text().strip() if self.file.exists() else ""
        if len(char) == 1 and char in ALPHABET:
            store.idbook.namespace = char

    def instance(self) -> str:
        path = self.store.path / INSTANCE_FILE
        if not path.exists():
            _write(path, secrets.token_hex(16))
        return path.read_text().strip()

    async def claim(self) -> bool:
        """One attempt; whether the namespace is known now."""
        if self.store.idbook.namespace is not None:
            return True
        reply = await self.worker.call("namespace", instance=self.instance())
        if not reply.get("ok"):
            self.error = f"{reply.get('kind')}: {reply.get('error')}"
            return False
        char = reply["namespace"]
        _write(self.file, char)
        self.store.idbook.namespace = char
        self.error = None
        log.info("id namespace %r claimed on the remote: new ids end with it", char)
        return True

    async def start(self) -> None:
        """Claim now, or keep trying in the background (creates answer 503 meanwhile)."""
        if await self.claim():
            return
        log.warning("no id namespace yet (%s): creates are refused until the remote "
                    "answers", self.error)
        self._task = asyncio.get_running_loop().create_task(self._retry(), name="pasteur-ns")

    async def _retry(self) -> None:
        delay = RETRY_FIRST
        while not await self.claim():
            await asyncio.sleep(delay)
            delay = min(RETRY_CAP, delay * 2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
