"""The ``pasteur`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pasteur.sync.flags import (
    add_keygen_arguments,
    add_sync_arguments,
    check_sync_arguments,
    keygen,
    sync_settings,
)

from . import __version__, logsafe
from .config import (
    DEFAULT_DATA,
    Config,
    parse_auth,
    parse_bind,
    parse_duration,
    parse_port,
    parse_rate,
    parse_size,
    web_commit_url,
)
from .config import flag_type as _typed
from .limits import MAX_CONNECTIONS
from .procs import ENV_PREFIX
from .proxy import parse_networks


def _seconds(value: str) -> float:
    n = float(value)
    if not 0 < n <= 3600:
        raise ValueError("must be between 0 and 3600 seconds")
    return n


def _count(value: str) -> int:
    n = int(value)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


def _length(value: str) -> int:
    n = int(value)
    if not 2 <= n <= 64:
        raise ValueError("must be between 2 and 64")
    return n


class _Networks(argparse.Action):
    """A repeatable flag of comma-separated networks; given on the command
    line, it replaces the environment's value instead of adding to it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest)
        if current is self.default:
            current = ()
        setattr(namespace, self.dest, (*current, *values))


class EnvDefaults:
    """Every long flag also reads ``PASTEUR_<NAME>`` (dashes become underscores)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def apply(self) -> None:
        for action in self.parser._actions:  # noqa: SLF001 - argparse has no public walk
            longs = [o for o in action.option_strings if o.startswith("--")]
            if not longs or action.dest in ("help", "version"):
                continue
            env = ENV_PREFIX + longs[0][2:].upper().replace("-", "_")
            if action.help and action.help is not argparse.SUPPRESS:
                action.help += f" [env {env}]"
            value = os.environ.get(env)
            if value is None:
                continue
            if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
                action.default = value.lower() in ("1", "true", "yes", "on")
            elif callable(action.type):
                try:
                    action.default = action.type(value)
                except argparse.ArgumentTypeError as exc:
                    self.parser.error(f"{env}: {exc}")
            else:
                action.default = value


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--port", type=_typed(parse_port, "port"), default=4343,
                   help="port to listen on (default 4343)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="data directory; the Git repository is DATA/repo.git "
                        f"(default ./{DEFAULT_DATA})")
    p.add_argument("--length", type=_typed(_length, "length"), default=4,
                   help="length of new paste ids, random from [A-Za-z0-9] (default 4)")
    p.add_argument("-m", "--max", dest="max_size", type=_typed(parse_size, "max"),
                   default=1 << 20, help="largest paste accepted, e.g. 64KiB, 1MiB (default 1MiB)")
    p.add_argument("--title", default="Pasteur", help="title of the pages")
    p.add_argument("--subtitle", default="a zero-knowledge pastebin on Git",
                   help="subtitle of the pages")
    p.add_argument("--auth", type=_typed(parse_auth, "auth"), default=None,
                   metavar="USER:PASSWORD", help="require HTTP basic auth on the whole site")
    p.add_argument("--url", default=None,
                   help="public base URL used in links (default: from the request's Host)")
    p.add_argument("--rate-limit", type=_typed(parse_rate, "rate-limit"), default=(2.0, 120),
                   metavar="N/PERIOD",
                   help="creates allowed per client address, e.g. 120/min (the burst is N), "
                        "or off (default 120/min); over it the answer is 429")
    p.add_argument("--trusted-proxy", dest="trusted_proxies", action=_Networks,
                   type=_typed(parse_networks, "trusted-proxy"), default=(),
                   metavar="ADDRESS[/BITS],...",
                   help="reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are "
                        "believed: the client is the right-most address there that is not "
                        "one of them; repeat or comma-separate, e.g. 127.0.0.1,10.0.0.0/8 "
                        "(default none: the connection's peer is the client)")
    p.add_argument("--header-timeout", type=_typed(_seconds, "header-timeout"), default=10.0,
                   help="seconds a connection has to send its request head (default 10)")
    p.add_argument("--body-timeout", type=_typed(_seconds, "body-timeout"), default=30.0,
                   help="seconds an upload may stall before it is dropped with 408 (default 30)")
    # Hidden: the tests lower it to reach it with a few connections (limits.py).
    p.add_argument("--max-connections", type=_typed(_count, "max-connections"),
                   default=MAX_CONNECTIONS, help=argparse.SUPPRESS)
    p.add_argument("--default-expiry", type=_typed(parse_duration, "default-expiry"),
                   default=None, metavar="DURATION",
                   help="expiry of a paste that asks for none: 5m, 1h, 1d, 1w, 30d, 1y or never "
                        "(default never)")
    p.add_argument("--max-expiry", type=_typed(parse_duration, "max-expiry"), default=None,
                   metavar="DURATION", help="longest expiry a paste may ask for (default never)")
    p.add_argument("--erase-interval", type=_typed(parse_duration, "erase-interval"),
                   default=600, metavar="DURATION",
                   help="how often deleted, expired and burned pastes are erased from Git "
                        "history and the object store (default 10m)")
    p.add_argument("--commit-url", default=None, metavar="TEMPLATE",
                   help="link from a paste to its commit, e.g. "
                        "https://git.example.org/me/pastes/commit/{commit} (default: derived "
                        "from --remote on GitHub, GitLab, Codeberg or Bitbucket)")
    p.add_argument("--metrics", type=_typed(parse_bind, "metrics"), default=None,
                   metavar="[HOST:]PORT",
                   help="serve Prometheus metrics at /metrics on a listener of their own, "
                        "e.g. 127.0.0.1:9100 (a bare port is on 127.0.0.1; default: no "
                        "metrics). Never on the public port; no --auth there")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="log verbosity")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasteur",
        description="A self-hosted, zero-knowledge pastebin whose pastes live in Git.",
    )
    parser.add_argument("--version", action="version", version=f"pasteur {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the server",
                           description="Run the Pasteur server.")
    add_serve_arguments(serve)
    add_sync_arguments(serve)
    from pasteur.tls.listener import add_https_arguments

    add_https_arguments(serve)
    EnvDefaults(serve).apply()
    keygen = sub.add_parser("keygen", help="make a new SSH key for --ssh-key, or show the "
                                      "public key of an --ssh-key or --ssh-seed",
                            description="Print a new Ed25519 key as '--ssh-key ed25519:...', "
                                        "its OpenSSH public key and fingerprint; with "
                                        "--ssh-key or --ssh-seed, the public key and "
                                        "fingerprint of that key (the original's keys, bit "
                                        "for bit).")
    add_keygen_arguments(keygen)
    from pasteur.client.terminal import add_client_commands

    add_client_commands(sub)
    return parser


def config_from(args: argparse.Namespace) -> Config:
    """The server's settings from `pasteur serve`'s flags: built here, once."""
    from pasteur.tls.listener import tls_settings

    sync = sync_settings(args)
    return Config(
        data=args.data,
        bind=args.bind,
        port=args.port,
        length=args.length,
        max_size=args.max_size,
        title=args.title,
        subtitle=args.subtitle,
        auth=args.auth,
        url=args.url,
        rate_limit=args.rate_limit,
        trusted_proxies=args.trusted_proxies,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        default_expiry=args.default_expiry,
        max_expiry=args.max_expiry,
        erase_interval=args.erase_interval,
        commit_url=args.commit_url or web_commit_url(sync.url if sync else None),
        sync=sync,
        tls=tls_settings(args),
    )


def setup_logging(level: str) -> None:
    logsafe.configure(getattr(logging, level.upper()),
                      "%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(args: argparse.Namespace) -> int:
    from .server import run

    setup_logging(args.log_level)
    config = config_from(args)
    import uvloop

    # uvicorn's loop="uvloop" only applies to Server.run(); we drive serve() ourselves.
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(run(config, metrics_bind=args.metrics))
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("paste", "get"):
        from pasteur.client.terminal import run

        return run(args)
    if args.command == "serve":
        if args.max_expiry is not None and (
            args.default_expiry is None or args.default_expiry > args.max_expiry
        ):
            parser.error("--default-expiry must not be longer than --max-expiry")
        problem = check_sync_arguments(args)
        if problem:
            parser.error(problem)
        return serve(args)
    if args.command == "keygen":
        return keygen(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
