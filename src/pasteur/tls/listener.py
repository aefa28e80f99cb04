"""HTTPS: TLS listener with HTTP/2 by ALPN, live certificate swap, port-80 redirect.

Pasteur keeps one `ssl.SSLContext` (`LiveTLS`) for the listener's whole life: a renewed
certificate is loaded into that same context (`load_cert_chain`), so new handshakes get
it and open connections keep theirs; nothing restarts. The listener (tls/alpn.py) is
uvicorn's server machinery with TLS by the event loop (uvloop) on that context: HTTP/1.1
connections are served by the plain listener's protocol (`pasteur.protocol`: same limits,
deadlines, ~0.85x plain HTTP's req/s), h2 ones by hypercorn's HTTP/2 protocol.
Port 80 (``--http-port``) redirects to HTTPS and answers ACME HTTP-01 challenges. See
docs/https.md and docs/performance.md for the reasons and figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pasteur.config import Config, DataDir, TlsSettings, flag_type, parse_port
from pasteur.protocol import HotAnswers, uvicorn_config
from pasteur.tls import alpn

if TYPE_CHECKING:  # imported when serving: `pasteur --help` stays fast
    from pasteur.tls.acme import AcmeSettings, CertificateManager, Issued

log = logging.getLogger("pasteur.tls.listener")

ASGIApp = Callable[..., Awaitable[None]]
CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
GRACEFUL_TIMEOUT = 5  # seconds a stop waits for requests in progress
# Same suite as hypercorn's default: forward-secret AEAD only.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


class HttpsError(Exception):
    """Bad options or a failure to start: `serve` turns it into one line and exit status 1."""


def fail(message: str) -> HttpsError:
    return HttpsError(message)


# --- command line ---------------------------------------------------------------------


def add_https_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Add the HTTPS and ACME options to a parser (or an argument group)."""
    g = parser.add_argument_group("HTTPS") if hasattr(parser, "add_argument_group") else parser
    g.add_argument("--https", nargs="?", const=True, default=False, metavar="true|false",
                   type=flag_type(parse_bool, "https"),
                   help="serve HTTPS with a certificate obtained by ACME for --hostname "
                        "(a switch; --https=true|false as the original accepted)")
    g.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain")
    g.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert")
    g.add_argument("--hostname", metavar="NAME", help="public name of the server (certificate)")
    g.add_argument("--https-port", type=flag_type(parse_port, "https-port"), metavar="N",
                   help="port of the HTTPS listener (default 443 with --https, else --port)")
    g.add_argument("--http-port", type=flag_type(parse_port, "http-port"), metavar="N",
                   help="port that redirects to HTTPS and answers ACME HTTP-01 "
                        "(default 80 with --https; 0 to disable)")
    g.add_argument("--email", help="contact address for the ACME account")
    g.add_argument("--production", nargs="?", const=True, default=False,
                   metavar="true|false", type=flag_type(parse_bool, "production"),
                   help="use Let's Encrypt's production directory (staging otherwise); "
                        "--production=true|false as well")
    g.add_argument("--acme-directory", metavar="URL", help="directory URL of any ACME server")
    g.add_argument("--acme-ca", metavar="FILE",
                   help="CA bundle to trust for the ACME server's own HTTPS")
    g.add_argument("--account-seed", metavar="SEED",
                   help="make the ACME account key from SEED: the key the original Pasteur "
                        "made from the same seed, type and bits (not stored)")
    g.add_argument("--cert-seed", "--certificate-seed", dest="cert_seed", metavar="SEED",
                   help="make the certificate key from SEED, as the original did")
    for what in ("certificate", "account"):
        dest = "cert" if what == "certificate" else what
        g.add_argument(f"--{what}-key-type", dest=f"{dest}_key_type", metavar="TYPE",
                       type=flag_type(parse_key_type, f"{what}-key-type"),
                       help=f"type of the {what} key: rsa, p256, p384 or p521 (default: rsa "
                            f"with --{what}-seed, as the original; p256 otherwise; ed25519 is "
                            "refused)")
        g.add_argument(f"--{what}-bits", dest=f"{dest}_bits", metavar="N",
                       type=flag_type(parse_bits, f"{what}-bits"),
                       help=f"bits of an RSA {what} key (default 4096; ignored by the other "
                            "types, as in the original)")
    g.add_argument("--dns-key", metavar="NAME:ALG:SECRET",
                   help="TSIG key for DNS-01 by RFC 2136 update (e.g. k:hmac-sha256:BASE64)")
    g.add_argument("--dns-addr", metavar="IP", help="address of the zone's primary DNS server")
    g.add_argument("--dns-port", type=flag_type(parse_port, "dns-port"), default=None,
                   metavar="N",
                   help="port of the zone's primary (default 53)")


