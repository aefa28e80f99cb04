"""Server configuration and the parsing of flag values.

`Config` is built once from the flags and the environment (cli.config_from), each
part's settings a typed field of it: `sync` (Git remote) and `tls` (HTTPS) are
None when not asked for. `DataDir` is the one owner of the paths under --data.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .limits import MAX_CONNECTIONS
from .proxy import Network

T = TypeVar("T")

DEFAULT_DATA = Path("pasteur-data")  # --data when not given


def flag_type(fn: Callable[[str], T], what: str) -> Callable[[str], T]:
    """An argparse ``type=`` from a parser raising ValueError: the error names the flag."""

    def convert(value: str) -> T:
        try:
            return fn(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{what}: {exc}") from None

    convert.__name__ = what
    return convert


def parse_port(value: str) -> int:
    """'8080' -> 8080; a TCP port, 0 (any free one, or "off" where a flag says so) to 65535."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{value!r} is not between 0 and 65535")
    return port


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?|[kmgt]i?b?)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str) -> int:
    """'1MiB', '64KiB', '512k', '1000' -> bytes (binary units: 1 MB = 1 MiB)."""
    m = _SIZE.fullmatch(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (try 64KiB, 1MiB or a number of bytes)")
    number, unit = m.groups()
    unit = (unit or "").upper().rstrip("B").rstrip("I")
    size = int(float(number) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"size must be positive: {value!r}")
    return size


_DURATION = re.compile(r"\s*([0-9]+)\s*(s|sec|m|min|h|hour|d|day|w|week|y|year)s?\s*", re.I)
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400,
            "day": 86400, "w": 604800, "week": 604800, "y": 31536000, "year": 31536000}
NEVER = ("never", "forever", "0", "none")
# The longest duration taken anywhere (a flag or a form's expiry): far enough
# for any use, near enough that now + it is a date every part can hold.
MAX_DURATION = 1000 * _SECONDS["y"]
# What the form offers, each filtered by --max-expiry.
EXPIRY_CHOICES = (("5m", "5 minutes"), ("1h", "1 hour"), ("1d", "1 day"), ("1w", "1 week"),
                  ("30d", "30 days"), ("1y", "1 year"), ("never", "never"))


def parse_duration(value: str) -> int | None:
    """'5m', '1h', '30d', '1y' -> seconds; 'never' -> None."""
    if value.strip().lower() in NEVER:
        return None
    m = _DURATION.fullmatch(value)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a duration: {value!r} (try 5m, 1h, 1d, 1w, 30d, 1y or never)")
    seconds = int(m.group(1)) * _SECONDS[m.group(2).lower()]
    if seconds > MAX_DURATION:
        raise ValueError(f"duration too long: {value!r} (at most 1000y, or never)")
    return seconds


