"""ACME client: account, order, HTTP-01 or DNS-01 challenge, renewal with backoff.

The `acme` library is synchronous (requests); Pasteur calls it in a worker thread so
the event loop keeps serving, among other things the HTTP-01 answer on port 80.

Keys. With ``--account-seed``/``--certificate-seed`` a key is the one the original
Pasteur made from the same seed, type (``--*-key-type``, default rsa) and bits
(``--*-bits``, default 4096): ``X509.Private_key.generate ~seed ~bits typ``, re-derived
bit for bit by `pasteur.seedkeys`; it is never stored. Without a seed, a random key of
the type asked for (default P-256) is made once and stored (mode 0600) in
``DATA/acme/``. Ed25519 is refused by the flags: neither Let's Encrypt nor the ACME
library here signs with it. The issued chain is stored beside the keys, so a restart
reuses a certificate that is not yet due.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pasteur import seedkeys

log = logging.getLogger("pasteur.tls.acme")

STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
AcmeKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
NEW_KEY = ("a new key needs nothing registered: the ACME account is made on first use "
           "and the certificate is issued again")
_CURVE_TYPES = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1",
                   "hmac-md5")


class AcmeError(Exception):
    """A failure worth one line to the operator (no traceback)."""


# --- keys -----------------------------------------------------------------------------


def derive_key(seed: str, key_type: str = "rsa", bits: int | None = None) -> AcmeKey:
    """The original's key for this seed, type and bits (see module doc)."""
    key = seedkeys.generate(os.fsencode(seed), key_type, bits)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise AcmeError(f"{key_type} keys cannot sign ACME requests here")
    return key


def key_kind(key: AcmeKey) -> str:
    """``rsa`` or ``p256``/``p384``/``p521`` (the flags' names)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    return _CURVE_TYPES.get(key.curve.name, key.curve.name)


def describe(key: AcmeKey) -> str:
    return f"{key.key_size}-bit RSA" if isinstance(key, rsa.RSAPrivateKey) else key_kind(key)


def account_jwk(key: AcmeKey) -> tuple[jose.JWK, jose.JWASignature]:
    """The JWK and JWS algorithm of an account key (RS256, ES256, ES384 or ES512)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    alg = {"p256": jose.ES256, "p384": jose.ES384, "p521": jose.ES512}[key_kind(key)]
    return jose.JWKEC(key=key), alg


def random_key(key_type: str, bits: int | None) -> AcmeKey:
    if key_type == "rsa":
        return rsa.generate_private_key(seedkeys.RSA_E, bits or seedkeys.DEFAULT_BITS)
    return ec.generate_private_key(seedkeys.curve(key_type))


