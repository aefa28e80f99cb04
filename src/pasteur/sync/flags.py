"""Command-line flags of Git synchronisation and ``pasteur keygen`` (light imports:
the terminal client shares the parser)."""

from __future__ import annotations

import argparse
import base64

from pasteur.config import SyncSettings, flag_type

BAD_BRANCH_CHARS = " ~^:?*[\\"


def check_branch(name: str) -> str:
    """A branch name git accepts (ValueError otherwise)."""
    if (not name or name.startswith(("-", "/")) or name.endswith((".lock", "/", "."))
            or ".." in name or "//" in name or "@{" in name
            or any(c in name for c in BAD_BRANCH_CHARS) or not name.isprintable()):
        raise ValueError(f"not a branch name: {name!r}")
    return name


def split_remote(value: str) -> tuple[str, str | None]:
    """``URL[#branch]`` (the original's remote syntax) -> (URL, branch or None)."""
    url, sep, branch = value.partition("#")
    if not url:
        raise ValueError(f"no URL in {value!r}")
    if not sep:
        return url, None
    return url, check_branch(branch.removeprefix("refs/heads/"))


def parse_remote(value: str) -> str:
    split_remote(value)
    return value


def parse_ssh_key(value: str) -> str:
    """The original's ``--ssh-key`` (awa's ``Keys.of_string``): ``ed25519:<base64 of the
    32-byte private key>`` or ``rsa:<seed>`` (the RSA key awa derived from the seed,
    re-derived here bit for bit); like awa, exactly one ``:``."""
    kind, sep, rest = value.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("ed25519", "rsa"):
        raise ValueError(f"expected ed25519:<base64> or rsa:<seed>, got {value!r}")
    if ":" in rest:
        raise ValueError("awa's TYPE:KEY has one ':' only, the original refused this key too "
                         "(\"Invalid SSH key format\"); make a new one with 'pasteur keygen' and "
                         "register its public key as the deploy key")
    if kind == "ed25519":
        from pasteur.sync.sshkeys import key_from_ed25519

        key_from_ed25519(rest)  # ValueError with the reason
        return f"ed25519:{rest.strip()}"
    return f"rsa:{rest}"