def tls_settings(args: argparse.Namespace) -> TlsSettings | None:
    """The settings of `add_https_arguments`' flags; None (plain HTTP) without --https
    or --tls-cert."""
    if not (args.https or args.tls_cert):
        return None
    return TlsSettings(
        https=bool(args.https), tls_cert=args.tls_cert, tls_key=args.tls_key,
        hostname=args.hostname, https_port=args.https_port, http_port=args.http_port,
        email=args.email, production=bool(args.production), acme_directory=args.acme_directory,
        acme_ca=args.acme_ca, account_seed=args.account_seed, cert_seed=args.cert_seed,
        account_key_type=args.account_key_type, account_bits=args.account_bits,
        cert_key_type=args.cert_key_type, cert_bits=args.cert_bits,
        dns_key=args.dns_key, dns_addr=args.dns_addr, dns_port=args.dns_port)


def acme_settings(settings: TlsSettings, data: DataDir) -> AcmeSettings:
    """ACME settings from the HTTPS settings; raises HttpsError on bad input."""
    from pasteur.tls.acme import (
        PRODUCTION,
        STAGING,
        AcmeError,
        AcmeSettings,
        DnsSettings,
        KeySpec,
    )

    if not settings.hostname:
        raise fail("--https needs --hostname NAME, the public name to get a certificate for")
    account = key_spec("account", settings.account_seed, settings.account_key_type,
                       settings.account_bits)
    cert = key_spec("certificate", settings.cert_seed, settings.cert_key_type,
                    settings.cert_bits)
    directory = settings.acme_directory or (PRODUCTION if settings.production else STAGING)
    dns_cfg = None
    try:
        if settings.dns_key:
            dns_cfg = DnsSettings.parse(settings.dns_key, settings.dns_addr, settings.dns_port)
        elif settings.dns_addr:
            raise AcmeError("--dns-addr needs --dns-key NAME:ALG:SECRET")
    except AcmeError as e:
        raise fail(str(e)) from None
    return AcmeSettings(
        hostname=settings.hostname.rstrip(".").lower(), state_dir=data.acme,
        directory=directory, email=settings.email, ca_bundle=settings.acme_ca,
        account_key=KeySpec(*account), cert_key=KeySpec(*cert), dns=dns_cfg)


def key_spec(what: str, seed: str | None, key_type: str | None, bits: int | None
             ) -> tuple[str | None, str | None, int | None]:
    """(seed, type, bits) of one ACME key; HttpsError for bits the key cannot have."""
    from pasteur import seedkeys

    kind = key_type or ("rsa" if seed is not None else "p256")
    if kind != "rsa":
        return seed, key_type, None  # the original ignored the bits of other key types
    try:
        seedkeys.check(kind, bits)
    except ValueError as e:
        raise fail(f"--{what}-bits: {e} ({_NEW_KEY})") from None
    return seed, key_type, bits


def parse_bool(value: str) -> bool:
    """A switch's value in the original's ``--https=true|false`` form."""
    low = value.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


_NEW_KEY = ("a new key needs nothing registered: the ACME account is made on first use "
            "and the certificate is issued again")


def parse_key_type(value: str) -> str:
    """The original's ``--*-key-type`` (``X509.Key_type.strings``); ed25519 is refused:
    Let's Encrypt takes Ed25519 neither for accounts nor for certificates."""
    from pasteur.seedkeys import KEY_TYPES

    low = value.lower()
    if low not in KEY_TYPES:  # Cmdliner's enum took an unambiguous prefix too
        matches = [t for t in KEY_TYPES if low and t.startswith(low)]
        if len(matches) != 1:
            raise ValueError(f"expected one of {', '.join(KEY_TYPES)}, got {value!r}")
        low = matches[0]
    if low == "ed25519":
        raise ValueError("ed25519 ACME keys are not made here: Let's Encrypt takes Ed25519 "
                         "keys neither for accounts nor for certificates, so the original "
                         "could not have used one either; give rsa, p256, p384 or p521 "
                         f"({_NEW_KEY})")
    return low