def key_pem(key: AcmeKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class KeySpec:
    """One ACME key's flags: --*-seed, --*-key-type, --*-bits (None: not given)."""

    seed: str | None = field(default=None, repr=False)
    key_type: str | None = None
    bits: int | None = None


def load_or_create_key(spec: KeySpec, path: Path, flag: str) -> AcmeKey:
    """The seeded key, else the stored one (which must be of the type asked for), else a
    new random one stored in ``path``. ``flag`` names the flags in messages."""
    if spec.seed is not None:
        return derive_key(spec.seed, spec.key_type or "rsa", spec.bits)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise AcmeError(f"{path} is not an RSA or EC private key")
        wrong_type = spec.key_type is not None and key_kind(key) != spec.key_type
        wrong_bits = (spec.bits is not None and isinstance(key, rsa.RSAPrivateKey)
                      and key.key_size != spec.bits)
        if wrong_type or wrong_bits:
            asked = (f"{spec.bits}-bit RSA" if (spec.key_type or key_kind(key)) == "rsa"
                     and spec.bits else spec.key_type)
            raise AcmeError(f"{path} holds a {describe(key)} key and --{flag}-key-type/"
                            f"--{flag}-bits ask for {asked}: remove the file to make a new "
                            f"key ({NEW_KEY}), or drop the flags to keep it")
        return key
    key = random_key(spec.key_type or "p256", spec.bits)
    write_private(path, key_pem(key))
    return key


# --- settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsSettings:
    """Where and how to send the RFC 2136 UPDATE for DNS-01."""

    key_name: str
    algorithm: str
    secret: str
    address: str
    port: int = 53

    @classmethod
    def parse(cls, key: str, address: str | None, port: int | None) -> DnsSettings:
        parts = key.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise AcmeError("--dns-key must be NAME:ALGORITHM:BASE64SECRET")
        name, alg, secret = parts
        alg = alg.lower().rstrip(".")
        if alg not in TSIG_ALGORITHMS:
            raise AcmeError(f"--dns-key: unknown TSIG algorithm {alg!r}, "
                            f"use one of {', '.join(TSIG_ALGORITHMS)}")
        try:
            base64.b64decode(secret, validate=True)
        except binascii.Error:
            raise AcmeError("--dns-key: the secret is not valid base64") from None
        if not address:
            raise AcmeError("--dns-key needs --dns-addr, the address of the zone's primary")
        return cls(name, alg, secret, address, port or 53)


@dataclass(frozen=True)
class AcmeSettings:
    hostname: str
    state_dir: Path  # account key, certificate and its metadata (config.DataDir.acme)
    directory: str = STAGING
    email: str | None = None
    ca_bundle: str | None = None
    account_key: KeySpec = KeySpec()
    cert_key: KeySpec = KeySpec()
    dns: DnsSettings | None = None
    # Renew when less than this fraction of the certificate's lifetime is left
    # (30 days of a 90-day Let's Encrypt certificate).
    renew_fraction: float = 1 / 3
    poll_timeout: float = 90.0

    @property
    def challenge_type(self) -> str:
        return "dns-01" if self.dns else "http-01"


@dataclass
class Issued:
    """A certificate chain and its private key, both PEM."""

    fullchain_pem: bytes
    key_pem: bytes
    certificate: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.certificate = x509.load_pem_x509_certificate(self.fullchain_pem)

    @property
    def not_before(self) -> dt.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    def renew_at(self, fraction: float) -> dt.datetime:
        return self.not_after - (self.not_after - self.not_before) * fraction


# --- DNS-01 ---------------------------------------------------------------------------


def _keyring(dns_cfg: DnsSettings) -> tuple[dict, dns.name.Name]:
    name = dns.name.from_text(dns_cfg.key_name)
    keyring = dns.tsigkeyring.from_text({dns_cfg.key_name: (dns_cfg.algorithm, dns_cfg.secret)})
    return keyring, name


def _where(dns_cfg: DnsSettings) -> str:
    return f"{dns_cfg.address}:{dns_cfg.port}"


def find_zone(dns_cfg: DnsSettings, record: str, timeout: float = 5.0) -> dns.name.Name:
    """The zone the primary serves that holds `record`: the nearest name with an SOA."""
    name = dns.name.from_text(record)
    while name != dns.name.root:
        query = dns.message.make_query(name, dns.rdatatype.SOA)
        try:
            answer = dns.query.udp(query, dns_cfg.address, port=dns_cfg.port, timeout=timeout)
        except (dns.exception.Timeout, OSError) as e:
            raise AcmeError(f"DNS server {_where(dns_cfg)} does not answer: {e}") from None
        if answer.rcode() == dns.rcode.NOERROR and any(
            r.rdtype == dns.rdatatype.SOA and r.name == name for r in answer.answer
        ):
            return name
        name = name.parent()
    raise AcmeError(f"DNS server {_where(dns_cfg)} is not the primary of a zone holding {record}")


def dns_update(dns_cfg: DnsSettings, record: str, value: str, add: bool,
               timeout: float = 10.0) -> None:
    """Add (or delete) one TXT value by a TSIG-signed RFC 2136 UPDATE to the primary."""
    zone = find_zone(dns_cfg, record, timeout)
    keyring, keyname = _keyring(dns_cfg)
    update = dns.update.UpdateMessage(zone, keyring=keyring, keyname=keyname,
                                      keyalgorithm=dns.name.from_text(dns_cfg.algorithm))
    if add:
        update.add(dns.name.from_text(record), 60, "TXT", f'"{value}"')
    else:
        update.delete(dns.name.from_text(record), "TXT", f'"{value}"')
    where = _where(dns_cfg)
    try:
        response = dns.query.tcp(update, dns_cfg.address, port=dns_cfg.port, timeout=timeout)
    except dns.tsig.PeerBadKey:
        raise AcmeError(f"DNS server {where} rejected TSIG key {dns_cfg.key_name} "
                        "(unknown key, or the key is not allowed to update this zone)") from None
    except (dns.tsig.PeerBadSignature, dns.tsig.BadSignature):
        raise AcmeError(f"DNS server {where} rejected the TSIG signature of key "
                        f"{dns_cfg.key_name} (wrong secret or algorithm)") from None
    except dns.tsig.PeerError as e:
        raise AcmeError(f"DNS server {where} rejected the TSIG signature: {e}") from None
    except (dns.exception.DNSException, OSError) as e:
        raise AcmeError(f"DNS update to {where} failed: {e or type(e).__name__}") from None
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise AcmeError(f"DNS server {where} refused the update of {record} in zone {zone}: "
                        f"{dns.rcode.to_text(rcode)}")


# --- ACME -----------------------------------------------------------------------------


HttpTokens = MutableMapping[str, str]


class AcmeIssuer:
    """Obtains certificates for one hostname; blocking, run it in a thread."""

    def __init__(self, settings: AcmeSettings, http_tokens: HttpTokens) -> None:
        self.settings = settings
        self.http_tokens = http_tokens
        state = settings.state_dir
        self.account_key = load_or_create_key(settings.account_key, state / "account.key",
                                              "account")
        self.cert_key = load_or_create_key(settings.cert_key, state / "certificate.key",
                                           "certificate")
        self._client: client.ClientV2 | None = None

    # Stored chain -----------------------------------------------------------------
    @property
    def _chain_path(self) -> Path:
        return self.settings.state_dir / "fullchain.pem"

    @property
    def _meta_path(self) -> Path:
        return self.settings.state_dir / "fullchain.json"

    def stored(self) -> Issued | None:
        """The stored chain, if it is for this name, this CA and this key."""
        try:
            meta = json.loads(self._meta_path.read_text())
            issued = Issued(self._chain_path.read_bytes(), key_pem(self.cert_key))
        except (OSError, ValueError):
            return None
        same_key = issued.certificate.public_key() == self.cert_key.public_key()
        if (meta.get("hostname") != self.settings.hostname
                or meta.get("directory") != self.settings.directory or not same_key):
            return None
        return issued

    def _store(self, issued: Issued) -> None:
        state = self.settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        write_private(self._chain_path, issued.fullchain_pem)
        meta = {"hostname": self.settings.hostname, "directory": self.settings.directory}
        write_private(self._meta_path, json.dumps(meta).encode())

    # Account ----------------------------------------------------------------------
    def _connect(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        s = self.settings
        jwk, alg = account_jwk(self.account_key)
        # verify_ssl goes to requests' verify=, which takes a CA bundle's path too
        net = client.ClientNetwork(jwk, alg=alg, user_agent="pasteur",
                                   verify_ssl=s.ca_bundle or True,  # type: ignore[arg-type]
                                   timeout=30)
        try:
            directory = client.ClientV2.get_directory(s.directory, net)
        except requests.exceptions.RequestException as e:
            raise AcmeError(f"cannot reach ACME server {s.directory}: {_short(e)}") from None
        except (errors.Error, ValueError, jose.DeserializationError) as e:
            raise AcmeError(f"{s.directory} is not an ACME directory: {e}") from None
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(email=s.email,
                                                          terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as e:  # the key already has an account
            acme.query_registration(messages.RegistrationResource(
                uri=e.location, body=messages.Registration()))
        self._client = acme
        return acme

    # Order ------------------------------------------------------------------------
    def issue(self) -> Issued:
        """Run one order to the end; raises AcmeError with a one-line reason."""
        try:
            return self._issue()
        except AcmeError:
            self._client = None
            raise
        except errors.ValidationError as e:
            raise AcmeError(f"the ACME server refused the {self.settings.challenge_type} "
                            f"challenge for {self.settings.hostname}: {_authz_reason(e)}") from None
        except messages.Error as e:
            self._client = None
            raise AcmeError(f"ACME server error: {e.detail or e.typ}") from None
        except errors.TimeoutError:
            raise AcmeError("the ACME server did not validate the challenge in time") from None
        except requests.exceptions.RequestException as e:
            self._client = None
            raise AcmeError(f"cannot reach ACME server {self.settings.directory}: "
                            f"{_short(e)}") from None
        except errors.Error as e:
            self._client = None
            raise AcmeError(f"ACME error: {e}") from None

    def _issue(self) -> Issued:
        acme = self._connect()
        pem = key_pem(self.cert_key)
        csr = crypto_util.make_csr(pem, [self.settings.hostname])
        order = acme.new_order(csr)
        cleanups: list[Callable[[], None]] = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                cleanups.append(self._answer(acme, authz))
            deadline = dt.datetime.now() + dt.timedelta(seconds=self.settings.poll_timeout)
            order = acme.poll_and_finalize(order, deadline)
        finally:
            for cleanup in cleanups:
                try:
                    cleanup()
                except AcmeError as e:
                    log.warning("cleaning up the challenge failed: %s", e)
        issued = Issued(order.fullchain_pem.encode(), pem)
        self._store(issued)
        return issued

    def _answer(self, acme: client.ClientV2, authz: messages.AuthorizationResource
                ) -> Callable[[], None]:
        wanted = challenges.DNS01 if self.settings.dns else challenges.HTTP01
        challb = next((c for c in authz.body.challenges if isinstance(c.chall, wanted)), None)
        if challb is None:
            raise AcmeError(f"the ACME server offers no {self.settings.challenge_type} challenge")
        jwk, _ = account_jwk(self.account_key)
        response, validation = challb.response_and_validation(jwk)
        if isinstance(challb.chall, challenges.DNS01):
            cleanup = self._publish_dns(challb.chall.validation_domain_name(
                authz.body.identifier.value), validation)
        else:
            token = challb.chall.encode("token")
            self.http_tokens[token] = validation
            def cleanup() -> None:
                self.http_tokens.pop(token, None)
        acme.answer_challenge(challb, response)
        return cleanup

    def _publish_dns(self, record: str, value: str) -> Callable[[], None]:
        dns_cfg = self.settings.dns
        assert dns_cfg is not None
        dns_update(dns_cfg, record, value, add=True)
        log.info("DNS-01: added TXT %s", record)
        return lambda: dns_update(dns_cfg, record, value, add=False)


def _short(e: BaseException) -> str:
    """The innermost reason of a requests error, on one line."""
    reason: BaseException = e
    while reason.__context__ is not None or getattr(reason, "reason", None) is not None:
        nxt = getattr(reason, "reason", None) or reason.__context__
        if not isinstance(nxt, BaseException) or nxt is reason:
            break
        reason = nxt
    return " ".join(str(reason).split()) or type(reason).__name__


def _authz_reason(e: errors.ValidationError) -> str:
    reasons = []
    for authzr in e.failed_authzrs:
        for chall in authzr.body.challenges:
            if chall.error is not None:
                reasons.append(chall.error.detail or str(chall.error.typ))
    return "; ".join(" ".join(r.split()) for r in reasons) or "invalid authorization"


# --- lifecycle --------------------------------------------------------------------


Install = Callable[[Issued], Awaitable[None] | None]


class CertificateManager:
    """Obtain a certificate at start, then renew it well before expiry, with backoff."""

    def __init__(self, settings: AcmeSettings, http_tokens: HttpTokens,
                 issuer: AcmeIssuer | None = None, backoff: tuple[float, float] = (60, 6 * 3600),
                 recheck: float = 12 * 3600) -> None:
        self.settings = settings
        self.issuer = issuer or AcmeIssuer(settings, http_tokens)
        self.current: Issued | None = None
        self.backoff = backoff
        self.recheck = recheck
        self._force = asyncio.Event()
        self.renewals = 0
        self.failures = 0

    async def obtain(self) -> Issued:
        """The stored certificate if it is not due, else a new one (raises AcmeError)."""
        stored = self.issuer.stored()
        if stored is not None and not self._due(stored):
            log.info("using the stored certificate for %s (expires %s)",
                     self.settings.hostname, stored.not_after)
            self.current = stored
            return stored
        self.current = await self._issue()
        return self.current

    async def _issue(self) -> Issued:
        start = asyncio.get_running_loop().time()
        issued = await asyncio.to_thread(self.issuer.issue)
        log.info("obtained a certificate for %s by %s in %.1f s, expires %s",
                 self.settings.hostname, self.settings.challenge_type,
                 asyncio.get_running_loop().time() - start, issued.not_after)
        return issued

    def _due(self, issued: Issued) -> bool:
        return dt.datetime.now(dt.UTC) >= issued.renew_at(self.settings.renew_fraction)

    def renew_now(self) -> None:
        """Ask the renewal loop to renew at once (tests, operators)."""
        self._force.set()

    def _seconds_to_renewal(self) -> float:
        assert self.current is not None
        delta = self.current.renew_at(self.settings.renew_fraction) - dt.datetime.now(dt.UTC)
        return max(0.0, min(delta.total_seconds(), self.recheck))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by renew_now()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._force.wait(), timeout=seconds)

    async def run(self, install: Install) -> None:
        """Renew forever; a failure keeps the old certificate and retries with backoff."""
        delay = self.backoff[0]
        while True:
            await self._sleep(self._seconds_to_renewal())
            forced = self._force.is_set()
            self._force.clear()
            if not forced and self.current is not None and not self._due(self.current):
                continue
            try:
                issued = await self._issue()
            except Exception as e:  # noqa: BLE001 - whatever it is, keep serving and retry
                self.failures += 1
                wait = delay * random.uniform(0.8, 1.2)
                log.warning("certificate renewal failed: %s; keeping the current certificate, "
                            "retrying in %.0f s", e, wait)
                await self._sleep(wait)
                self._force.set()  # retry at once after the backoff
                delay = min(delay * 2, self.backoff[1])
                continue
            delay = self.backoff[0]
            self.current = issued
            self.renewals += 1
            result = install(issued)
            if result is not None:
                await result
