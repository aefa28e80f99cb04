"""ACME against Debian's pebble: HTTP-01 and DNS-01 (knot), errors, renewal, seeds."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from pasteur.tls.acme import (
    AcmeError,
    AcmeIssuer,
    AcmeSettings,
    CertificateManager,
    DnsSettings,
    KeySpec,
    account_jwk,
    derive_key,
    dns_update,
    key_kind,
    key_pem,
    load_or_create_key,
)
from pasteur.tls.listener import HttpsError, HttpsServer
from tests.fixtures_acme import (  # noqa: F401 - fixtures
    LOCKED_ZONE,
    ZONE,
    Knot,
    Pebble,
    free_port,
    hello_app,
    https_args,
    knot_fixture,
    pebble_fixture,
    running,
    wait_port,
)

pytestmark = pytest.mark.timeout(60)


def acme_argv(pebble: Pebble, tmp_path: Path, host: str, *extra: str) -> list[str]:
    return ["--https", "--hostname", host, "--acme-directory", pebble.directory,
            "--acme-ca", str(pebble.ca_bundle), "--https-port", str(free_port()),
            "--http-port", str(pebble.http_port), "--data", str(tmp_path), *extra]


def client_for(pebble: Pebble) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cadata=pebble.root_pem().decode())
    return httpx.AsyncClient(http2=True, verify=ctx)


async def get(client: httpx.AsyncClient, server: HttpsServer, host: str) -> httpx.Response:
    """GET / over 127.0.0.1, verifying the chain for `host` (SNI and name check)."""
    return await client.get(f"https://127.0.0.1:{server.https_port}/",
                            extensions={"sni_hostname": host})


def peer_cert(response: httpx.Response) -> x509.Certificate:
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True))


async def test_http01_issues_and_serves_h2(pebble: Pebble, tmp_path: Path) -> None:
    host = f"www.{ZONE}"
    async with running(*acme_argv(pebble, tmp_path, host)) as server, client_for(pebble) as c:
        r = await get(c, server, host)
        assert r.status_code == 200
        assert r.http_version == "HTTP/2"
        assert r.text == "hello over HTTP/2\n"
        cert = peer_cert(r)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [host]
        assert not server.tokens  # challenge answer removed after validation
    stored = tmp_path / "acme"
    assert (stored / "fullchain.pem").exists()
    assert (stored / "account.key").stat().st_mode & 0o077 == 0


async def test_dns01_issues_and_cleans_up(pebble: Pebble, knot: Knot, tmp_path: Path) -> None:
    host = f"dns01.{ZONE}"
    argv = acme_argv(pebble, tmp_path, host, "--http-port", "0", "--dns-key", knot.key,
                     "--dns-addr", "127.0.0.1", "--dns-port", str(knot.port),
                     "--account-seed", "acct", "--account-key-type", "p384",
                     "--cert-seed", "cert", "--certificate-bits", "2048")
    async with running(*argv) as server, client_for(pebble) as c:
        r = await get(c, server, host)
        assert r.http_version == "HTTP/2"
        # the original's keys for these seeds: an RSA-2048 certificate key (rsa is the
        # default type with a seed), a P-384 account key (ES384)
        assert peer_cert(r).public_key() == derive_key("cert", "rsa", 2048).public_key()
    assert knot.dig(f"_acme-challenge.{host}", "TXT") == []  # removed after validation
    assert not (tmp_path / "acme" / "account.key").exists()  # seeded: not stored
    assert not (tmp_path / "acme" / "certificate.key").exists()


async def test_forced_renewal_swaps_certificate_keeping_connection(
        pebble: Pebble, tmp_path: Path) -> None:
    host = f"www.{ZONE}"
    async with running(*acme_argv(pebble, tmp_path, host)) as server, client_for(pebble) as c:
        assert server.manager is not None
        first = await get(c, server, host)
        old = peer_cert(first)
        stream = first.extensions["network_stream"]
        server.manager.renew_now()
        for _ in range(200):
            if server.manager.renewals:
                break
            await asyncio.sleep(0.05)
        assert server.manager.renewals == 1
        again = await get(c, server, host)  # the same HTTP/2 connection, still open
        assert again.extensions["network_stream"] is stream
        assert again.status_code == 200 and again.http_version == "HTTP/2"
        assert peer_cert(again).serial_number == old.serial_number
        async with client_for(pebble) as fresh:  # a new connection gets the new certificate
            new = peer_cert(await get(fresh, server, host))
        assert new.serial_number != old.serial_number
        assert new.not_valid_after_utc >= old.not_valid_after_utc


async def test_restart_reuses_stored_certificate(pebble: Pebble, tmp_path: Path) -> None:
    host = f"www.{ZONE}"
    async with running(*acme_argv(pebble, tmp_path, host)):
        pass
    first = (tmp_path / "acme" / "fullchain.pem").read_bytes()
    async with running(*acme_argv(pebble, tmp_path, host)) as server:
        assert server.manager is not None and server.manager.renewals == 0
    assert (tmp_path / "acme" / "fullchain.pem").read_bytes() == first


# --- errors: one line, non-zero exit ------------------------------------------------


async def test_unreachable_acme_server(tmp_path: Path) -> None:
    argv = ["--https", "--hostname", f"www.{ZONE}", "--acme-directory",
            f"https://127.0.0.1:{free_port()}/dir", "--https-port", str(free_port()),
            "--http-port", str(free_port()), "--data", str(tmp_path)]
    with pytest.raises(HttpsError) as e:
        async with running(*argv):
            pass
    message = str(e.value)
    assert message.startswith("cannot reach ACME server https://127.0.0.1:")
    assert "\n" not in message


async def test_refused_challenge(pebble: Pebble, tmp_path: Path) -> None:
    # nothere.pasteur.test has no address in the zone: pebble cannot validate HTTP-01.
    with pytest.raises(HttpsError) as e:
        async with running(*acme_argv(pebble, tmp_path, f"nothere.{ZONE}")):
            pass
    message = str(e.value)
    assert message.startswith("the ACME server refused the http-01 challenge for "
                              f"nothere.{ZONE}: ")
    assert "\n" not in message


def dns_cfg(knot: Knot, key: str | None = None) -> DnsSettings:
    return DnsSettings.parse(key or knot.key, "127.0.0.1", knot.port)


def test_bad_tsig_key(knot: Knot) -> None:
    wrong_secret = knot.key.rsplit(":", 1)[0] + ":" + "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA=="
    with pytest.raises(AcmeError, match="rejected the TSIG signature|rejected TSIG key"):
        dns_update(dns_cfg(knot, wrong_secret), f"_acme-challenge.www.{ZONE}", "x", add=True)
    unknown = "nobody:hmac-sha256:" + knot.key.rsplit(":", 1)[1]
    with pytest.raises(AcmeError, match="rejected TSIG key nobody"):
        dns_update(dns_cfg(knot, unknown), f"_acme-challenge.www.{ZONE}", "x", add=True)


def test_dns_server_refuses_update(knot: Knot) -> None:
    with pytest.raises(AcmeError, match="is not the primary of a zone holding"):
        dns_update(dns_cfg(knot), "_acme-challenge.www.example.org", "x", add=True)
    # knot answers an update its ACL does not allow as a bad key (NOTAUTH, BADKEY)
    with pytest.raises(AcmeError, match="rejected TSIG key .* not allowed to update"):
        dns_update(dns_cfg(knot), f"_acme-challenge.www.{LOCKED_ZONE}", "x", add=True)


def test_dns_server_unreachable() -> None:
    cfg = DnsSettings.parse(f"k:hmac-sha256:{'a' * 44}", "127.0.0.1", free_port())
    with pytest.raises(AcmeError, match="does not answer|failed"):
        dns_update(cfg, "_acme-challenge.www.example.org", "x", add=True, timeout=0.3)


@pytest.mark.parametrize(("argv", "message"), [
    (["--https"], "--https needs --hostname NAME"),
    (["--https", "--hostname", "a.test", "--dns-key", "k:hmac-sha256"],
     "--dns-key must be NAME:ALGORITHM:BASE64SECRET"),
    (["--https", "--hostname", "a.test", "--dns-key", "k:hmac-foo:YQ=="],
     "--dns-key: unknown TSIG algorithm"),
    (["--https", "--hostname", "a.test", "--dns-key", "k:hmac-sha256:@@@"],
     "--dns-key: the secret is not valid base64"),
    (["--https", "--hostname", "a.test", "--dns-key", "k:hmac-sha256:YQ=="],
     "--dns-key needs --dns-addr"),
    (["--tls-cert", "x.pem"], "--tls-cert and --tls-key go together"),
    (["--https", "--hostname", "a.test", "--http-port", "0"],
     "HTTP-01 needs the port-80 listener"),
])
def test_bad_options(argv: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(HttpsError) as e:
        HttpsServer(hello_app, https_args(*argv, "--data", str(tmp_path)))
    assert str(e.value).startswith(message)


# --- keys and renewal loop ------------------------------------------------------------


def test_seeded_keys_are_the_originals() -> None:
    """X509.Private_key.generate ~seed ~bits typ (pasteur.seedkeys, checked against the
    OCaml libraries in tests/test_seedkeys.py); rsa/4096 when no type is given."""
    from pasteur import seedkeys

    a = derive_key("seed", "p256")
    assert key_pem(a) == key_pem(seedkeys.generate(b"seed", "p256"))  # type: ignore[arg-type]
    assert key_pem(a) != key_pem(derive_key("seed2", "p256"))
    assert key_kind(derive_key("seed", "p521")) == "p521"
    rsa_key = derive_key("seed", "rsa", 1024)
    assert key_kind(rsa_key) == "rsa" and rsa_key.key_size == 1024
    spec = KeySpec(seed="seed")
    assert load_or_create_key(spec, Path("/nonexistent"), "account").key_size == 4096


def test_stored_key_of_another_type_is_refused(tmp_path: Path) -> None:
    """Without a seed, a stored key is kept unless the flags ask for another type or size:
    then the operator is told to remove it (nothing to register), never given another
    key silently."""
    path = tmp_path / "account.key"
    first = load_or_create_key(KeySpec(key_type="p384"), path, "account")
    assert key_kind(first) == "p384"
    assert key_pem(load_or_create_key(KeySpec(), path, "account")) == key_pem(first)
    with pytest.raises(AcmeError, match="holds a p384 key and --account-key-type/"
                                        "--account-bits ask for p256: remove the file"):
        load_or_create_key(KeySpec(key_type="p256"), path, "account")
    path.unlink()
    rsa_key = load_or_create_key(KeySpec(key_type="rsa", bits=2048), path, "account")
    assert rsa_key.key_size == 2048
    with pytest.raises(AcmeError, match="2048-bit RSA key .* ask for 3072-bit RSA"):
        load_or_create_key(KeySpec(bits=3072), path, "account")


def test_account_jwk_algorithms() -> None:
    import josepy as jose

    assert account_jwk(derive_key("s", "rsa", 1024))[1] is jose.RS256
    assert account_jwk(derive_key("s", "p256"))[1] is jose.ES256
    assert account_jwk(derive_key("s", "p384"))[1] is jose.ES384
    assert account_jwk(derive_key("s", "p521"))[1] is jose.ES512


class FlakyIssuer:
    """Fails `failures` times, then hands out a given certificate."""

    def __init__(self, good: object, failures: int) -> None:
        self.good, self.failures, self.calls = good, failures, 0

    def stored(self) -> None:
        return None

    def issue(self) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise AcmeError("ACME server error: try later")
        return self.good


async def test_renewal_failure_keeps_certificate_and_backs_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Cert:
        not_after = "later"

        def renew_at(self, fraction: float):  # noqa: ANN202
            import datetime as dt
            return dt.datetime.now(dt.UTC) + dt.timedelta(days=30)

    first, renewed = Cert(), Cert()
    settings = AcmeSettings(hostname="a.test", state_dir=tmp_path / "acme")
    issuer = FlakyIssuer(renewed, failures=2)
    manager = CertificateManager(settings, {}, issuer=issuer,  # type: ignore[arg-type]
                                 backoff=(0.05, 0.2))
    manager.current = first  # type: ignore[assignment]
    installed: list[object] = []
    caplog.set_level(logging.WARNING, "pasteur.tls.acme")
    task = asyncio.create_task(manager.run(installed.append))
    manager.renew_now()
    for _ in range(100):
        if installed:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    assert installed == [renewed] and issuer.calls == 3 and manager.failures == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert warnings[0].startswith("certificate renewal failed: ACME server error: try later; "
                                  "keeping the current certificate, retrying in")


def test_issuer_stores_random_keys_once(tmp_path: Path) -> None:
    settings = AcmeSettings(hostname="a.test", state_dir=tmp_path / "acme")
    one, two = AcmeIssuer(settings, {}), AcmeIssuer(settings, {})
    assert key_pem(one.account_key) == key_pem(two.account_key)
    assert key_pem(one.cert_key) != key_pem(one.account_key)


def test_pasteur_serve_https_end_to_end(pebble: Pebble, tmp_path: Path) -> None:
    """`pasteur serve --https`: real app, certificate from pebble, h2, port-80 redirect."""
    host, port = f"www.{ZONE}", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASTEUR_")}
    argv = acme_argv(pebble, tmp_path, host, "--cert-seed", "e2e")
    argv[argv.index("--https-port") + 1] = str(port)
    proc = subprocess.Popen([sys.executable, "-m", "pasteur", "serve", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_port(port, proc, timeout=30)
        ctx = ssl.create_default_context(cadata=pebble.root_pem().decode())
        with httpx.Client(http2=True, verify=ctx) as c:
            r = c.get(f"https://127.0.0.1:{port}/healthz", extensions={"sni_hostname": host})
            assert r.status_code == 200 and r.http_version == "HTTP/2"
        r = httpx.get(f"http://127.0.0.1:{pebble.http_port}/abc")
        assert r.status_code == 301 and r.headers["location"] == f"https://{host}:{port}/abc"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"Traceback" not in err, err.decode()