def parse_bits(value: str) -> int:
    """The original's ``--*-bits``: a positive number (checked against the key type by
    `key_spec`)."""
    digits = value.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):  # int() also takes "١٠٢٤", " 1_024 "
        raise ValueError(f"expected a number of bits, got {value!r}")
    bits = int(value)
    if bits <= 0:
        raise ValueError(f"expected a positive number of bits, got {value!r}")
    return bits


# --- TLS context with a swappable certificate -----------------------------------------


def fingerprint(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class LiveTLS:
    """One SSLContext for the listener's whole life; `load` swaps its certificate."""

    def __init__(self) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.set_ciphers(CIPHERS)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9113 9.2
        ctx.options |= ssl.OP_NO_COMPRESSION
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.context = ctx
        self.fingerprint: str | None = None
        self.not_after: dt.datetime | None = None  # the certificate in use's end (UTC)

    def load_files(self, cert: str | Path, key: str | Path) -> None:
        """Load (or swap in) a chain and key from files; checked on a scratch context first,
        since a failed load_cert_chain can leave a context with a new chain and the old key."""
        try:
            cert_pem = Path(cert).read_bytes()
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            self.context.load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as e:
            raise fail(f"cannot use certificate {cert} with key {key}: {e}") from None
        except OSError as e:
            raise fail(f"cannot read {e.filename or cert}: {e.strerror}") from None
        self.fingerprint = fingerprint(cert_pem)
        from cryptography import x509

        self.not_after = x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc

    def load(self, issued: Issued) -> None:
        """Swap in a new chain and key: new handshakes get it, open connections are kept."""
        fd, path = tempfile.mkstemp(prefix="pasteur-tls-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp creates the file with mode 0600
                f.write(issued.key_pem + b"\n" + issued.fullchain_pem)
            self.context.load_cert_chain(path)
        finally:
            os.unlink(path)
        self.fingerprint = fingerprint(issued.fullchain_pem)
        self.not_after = issued.not_after
        log.info("TLS certificate in use: sha256 %s, expires %s", self.fingerprint,
                 issued.not_after)

    def days_left(self) -> float | None:
        """Days until the certificate in use expires (None: none loaded yet)."""
        if self.not_after is None:
            return None
        return (self.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400


# --- port 80: redirect and HTTP-01 ----------------------------------------------------


def redirect_app(hostname: str | None, https_port: int, tokens: dict[str, str]) -> ASGIApp:
    """ASGI app for port 80: ACME HTTP-01 answers, and a redirect to HTTPS for the rest."""

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(CHALLENGE_PREFIX):
            answer = tokens.get(path[len(CHALLENGE_PREFIX):])
            status, body = (200, answer.encode()) if answer else (404, b"no such challenge\n")
            await _respond(send, status, [(b"content-type", b"text/plain")], body)
            return
        host = hostname or _host_header(scope) or "localhost"
        port = "" if https_port == 443 else f":{https_port}"
        target = f"https://{host}{port}{scope.get('raw_path', path.encode()).decode('latin-1')}"
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        status = 301 if scope["method"] in ("GET", "HEAD") else 308
        await _respond(send, status, [(b"location", target.encode("latin-1"))], b"")

    return app


def _host_header(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1")
            return host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return None


async def _respond(send: Callable, status: int, headers: list, body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- server ---------------------------------------------------------------------------


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HttpsServer:
    """The TLS listener, the port-80 listener and, with --https, the ACME renewal loop."""

    def __init__(self, app: ASGIApp | None, core_config: Config) -> None:
        if core_config.tls is None:
            raise fail("HTTPS is not asked for: give --https or --tls-cert and --tls-key")
        self.app = app
        self.settings = settings = core_config.tls
        self.tls = LiveTLS()
        self.tokens: dict[str, str] = {}
        self.manager: CertificateManager | None = None
        self.host: str = core_config.bind
        acme = settings.https and not settings.tls_cert
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise fail("--tls-cert and --tls-key go together")
        if acme:
            from pasteur.tls.acme import CertificateManager

            self.manager = CertificateManager(acme_settings(settings, core_config.paths),
                                              self.tokens)
        default_https = 443 if settings.https or not core_config.port else core_config.port
        self.https_port: int = settings.https_port or default_https
        default_http = 80 if settings.https else 0
        self.http_port: int = default_http if settings.http_port is None else settings.http_port
        if self.manager and self.manager.settings.dns is None and not self.http_port:
            raise fail("HTTP-01 needs the port-80 listener: drop --http-port 0, or use DNS-01 "
                       "with --dns-key")
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._listeners: list[alpn.Listener] = []
        self.watch_interval = 30.0  # seconds between checks of --tls-cert/--tls-key
        self.handshake_timeout = alpn.HANDSHAKE_TIMEOUT
        self.header_timeout = core_config.header_timeout  # as on the plain listener
        self.max_connections = core_config.max_connections  # each listener's, then 503
        self.hot: HotAnswers | None = None  # cached reads answered by HTTP/1.1's protocol

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until stop(); raises HttpsError when something is wrong."""
        try:
            if self.http_port:
                await self._start(redirect_app(self.settings.hostname, self.https_port,
                                               self.tokens), self.http_port, secure=False)
            if self.manager is not None:
                from pasteur.tls.acme import AcmeError

                try:
                    self.tls.load(await self.manager.obtain())
                except AcmeError as e:
                    raise fail(str(e)) from None
                self._tasks.append(asyncio.create_task(self.manager.run(self.tls.load),
                                                       name="renewal"))
            else:
                assert self.settings.tls_cert and self.settings.tls_key  # checked in __init__
                self.tls.load_files(self.settings.tls_cert, self.settings.tls_key)
                self._tasks.append(asyncio.create_task(self._watch_files(), name="renewal"))
            assert self.app is not None, "HttpsServer.app is not set"
            await self._start(self.app, self.https_port, secure=True)
            self.ready.set()
            await self._stop.wait()
        finally:
            self._stop.set()
            await self._close()

    async def _watch_files(self) -> None:
        """Swap in --tls-cert/--tls-key when they change on disk (e.g. renewed by certbot)."""
        paths = [Path(self.settings.tls_cert or ""), Path(self.settings.tls_key or "")]

        def stamp() -> list[tuple[float, int]]:
            return [(p.stat().st_mtime, p.stat().st_size) for p in paths if p.exists()]

        seen = stamp()
        while True:
            await asyncio.sleep(self.watch_interval)
            now = stamp()
            if now == seen:
                continue
            seen = now
            try:
                self.tls.load_files(*paths)
            except HttpsError as e:
                log.warning("keeping the current certificate: %s", e)
                continue
            log.info("reloaded %s: sha256 %s", paths[0], self.tls.fingerprint)

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()  # the renewal loop
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("renewal failed: %s", result)
        for listener in reversed(self._listeners):
            await listener.stop()

    async def _start(self, app: ASGIApp, port: int, secure: bool) -> None:
        """Listen on `port`: TLS (HTTP/1.1 and h2 by ALPN) serving `app` and running its
        lifespan, or plain HTTP/1.1 for port 80's `redirect_app`."""
        try:
            sock = alpn.bind(self.host, port)
        except OSError as e:
            raise fail(f"cannot listen on {_bind(self.host, port)}: {e.strerror}") from None
        config = uvicorn_config(app, header_timeout=self.header_timeout,
                                max_connections=self.max_connections, host=self.host,
                                port=port, lifespan="on" if secure else "off",
                                graceful=GRACEFUL_TIMEOUT, hot=self.hot if secure else None)
        listener = alpn.Listener(config, sock, self.tls.context if secure else None,
                                 h2_app=app if secure else None,
                                 handshake_timeout=self.handshake_timeout)
        self._listeners.append(listener)
        await listener.start()
        log.info("listening on %s://%s", "https" if secure else "http", _bind(self.host, port))


def prepare(config: Config) -> HttpsServer | None:
    """Check the HTTPS options before anything else starts (called by `pasteur serve`):
    None when HTTPS is not asked for; a bad option exits with one line."""
    if config.tls is None:
        return None
    try:
        return HttpsServer(None, config)
    except HttpsError as e:
        raise SystemExit(f"pasteur: {e}") from None


async def serve(app: ASGIApp, config: Config, server: HttpsServer | None = None,
                hot: HotAnswers | None = None) -> None:
    """Serve `app` over HTTPS as the options say (called by `pasteur serve`); `hot`: the
    front door's cached reads, answered by the HTTP/1.1 protocol as on the plain listener."""
    try:
        server = server or HttpsServer(app, config)
        server.app = app
        server.hot = hot
        await server.run()
    except HttpsError as e:
        raise SystemExit(f"pasteur: {e}") from None
