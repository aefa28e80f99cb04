"""Which branch of the remote holds the pastes.

``URL#branch`` (the original's remote syntax) or ``--remote-branch`` name it.
Without either, the branch is the one the remote's HEAD names, as ``git clone``
would check out (git daemon, SSH and smart HTTP all advertise HEAD's target).
A remote that advertises no HEAD (an unborn HEAD, e.g. a bare repository made
with ``init.defaultBranch=main`` and only a ``master`` branch) but has exactly
one branch: that branch, never a second one beside it. Otherwise ``main``, and
when the remote has other branches and no ``main``, a warning says that
``main`` is created beside them. An unreachable remote: the branch this data
directory synchronised with before, if there is exactly one, else ``main``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pasteur.config import SyncSettings

log = logging.getLogger("pasteur.sync.branch")

DEFAULT = "main"

# Ask the remote (the worker's "advertised" operation): {"ok", "head", "branches"}
# or {"ok": false, "kind", "error"}.
AskHead = Callable[[], Awaitable[dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Choice:
    branch: str
    source: str  # "URL#branch", "remote HEAD", "only branch", "previous run", "default"
    warning: str | None = None


def choose(reply: dict[str, Any] | None, remembered: list[str]) -> Choice:
    """The branch from the remote's answer (None: unreachable) and the branches
    this data directory synchronised with before."""
    if reply is None or not reply.get("ok"):
        if len(remembered) == 1:
            return Choice(remembered[0], "previous run")
        return Choice(DEFAULT, "default", "could not read the remote's HEAD; using branch "
                                          f"{DEFAULT} (give URL#BRANCH to choose another)")
    head = reply.get("head")
    if head:
        return Choice(head, "remote HEAD")
    branches: list[str] = reply.get("branches") or []
    if len(branches) == 1:
        return Choice(branches[0], "only branch")
    if branches and DEFAULT not in branches:
        return Choice(DEFAULT, "default",
                      f"the remote advertises no HEAD and has branches {', '.join(branches)} "
                      f"but no {DEFAULT}: creating {DEFAULT} beside them (give URL#BRANCH "
                      "to use one of them)")
    return Choice(DEFAULT, "default")


async def resolve(settings: SyncSettings, ask: AskHead, remembered: list[str]) -> Choice:
    """The branch to synchronise with (see the module's doc); settings naming one
    explicitly are not asked about."""
    if not settings.branch_from_head:
        return Choice(settings.branch, "URL#branch")
    try:
        reply: dict[str, Any] | None = await ask()
    except TimeoutError:
        reply = None
    if reply is not None and not reply.get("ok") and reply.get("kind") != "network":
        return Choice(settings.branch, "default")  # the first fetch reports the refusal
    choice = choose(reply, remembered)
    if choice.warning:
        log.warning("remote branch: %s", choice.warning)
    return choice
