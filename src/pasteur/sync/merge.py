"""Integrating a fetched remote history into the local branch (writer thread).

History stays linear: never a merge commit, never a second root. With local
head L, remote head R, merge base B and K the remote head we knew before the
fetch:

- L == B: fast-forward to R;
- R == B: we are ahead, just push;
- otherwise replay the local commits after B that K does not hold (those are
  the ones never pushed) on top of R, with the same additions, removals,
  author and message, and move the branch there in one durable step.

Hiding K matters when the remote was rewritten (another instance erased
pastes from history and force-pushed): our copies of the old commits are not
replayed, so the erased pastes do not come back. The erasing instance adds a
commit whose message lists the erased ids (``Erased: id id``); a paste of the
local tree that the rewritten remote lacks and does not list is restored (a
rewrite by hand, e.g. a forced push that dropped commits, loses nothing).

When the *local* history was rewritten (this instance erased pastes), the
remote commits it lacks (after K) are applied on top of the local head
instead, and the result is force-pushed with a lease on the remote head.

Two instances never add the same id: each picks its ids in its own
namespace, claimed on the remote (``pasteur.sync.namespace``), so no id is
renamed on integration (the ``<id><6 hex>`` rename is gone: the client was
never told). A collision can only come from a writer outside that scheme (a
push by hand, an instance from before namespaces): the paste already on the
remote keeps the id, the other is left out of the tree and logged as an
error with its blob id (``Integration.collisions``).

Erasure converges, whatever the interleaving of instances erasing at once:

- an ``Erased:`` marker is never dropped (not by a replay, an absorb nor a
  later erasure), so every instance sees every marker after its merge base;
- a replayed or absorbed commit does not add back a paste a marker on either
  side names, if the commit is not newer than the marker (an id reused later
  by a new paste is not touched); "newer" compares author times, which a
  replay keeps (a replay that restamped an old addition made it look like a
  new paste to the instance that erased it, which then kept it for good);
- after any integration, an id that a marker names and that a commit older
  than the marker still holds (the other side's history had the erased
  content) is queued for erasure in the same writer step, durably, before the
  new remote head is recorded; the syncer erases it before its next push,
  which is then forced: no forced push carries content that any instance
  erased.

Why a paste is gone (burned, expired, deleted: a 410 in plain words, or 404
for a deleted one) is known on every instance, not only the one that removed
it: a removal commit says it in its first word (``Burn paste <id>``,
``Expire 3 pastes``, ``Delete paste <id>``), and since an erasure drops those
commits, its marker says it too, one line per reason under ``Erased:``
(``Burn: <id> <id>``). An integration reads both in the remote commits it
brings (``Integration.gone``) and the syncer records them as tombstones.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pygit2
from pygit2.enums import DeltaStatus, SortMode

from pasteur.ids import valid_id
from pasteur.storage.maintenance import repack_and_prune
from pasteur.storage.objects import DEFAULT_EMAIL, DEFAULT_NAME, shard_path
from pasteur.storage.repository import Change, Repository

log = logging.getLogger("pasteur.sync.syncer")


@dataclass
class Integration:
    action: str  # "none", "fast-forward", "ahead", "replay", "absorb"
    replayed: int = 0
    # Ids added on both sides with other content (not by namespaced instances).
    collisions: list[str] = field(default_factory=list)
    remote_rewritten: bool = False
    restored: list[str] = field(default_factory=list)
    # Ids another instance erased that the integrated history still held:
    # queued for erasure (``Store.queue_erasure``), to erase before any push.
    erase: list[str] = field(default_factory=list)
    # Why pastes removed elsewhere are gone (id -> "Burn", "Expire", "Delete"),
    # from the integrated remote commits: recorded as tombstones.
    gone: dict[str, str] = field(default_factory=dict)


def integrate(
    repository: Repository, remote: pygit2.Oid | None, known: pygit2.Oid | None = None
) -> Integration:
    """Bring the remote's history into the local branch, linearly."""
    local = repository.head
    if remote is None or local == remote:
        return Integration("none")
    if local is None:
        repository.reset_to(remote)
        return _settle(repository, None, Integration("fast-forward"), remote)
    repo = repository.repo
    known = known if known is not None and known != remote and _exists(repo, known) else None
    rewritten = known is not None and not repo.descendant_of(remote, known)
    if rewritten:
        log.warning("the remote history was rewritten (%s is gone from it)", known)
    base = repo.merge_base(local, remote)
    erased = _markers_both(repo, local, remote, base)
    if rewritten:
        hide = [h for h in (base, known) if h is not None]
        result = _replay(repository, local, remote, hide, erased, restore=True)
        result.remote_rewritten = True
        return _settle(repository, base, result, remote)
    if base == local:
        repository.reset_to(remote)
        return _settle(repository, base, Integration("fast-forward"), remote)
    if base == remote:
        return Integration("ahead")
    result = _replay(repository, local, remote, [base] if base is not None else [], erased)
    return _settle(repository, base, result, remote)


