"""Who the client is: the connection's peer, or what a trusted proxy forwarded.

This is the one place that reads forwarded headers, for both listeners (the
front door applies it to every request). uvicorn is told to read none itself
(``proxy_headers=False`` in server.py; by default it trusts
``X-Forwarded-For`` from 127.0.0.1, so a loopback client chose its rate-limit
bucket), and hypercorn reads none unless wrapped in its ``ProxyFixMiddleware``.

The rule:

- ``X-Forwarded-For`` and ``X-Forwarded-Proto`` count only when the peer is in
  ``--trusted-proxy`` (default: nobody).
- The client is the right-most address of ``X-Forwarded-For`` that is not a
  trusted proxy. Every entry right of it was written by a proxy we trust, and
  it is the peer the last of them saw; anything left of it may be made up by
  the client. If every entry is a trusted proxy, the left-most is the client;
  an entry that is not an address ends the walk at the hop right of it.
- ``X-Forwarded-Proto`` (its right-most value, ``http`` or ``https``) becomes
  the request's scheme: links and the ``Secure`` cookie follow it.

``Forwarded`` (RFC 7239) is not read: a proxy that sets one of the two kinds
passes the other on from the client untouched (nginx does, for any header it is
not told to set), so reading both would let a client choose.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

SCHEMES = {"http": "http", "https": "https"}
# Addresses already looked at, per TrustedProxies (see ``_look``): the few
# proxies and the clients seen lately. ``ipaddress`` is slow (measured with timeit
# on a busy 2-core machine: 17 us per request behind a proxy, 2.5 us with this
# cache; 10 us per rate-limit key, 0.14 us with the lru_cache on ``bucket``).
SEEN_MAX = 4096


def parse_address(text: str) -> Address | None:
    """An address as a proxy writes it: ``192.0.2.1``, ``2001:db8::1``, with or
    without a port (``192.0.2.1:80``, ``[2001:db8::1]:80``); IPv4-mapped IPv6
    is the IPv4 address. None for anything else (``unknown``, a name)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(value: str) -> tuple[Network, ...]:
    """'127.0.0.1, 10.0.0.0/8, ::1' -> networks (an address is a network of one);
    '' or 'none' -> (). Host bits set (``10.0.0.1/8``) are refused, not masked."""
    if value.strip().lower() in ("", "none", "off"):
        return ()
    networks = []
    for item in value.split(","):
        item = item.strip()
        try:
            network = ipaddress.ip_network(item)
        except ValueError as exc:
            hint = "try 127.0.0.1, 10.0.0.0/8 or ::1"
            if "has host bits set" in str(exc):
                hint = f"did you mean {ipaddress.ip_network(item, strict=False)}?"
            raise ValueError(f"not an address or network: {item!r} ({hint})") from None
        networks.append(network)
    return tuple(networks)


@lru_cache(maxsize=SEEN_MAX)
def bucket(host: str) -> str:
    """The rate-limit key of a client address: an IPv6 client is its /64 (one
    host usually holds a whole /64, and picks any address in it), an IPv4
    client its address."""
    address = parse_address(host)
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return str(address) if address is not None else host


class TrustedProxies:
    """The ``--trusted-proxy`` networks, and the rewrite of an ASGI scope's
    ``client`` and ``scheme`` from the headers they forward."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)
        self.seen: dict[str, tuple[str | None, bool]] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.networks)

    def _look(self, text: str) -> tuple[str | None, bool]:
        """An address as text -> (its canonical form or None, trusted)."""
        found = self.seen.get(text)
        if found is None:
            address = parse_address(text)
            found = (None if address is None else str(address), self.trusts(address))
            if len(self.seen) >= SEEN_MAX:
                self.seen.clear()
            self.seen[text] = found
        return found

    def client(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client behind ``peer`` (a trusted proxy) given the entries of
        X-Forwarded-For, left to right."""
        client = peer
        for entry in reversed(list(forwarded_for)):
            address, trusted = self._look(entry)
            if address is None:
                break
            client = address
            if not trusted:
                break
        return client

    def apply(self, scope: dict) -> None:
        """Set ``scope["client"]`` and ``scope["scheme"]`` from the forwarded
        headers when the peer is a trusted proxy; leave them alone otherwise."""
        peer = scope.get("client")
        if not peer or not self._look(peer[0])[1]:
            return
        chain: list[str] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                chain.extend(value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
        if chain:
            scope["client"] = (self.client(peer[0], chain), 0)
        if proto in SCHEMES:
            scope["scheme"] = SCHEMES[proto]