def add_sync_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Git synchronisation")
    g.add_argument("-r", "--remote", default=None, metavar="URL[#BRANCH]",
                   type=flag_type(parse_remote, "remote"),
                   help="Git remote to push pastes to and fetch from: git://host/repo, "
                        "ssh://user@host[:port]/repo, user@host:repo, https://host/repo "
                        "or a local path / file:// URL (pushed with git push); #BRANCH "
                        "names the branch (default: none, pastes stay local)")
    g.add_argument("--remote-branch", default=None, metavar="BRANCH",
                   type=flag_type(check_branch, "remote-branch"),
                   help="branch of the remote holding the pastes, as URL#BRANCH does "
                        "(default: the branch the remote's HEAD names, else main)")
    g.add_argument("--remote-token", default=None, metavar="TOKEN",
                   help="token for an http(s) remote, sent as HTTP basic auth password")
    g.add_argument("--ssh-seed", default=None, metavar="SEED",
                   help="the original's --ssh-seed (the seeds' README; awa_gen_key's 'seed "
                        "is ...'): the 2048-bit RSA key awa's Keys.of_seed made from SEED "
                        "until awa 0.0.4 (an original built with awa 0.0.5 or later, from "
                        "December 2021, made the 4096-bit key of --ssh-key rsa:SEED); "
                        "'pasteur keygen --ssh-seed SEED' prints its public key")
    g.add_argument("--ssh-key", default=None, metavar="rsa:SEED|ed25519:BASE64",
                   type=flag_type(parse_ssh_key, "ssh-key"),
                   help="the original's SSH key flag: rsa:<seed> (the same 4096-bit RSA key "
                        "the original derived from the seed) or ed25519:<base64 of the "
                        "32-byte private key>, as 'pasteur keygen' prints a new one; "
                        "'pasteur keygen --ssh-key KEY' prints its public key")
    g.add_argument("--ssh-password", default=None, metavar="PASSWORD",
                   help="password for SSH password authentication")
    g.add_argument("--ssh-auth", "--ssh-authenticator", dest="ssh_auth", default=None,
                   metavar="SHA256:FINGERPRINT",
                   type=flag_type(_check_fingerprints, "ssh-auth"),
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


def _check_fingerprints(value: str) -> str:
    """``SHA256:<base64>`` pins, comma-separated; the original's (awa's) authenticator
    forms are taken too: ``rsa:<base64 fingerprint>``, ``ed25519:<base64 fingerprint>``
    (the SHA-256 of the host key, as ``SHA256:``), or the host key itself in base64
    (pinned by its SHA-256)."""
    import base64
    import binascii

    from pasteur.sync.sshkeys import fingerprint, parse_fingerprints

    pins = []
    for item in (v for v in value.replace(",", " ").split() if v):
        kind, sep, rest = item.partition(":")
        if sep and kind.lower() in ("rsa", "ed25519"):
            item = f"SHA256:{rest}"
        elif not sep:
            try:
                blob = base64.b64decode(item + "=" * (-len(item) % 4), validate=True)
            except binascii.Error:
                blob = b""
            if not blob.startswith(b"\0\0\0"):
                raise ValueError(f"expected SHA256:<base64> as printed by ssh-keygen -l -E "
                                 f"sha256, got {item!r}")
            item = fingerprint(blob)
        pins.append(item)
    normal = ",".join(pins)
    parse_fingerprints(normal)
    return normal


def check_sync_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of sync flags (for ``parser.error``), or None."""
    if not args.remote:
        return None
    _, branch = split_remote(args.remote)
    if branch is not None and args.remote_branch and args.remote_branch != branch:
        return (f"--remote names branch {branch!r} (URL#branch) and --remote-branch "
                f"{args.remote_branch!r}: give one")
    if args.ssh_key and args.ssh_seed:
        return "--ssh-key and --ssh-seed both give the SSH key: give one"
    return None


def sync_settings(args: argparse.Namespace) -> SyncSettings | None:
    """The settings of `add_sync_arguments`' flags; None without --remote."""
    if not args.remote:
        return None
    url, branch = split_remote(args.remote)
    source = "URL#branch" if branch else "--remote-branch" if args.remote_branch else "default"
    branch = branch or args.remote_branch
    return SyncSettings(
        url=url,
        branch=branch or "main",
        branch_from_head=branch is None,
        branch_source=source,
        token=args.remote_token or None,
        seed=args.ssh_seed or None,
        ssh_key=args.ssh_key or None,
        ssh_password=args.ssh_password or None,
        ssh_auth=args.ssh_auth or None,
        ssh_insecure=bool(args.ssh_insecure),
        interval=args.sync_interval,
        stuck_after=args.sync_stuck_after,
        max_lag=args.sync_max_lag,
    )


def add_keygen_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ssh-key", default=None, metavar="rsa:SEED|ed25519:BASE64",
                       type=flag_type(parse_ssh_key, "ssh-key"),
                       help="print the public key (authorized_keys line) and fingerprint "
                            "of the original's --ssh-key, to compare with the remote's "
                            "deploy key")
    which.add_argument("--ssh-seed", default=None, metavar="SEED",
                       help="the same for the original's --ssh-seed (RSA-2048)")
    which.add_argument("--pasteur-seed", default=None, metavar="SEED",
                       help="a seed printed by 'pasteur keygen' before it printed --ssh-key "
                            "(this project's own Ed25519 key, which --ssh-seed no longer "
                            "makes): print the --ssh-key ed25519:... of that same key")
    which.add_argument("--seed", default=None, help=argparse.SUPPRESS,
                       type=flag_type(_gone_seed, "seed"))
    p.add_argument("--comment", default=None, help="comment of the public key line")


def _gone_seed(value: str) -> str:
    raise ValueError("'pasteur keygen --seed' is gone: --ssh-seed now makes the original's "
                     "RSA key. For a seed an earlier 'pasteur keygen' printed, "
                     "'pasteur keygen --pasteur-seed SEED' prints the --ssh-key of the same "
                     "key; for the original's seed, 'pasteur keygen --ssh-seed SEED'")


AWA_005_NOTE = ("note: this is the key of an original built with awa 0.0.4 or older (until "
                "December 2021); with awa 0.0.5 or later the same seed made the 4096-bit "
                "key of --ssh-key rsa:SEED ('pasteur keygen --ssh-key rsa:SEED' prints it)")


def keygen(args: argparse.Namespace) -> int:
    """Print a new key (``--ssh-key ed25519:…``), or the public half of a given one."""
    import sys

    from pasteur.sync.sshkeys import (
        fingerprint,
        key_from_awa_seed,
        key_from_spec,
        new_ed25519,
        pasteur_seed_to_spec,
    )

    if args.ssh_seed == "" or args.pasteur_seed == "":
        print("pasteur keygen: the seed is empty", file=sys.stderr)
        return 2
    if args.ssh_seed is not None:
        key = key_from_awa_seed(args.ssh_seed, args.comment)
        print(AWA_005_NOTE, file=sys.stderr)
    else:
        spec = args.ssh_key
        if args.pasteur_seed is not None:
            spec = pasteur_seed_to_spec(args.pasteur_seed)
        elif not spec:
            spec = new_ed25519()
        if spec != args.ssh_key:
            print(f"--ssh-key {spec}")
        key = key_from_spec(spec, args.comment)
    print(key.public)
    print(f"fingerprint {fingerprint(base64.b64decode(key.public.split()[1]))}")
    return 0