def absorb(repository: Repository, known: pygit2.Oid, remote: pygit2.Oid) -> Integration:
    """After a local rewrite: apply the remote commits after ``known`` on the head."""
    repo = repository.repo
    hide = known if _exists(repo, known) and repo.descendant_of(remote, known) else None
    if hide is None:
        hide = repo.merge_base(remote, known) if _exists(repo, known) else None
    erased = _markers_both(repo, repository.head, remote, hide)
    walker = repo.walk(remote, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    if hide is not None:
        walker.hide(hide)
    tree = repo[repository.head].peel(pygit2.Tree) if repository.head is not None else None
    result = Integration("absorb")
    changes = _changes_of(walker, tree, result, erased, theirs_win=False)
    if changes:
        repository.apply(changes)
    return _settle(repository, hide, result, remote)


def _replay(
    repository: Repository, local: pygit2.Oid, remote: pygit2.Oid, hide: list[pygit2.Oid],
    erased: dict[str, int], restore: bool = False,
) -> Integration:
    """Replay local commits not reachable from ``hide`` on ``remote`` (one durable step).

    With ``restore`` (the remote was rewritten), pastes of the local tree that
    the remote lost without listing them as erased are added back.
    """
    repo = repository.repo
    walker = repo.walk(local, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    for oid in hide:
        walker.hide(oid)
    remote_tree = repo[remote].peel(pygit2.Tree)
    result = Integration("replay")
    changes = _changes_of(walker, remote_tree, result, erased, theirs_win=True)
    if restore:
        lost = _lost(repo, local, remote, hide[0] if hide else None, changes)
        if lost:
            log.warning("the remote rewrite dropped %d pastes it does not list as erased; "
                        "restoring them: %s", len(lost), " ".join(i for i, _ in lost))
            changes.append(Change(lost, [], None, f"Restore {len(lost)} pastes"))
            result.restored = [i for i, _ in lost]
    repository.apply(changes, onto=remote)
    return result


ERASED = "Erased:"
# Why pastes were removed: the first word of a removal commit's message, and
# of a marker's reason lines (the words of ``storage.tombstones``).
REASONS = ("Burn", "Expire", "Delete")


def erase_message(ids: set[str], reasons: dict[str, str] | None = None) -> str:
    """The message of the commit that tells other instances which pastes
    were erased, and why each was removed (``reasons``, where known)."""
    lines = [f"{ERASED} {' '.join(sorted(ids))}"]
    by_reason: dict[str, list[str]] = {}
    for paste_id, reason in (reasons or {}).items():
        if paste_id in ids and reason in REASONS:
            by_reason.setdefault(reason, []).append(paste_id)
    lines += [f"{r}: {' '.join(sorted(by_reason[r]))}" for r in REASONS if r in by_reason]
    return f"Erase {len(ids)} pastes\n\n" + "\n".join(lines) + "\n"


def marked_reasons(message: str) -> dict[str, str]:
    """Why the pastes an erase marker names were removed (id -> reason),
    from its reason lines; empty for any other commit and an older marker."""
    if ERASED not in message:
        return {}
    found: dict[str, str] = {}
    for line in message.splitlines():
        word, colon, rest = line.partition(":")
        if colon and word in REASONS:
            found.update((i, word) for i in rest.split() if valid_id(i))
    return found


def gone_reasons(repo: pygit2.Repository, remote: pygit2.Oid | None,
                 hide: pygit2.Oid | None, limit: int = 100_000) -> dict[str, str]:
    """Why the pastes removed by the commits after ``hide`` up to ``remote``
    are gone: from erase markers' reason lines and removal commits' first
    words (one tree diff per removal commit, none for the others). The
    newest word wins."""
    found: dict[str, str] = {}
    if remote is None:
        return found
    walker = repo.walk(remote, SortMode.TOPOLOGICAL)
    if hide is not None:
        with contextlib.suppress(KeyError, ValueError, pygit2.GitError):
            walker.hide(hide)
    for n, commit in enumerate(walker):  # newest first
        if n >= limit:
            break
        for paste_id, reason in marked_reasons(commit.message).items():
            found.setdefault(paste_id, reason)
        word = commit.message.split(" ", 1)[0]
        if word in REASONS:
            for paste_id in commit_delta(commit)[1]:
                found.setdefault(paste_id, word)
    return found


def marked(message: str) -> list[str]:
    """The ids an erase marker's message names (none for any other commit)."""
    ids: list[str] = []
    for line in message.splitlines():
        if line.startswith(ERASED):
            ids.extend(line[len(ERASED):].split())
    return ids


def _markers(repo: pygit2.Repository, tip: pygit2.Oid | None, base: pygit2.Oid | None,
             limit: int = 100_000) -> dict[str, int]:
    """Ids named by erase markers after ``base`` up to ``tip``, each with the
    (author) time of the newest marker naming it."""
    erased: dict[str, int] = {}
    if tip is None:
        return erased
    walker = repo.walk(tip)
    if base is not None:
        walker.hide(base)
    for n, commit in enumerate(walker):
        if n >= limit:
            break
        for paste_id in marked(commit.message):
            erased[paste_id] = max(erased.get(paste_id, 0), commit.author.time)
    return erased


def _markers_both(repo: pygit2.Repository, local: pygit2.Oid | None, remote: pygit2.Oid,
                  base: pygit2.Oid | None) -> dict[str, int]:
    """The markers after ``base`` on either side."""
    erased = _markers(repo, local, base)
    for paste_id, when in _markers(repo, remote, base).items():
        erased[paste_id] = max(erased.get(paste_id, 0), when)
    return erased


def _erased_since(repo: pygit2.Repository, remote: pygit2.Oid,
                  base: pygit2.Oid | None) -> set[str]:
    return set(_markers(repo, remote, base))


def leftovers(repo: pygit2.Repository, head: pygit2.Oid | None, base: pygit2.Oid | None,
              limit: int = 100_000) -> set[str]:
    """Ids that a marker after ``base`` names and that the history still holds
    from before the marker (added by the marker or an older commit after
    ``base``, or in ``base``'s tree): erased content to erase again.

    Walks back from the head: an id counts from its newest marker on, so a
    paste that reused the id after the marker is not counted. One tree diff
    per commit, and only once a marker was seen."""
    found: set[str] = set()
    if head is None:
        return found
    walker = repo.walk(head, SortMode.TOPOLOGICAL)
    if base is not None:
        walker.hide(base)
    named: set[str] = set()
    for n, commit in enumerate(walker):
        if n >= limit:
            break
        named.update(i for i in marked(commit.message) if valid_id(i))
        if named - found:
            added, _ = commit_delta(commit)
            found.update(i for i, _ in added if i in named)
    if base is not None and named - found:
        tree = repo[base].peel(pygit2.Tree)
        found.update(i for i in named - found if _entry(tree, i) is not None)
    return found


def _settle(repository: Repository, base: pygit2.Oid | None, result: Integration,
            remote: pygit2.Oid | None) -> Integration:
    """Name the erased content the integrated history still holds (``result.erase``:
    the caller queues it durably, in the same writer step, before the tracking ref
    moves), and why the pastes the remote's commits removed are gone (``result.gone``)."""
    result.gone = gone_reasons(repository.repo, remote, base)
    ids = leftovers(repository.repo, repository.head, base)
    if ids:
        log.warning("the integrated history holds %d pastes erased elsewhere; erasing them "
                    "again: %s", len(ids), " ".join(sorted(ids)))
        result.erase = sorted(ids)  # the caller queues them in the same writer step
    return result


def _lost(
    repo: pygit2.Repository, local: pygit2.Oid, remote: pygit2.Oid, base: pygit2.Oid | None,
    changes: list[Change],
) -> list[tuple[str, pygit2.Oid]]:
    """Pastes of the local tree missing from the rewritten remote and not erased there."""
    local_tree = repo[local].peel(pygit2.Tree)
    remote_tree = repo[remote].peel(pygit2.Tree)
    replayed = {pid for change in changes for pid, _ in change.add}
    missing = [
        (delta.new_file.path, delta.new_file.id)
        for delta in remote_tree.diff_to_tree(local_tree).deltas
        if delta.status == DeltaStatus.ADDED
    ]
    if not missing:
        return []
    erased = _erased_since(repo, remote, base)
    lost = []
    for path, oid in missing:
        paste_id = paste_id_of(path)
        if paste_id is not None and paste_id not in replayed and paste_id not in erased:
            lost.append((paste_id, oid))
    return lost


def _changes_of(
    walker: Iterable[pygit2.Commit], tree: pygit2.Tree | None, result: Integration,
    erased: dict[str, int], theirs_win: bool,
) -> list[Change]:
    """The changes of the walked commits, each counted as replayed."""
    changes = []
    for commit in walker:
        change = _change_of(commit, tree, result, erased, theirs_win=theirs_win)
        if change is not None:
            changes.append(change)
            result.replayed += 1
    return changes


def _change_of(
    commit: pygit2.Commit, other: pygit2.Tree | None, result: Integration,
    erased: dict[str, int], theirs_win: bool,
) -> Change | None:
    """The commit as a Change to re-apply where ``other`` is the tree it lands on.

    Additions already there with the same content are dropped, and so are
    additions of erased pastes (named by a marker not older than the commit,
    by author time: the copy keeps it, so an old addition re-applied by an
    instance that had not seen the marker yet still counts as old);
    an id there with other content is a collision (``theirs_win``: the
    remote's paste is ``other``'s, otherwise the incoming one): the remote's
    paste keeps the id, the other is left out and logged. An erase marker is
    kept, empty.
    """
    add, remove = commit_delta(commit)
    kept: list[tuple[str, pygit2.Oid]] = []
    for paste_id, oid in add:
        if paste_id in erased and commit.author.time <= erased[paste_id]:
            continue
        present = _entry(other, paste_id)
        if present == oid:
            continue
        if present is None:
            kept.append((paste_id, oid))
            continue
        _collision(paste_id, present if theirs_win else oid, oid if theirs_win else present,
                   result)
        if not theirs_win:
            kept.append((paste_id, oid))  # the incoming paste is the remote's
    if not kept and not remove and not marked(commit.message):
        return None
    return Change(kept, remove, author_of(commit), commit.message, commit.author.time)


def _collision(paste_id: str, remote: pygit2.Oid, other: pygit2.Oid,
               result: Integration) -> None:
    log.error("paste id collision: %s was added on both sides (not by namespaced instances); "
              "the remote's paste (blob %s) keeps it, the other (blob %s) is left out",
              paste_id, remote, other)
    result.collisions.append(paste_id)


def has_paste(repo: pygit2.Repository, commit: pygit2.Oid, paste_id: str) -> bool:
    """Whether the tree of ``commit`` holds the paste ``paste_id``."""
    return _entry(repo[commit].peel(pygit2.Tree), paste_id) is not None


def _entry(tree: pygit2.Tree | None, paste_id: str) -> pygit2.Oid | None:
    if tree is None:
        return None
    try:
        return tree[shard_path(paste_id)].id
    except KeyError:
        return None


def _exists(repo: pygit2.Repository, oid: pygit2.Oid) -> bool:
    try:
        repo[oid]
    except (KeyError, ValueError):
        return False
    return True


def commit_delta(commit: pygit2.Commit) -> tuple[list[tuple[str, pygit2.Oid]], list[str]]:
    """Paste ids a commit added (or changed) and removed, against its first parent."""
    if commit.parents:
        diff = commit.parents[0].tree.diff_to_tree(commit.tree)
    else:
        diff = commit.tree.diff_to_tree(swap=True)
    add: list[tuple[str, pygit2.Oid]] = []
    remove: list[str] = []
    for delta in diff.deltas:
        deleted = delta.status == DeltaStatus.DELETED
        path = delta.old_file.path if deleted else delta.new_file.path
        paste_id = paste_id_of(path)
        if paste_id is None:
            log.warning("commit %s: %s is not a paste (a/b/<id>): left out", commit.id, path)
        elif deleted:
            remove.append(paste_id)
        else:
            add.append((paste_id, delta.new_file.id))
    return add, remove


def paste_id_of(path: str) -> str | None:
    """The id of a paste's path ``a/b/<id>``, or None for anything else."""
    parts = path.split("/")
    if len(parts) != 3 or not valid_id(parts[2]) or shard_path(parts[2]) != path:
        return None
    return parts[2]


def author_of(commit: pygit2.Commit) -> str | None:
    a = commit.author
    if a.name == DEFAULT_NAME and a.email == DEFAULT_EMAIL:
        return None
    return f"{a.name} <{a.email}>"


def is_rewrite(repo: pygit2.Repository, head: pygit2.Oid, known: pygit2.Oid | None) -> bool:
    """Whether the local head dropped commits the remote had (a local history rewrite)."""
    if known is None or head == known or not _exists(repo, known):
        return False
    return not repo.descendant_of(head, known)


def count_ahead(repo: pygit2.Repository, local: pygit2.Oid | None,
                remote: pygit2.Oid | None, limit: int = 100_000) -> int:
    """Commits on the local branch that the remote does not have."""
    if local is None:
        return 0
    if remote is not None:
        with contextlib.suppress(pygit2.GitError, KeyError, ValueError):
            return repo.ahead_behind(local, remote)[0]
    n = 0
    for _ in repo.walk(local):
        n += 1
        if n >= limit:
            break
    return n


def drop_unreachable(repository: Repository) -> None:
    """Delete objects no ref reaches (erased pastes left by a history rewrite)."""
    repack_and_prune(repository)


def set_tracking(repository: Repository, tracking: str, fetched: str,
                 remote: pygit2.Oid | None) -> None:
    """Record the remote head now integrated and drop the fetched ref (writer thread;
    a stale ref to an old history would keep erased pastes' objects alive)."""
    refs = repository.repo.references
    if remote is not None:
        refs.create(tracking, remote, force=True)
    elif refs.get(tracking) is not None:
        refs.delete(tracking)
    if refs.get(fetched) is not None:
        refs.delete(fetched)
