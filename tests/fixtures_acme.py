"""Fixtures for the HTTPS/ACME tests: Debian's `pebble` (ACME) and `knot` (DNS) on loopback.

knotd is the primary of zone `pasteur.test` (www, dns01 -> 127.0.0.1) with a TSIG key
allowed to update it; pebble resolves through it, so HTTP-01 reaches our port-80
listener on 127.0.0.1 and DNS-01 reads the TXT record we added by UPDATE.
Import `knot_fixture`/`pebble_fixture` into a test module; the fixtures are named
`knot` and `pebble`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .ports import free_port, wait_port
from .processes import stop

if TYPE_CHECKING:
    from pasteur.protocol import HotAnswers
    from pasteur.tls.listener import HttpsServer

ZONE = "pasteur.test"
LOCKED_ZONE = "locked.test"  # served by knot, but no key may update it
TSIG_NAME = "pasteur-update"
TSIG_ALG = "hmac-sha256"
TSIG_SECRET = base64.b64encode(b"pasteur test tsig secret, 32 byt").decode()


def self_signed(directory: Path, name: str = "localhost", days: int = 30,
                prefix: str = "self") -> tuple[Path, Path]:
    """A self-signed EC certificate for `name`, 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName(name), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{prefix}-cert.pem", directory / f"{prefix}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Knot:
    port: int
    zone: str = ZONE
    key: str = f"{TSIG_NAME}:{TSIG_ALG}:{TSIG_SECRET}"

    def dig(self, name: str, rdtype: str) -> list[str]:
        import dns.message
        import dns.query

        answer = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1",
                               port=self.port, timeout=2)
        return [rd.to_text() for rrset in answer.answer for rd in rrset]


KNOT_CONF = """\
server:
    rundir: "{dir}"
    listen: 127.0.0.1@{port}
database:
    storage: "{dir}/db"
log:
  - target: "{dir}/knot.log"
    any: info
key:
  - id: {key}
    algorithm: {alg}
    secret: {secret}
acl:
  - id: update
    key: {key}
    action: update
template:
  - id: default
    storage: "{dir}"
    file: "%s.zone"
zone:
  - domain: {zone}
    acl: update
  - domain: {locked}
"""

ZONE_FILE = """\
$ORIGIN {zone}.
$TTL 60
@     SOA ns admin 1 3600 600 86400 60
@     NS  ns
ns    A   127.0.0.1
www   A   127.0.0.1
dns01 A   127.0.0.1
"""


@pytest.fixture(scope="session", name="knot")
def knot_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Knot]:
    if shutil.which("knotd") is None:
        pytest.skip("knotd not installed (scripts/setup --test installs it)")
    d = tmp_path_factory.mktemp("knot")
    (d / "db").mkdir()
    port = free_port()
    (d / "knot.conf").write_text(KNOT_CONF.format(dir=d, port=port, key=TSIG_NAME, alg=TSIG_ALG,
                                                  secret=TSIG_SECRET, zone=ZONE,
                                                  locked=LOCKED_ZONE))
    for zone in (ZONE, LOCKED_ZONE):
        (d / f"{zone}.zone").write_text(ZONE_FILE.format(zone=zone))
    proc = subprocess.Popen(["knotd", "-c", str(d / "knot.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        k = Knot(port)
        deadline = time.monotonic() + 10
        while not k.dig(f"www.{ZONE}", "A") and time.monotonic() < deadline:
            time.sleep(0.05)
        yield k
    finally:
        stop(proc)


@dataclass
class Pebble:
    directory: str
    ca_bundle: Path  # trust for pebble's own HTTPS listener
    management: int
    http_port: int  # where pebble's VA sends HTTP-01 requests

    def root_pem(self) -> bytes:
        """The root of the chains pebble issues (new at every pebble start)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://127.0.0.1:{self.management}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.read()


@pytest.fixture(scope="session", name="pebble")
def pebble_fixture(tmp_path_factory: pytest.TempPathFactory, knot: Knot) -> Iterator[Pebble]:
    if shutil.which("pebble") is None:
        pytest.skip("pebble not installed (scripts/setup --test installs it)")
    d = tmp_path_factory.mktemp("pebble")
    cert, key = self_signed(d, "localhost", prefix="pebble")
    port, management, http_port = free_port(), free_port(), free_port()
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert), "privateKey": str(key),
        "httpPort": http_port, "tlsPort": free_port(),
        "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }}
    (d / "pebble.json").write_text(json.dumps(config))
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_AUTHZREUSE="0",
               PEBBLE_WFE_NONCEREJECT="0")
    log = (d / "pebble.log").open("wb")
    proc = subprocess.Popen(
        ["pebble", "-config", str(d / "pebble.json"), "-dnsserver", f"127.0.0.1:{knot.port}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        wait_port(management, proc)
        yield Pebble(f"https://127.0.0.1:{port}/dir", cert, management, http_port)
    finally:
        stop(proc)
        log.close()


# --- running Pasteur's HTTPS server in the test's event loop ---------------------------


async def hello_app(scope: dict, receive, send) -> None:  # noqa: ANN001 - ASGI
    """A tiny ASGI app standing in for Pasteur's: says which HTTP version it got (and, in
    a header, the scheme)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = f"hello over HTTP/{scope['http_version']}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"x-scheme", scope["scheme"].encode())]})
    await send({"type": "http.response.body", "body": body})


def https_args(*argv: str):  # noqa: ANN201 - pasteur.config.Config
    """Parse options the way `pasteur serve` does, into the core's Config."""
    from pasteur.cli import build_parser, config_from

    return config_from(build_parser().parse_args(["serve", *argv]))


@contextlib.asynccontextmanager
async def running(*argv: str, watch_interval: float | None = None,
                  handshake_timeout: float | None = None,
                  hot: HotAnswers | None = None) -> AsyncIterator[HttpsServer]:
    """`pasteur serve ARGV`'s HTTPS part serving `hello_app`, in this event loop."""
    from pasteur.tls.listener import HttpsServer

    server = HttpsServer(hello_app, https_args(*argv))
    if watch_interval is not None:
        server.watch_interval = watch_interval
    if handshake_timeout is not None:
        server.handshake_timeout = handshake_timeout
    server.hot = hot
    task = asyncio.create_task(server.run())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises the server's error
    try:
        yield server
    finally:
        server.stop()
        await task
