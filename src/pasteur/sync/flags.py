"""Command-line flags of Git synchronisation and ``pasteur keygen`` (light imports:
the terminal client shares the parser)."""

from __future__ import annotations

import argparse

from pasteur.config import SyncSettings


def add_sync_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Git synchronisation")
    g.add_argument("-r", "--remote", default=None, metavar="URL",
                   help="Git remote to push pastes to and fetch from: git://host/repo, "
                        "ssh://user@host[:port]/repo, user@host:repo, https://host/repo "
                        "or a local path / file:// URL (pushed with git push) "
                        "(default: none, pastes stay local)")
    g.add_argument("--remote-branch", default="main", metavar="BRANCH",
                   help="branch of the remote holding the pastes (default main)")
    g.add_argument("--remote-token", default=None, metavar="TOKEN",
                   help="token for an http(s) remote, sent as HTTP basic auth password")
    g.add_argument("--ssh-seed", default=None, metavar="SEED",
                   help="seed of the SSH key (from 'pasteur keygen')")
    g.add_argument("--ssh-auth", default=None, metavar="SHA256:FINGERPRINT",
                   help="pin the SSH server's host key (ssh-keygen -l -E sha256 prints it); "
                        "several, comma-separated, for a host with several key types")
    g.add_argument("--ssh-insecure", action="store_true",
                   help="accept any SSH host key (not recommended)")
    g.add_argument("--sync-interval", type=float, default=60.0, metavar="SECONDS",
                   help="fetch the remote this often to pick up other instances' pastes; "
                        "0: only on a miss or a rejected push (default 60)")
    g.add_argument("--sync-stuck-after", type=float, default=60.0, metavar="SECONDS",
                   help="/healthz answers 503 once pushes or fetches have failed again and "
                        "again for this long (default 60)")
    g.add_argument("--sync-max-lag", type=float, default=30.0, metavar="SECONDS",
                   help="/healthz answers 503 while a local commit has waited this long for "
                        "its push (pushes failing, or rejected again and again as other "
                        "instances keep the remote busy) (default 30)")


def sync_settings(args: argparse.Namespace) -> SyncSettings | None:
    """The settings of `add_sync_arguments`' flags; None without --remote."""
    if not args.remote:
        return None
    return SyncSettings(
        url=args.remote,
        branch=args.remote_branch or "main",
        token=args.remote_token or None,
        seed=args.ssh_seed or None,
        ssh_auth=args.ssh_auth or None,
        ssh_insecure=bool(args.ssh_insecure),
        interval=args.sync_interval,
        stuck_after=args.sync_stuck_after,
        max_lag=args.sync_max_lag,
    )


def add_keygen_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", default=None,
                   help="print the public key of this seed instead of a new one")
    p.add_argument("--comment", default=None, help="comment of the public key line")


def keygen(args: argparse.Namespace) -> int:
    from pasteur.sync.sshkeys import key_from_seed, new_seed

    seed = args.seed or new_seed()
    key = key_from_seed(seed, args.comment)
    print(f"seed is {seed}")
    print(key.public)
    return 0