def parse_bind(value: str) -> tuple[str, int]:
    """'127.0.0.1:9100', '[::1]:9100', '9100' (on 127.0.0.1) -> (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif not host or ":" in host:
        raise ValueError(f"not an address: {value!r} (try 127.0.0.1:9100, [::1]:9100 or 9100)")
    return host, parse_port(port)


def parse_auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected USER:PASSWORD")
    return user, password


def parse_rate(value: str) -> tuple[float, int] | None:
    """'60/min', '5/s', '1000/hour' -> (tokens per second, burst); 'off' or '0' -> None."""
    if value.strip().lower() in ("0", "off", "none"):
        return None
    count, sep, period = value.partition("/")
    seconds = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
               "h": 3600, "hour": 3600}.get(period.strip().lower() if sep else "s")
    if seconds is None or not count.strip().isdigit() or int(count) <= 0:
        raise ValueError(f"not a rate: {value!r} (try 60/min, 5/s or off)")
    return int(count) / seconds, int(count)


@dataclass(frozen=True)
class DataDir:
    """The files under --data, each named here and nowhere else."""

    root: Path = DEFAULT_DATA

    @property
    def repo(self) -> Path:
        """The bare Git repository holding the pastes."""
        return self.root / "repo.git"

    @property
    def tmp(self) -> Path:
        """Spooled uploads (same file system as the repository)."""
        return self.root / "tmp"

    @property
    def acme(self) -> Path:
        """The ACME account key and the certificate it obtained (--https)."""
        return self.root / "acme"


@dataclass(frozen=True)
class SyncSettings:
    """--remote and its flags: the syncer's settings and, as JSON in the first line
    the network worker reads (sync.worker.hello), the worker's: one dataclass on both
    sides of the pipe."""

    url: str
    branch: str = "main"
    # No URL#branch nor --remote-branch: the branch is the one the remote's HEAD
    # names (``sync.syncer.resolve_branch``); ``branch`` is then only the fallback.
    branch_from_head: bool = False
    branch_source: str = "URL#branch"  # how the branch was chosen (sync.branch.Choice.source)
    token: str | None = field(default=None, repr=False)
    seed: str | None = field(default=None, repr=False)
    ssh_key: str | None = field(default=None, repr=False)  # --ssh-key rsa:SEED|ed25519:B64
    ssh_password: str | None = field(default=None, repr=False)
    ssh_auth: str | None = None  # SHA256:... host key pins, comma-separated
    ssh_insecure: bool = False
    interval: float = 60.0  # seconds between fetches; 0: only on a miss or a rejected push
    stuck_after: float = 60.0  # /healthz fails after failing again and again this long
    max_lag: float = 30.0  # /healthz fails while a commit has waited this long for its push
    timeout_ms: int = 20_000  # libgit2: a read that stalls this long fails
    connect_timeout_ms: int = 5_000  # a host that does not answer delays the start this long


@dataclass(frozen=True)
class TlsSettings:
    """HTTPS: --https (a certificate by ACME) or --tls-cert/--tls-key (files)."""

    https: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    hostname: str | None = None
    https_port: int | None = None  # default 443 with --https, else --port
    http_port: int | None = None  # redirect and HTTP-01; default 80 with --https, 0: none
    email: str | None = None
    production: bool = False
    acme_directory: str | None = None
    acme_ca: str | None = None
    account_seed: str | None = field(default=None, repr=False)
    cert_seed: str | None = field(default=None, repr=False)
    account_key_type: str | None = None  # the original's flags; None: not given
    account_bits: int | None = None
    cert_key_type: str | None = None
    cert_bits: int | None = None
    dns_key: str | None = field(default=None, repr=False)
    dns_addr: str | None = None
    dns_port: int | None = None


@dataclass(frozen=True)
class Config:
    data: Path = DEFAULT_DATA
    bind: str = "127.0.0.1"
    port: int = 4343
    length: int = 4
    max_size: int = 1 << 20
    title: str = "Pasteur"
    subtitle: str = "a zero-knowledge pastebin on Git"
    auth: tuple[str, str] | None = None
    url: str | None = None  # public base URL, e.g. https://paste.example.org
    rate_limit: tuple[float, int] | None = (2.0, 120)  # creates per second per client, burst
    trusted_proxies: tuple[Network, ...] = ()  # peers whose X-Forwarded-* count (proxy.py)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = MAX_CONNECTIONS  # each listener's cap, then 503 (limits.py)
    default_expiry: int | None = None  # seconds; None = never
    max_expiry: int | None = None
    erase_interval: int | None = 600  # seconds; None = never
    commit_url: str | None = None  # e.g. https://github.com/u/r/commit/{commit}
    sync: SyncSettings | None = None  # None: no --remote, pastes stay local
    tls: TlsSettings | None = None  # None: plain HTTP

    def expiry_choices(self) -> list[tuple[str, str]]:
        return [
            (value, label)
            for value, label in EXPIRY_CHOICES
            if self.max_expiry is None
            or ((d := parse_duration(value)) is not None and d <= self.max_expiry)
        ]

    @property
    def paths(self) -> DataDir:
        return DataDir(self.data)

    @property
    def repo_path(self) -> Path:
        return self.paths.repo


_WEB_HOSTS = {
    "github.com": "https://github.com/{path}/commit/{{commit}}",
    "codeberg.org": "https://codeberg.org/{path}/commit/{{commit}}",
    "gitlab.com": "https://gitlab.com/{path}/-/commit/{{commit}}",
    "bitbucket.org": "https://bitbucket.org/{path}/commits/{{commit}}",
}
_REMOTE = re.compile(
    r"(?:(?:https?|ssh|git)://(?:[^@/]+@)?(?P<h1>[^/:]+)(?::\d+)?/|[^@/]+@(?P<h2>[^:/]+):)"
    r"(?P<path>[^?#]+?)(?:\.git)?/?$"
)


def web_commit_url(remote: str | None) -> str | None:
    """A commit link template for a remote on a well-known Git host, else None."""
    if not remote:
        return None
    m = _REMOTE.fullmatch(remote.strip())
    if not m:
        return None
    host = (m.group("h1") or m.group("h2") or "").lower()
    template = _WEB_HOSTS.get(host)
    return template.format(path=m.group("path").strip("/")) if template else None
