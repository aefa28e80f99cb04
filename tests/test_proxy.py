"""Proxy trust (pasteur.proxy): X-Forwarded-For and X-Forwarded-Proto count only
from --trusted-proxy peers, on the plain and the TLS listener alike; behind a
real nginx configured as docs/https.md says, each client has its own rate-limit
bucket and cannot choose another. Clients are told apart by binding their
sockets to 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback on Linux)."""

from __future__ import annotations

import argparse
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest

from pasteur.cli import build_parser
from pasteur.proxy import TrustedProxies, bucket, parse_address, parse_networks

from .fixtures_acme import self_signed
from .ports import free_port, wait_port
from .processes import stop

pytestmark = pytest.mark.timeout(60)

LIMIT = ("--rate-limit", "2/min")  # a burst of 2, then one more every 30 s


def create(base: str, source: str = "127.0.0.1", headers: dict[str, str] | None = None,
           verify: ssl.SSLContext | bool = True, path: str = "/") -> httpx.Response:
    """POST a paste from the loopback address ``source``."""
    transport = httpx.HTTPTransport(local_address=source, verify=verify,
                                    http2=isinstance(verify, ssl.SSLContext))
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.post(base + path, content=b"x", headers=headers or {})


def codes(responses: list[httpx.Response]) -> list[int]:
    return [r.status_code for r in responses]


# --- the rule, on its own ------------------------------------------------------------


def test_networks_are_parsed_and_bad_ones_explained() -> None:
    assert parse_networks("127.0.0.1, 10.0.0.0/8,::1") == (
        ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"), ip_network("::1/128"))
    assert parse_networks("none") == parse_networks("") == ()
    with pytest.raises(ValueError, match="did you mean 10.0.0.0/8"):
        parse_networks("10.0.0.1/8")
    with pytest.raises(ValueError, match="not an address or network: 'proxy.lan'"):
        parse_networks("127.0.0.1,proxy.lan")


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() -> None:
    proxies = TrustedProxies(parse_networks("127.0.0.1,10.0.0.0/8"))
    assert proxies.client("127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    # what the client wrote itself (left) is passed over
    assert proxies.client("127.0.0.1", ["6.6.6.6", " 203.0.113.9", "10.1.2.3"]) == "203.0.113.9"
    assert proxies.client("127.0.0.1", ["10.0.0.7", "10.0.0.8"]) == "10.0.0.7"  # all trusted
    # not an address: the walk ends at the trusted hop right of it
    assert proxies.client("127.0.0.1", ["203.0.113.9", "unknown", "10.0.0.8"]) == "10.0.0.8"
    assert proxies.client("127.0.0.1", ["garbage"]) == "127.0.0.1"
    assert parse_address("[2001:db8::1]:443") == parse_address("2001:db8::1")
    assert str(parse_address("203.0.113.9:80")) == "203.0.113.9"
    assert str(parse_address("::ffff:203.0.113.9")) == "203.0.113.9"


def test_forwarded_headers_of_an_untrusted_peer_are_ignored() -> None:
    proxies = TrustedProxies(parse_networks("127.0.0.1"))
    headers = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]
    scope = {"client": ("127.0.0.2", 5000), "scheme": "http", "headers": headers}
    proxies.apply(scope)
    assert (scope["client"], scope["scheme"]) == (("127.0.0.2", 5000), "http")
    scope["client"] = ("127.0.0.1", 5000)
    proxies.apply(scope)
    assert (scope["client"], scope["scheme"]) == (("203.0.113.9", 0), "https")
    assert not TrustedProxies()


def test_an_ipv6_client_is_its_64() -> None:
    assert bucket("2001:db8:0:0:1::5") == bucket("2001:db8::ffff") == "2001:db8::/64"
    assert bucket("2001:db8:0:1::5") != bucket("2001:db8::5")
    assert bucket("203.0.113.9") == "203.0.113.9"


def test_the_flag_repeats_takes_lists_and_wins_over_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASTEUR_TRUSTED_PROXY", "192.0.2.1")

    def parsed(*argv: str) -> argparse.Namespace:
        return build_parser().parse_args(["serve", *argv])

    assert parsed().trusted_proxies == (ip_network("192.0.2.1/32"),)
    args = parsed("--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8,::1")
    assert args.trusted_proxies == parse_networks("127.0.0.1,10.0.0.0/8,::1")
    monkeypatch.delenv("PASTEUR_TRUSTED_PROXY")
    assert parsed().trusted_proxies == ()
    with pytest.raises(SystemExit):
        parsed("--trusted-proxy", "10.0.0.1/8")


# --- the plain listener (uvicorn) ------------------------------------------------------


def test_without_the_flag_a_forwarded_header_from_loopback_chooses_nothing(
        server_factory) -> None:
    """uvicorn alone trusts X-Forwarded-For from 127.0.0.1: not any more."""
    server = server_factory(*LIMIT)
    answers = [create(server.url, headers={"x-forwarded-for": f"192.0.2.{n}",
                                           "x-forwarded-proto": "https"}) for n in range(3)]
    assert codes(answers) == [201, 201, 429]
    assert answers[0].text.startswith("http://127.0.0.1:")
    assert "192.0.2." not in server.log()  # nor does the access log believe it


NGINX_CONF = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        # as docs/https.md says
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_request_buffering off;
        }}
        # the other common setting: the client's own header, with $remote_addr appended
        location /appended/ {{
            proxy_pass http://127.0.0.1:{upstream}/;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@contextmanager
def nginx(directory: Path, upstream: int) -> Iterator[str]:
    """A real nginx on a free loopback port in front of ``upstream``; yields its URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.skip("nginx is not installed (scripts/setup --test installs it)")
    directory.mkdir()
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, upstream=upstream))
    proc = subprocess.Popen([binary, "-p", str(directory), "-c", str(conf),
                             "-e", str(directory / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_behind_nginx_each_client_has_its_own_bucket(server_factory, tmp_path: Path) -> None:
    server = server_factory(*LIMIT, "--trusted-proxy", "127.0.0.1")
    with nginx(tmp_path / "nginx", server.port) as proxy:
        # 127.0.0.2 spends its burst, then cannot buy another with a header of its own
        two = [create(proxy, "127.0.0.2") for _ in range(2)]
        two.append(create(proxy, "127.0.0.2", {"x-forwarded-for": "192.0.2.10"}))
        assert codes(two) == [201, 201, 429]
        assert two[0].text.startswith("https://")  # X-Forwarded-Proto from nginx counts
        # 127.0.0.3, sending no header either, has a bucket of its own
        three = [create(proxy, "127.0.0.3")]
        # with $proxy_add_x_forwarded_for the client's header is kept, left of its address
        three += [create(proxy, "127.0.0.3", {"x-forwarded-for": f"192.0.2.{n}"},
                         path="/appended/") for n in (11, 12)]
        assert codes(three) == [201, 201, 429]
    log = server.log()
    assert "127.0.0.2 " in log and "127.0.0.3 " in log  # the access log names the client
    assert "192.0.2." not in log


# --- the TLS listener (hypercorn) ------------------------------------------------------


@contextmanager
def tls_server(tmp_path: Path, *argv: str) -> Iterator[tuple[str, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASTEUR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pasteur", "serve", "--data", str(tmp_path / "data"),
         "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key), *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"https://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=str(cert))
    try:
        wait_port(port, proc, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", verify=verify).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        yield base, verify
    finally:
        stop(proc, 10)


def test_the_tls_listener_follows_the_same_rule(tmp_path: Path) -> None:
    with tls_server(tmp_path, *LIMIT, "--trusted-proxy", "127.0.0.1") as (base, verify):
        # 127.0.0.2 is no trusted proxy: its headers choose nothing
        untrusted = [create(base, "127.0.0.2", {"x-forwarded-for": f"192.0.2.{n}",
                                                "x-forwarded-proto": "http"}, verify)
                     for n in range(3)]
        assert codes(untrusted) == [201, 201, 429]
        assert untrusted[0].http_version == "HTTP/2"
        assert untrusted[0].text.startswith("https://")
        # 127.0.0.1 is: the right-most address it forwards that is not a proxy is the client
        trusted = [create(base, "127.0.0.1", {"x-forwarded-for": xff}, verify) for xff in (
            "198.51.100.1", "6.6.6.6, 198.51.100.1", "198.51.100.1", "198.51.100.2")]
        assert codes(trusted) == [201, 201, 429, 201]
        # IPv6 clients are counted per /64
        six = [create(base, "127.0.0.1", {"x-forwarded-for": xff}, verify) for xff in (
            "2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:0:1::1")]
        assert codes(six) == [201, 201, 429, 201]
